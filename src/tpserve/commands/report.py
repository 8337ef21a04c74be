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
) -> None:
    """The reference note's table from measured runs: tok/s with spread, per GPU, latency and cost.

    Example:

        tpserve report results/20261126-sweep --plot tps.png --price h200=3.5 --tpot-budget-ms 20
    """
    from tpserve.report import check_same_workload, load_runs, markdown, parse_prices, plot, rows

    runs = load_runs(paths)
    work = check_same_workload(runs)
    table = rows(runs)
    text = markdown(table, work, parse_prices(price or []), ttft_budget_ms, tpot_budget_ms)
    typer.echo(text, nl=False)
    if markdown_out:
        markdown_out.write_text(text)
    if plot_out:
        console.print(f"plot: {plot(table, plot_out)}")
