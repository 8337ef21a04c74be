"""A sweep backend with deterministic figures, for tests of the sweep's and tune's logic.

Only the servers and the load are stood in for (at :data:`tpserve.measure.runner.Backend`): each point's
``tpserve serve`` configuration is the real one (the sweep's options read by the serve command's parser,
then :func:`tpserve.measure.local.replica_config`), and its layout is made from that configuration
(:func:`tpserve.commandlines.served_layout`), as the local backend does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from tpserve.axes import Axis
from tpserve.commandlines import served_layout
from tpserve.commands._measuring import local_serve_config
from tpserve.fetch.errors import ServerNotHealthyError
from tpserve.measure.campaign import Campaign
from tpserve.measure.local import replica_config, serving
from tpserve.measure.points import Point, parse_grid
from tpserve.measure.runner import Load, Servers
from tpserve.workload.metrics import Metrics
from tpserve.workload.requesttypes import RunPlan
from tpserve.workload.runrecord import Provenance, RunRecord, TokenCheck

# (output tok/s, median TTFT ms, median TPOT ms) of one run of a point.
Figures = tuple[float, float, float]


def record(tok_s: float, ttft_ms: float = 100.0, tpot_ms: float = 5.0, requests: int = 8) -> RunRecord:
    zero = {f.name: 0 for f in fields(Metrics) if f.default is MISSING}
    metrics = Metrics(**zero | {"output_throughput": tok_s, "median_ttft_ms": ttft_ms, "median_tpot_ms": tpot_ms,
                                "completed": requests, "num_prompts": requests})
    return RunRecord(workload=RunPlan(host="http://fake", model="tiny", max_tokens=8, num_requests=requests),
                     metrics=metrics, token_check=TokenCheck("ok"),
                     provenance=Provenance("2026-11-27T10:00:00+00:00", "2026-11-27T10:00:01+00:00"))


@dataclass
class FakeBackend:
    """Points measure FIGURES(point); a point whose label is in FAILING fails to start with that message.

    ``started`` lists the labels of the points whose servers were started, in order; ``loads`` the
    workloads each run was given.
    """

    figures: Callable[[Point], Figures]
    failing: dict[str, str] = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()
    vllm_args: tuple[str, ...] = ("--load-format", "dummy")
    started: list[str] = field(default_factory=list)
    loads: list = field(default_factory=list)

    @contextmanager
    def __call__(self, point: Point):
        self.started.append(point.label)
        if point.label in self.failing:
            raise ServerNotHealthyError(self.failing[point.label], log_tail="ValueError: vLLM says no\n")
        base, cache_dir = local_serve_config("/models/tiny", "tiny", list(self.serve_args))
        config = replica_config(base, point, 8100, self.vllm_args)

        def measure(urls, model, load, work, seed):
            self.loads.append(load)
            return record(*self.figures(point))

        yield Servers(["http://fake"], served_layout(config, cache_dir, "fake device", replicas=point.replicas), measure)


def fake_campaign(out: Path, backend: FakeBackend, *, layouts: str | Sequence[Point] = "1",
                  settings_axes: Sequence[Axis] = (), name: str = "tiny", **options) -> Campaign:
    """A campaign of /models/tiny served as NAME over BACKEND, recorded in OUT, with no progress shown; a
    local search's winner is served as the backend's own servers are (:func:`tpserve.measure.local.serving`)."""
    options.setdefault("serving", serving(*local_serve_config("/models/tiny", name, list(backend.serve_args))))
    return Campaign("/models/tiny", name, tuple(parse_grid(layouts) if isinstance(layouts, str) else layouts),
                    tuple(settings_axes), Load(), backend, out, progress=lambda text, done: None, **options)
