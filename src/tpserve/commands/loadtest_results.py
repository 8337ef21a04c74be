"""``tpserve loadtest-results``: the results a load test printed to its log, as files tpserve report reads."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from tpserve.commands import console
from tpserve.data import OUTPUT_DIR


def loadtest_results(
    log: Annotated[Path, typer.Argument(help="The load test's log (a file, or - for standard input).")],
    out: Annotated[Path, typer.Option(help="Results file to write; a log with several runs gets -2, -3, ...")] =
    OUTPUT_DIR / "incluster.json",
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the files written as a JSON list on standard output, one object per record: path, "
                       "completed, num_prompts, output_throughput (tok/s), token_check (ok, mismatch, ...) and "
                       "layout (null where the record has none).")] = False,
) -> None:
    """Write the run records a load test printed with --print-results (the chart's in-cluster master does).

    Example (the chart's loadtest Jobs, docs/loadtest-in-cluster.md):

        kubectl logs job/llama70b-vllm-loadtest-1-master | tpserve loadtest-results - --out results/lt1.json
        tpserve report results/lt1.json
    """
    from tpserve.workload import runrecord
    from tpserve.workload.logline import records_from_log

    if str(log) == "-":
        text, source = sys.stdin.read(), "standard input"
    else:
        if not log.is_file():
            raise typer.BadParameter(f"{log} is not a file", param_hint="LOG")
        text, source = log.read_text(errors="replace"), str(log)
    written = []
    for index, record in enumerate(records_from_log(text, source)):
        path = out if index == 0 else out.with_name(f"{out.stem}-{index + 1}{out.suffix}")
        runrecord.write(path, record)
        written.append({"path": str(path), "completed": record.metrics.completed,
                        "num_prompts": record.metrics.num_prompts,
                        "output_throughput": record.metrics.output_throughput,
                        "token_check": record.token_check.status,
                        "layout": asdict(record.layout) if record.layout else None})
        if not as_json:
            layout = "" if record.layout else " (no layout: tpserve report needs one; run the master with --layout)"
            console.print(f"{path}: {record.metrics.completed}/{record.metrics.num_prompts} ok, "
                          f"{record.metrics.output_throughput:.1f} output tok/s, tokens {record.token_check.status}"
                          f"{layout}", markup=False, highlight=False)
    if as_json:
        typer.echo(json.dumps(written, indent=2, ensure_ascii=False))
