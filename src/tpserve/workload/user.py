"""The Locust side of the load test: options, the streaming user, and the run's start and end.

Import this module from a Locust file (``loadtest/prompts.py`` does) to get the
``CompletionUser`` class and the tpserve options (listed in README.md).
Every option can also be set through its ``TPSERVE_*`` environment variable.
"""

from __future__ import annotations

import http.client
import logging
import time

import gevent
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser

from tpserve.errors import LoadTestError
from tpserve.workload import report
from tpserve.workload.prompts import builtin_specs
from tpserve.workload.records import RequestResult, RequestSpec
from tpserve.workload.run import (
    RunPlan,
    RunState,
    build_report,
    resolve_model,
    server_counters,
    server_version,
    write_json,
    write_records,
)
from tpserve.workload.sse import StreamError, check_length, result_from_stream

log = logging.getLogger("tpserve.loadtest")

ENDPOINT = "/v1/completions"


@events.init_command_line_parser.add_listener
def add_options(parser) -> None:
    group = parser  # Locust's own add_argument (web-UI flags) lives on the parser, not on groups
    group.add_argument("--model", env_var="TPSERVE_MODEL", default="",
                       help="Model id the server must list at /v1/models (default: the only one it lists)")
    group.add_argument("--num-requests", env_var="TPSERVE_NUM_REQUESTS", type=int, default=59,
                       help="Send exactly this many requests, then stop (0: run until --run-time)")
    group.add_argument("--max-tokens", env_var="TPSERVE_MAX_TOKENS", type=int, default=128,
                       help="Output tokens per request; ignore_eos makes every completion this long")
    group.add_argument("--temperature", env_var="TPSERVE_TEMPERATURE", type=float, default=0.0,
                       help="Sampling temperature sent with every request")
    group.add_argument("--max-error-rate", env_var="TPSERVE_MAX_ERROR_RATE", type=float, default=0.0,
                       help="Exit non-zero when more than this fraction of requests fail")
    group.add_argument("--api-key", env_var="TPSERVE_API_KEY", default="", is_secret=True,
                       help="Bearer token for servers started with an API key (prefer the env variable)")
    group.add_argument("--results-json", env_var="TPSERVE_RESULTS_JSON", default="",
                       help="Write the run's summary (vllm bench serve key names) to this file")
    group.add_argument("--records-jsonl", env_var="TPSERVE_RECORDS_JSONL", default="",
                       help="Write one JSON line per request to this file")


def _options_error(options) -> str | None:
    if options.num_requests < 0:
        return f"--num-requests must be 0 or more, got {options.num_requests}"
    if options.max_tokens < 1:
        return f"--max-tokens must be at least 1, got {options.max_tokens}"
    if not 0 <= options.max_error_rate <= 1:
        return f"--max-error-rate must be within [0, 1], got {options.max_error_rate}"
    if not options.host:
        return "no server address: pass --host http://HOST:PORT"
    return None


def _headers(options) -> dict:
    return {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}


def _abort(environment, message: str) -> None:
    log.error("tpserve: %s", message)
    environment.tpserve_state = None
    environment.process_exit_code = 2
    gevent.spawn_later(0, environment.runner.quit)


@events.test_start.add_listener
def start_run(environment, **_kwargs) -> None:
    """Check the options and the server's identity, and read the server's counters before any load."""
    options = environment.parsed_options
    if error := _options_error(options):
        _abort(environment, error)
        return
    try:
        model = resolve_model(options.host, options.model, _headers(options))
        plan = RunPlan(
            host=options.host,
            model=model,
            max_tokens=options.max_tokens,
            num_requests=options.num_requests,
            temperature=options.temperature,
            concurrency=options.num_users or 1,
            max_error_rate=options.max_error_rate,
        )
        state = RunState(plan, builtin_specs(options.max_tokens))
        state.server_version = server_version(options.host)
        state.metrics_before = server_counters(options.host)
    except LoadTestError as exc:
        _abort(environment, str(exc))
        return
    environment.tpserve_state = state
    log.info("tpserve: %s requests of %s output tokens to %s at %s",
             plan.num_requests or "unlimited", plan.max_tokens, model, plan.host)


@events.test_stop.add_listener
def finish_run(environment, **_kwargs) -> None:
    """Cross-check with the server, write the report, and set the exit status from its problems."""
    state: RunState | None = getattr(environment, "tpserve_state", None)
    if state is None or state.reported:
        return
    state.reported = True
    options = environment.parsed_options
    try:
        after = server_counters(options.host)
    except LoadTestError as exc:
        log.error("tpserve: cannot read the server's counters after the run: %s", exc)
        after = {}
    document = build_report(state, after)
    if options.results_json:
        write_json(options.results_json, document)
    if options.records_jsonl:
        write_records(options.records_jsonl, state.results)
    report.print_summary(document)
    for problem in document["problems"]:
        log.error("tpserve: %s", problem)
    environment.process_exit_code = 0 if document["ok"] else 1


class CompletionUser(FastHttpUser):
    """Streams ``/v1/completions`` back to back: the number of users is the concurrency."""

    wait_time = constant(0)
    network_timeout = 300.0
    connection_timeout = 30.0

    @task
    def complete(self) -> None:
        state: RunState | None = getattr(self.environment, "tpserve_state", None)
        spec = state.next_spec() if state else None
        if spec is None:
            raise StopUser()
        state.record(self.send(spec, state.plan))
        if state.finished:
            # Headless runs end here; in the web UI the run stops and the UI stays up for the next one.
            end = self.environment.runner.quit if self.environment.parsed_options.headless else (
                self.environment.runner.stop)
            gevent.spawn_later(0, end)

    def send(self, spec: RequestSpec, plan: RunPlan) -> RequestResult:
        body = {
            "model": plan.model,
            "prompt": spec.prompt,
            "max_tokens": spec.max_tokens,
            "ignore_eos": True,
            "temperature": plan.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        sent = time.perf_counter()
        with self.client.request("POST", ENDPOINT, json=body, stream=True, catch_response=True,
                                 headers=_headers(self.environment.parsed_options)) as response:
            result = self._read(response, spec, sent)
            response.request_meta["response_time"] = result.latency * 1000
            response.request_meta["response_length"] = result.completion_tokens
            if result.ok:
                response.success()
            else:
                response.failure(result.error)
        return result

    def _read(self, response, spec: RequestSpec, sent: float) -> RequestResult:
        error = getattr(response, "error", None)
        if error is not None and not response.status_code:
            return RequestResult(spec.prompt_id, sent, time.perf_counter(), max_tokens=spec.max_tokens,
                                 error=f"connection failed: {error.__class__.__name__}: {error}")
        if response.status_code != 200:
            text = (response.text or "")[:200].replace("\n", " ")
            return RequestResult(spec.prompt_id, sent, time.perf_counter(), max_tokens=spec.max_tokens,
                                 error=f"HTTP {response.status_code}: {text}")
        return check_length(result_from_stream(spec, sent, _timed_lines(response._response)))


def _timed_lines(raw):
    """Lines of the raw HTTP body as they arrive, each with its arrival time.

    Reads with the socket response's ``readline`` rather than Locust's ``iter_lines``, whose 1 KiB
    blocks hold the first event back (measured: ~310 ms instead of ~51 ms TTFT with locust 2.47.0).
    """
    while True:
        try:
            line = raw.readline(b"\n")
        except (OSError, http.client.HTTPException, gevent.Timeout) as exc:
            raise StreamError(f"connection lost mid-stream: {exc.__class__.__name__}: {exc}") from exc
        if not line:
            return
        yield line, time.perf_counter()
