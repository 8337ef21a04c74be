"""A run's results JSON as one marked line of a log, and back: how results leave a Kubernetes Job.

A Locust master in a Job (the chart's ``loadtest``) has no file anyone can reach after it ends, but its log
stays readable (``kubectl logs``). With ``--print-results`` it prints the record as one line between two
markers; the end marker proves the line arrived whole. :func:`records_from_log` finds such lines in a log
and :mod:`tpserve.measure.incluster` and ``tpserve loadtest-results`` write them back as results files.
"""

from __future__ import annotations

import json

from tpserve.fetch.errors import LoadTestError
from tpserve.workload import runrecord
from tpserve.workload.runrecord import RunRecord

BEGIN = "<<<tpserve-results>>>"
END = "<<<end-tpserve-results>>>"


def results_line(record: RunRecord) -> str:
    return BEGIN + json.dumps(record.to_json(), separators=(",", ":")) + END


def records_from_log(text: str, source: str = "the log") -> list[RunRecord]:
    """Every run record printed in TEXT, in order; an error when there is none or one is cut short."""
    records = []
    for number, line in enumerate(text.splitlines(), start=1):
        start = line.find(BEGIN)
        if start < 0:
            continue
        body = line[start + len(BEGIN):]
        if not body.rstrip().endswith(END):
            raise LoadTestError(f"line {number} of {source} holds a results record cut short (no end marker): "
                                "take the whole log, e.g. kubectl logs without --tail or --limit-bytes")
        records.append(runrecord.from_document(json.loads(body.rstrip().removesuffix(END)),
                                               f"{source}, line {number}"))
    if not records:
        raise LoadTestError(f"{source} holds no results record: the load test prints one when it ends with "
                            "--print-results (TPSERVE_PRINT_RESULTS=true); did the run finish?")
    return records
