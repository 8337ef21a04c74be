"""``tpserve tune``: the vLLM settings that serve the most output tok/s per GPU within a latency budget.

The method is **coordinate search**, chosen because a server start is the cost: on GPUs each start
loads the weights and captures CUDA graphs for minutes, while a run of the load takes tens of seconds.

1. Layouts first, each with vLLM's defaults (every axis at ``default``): the defaults candidate of
   every layout is measured, side by side with what follows.
2. Then one axis at a time, in the order given: the best candidate so far with that axis set to each
   of its values. The best becomes the base for the next axis.

"Best" is the most output tok/s per GPU (the median over ``repeats`` runs) among candidates whose
median TTFT and median TPOT (the medians of the runs' own medians) are within the budget and whose
runs all count; while none is within it, the one least over it. A candidate already measured is
never started again, so a search takes (layouts) + Σ (values of each axis − 1) server starts, where
the grid takes layouts × Π (values of each axis) — 2 layouts and axes of 4, 3 and 3 values: 9
starts against 72. What it gives up: two settings whose best values depend on each other (say
``max-num-seqs`` and ``max-num-batched-tokens``) are each tuned with the other held, so put the axis
expected to matter most first. Successive halving was the other choice; it measures every candidate
at least once before dropping any, i.e. at least as many starts as the grid.

``default`` is added to an axis that lacks it, so vLLM's defaults are always a candidate. ``max_runs``
caps the runs; the search stops before a candidate that would pass it. Interrupted (Ctrl-C, SIGTERM), it
stops the candidate's servers and returns what it measured, so that ``tune.json`` is still written.
The search is a strategy over a :class:`tpserve.measure.campaign.Campaign`, as the sweep's grid is: every
run is a run record (:meth:`tpserve.measure.campaign.Campaign.measure`, the sweep's own machinery);
``tune.json`` holds every candidate, its runs, why it was dropped, and the winner as a ``tpserve serve``
command line (the campaign's ``serving``).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from tpserve import axes
from tpserve.fetch.errors import ConfigError
from tpserve.measure.campaign import Campaign
from tpserve.measure.points import Point

TUNE_FILE = "tune.json"


@dataclass(frozen=True)
class Budget:
    """The latency a winner may have: median TTFT and median TPOT at most these (None: no limit)."""

    max_ttft_ms: float | None = None
    max_tpot_ms: float | None = None

    def __post_init__(self) -> None:
        for option, value in (("--max-ttft-ms", self.max_ttft_ms), ("--max-tpot-ms", self.max_tpot_ms)):
            if value is not None and value <= 0:
                raise ConfigError(f"{option} must be above 0 ms, got {value:g}")

    def overshoot(self, ttft_ms: float, tpot_ms: float) -> float:
        """How far over the budget, as the largest ratio of measured to allowed; at most 1 within it."""
        ratios = [measured / limit for measured, limit in ((ttft_ms, self.max_ttft_ms), (tpot_ms, self.max_tpot_ms))
                  if limit is not None]
        return max(ratios, default=0.0)

    def why_over(self, ttft_ms: float, tpot_ms: float) -> str:
        parts = [f"{name} p50 {measured:,.1f} ms > {limit:g} ms" for name, measured, limit in
                 (("TTFT", ttft_ms, self.max_ttft_ms), ("TPOT", tpot_ms, self.max_tpot_ms))
                 if limit is not None and measured > limit]
        return "over budget: " + ", ".join(parts)


@dataclass
class Candidate:
    """One point of the search, measured or not, and what became of it."""

    point: Point
    phase: str
    runs: list[str] = field(default_factory=list)
    tok_s_per_gpu: float | None = None
    median_ttft_ms: float | None = None
    median_tpot_ms: float | None = None
    error: str = ""
    status: str = "not measured"  # then: measured, winner, dropped, failed
    reason: str = ""

    @property
    def measured(self) -> bool:
        return self.tok_s_per_gpu is not None

    def to_json(self) -> dict:
        return {**self.point.describe(), "phase": self.phase, "status": self.status, "reason": self.reason,
                "output_tok_s_per_gpu": self.tok_s_per_gpu, "median_ttft_ms": self.median_ttft_ms,
                "median_tpot_ms": self.median_tpot_ms, "runs": self.runs}


@dataclass
class TuneResult:
    candidates: list[Candidate]
    winner: Candidate | None
    defaults: Candidate | None
    server_starts: int
    runs: int
    stopped: str = ""  # why the search ended early, if it did
    # The Ctrl-C or SIGTERM that ended it: the search so far is returned, and the caller raises it once written.
    interrupted: BaseException | None = None

    @property
    def ratio_to_defaults(self) -> float | None:
        if self.winner is None or self.defaults is None or not self.defaults.measured:
            return None
        return self.winner.tok_s_per_gpu / self.defaults.tok_s_per_gpu


def with_defaults(settings_axes: Sequence[axes.Axis]) -> list[axes.Axis]:
    """Each axis with ``default`` first, so vLLM's own settings are always a candidate."""
    return [axis if axes.DEFAULT in axis.values else replace(axis, values=(axes.DEFAULT, *axis.values))
            for axis in settings_axes]


