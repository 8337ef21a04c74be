"""One load-test run: what to send, what came back, and the record that proves the figures.

Independent of Locust so the bookkeeping and the server cross-check are tested without it;
:mod:`tpserve.workload.user` drives a :class:`RunState` from Locust's events.
"""

from __future__ import annotations

import json
import platform
import socket
from datetime import UTC, datetime
from pathlib import Path

from tpserve.fetch.errors import LoadTestError
from tpserve.workload.metrics import error_counts, summarize
from tpserve.workload.requesttypes import RequestResult, RequestSpec, RunPlan
from tpserve.workload.runrecord import Provenance, RunRecord, TokenCheck
from tpserve.workload.servermetrics import GENERATION_TOKENS, PROMPT_TOKENS


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunState:
    """Hands out request specs in order and collects results. Greenlet-safe (gevent is cooperative).

    Warm-up requests come first, from WARMUP_SPECS (or the main set); measured requests are handed
    out only once every warm-up request has finished, and only they enter the results.
    """

    def __init__(self, plan: RunPlan, specs: list[RequestSpec], warmup_specs: list[RequestSpec] | None = None):
        if not specs:
            raise LoadTestError("the prompt set is empty: give a prompt file with at least one prompt")
        self.plan = plan
        self.specs = specs
        self.warmup_specs = warmup_specs or specs
        self.results: list[RequestResult] = []
        self.warmup_results: list[RequestResult] = []
        self.issued = 0
        self.warmup_issued = 0
        self.send_lateness: list[float] = []
        self.reported_results = 0  # on a worker: how many results went to the master already
        self.reported_warmup = 0
        self.workers: dict[str, tuple[int, int]] = {}  # on the master: (issued, warm-up issued) per worker
        self.clock_offset = 0.0  # on the master: wall clock minus monotonic counter
        self.started_at = _now()
        self.metrics_before: dict[str, float] = {}
        self.server_version = ""
        self.reported = False

    @property
    def warmed_up(self) -> bool:
        return len(self.warmup_results) >= self.plan.warmup_requests

    @property
    def in_flight(self) -> int:
        return self.issued + self.warmup_issued - len(self.results) - len(self.warmup_results)

    @property
    def finished(self) -> bool:
        return bool(self.plan.num_requests) and len(self.results) >= self.plan.num_requests

    def next_warmup(self) -> RequestSpec | None:
        """The next warm-up request, or None once all of them have been handed out."""
        if self.warmup_issued >= self.plan.warmup_requests:
            return None
        spec = self.warmup_specs[self.warmup_issued % len(self.warmup_specs)]
        self.warmup_issued += 1
        return spec

    def next_spec(self) -> RequestSpec | None:
        """The next measured request, or None once ``num_requests`` have been handed out."""
        if self.plan.num_requests and self.issued >= self.plan.num_requests:
            return None
        spec = self.specs[self.issued % len(self.specs)]
        self.issued += 1
        return spec

    def record(self, result: RequestResult, warmup: bool = False) -> None:
        (self.warmup_results if warmup else self.results).append(result)


def token_check(results: list[RequestResult], before: dict, after: dict, in_flight: int,
                after_error: str = "") -> TokenCheck:
    """Compare the tokens the client counted with the server's counters over the run.

    Every request that reported usage counts, failed ones too: the server generated those tokens.
    AFTER_ERROR says why the counters after the run could not be read (the server is gone).
    """
    client_completion = sum(r.completion_tokens for r in results)
    client_prompt = sum(r.prompt_tokens for r in results)
    if after_error:
        return TokenCheck("skipped: the server's counters could not be read after the run", client_completion,
                          client_prompt)
    if GENERATION_TOKENS not in before or GENERATION_TOKENS not in after:
        return TokenCheck(f"skipped: the server does not export {GENERATION_TOKENS}", client_completion,
                          client_prompt)
    server_generation = int(after[GENERATION_TOKENS] - before[GENERATION_TOKENS])
    server_prompt = (int(after[PROMPT_TOKENS] - before[PROMPT_TOKENS])
                     if PROMPT_TOKENS in before and PROMPT_TOKENS in after else None)
    if in_flight:
        status = f"skipped: the run stopped with {in_flight} requests in flight"
    elif server_generation != client_completion:
        status = (f"mismatch: client counted {client_completion} completion tokens, "
                  f"server generated {server_generation} (another client on this server?)")
    else:
        status = "ok"
    return TokenCheck(status, client_completion, client_prompt, server_generation, server_prompt)


def build_record(state: RunState, metrics_after: dict[str, float], workers: int = 1,
                 after_error: str = "") -> RunRecord:
    """The run's record: its figures plus what is needed to trust and reproduce them.

    AFTER_ERROR is why the server's counters could not be read once the run ended: the server
    stopped answering during the run, which is the run's first problem.

    The layout is left out: the load test does not know what serves it; ``tpserve demo``, ``tpserve
    sweep`` and the GPU tests, which start the servers, add it.
    """
    metrics = summarize(state.results, state.send_lateness)
    # The counters were read before the warm-up: warm-up tokens count on both sides of the check.
    check = token_check(state.results + state.warmup_results, state.metrics_before, metrics_after, state.in_flight,
                        after_error)
    problems = [f"the server stopped answering during the run: {after_error}"] if after_error else []
    error_rate = metrics.failed / metrics.num_prompts if metrics.num_prompts else 1.0
    if not metrics.num_prompts:
        problems.append("no request completed")
    elif error_rate > state.plan.max_error_rate:
        problems.append(
            f"{metrics.failed} of {metrics.num_prompts} requests failed "
            f"(allowed error rate {state.plan.max_error_rate:g})"
        )
    if state.plan.num_requests and metrics.num_prompts < state.plan.num_requests:
        problems.append(
            f"the run stopped after {metrics.num_prompts} of {state.plan.num_requests} requests "
            "(--run-time ran out, or the run was interrupted): its figures cover a smaller workload")
    if check.status.startswith("mismatch"):
        problems.append(check.status)
    provenance = Provenance(started_at=state.started_at, finished_at=_now(), server_version=state.server_version,
                            client_host=socket.gethostname(), client_python=platform.python_version())
    return RunRecord(workload=state.plan, metrics=metrics, token_check=check, provenance=provenance,
                     errors=error_counts(state.results), problems=tuple(problems),
                     warmup_requests_sent=len(state.warmup_results), workers=workers)


def write_records(path: str | Path, results: list[RequestResult]) -> Path:
    """Per-request JSONL, one line per request, for re-analysis and merging."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for result in results:
            out.write(json.dumps(result.to_json()) + "\n")
    return path
