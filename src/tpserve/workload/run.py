"""One load-test run: what to send, what came back, and the report that proves the figures.

Independent of Locust so the bookkeeping and the server cross-check are tested without it;
:mod:`tpserve.workload.user` drives a :class:`RunState` from Locust's events.
"""

from __future__ import annotations

import json
import platform
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tpserve.errors import LoadTestError
from tpserve.workload.metrics import percentile, summarize
from tpserve.workload.records import RequestResult, RequestSpec
from tpserve.workload.servermetrics import GENERATION_TOKENS, PROMPT_TOKENS


@dataclass(frozen=True)
class RunPlan:
    """What a run sends. ``num_requests`` 0 means: until Locust's ``--run-time`` ends it.

    ``request_rate`` 0 is a closed loop (each of ``concurrency`` users sends its next request when
    the last one finishes); above 0, sends follow a Poisson process at that rate, still capped at
    ``concurrency`` in flight. ``warmup_requests`` are sent first and left out of every figure.
    """

    host: str
    model: str
    max_tokens: int
    num_requests: int
    temperature: float = 0.0
    prompt_set: str = "builtin"
    endpoint: str = "completions"
    concurrency: int = 1
    request_rate: float = 0.0
    warmup_requests: int = 0
    seed: int = 0
    max_error_rate: float = 0.0

    @property
    def mode(self) -> str:
        load = f"poisson {self.request_rate:g} req/s" if self.request_rate else "closed loop"
        count = f"{self.num_requests} requests" if self.num_requests else "timed"
        return f"{count}, {load}, concurrency {self.concurrency}"


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


def token_check(results: list[RequestResult], before: dict, after: dict, in_flight: int) -> dict:
    """Compare the tokens the client counted with the server's counters over the run.

    Every request that reported usage counts, failed ones too: the server generated those tokens.
    """
    check = {
        "client_completion_tokens": sum(r.completion_tokens for r in results),
        "client_prompt_tokens": sum(r.prompt_tokens for r in results),
        "server_generation_tokens": None,
        "server_prompt_tokens": None,
        "status": "",
    }
    if GENERATION_TOKENS not in before or GENERATION_TOKENS not in after:
        check["status"] = f"skipped: the server does not export {GENERATION_TOKENS}"
        return check
    check["server_generation_tokens"] = int(after[GENERATION_TOKENS] - before[GENERATION_TOKENS])
    if PROMPT_TOKENS in before and PROMPT_TOKENS in after:
        check["server_prompt_tokens"] = int(after[PROMPT_TOKENS] - before[PROMPT_TOKENS])
    if in_flight:
        check["status"] = f"skipped: the run stopped with {in_flight} requests in flight"
    elif check["server_generation_tokens"] != check["client_completion_tokens"]:
        check["status"] = (
            f"mismatch: client counted {check['client_completion_tokens']} completion tokens, "
            f"server generated {check['server_generation_tokens']} (another client on this server?)"
        )
    else:
        check["status"] = "ok"
    return check


def build_report(state: RunState, metrics_after: dict[str, float]) -> dict:
    """The run's JSON report: ``vllm bench serve`` keys plus what is needed to trust and reproduce it."""
    summary = summarize(state.results)
    # The counters were read before the warm-up: warm-up tokens count on both sides of the check.
    check = token_check(state.results + state.warmup_results, state.metrics_before, metrics_after, state.in_flight)
    problems = []
    error_rate = summary["failed"] / summary["num_prompts"] if summary["num_prompts"] else 1.0
    if not summary["num_prompts"]:
        problems.append("no request completed")
    elif error_rate > state.plan.max_error_rate:
        problems.append(
            f"{summary['failed']} of {summary['num_prompts']} requests failed "
            f"(allowed error rate {state.plan.max_error_rate:g})"
        )
    if state.plan.num_requests and summary["num_prompts"] < state.plan.num_requests:
        problems.append(
            f"the run stopped after {summary['num_prompts']} of {state.plan.num_requests} requests "
            "(--run-time ran out, or the run was interrupted): its figures cover a smaller workload")
    if check["status"].startswith("mismatch"):
        problems.append(check["status"])
    return {
        "tpserve_report": 1,
        "model_id": state.plan.model,
        "backend": "openai",
        "endpoint": "/v1/chat/completions" if state.plan.endpoint == "chat" else "/v1/completions",
        "mode": state.plan.mode,
        "warmup_requests_sent": len(state.warmup_results),
        **lateness_summary(state.send_lateness),
        "server_version": state.server_version,
        "plan": asdict(state.plan),
        "client": {"host": socket.gethostname(), "python": platform.python_version()},
        "started_at": state.started_at,
        "finished_at": _now(),
        **summary,
        "token_check": check,
        "problems": problems,
        "ok": not problems,
    }


def lateness_summary(lateness_s: list[float]) -> dict:
    """How late the paced sends left compared with their Poisson schedule (empty for closed loops)."""
    if not lateness_s:
        return {}
    ms = sorted(x * 1000 for x in lateness_s)
    return {"mean_send_lateness_ms": sum(ms) / len(ms), "p99_send_lateness_ms": percentile(ms, 99),
            "max_send_lateness_ms": ms[-1]}


def write_json(path: str | Path, document: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)
    return path


def write_records(path: str | Path, results: list[RequestResult]) -> Path:
    """Per-request JSONL, one line per request, for re-analysis and merging."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for result in results:
            out.write(json.dumps(result.to_json()) + "\n")
    return path
