"""``tpserve report``: the reference note's table from measured runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tpserve.commands import console


def report(
    paths: Annotated[list[Path], typer.Argument(help="Results files or folders (searched recursively).")],
    markdown_out: Annotated[Path | None, typer.Option("--markdown", help="Also write the table here.")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="Write a PNG plot here.")] = None,
    price: Annotated[list[str] | None, typer.Option(help="KIND=USD per GPU-hour, repeatable (h200=3.5).")] = None,
    ttft_budget_ms: Annotated[float | None, typer.Option(help="Latency budget: TTFT p50 at most this.")] = None,
    tpot_budget_ms: Annotated[float | None, typer.Option(help="Latency budget: TPOT p50 at most this.")] = None,
    gpu_limits: Annotated[list[Path] | None, typer.Option(
        help="lab/benchmarks/gpu_limits.py results to hold runs against, repeatable; gpu-limits.json files under "
             "the reported folders are read too.")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the report as JSON instead of markdown: workload, and rows, each with model, device, "
                       "tensor_parallel_size, pipeline_parallel_size, replicas, gpus, vllm_flags, runs, "
                       "mean_output_tok_s, stdev_output_tok_s, output_tok_s_per_gpu, median_ttft_ms, median_tpot_ms, "
                       "usd_per_million_output_tokens (null without a --price for it), and roofline: dtypes, decode_batch, "
                       "mean_context, decode_bound_tok_s, decode_limit, prefill_bound_tok_s and the fractions "
                       "decode_fraction_of_datasheet, decode_fraction_of_measured, prefill_fraction_of_datasheet, "
                       "prefill_fraction_of_measured (null where no_roofline says why). --markdown still writes the "
                       "table.")] = False,
) -> None:
    """The reference note's table from measured runs: tok/s with spread, per GPU, latency and cost, and each
    run's fraction of its card's roofline (datasheet, and measured where a gpu-limits.json is found).

    Example:

        tpserve report results/20261126-sweep --plot tps.png --price h200=3.5 --tpot-budget-ms 20
    """
    from tpserve.report import (
        check_same_workload,
        document,
        limits_files,
        load_runs,
        markdown,
        parse_prices,
        plot,
        roofline_markdown,
        rows,
    )
    from tpserve.roofline import measured_limits

    runs = load_runs(paths)
    work = check_same_workload(runs)
    table = rows(runs)
    measured = measured_limits([*limits_files(paths), *(gpu_limits or [])])
    prices = parse_prices(price or [])
    text = markdown(table, work, prices, ttft_budget_ms, tpot_budget_ms)
    text += "\n" + roofline_markdown(runs, table, measured)
    if as_json:
        typer.echo(json.dumps(document(runs, table, work, prices, measured), indent=2, ensure_ascii=False))
    else:
        typer.echo(text, nl=False)
    if markdown_out:
        markdown_out.write_text(text)
    if plot_out:
        console.print(f"plot: {plot(table, plot_out)}")
