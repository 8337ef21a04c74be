"""Print a run's record as the table users read first."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from tpserve.workload.runrecord import RunRecord, TokenCheck


def summary_table(record: RunRecord) -> Table:
    """Requests ok/failed, throughputs, and TTFT/TPOT percentiles of one run."""
    m = record.metrics
    title = f"{record.model_id or '?'} — {record.workload.num_requests or 'timed'} requests"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("requests ok / failed", f"{m.completed} / {m.failed}"),
        ("duration (s)", f"{m.duration:.2f}"),
        ("output tok/s", f"{m.output_throughput:.1f}"),
        ("total tok/s", f"{m.total_token_throughput:.1f}"),
        ("requests/s", f"{m.request_throughput:.2f}"),
        ("TTFT p50 / p99 (ms)", f"{m.median_ttft_ms:.1f} / {m.p99_ttft_ms:.1f}"),
        ("TPOT p50 / p99 (ms)", f"{m.median_tpot_ms:.1f} / {m.p99_tpot_ms:.1f}"),
        ("tokens client / server", _token_cell(record.token_check)),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _token_cell(check: TokenCheck) -> str:
    server = check.server_generation_tokens
    return f"{check.client_completion_tokens} / {'—' if server is None else server} ({check.status})"


def print_summary(record: RunRecord, console: Console | None = None) -> None:
    console = console or Console()
    console.print(summary_table(record))
    for reason, count in sorted(record.errors.items(), key=lambda item: -item[1]):
        console.print(f"[red]{count} × {reason}[/red]")
