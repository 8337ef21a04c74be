"""``tpserve report``: the reference note's table from measured runs."""

from __future__ import annotations

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
        help="benchmarks/gpu_limits.py results to hold runs against, repeatable; gpu-limits.json files under "
             "the reported folders are read too.")] = None,
) -> None:
    """The reference note's table from measured runs: tok/s with spread, per GPU, latency and cost, and each
    run's fraction of its card's roofline (datasheet, and measured where a gpu-limits.json is found).

    Example:

        tpserve report results/20261126-sweep --plot tps.png --price h200=3.5 --tpot-budget-ms 20
    """
    from tpserve.report import (
        check_same_workload,
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
    text = markdown(table, work, parse_prices(price or []), ttft_budget_ms, tpot_budget_ms)
    text += "\n" + roofline_markdown(runs, table, measured)
    typer.echo(text, nl=False)
    if markdown_out:
        markdown_out.write_text(text)
    if plot_out:
        console.print(f"plot: {plot(table, plot_out)}")