def search_size(campaign: Campaign) -> int:
    """The most candidates a search of CAMPAIGN measures: every layout, then every other value of each axis
    (``default`` included)."""
    return len(campaign.layouts) + sum(len(axis.values) - 1 for axis in with_defaults(campaign.settings_axes))


def tune(campaign: Campaign, budget: Budget, *, max_runs: int | None = None) -> TuneResult:
    """Search CAMPAIGN's layouts × settings axes (see the module), every run recorded in its folder.

    With the campaign's resume, a candidate whose runs are all in its folder already is read from them, not
    started again; the search takes the same path, since it depends only on the candidates' figures."""
    layouts, settings_axes, repeats = campaign.layouts, campaign.settings_axes, campaign.repeats
    if not settings_axes:
        raise ConfigError("tune needs at least one setting to try: add --vllm KEY=V1,V2 (e.g. max-num-seqs=256,512)")
    if max_runs is not None and max_runs < repeats:
        raise ConfigError(f"--budget-runs must be at least --repeats ({repeats}) so that one candidate can be "
                          f"measured, got {max_runs}")
    settings_axes = with_defaults(settings_axes)
    campaign.out.mkdir(parents=True, exist_ok=True)
    start = tuple((axis.key, axes.DEFAULT) for axis in settings_axes)
    seen: dict[Point, Candidate] = {}
    state = {"runs": 0, "starts": 0, "stopped": "", "interrupted": None}

    def measured(point: Point, phase: str) -> Candidate | None:
        """POINT's candidate, measured now unless it already was; None once the run budget is spent."""
        if point in seen:
            return seen[point]
        candidate = seen[point] = Candidate(point, phase)
        if state["stopped"] or (max_runs is not None and state["runs"] + repeats > max_runs):
            state["stopped"] = state["stopped"] or f"the run budget ({max_runs} runs) was spent"
            candidate.reason = state["stopped"]
            return None
        try:
            result = campaign.measure(point, context={"tune_phase": phase})
        except (KeyboardInterrupt, SystemExit) as stop:  # Ctrl-C or SIGTERM: the backend stopped the servers
            state["starts"] += 1
            state["stopped"] = candidate.reason = f"interrupted while measuring {point.label}"
            state["interrupted"] = stop
            return None
        state["starts"] += 0 if result.resumed else 1
        state["runs"] += len(result.runs)
        candidate.runs = [path.name for path in result.runs]
        bad = [problem for record in result.records for problem in record.problems]
        if result.failure or bad:
            candidate.status, candidate.error = "failed", result.failure["error"] if result.failure else bad[0]
            candidate.reason = f"failed: {candidate.error}"
            return candidate
        candidate.status = "measured"
        candidate.tok_s_per_gpu = statistics.median(r.metrics.output_throughput for r in result.records) / point.devices
        candidate.median_ttft_ms = statistics.median(r.metrics.median_ttft_ms for r in result.records)
        candidate.median_tpot_ms = statistics.median(r.metrics.median_tpot_ms for r in result.records)
        return candidate

    def score(candidate: Candidate) -> tuple:
        over = budget.overshoot(candidate.median_ttft_ms, candidate.median_tpot_ms)
        return (1, candidate.tok_s_per_gpu) if over <= 1 else (0, -over)

    def choose(phase: str, candidates: list[Candidate]) -> Candidate | None:
        ranked = sorted((c for c in candidates if c.measured), key=score, reverse=True)
        if not ranked:
            return None
        best = ranked[0]
        for other in ranked[1:]:
            if other.status == "measured":
                other.status = "dropped"
                other.reason = (budget.why_over(other.median_ttft_ms, other.median_tpot_ms) if score(other)[0] == 0
                                else f"slower: {other.tok_s_per_gpu:,.1f} output tok/s per GPU vs "
                                     f"{best.tok_s_per_gpu:,.1f} of {best.point.label} ({phase})")
        return best

    base = choose("layouts", [c for layout in layouts if (c := measured(replace(layout, settings=start), "layouts"))])
    for axis in settings_axes:
        if base is None or state["stopped"]:
            break
        phase = f"axis {axis.key}"
        options = [replace(base.point, settings=tuple((k, value if k == axis.key else v) for k, v in
                                                        base.point.settings)) for value in axis.values]
        base = choose(phase, [c for point in options if (c := measured(point, phase))])
    within = [c for c in seen.values() if c.measured and score(c)[0] == 1]
    winner = max(within, key=score) if within else None
    for candidate in seen.values():
        if candidate.status == "measured" and candidate is not winner:
            candidate.status = "dropped"
            candidate.reason = budget.why_over(candidate.median_ttft_ms, candidate.median_tpot_ms)
    if winner is not None:
        winner.status, winner.reason = "winner", "the most output tok/s per GPU within the budget"
    defaults = seen.get(replace(winner.point if winner else layouts[0], settings=start))
    return TuneResult(list(seen.values()), winner, defaults, state["starts"], state["runs"], state["stopped"],
                      state["interrupted"])


