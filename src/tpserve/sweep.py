"""``tpserve sweep``: the load test over a grid of layouts, each point measured R times.

A layout is a tensor-parallel size and a number of replicas (independent servers, each on its own
GPUs). Locally each replica is ``tpserve serve`` on its own devices — ``CUDA_VISIBLE_DEVICES`` on a GPU
host, pinned CPU cores (``VLLM_CPU_OMP_THREADS_BIND``) without GPUs —; on Kubernetes it is the chart
(:mod:`tpserve.measure.kubernetes`). The load is the same Locust file users run, one process per replica, and the
point's figures come from the merged raw records. A point that fails is recorded with its reason and
the sweep goes on. The measuring itself is :mod:`tpserve.measure`'s, which ``tpserve tune`` shares.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tpserve.machine import describe_machine
from tpserve.measure.points import Point
from tpserve.measure.runner import Backend, Load, check_repeats, measure_point


@dataclass
class SweepResult:
    runs: list[Path] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)



def run_sweep(points: Sequence[Point], backend: Backend, *, name: str, model: str, load: Load, repeats: int,
              out: Path, progress: Callable[[str, int], None] = lambda text, done: print(text),
              resume: bool = False) -> SweepResult:
    """Measure every point REPEATS times; write one JSON per run, and failures.json for the points that failed.

    PROGRESS gets a line to show and how many of the len(points) × repeats runs it completes. With RESUME,
    a point whose runs are all in OUT already is not measured again (:func:`tpserve.measure.runner.recorded_runs`).
    """
    check_repeats(repeats)
    out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    result = SweepResult()
    for point in points:
        measured = measure_point(point, backend, name=name, model=model, load=load, repeats=repeats, out=out,
                                 machine=machine, progress=progress, resume=resume)
        result.runs += measured.runs
        if measured.failure:
            result.failures.append(measured.failure)
    (out / "failures.json").write_text(json.dumps(result.failures, indent=2) + "\n")
    return result



def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
