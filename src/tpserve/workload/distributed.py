"""Splitting one run over Locust worker processes and merging their raw records back into one.

The master decides the plan; each worker sends its share of the requests and reports its raw
records; the master merges them and computes every figure from the records, never from Locust's
aggregated statistics. Record times are ``time.perf_counter()`` of the worker that sent them: each
worker also reports the offset of its wall clock to that counter, so the master maps every record
onto its own timeline (exact on one host, where all processes share the monotonic clock; across
hosts as good as the hosts' clock synchronisation).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import replace

from tpserve.workload.requesttypes import RequestResult


def share(total: int, workers: int, index: int) -> int:
    """How many of TOTAL requests worker INDEX (of WORKERS) sends: an even split, the first ones one more."""
    if workers < 1 or not 0 <= index < workers:
        raise ValueError(f"worker index {index} is outside 0..{workers - 1}")
    return total // workers + (1 if index < total % workers else 0)


def clock_offset() -> float:
    """This process's wall clock minus its monotonic counter."""
    return time.time() - time.perf_counter()


def to_master_clock(records: Iterable[dict], worker_offset: float, master_offset: float) -> list[RequestResult]:
    """A worker's raw records as results on the master's monotonic timeline."""
    shift = worker_offset - master_offset
    return [replace(RequestResult.from_json(r), send_time=r["send_time"] + shift, finish_time=r["finish_time"] + shift)
            for r in records]
