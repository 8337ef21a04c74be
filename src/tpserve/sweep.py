"""``tpserve sweep``: the load test over a grid of layouts, each point measured R times.

A layout is a tensor-parallel size and a number of replicas (independent servers, each on its own
GPUs). Locally each replica is ``tpserve serve`` on its own devices — ``CUDA_VISIBLE_DEVICES`` on a GPU
host, pinned CPU cores (``VLLM_CPU_OMP_THREADS_BIND``) without GPUs —; on Kubernetes it is the chart
(:mod:`tpserve.measure.kubernetes`). The load is the same Locust file users run, one process per replica, and the
point's figures come from the merged raw records. A point that fails is recorded with its reason and
the sweep goes on. The sweep is the grid strategy over a :class:`tpserve.measure.campaign.Campaign`, as
``tpserve tune`` is the search strategy over one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tpserve.measure.campaign import Campaign
from tpserve.measure.points import Point, cross_with_settings

FAILURES_FILE = "failures.json"


@dataclass
class SweepResult:
    runs: list[Path] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


def sweep_points(campaign: Campaign) -> list[Point]:
    """The grid: every layout of CAMPAIGN × every combination of its settings axes, layouts slowest."""
    return cross_with_settings(campaign.layouts, campaign.settings_axes)


def run_sweep(campaign: Campaign) -> SweepResult:
    """Measure every point of CAMPAIGN's grid; write one JSON per run, and failures.json for the points that
    failed. With the campaign's resume, a point whose runs are all in its folder already is not measured
    again (:func:`tpserve.measure.runner.recorded_runs`).
    """
    campaign.out.mkdir(parents=True, exist_ok=True)
    result = SweepResult()
    for point in sweep_points(campaign):
        measured = campaign.measure(point)
        result.runs += measured.runs
        if measured.failure:
            result.failures.append(measured.failure)
    (campaign.out / FAILURES_FILE).write_text(json.dumps(result.failures, indent=2) + "\n")
    return result


def summary(campaign: Campaign, result: SweepResult) -> dict:
    """What ``tpserve sweep --json`` prints: the results folder, every run's file, and the failed points as
    failures.json holds them."""
    return {"out": str(campaign.out), "runs": [str(path) for path in result.runs],
            "failures_file": str(campaign.out / FAILURES_FILE), "failures": result.failures}