def summary(campaign: Campaign, result: TuneResult, budget: Budget, max_runs: int | None) -> dict:
    """What ``tune.json`` holds (and ``tpserve tune --json`` prints): the search, every candidate and its runs,
    the winner and its ratio to vLLM's defaults.

    The winner's key and command are the campaign's ``serving``: ``serve`` and its ``tpserve serve`` line
    locally (:func:`tpserve.measure.local.serving`), ``deploy`` and its helm line on Kubernetes
    (:func:`tpserve.measure.kubernetes.deploying`).
    """
    settings_axes = with_defaults(campaign.settings_axes)
    winner, defaults = result.winner, result.defaults
    grid = len(campaign.layouts) * len(axes.grid(settings_axes))
    workload = asdict(campaign.load)
    return {
        "method": "coordinate search (layouts, then one axis at a time; docs/tuning.md)",
        "model": campaign.model,
        "workload": {key: str(value) if isinstance(value, Path) else value for key, value in workload.items()},
        "budget": asdict(budget),
        "layouts": [point.label for point in campaign.layouts],
        "axes": {axis.key: list(axis.values) for axis in settings_axes},
        "repeats": campaign.repeats,
        "max_runs": max_runs,
        "server_starts": result.server_starts,
        "runs": result.runs,
        "grid_server_starts": grid,
        "stopped": result.stopped,
        "candidates": [candidate.to_json() for candidate in result.candidates],
        "winner": None if winner is None else {
            **winner.point.describe(), "output_tok_s_per_gpu": winner.tok_s_per_gpu,
            "median_ttft_ms": winner.median_ttft_ms, "median_tpot_ms": winner.median_tpot_ms,
            **dict([campaign.serving(winner.point)] if campaign.serving else [])},
        "defaults": None if defaults is None else {"label": defaults.point.label, "status": defaults.status,
                                                   "output_tok_s_per_gpu": defaults.tok_s_per_gpu},
        "ratio_to_defaults": result.ratio_to_defaults,
    }


def write_summary(campaign: Campaign, document: dict) -> Path:
    """Write DOCUMENT (:func:`summary`) as ``tune.json`` in the campaign's folder."""
    path = campaign.out / TUNE_FILE
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def final_line(result: TuneResult, budget: Budget) -> str:
    """What the search found, in one line: the winner and its ratio to vLLM's defaults, or why there is none."""
    costs = f"{result.server_starts} server starts, {result.runs} runs"
    if result.winner is None:
        measured = [c for c in result.candidates if c.measured]
        if not measured:
            return f"no candidate could be measured ({costs})"
        closest = min(measured, key=lambda c: budget.overshoot(c.median_ttft_ms, c.median_tpot_ms))
        return (f"no candidate was within the budget ({costs}); the closest, {closest.point.label}, was "
                f"{budget.why_over(closest.median_ttft_ms, closest.median_tpot_ms).removeprefix('over budget: ')}")
    winner, ratio = result.winner, result.ratio_to_defaults
    against = (f"{ratio:.2f} × vLLM's defaults ({result.defaults.point.label}, "
               f"{result.defaults.tok_s_per_gpu:,.1f})" if ratio is not None else
               "vLLM's defaults could not be measured")
    return (f"winner: {winner.point.label}, {winner.tok_s_per_gpu:,.1f} output tok/s per GPU = {against}; "
            f"TTFT p50 {winner.median_ttft_ms:,.1f} ms, TPOT p50 {winner.median_tpot_ms:,.2f} ms; {costs}")
