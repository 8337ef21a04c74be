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

import requests

from tpserve.errors import LoadTestError
from tpserve.workload.metrics import summarize
from tpserve.workload.records import RequestResult, RequestSpec
from tpserve.workload.servermetrics import GENERATION_TOKENS, PROMPT_TOKENS, counter_totals

HTTP_TIMEOUT_S = 10


@dataclass(frozen=True)
class RunPlan:
    """What a run sends. ``num_requests`` 0 means: until Locust's ``--run-time`` ends it."""

    host: str
    model: str
    max_tokens: int
    num_requests: int
    temperature: float = 0.0
    prompt_set: str = "builtin"
    concurrency: int = 1
    max_error_rate: float = 0.0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunState:
    """Hands out request specs in order and collects results. Greenlet-safe (gevent is cooperative)."""

    def __init__(self, plan: RunPlan, specs: list[RequestSpec]) -> None:
        if not specs:
            raise LoadTestError("the prompt set is empty: give a prompt file with at least one prompt")
        self.plan = plan
        self.specs = specs
        self.results: list[RequestResult] = []
        self.issued = 0
        self.started_at = _now()
        self.metrics_before: dict[str, float] = {}
        self.server_version = ""
        self.reported = False

    @property
    def in_flight(self) -> int:
        return self.issued - len(self.results)

    @property
    def finished(self) -> bool:
        return bool(self.plan.num_requests) and len(self.results) >= self.plan.num_requests

    def next_spec(self) -> RequestSpec | None:
        """The next request to send, or None once ``num_requests`` have been handed out."""
        if self.plan.num_requests and self.issued >= self.plan.num_requests:
            return None
        spec = self.specs[self.issued % len(self.specs)]
        self.issued += 1
        return spec

    def record(self, result: RequestResult) -> None:
        self.results.append(result)


def _get(host: str, path: str, headers: dict | None = None) -> requests.Response:
    url = host.rstrip("/") + path
    try:
        response = requests.get(url, headers=headers, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        raise LoadTestError(f"cannot reach {url}: {exc.__class__.__name__}; is the server running?") from exc
    if response.status_code != 200:
        raise LoadTestError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
    return response


def served_models(host: str, headers: dict | None = None) -> list[str]:
    """The model ids the server lists at /v1/models."""
    return [entry["id"] for entry in _get(host, "/v1/models", headers).json().get("data", [])]


def resolve_model(host: str, wanted: str, headers: dict | None = None) -> str:
    """Check that the server serves WANTED (or, if empty, exactly one model) and return its id."""
    models = served_models(host, headers)
    if wanted:
        if wanted not in models:
            raise LoadTestError(
                f"the server at {host} serves {models or 'no model'}, not {wanted!r}: "
                "point the load test at the right server or pass --model with a listed name"
            )
        return wanted
    if len(models) != 1:
        raise LoadTestError(f"the server at {host} serves {models or 'no model'}; pass --model to choose one")
    return models[0]


def server_counters(host: str) -> dict[str, float]:
    """vLLM's prompt/generation token counters from /metrics (absent names mean "not exported")."""
    return counter_totals(_get(host, "/metrics").text)


def server_version(host: str) -> str:
    try:
        return str(_get(host, "/version").json().get("version", ""))
    except (LoadTestError, ValueError):
        return ""


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
    check = token_check(state.results, state.metrics_before, metrics_after, state.in_flight)
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
        "endpoint": "/v1/completions",
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
