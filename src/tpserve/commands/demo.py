"""``tpserve demo``: a tiny Llama on real vLLM (CPU), measured by the Locust load test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tpserve.commands import at_least_one, console
from tpserve.data import LOCUSTFILE, OUTPUT_DIR
from tpserve.fetch.errors import TpserveError


def demo(
    port: Annotated[int, typer.Option(help="Port for the local vLLM server.")] = 8000,
    num_requests: Annotated[int, typer.Option(help="Requests to send (the built-in suite has 59).")] = 59,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once (Locust users).")] = 8,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per request.")] = 64,
    health_timeout: Annotated[float, typer.Option(help="Seconds to wait for the server's /health.")] = 300.0,
    locustfile: Annotated[Path, typer.Option(help="The Locust file to run.")] = LOCUSTFILE,
    results_dir: Annotated[Path, typer.Option(help="Where the results JSON goes.")] = OUTPUT_DIR,
    cache_dir: Annotated[Path, typer.Option(help="Model folder and vLLM caches.")] = Path(".cache"),
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the run as JSON instead of the table: results (the file written) and record (its "
                       "run record, the keys docs/results.md lists).")] = False,
) -> None:
    """Serve a tiny Llama with real vLLM on CPU and measure it with the Locust load test.

    Example (from the repository root):

        tpserve demo --num-requests 59 --concurrency 8
    """
    from tpserve.demo import DemoOptions, run_demo
    from tpserve.workload.runtable import print_summary

    at_least_one(num_requests=num_requests, concurrency=concurrency, max_tokens=max_tokens)
    options = DemoOptions(port=port, num_requests=num_requests, concurrency=concurrency, max_tokens=max_tokens,
                          health_timeout_s=health_timeout, locustfile=locustfile, results_dir=results_dir,
                          cache_dir=cache_dir)
    record, path = run_demo(options, say=lambda text: console.print(f"[dim]{text}[/dim]"))
    if as_json:
        typer.echo(json.dumps({"results": str(path), "record": record.to_json()}, indent=2, ensure_ascii=False))
    else:
        print_summary(record, Console())
        console.print(f"results: {path}")
    if not record.ok:
        raise TpserveError("the run failed its checks: " + "; ".join(record.problems))
