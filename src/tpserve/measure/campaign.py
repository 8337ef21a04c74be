"""A campaign: what every point of one ``tpserve sweep`` or ``tpserve tune`` shares, decided once.

The campaign holds the space (layouts × settings axes), the model and the name it is served under, the
load, the backend that starts a point's servers, where the runs go, how often each point is measured and
whether runs already recorded there count. A strategy only chooses which of its points to measure and in
what order: ``tpserve sweep`` (:func:`tpserve.sweep.run_sweep`) every point of the grid, ``tpserve tune``
(:func:`tpserve.tune.tune`) a coordinate search. Both measure a point through :meth:`Campaign.measure`, so
a point is started, recorded and resumed the same way by either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

from tpserve import axes
from tpserve.machine import describe_machine
from tpserve.measure.points import Point
from tpserve.measure.runner import Backend, Load, PointResult, Serving, check_repeats, measure_point


def _print(text: str, done: int) -> None:
    print(text)


@dataclass(frozen=True)
class Campaign:
    """One sweep's or search's shared facts. MODEL is what is served (a folder or a repo id), NAME what it is
    served as: the load asks for NAME, and each run is recorded as ``OUT/NAME-LABEL-runN.json``
    (:func:`tpserve.measure.runner.run_path`). PROGRESS gets a line to show and how many runs it completes."""

    model: str
    name: str
    layouts: tuple[Point, ...]
    settings_axes: tuple[axes.Axis, ...]
    load: Load
    backend: Backend
    out: Path
    repeats: int = 1
    resume: bool = False
    serving: Serving | None = None
    progress: Callable[[str, int], None] = _print

    def __post_init__(self) -> None:
        check_repeats(self.repeats)

    @cached_property
    def machine(self) -> dict:
        """This host as every run record of the campaign names it, described once."""
        return describe_machine()

    def measure(self, point: Point, context: dict | None = None) -> PointResult:
        """POINT's REPEATS runs (:func:`tpserve.measure.runner.measure_point`), CONTEXT added to each record's;
        with RESUME, runs already recorded in OUT are read instead. A failure is returned, never raised."""
        return measure_point(point, self.backend, name=self.name, model=self.name, load=self.load,
                             repeats=self.repeats, out=self.out, machine=self.machine, progress=self.progress,
                             context=context, resume=self.resume)


def stamp() -> str:
    """The time now, as the default output folder of a sweep or a search starts with it."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
