"""Print a load-test report as the table users read first."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def summary_table(document: dict) -> Table:
    """Requests ok/failed, throughputs, and TTFT/TPOT percentiles of one run's report."""
    title = f"{document.get('model_id', '?')} — {document['plan']['num_requests'] or 'timed'} requests"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("requests ok / failed", f"{document['completed']} / {document['failed']}"),
        ("duration (s)", f"{document['duration']:.2f}"),
        ("output tok/s", f"{document['output_throughput']:.1f}"),
        ("total tok/s", f"{document['total_token_throughput']:.1f}"),
        ("requests/s", f"{document['request_throughput']:.2f}"),
        ("TTFT p50 / p99 (ms)", f"{document['median_ttft_ms']:.1f} / {document['p99_ttft_ms']:.1f}"),
        ("TPOT p50 / p99 (ms)", f"{document['median_tpot_ms']:.1f} / {document['p99_tpot_ms']:.1f}"),
        ("tokens client / server", _token_cell(document["token_check"])),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _token_cell(check: dict) -> str:
    server = check.get("server_generation_tokens")
    return f"{check['client_completion_tokens']} / {'—' if server is None else server} ({check['status']})"


def print_summary(document: dict, console: Console | None = None) -> None:
    console = console or Console()
    console.print(summary_table(document))
    for reason, count in sorted(document.get("errors", {}).items(), key=lambda item: -item[1]):
        console.print(f"[red]{count} × {reason}[/red]")
