"""The Locust side of the load test: the streaming user, and the run's start and end.

Import this module from a Locust file (``loadtest/prompts.py`` does) to get the ``CompletionUser``
class and the tpserve options (see :mod:`tpserve.workload.options` and README.md); every option can
also be set through its ``TPSERVE_*`` environment variable.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import sys
import time
from dataclasses import replace

import gevent
from gevent.event import Event
from locust import FastHttpUser, constant, events, task
from locust.exception import StopUser
from locust.runners import MasterRunner, WorkerRunner

from tpserve.fetch.errors import LoadTestError
from tpserve.workload import runtable
from tpserve.workload.distributed import clock_offset, share, to_master_clock
from tpserve.workload.logline import results_line
from tpserve.workload.options import (
    add_options,
    build_plan,
    build_specs,
    context_error,
    headers,
    options_error,
    parse_layout,
)
from tpserve.workload.pacing import PoissonPacer
from tpserve.workload.promptsets import builtin_specs
from tpserve.workload.requesttypes import RequestResult, RequestSpec, RunPlan
from tpserve.workload.runrecord import write
from tpserve.workload.runstate import RunState, build_record, write_records
from tpserve.workload.serverapi import check_served_model, max_model_len, server_counters, server_version
from tpserve.workload.sse import StreamError, StreamTimeout, check_length, result_from_stream

log = logging.getLogger("tpserve.loadtest")

ENDPOINT_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@events.init_command_line_parser.add_listener
def add_tpserve_options(parser) -> None:
    add_options(parser)


@events.init.add_listener
def check_before_users(environment, **_kwargs) -> None:
    """Refuse bad options, and a headless run's unreachable or wrong server or prompts that cannot fit its context,
    before Locust starts users.

    Exits with status 2 and one line. Workers are checked by their master, which forwards its options.
    """
    if _is_worker(environment):
        return
    options = environment.parsed_options
    error = options_error(options, need_host=options.headless)
    if error is None and options.headless:
        try:
            model = check_served_model(options.host, options.model, headers(options))
            error = context_error(options, max_model_len(options.host, model, headers(options)))
        except LoadTestError as exc:
            error = str(exc)
    if error:
        log.error("tpserve: %s", error)
        if getattr(options, "processes", None):
            _stop_forked_workers()
        sys.exit(2)


def _stop_forked_workers() -> None:
    """SIGTERM the workers ``--processes`` forked, which would otherwise wait a minute for this master."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            if parent == me:
                os.kill(int(entry), signal.SIGTERM)
        except (OSError, ValueError, IndexError):
            continue


def _abort(environment, message: str) -> None:
    log.error("tpserve: %s", message)
    environment.tpserve_state = None
    environment.process_exit_code = 2
    gevent.spawn_later(0, environment.runner.quit)


def _is_worker(environment) -> bool:
    return isinstance(environment.runner, WorkerRunner)


def _is_master(environment) -> bool:
    return isinstance(environment.runner, MasterRunner)


@events.test_start.add_listener
def start_run(environment, **_kwargs) -> None:
    """Check the options and the server's identity, build the prompts, and read the server's counters.

    With Locust workers (``--processes N`` or ``--master``/``--worker``) the master plans and checks,
    and hands each worker its share through the options Locust forwards to them.
    """
    if _is_worker(environment):
        _start_worker(environment)
        return
    options = environment.parsed_options
    if error := options_error(options):
        _abort(environment, error)
        return
    try:
        model = check_served_model(options.host, options.model, headers(options))
        if error := context_error(options, max_model_len(options.host, model, headers(options))):
            _abort(environment, error)
            return
        plan = build_plan(options, model)
        if _is_master(environment):
            workers = environment.runner.worker_count
            if error := _distributed_error(plan, workers):
                _abort(environment, error)
                return
            options.tpserve_shard = {"workers": workers, "model": model, "seed": plan.seed}
            specs = build_specs(options, plan)[0] if options.prompt_set != "random" else builtin_specs(1)
            state = RunState(plan, specs)
        else:
            state = RunState(plan, *build_specs(options, plan))
        state.server_version = server_version(options.host)
        state.metrics_before = server_counters(options.host)
    except LoadTestError as exc:
        _abort(environment, str(exc))
        return
    state.clock_offset = clock_offset()
    _install(environment, state)
    log.info("tpserve: %s of %s output tokens to %s at %s (%s prompts, seed %s)",
             plan.mode, plan.max_tokens, model, plan.host, plan.prompt_set, plan.seed)


def _distributed_error(plan: RunPlan, workers: int) -> str | None:
    if plan.concurrency < workers:
        return f"{workers} worker processes need at least {workers} users (-u): each worker sends its own share"
    if plan.num_requests and plan.num_requests < workers:
        return f"{plan.num_requests} requests cannot be shared by {workers} worker processes: send more or use fewer"
    return None


def _start_worker(environment) -> None:
    options = environment.parsed_options
    shard = getattr(options, "tpserve_shard", None)
    if not shard:
        _abort(environment, "the master sent no tpserve plan: run the master with tpserve's Locust file too")
        return
    workers, index = shard["workers"], environment.runner.worker_index
    if index >= workers:
        _abort(environment, f"worker {index} joined after the master planned for {workers} workers")
        return
    whole = build_plan(options, shard["model"], seed=shard["seed"])
    plan = replace(whole, num_requests=share(whole.num_requests, workers, index),
                   warmup_requests=share(whole.warmup_requests, workers, index),
                   request_rate=whole.request_rate / workers)
    try:
        state = RunState(plan, *build_specs(options, whole, workers, index))
    except LoadTestError as exc:
        _abort(environment, str(exc))
        return
    _install(environment, state, pacer_seed=whole.seed + 1 + index)


def _install(environment, state: RunState, pacer_seed: int | None = None) -> None:
    plan = state.plan
    # Users are created after test_start, so their HTTP clients pick this up.
    CompletionUser.network_timeout = environment.parsed_options.request_timeout
    environment.tpserve_state = state
    environment.tpserve_pacer = (PoissonPacer(plan.request_rate, plan.seed if pacer_seed is None else pacer_seed)
                                 if plan.request_rate else None)
    environment.tpserve_warm = Event()
    if not plan.warmup_requests:
        environment.tpserve_warm.set()
    # Measured requests wait for every user to exist: with -r below -u, Locust's ramp-up (-r users per
    # second) would run the first seconds below the asked concurrency and understate throughput.
    environment.tpserve_spawned = Event()


@events.spawning_complete.add_listener
def all_users_spawned(**_kwargs) -> None:
    spawned = getattr(_ENVIRONMENTS[-1], "tpserve_spawned", None) if _ENVIRONMENTS else None
    if spawned is not None:
        spawned.set()


_ENVIRONMENTS: list = []


@events.init.add_listener
def remember_environment(environment, **_kwargs) -> None:
    # report_to_master and worker_report listeners are not handed the environment; a process has one.
    _ENVIRONMENTS.append(environment)


def _state() -> RunState | None:
    return getattr(_ENVIRONMENTS[-1], "tpserve_state", None) if _ENVIRONMENTS else None


@events.report_to_master.add_listener
def send_records(client_id, data, **_kwargs) -> None:
    """On a worker: pass the records finished since the last report to the master, raw."""
    state = _state()
    if state is None:
        return
    data["tpserve"] = {
        "results": [r.to_json() for r in state.results[state.reported_results:]],
        "warmup": [r.to_json() for r in state.warmup_results[state.reported_warmup:]],
        "issued": state.issued, "warmup_issued": state.warmup_issued, "clock_offset": clock_offset(),
    }
    state.reported_results, state.reported_warmup = len(state.results), len(state.warmup_results)


@events.worker_report.add_listener
def receive_records(client_id, data, **_kwargs) -> None:
    """On the master: merge a worker's records onto the master's clock; end the run once all are in."""
    state = _state()
    part = data.get("tpserve")
    if state is None or not part:
        return
    state.results += to_master_clock(part["results"], part["clock_offset"], state.clock_offset)
    state.warmup_results += to_master_clock(part["warmup"], part["clock_offset"], state.clock_offset)
    state.workers[client_id] = (part["issued"], part["warmup_issued"])
    state.issued = sum(issued for issued, _ in state.workers.values())
    state.warmup_issued = sum(warmup for _, warmup in state.workers.values())
    if state.finished:
        _end_run(_ENVIRONMENTS[-1])


@events.test_stop.add_listener
def stop_run(environment, **_kwargs) -> None:
    # A headless master finalises at quitting, after the workers' last reports have arrived.
    if not (_is_master(environment) and environment.parsed_options.headless):
        finish_run(environment)


@events.quitting.add_listener
def quit_run(environment, **_kwargs) -> None:
    finish_run(environment)


def finish_run(environment) -> None:
    """Cross-check with the server, write the run record, and set the exit status from its problems."""
    state: RunState | None = getattr(environment, "tpserve_state", None)
    if state is None or state.reported or _is_worker(environment):
        return
    state.reported = True
    options = environment.parsed_options
    after, after_error = {}, ""
    try:
        after = server_counters(options.host)
    except LoadTestError as exc:
        after_error = str(exc)
    record = build_record(state, after, workers=len(state.workers) if _is_master(environment) else 1,
                          after_error=after_error)
    record = replace(record, layout=parse_layout(options.layout))
    if options.results_json:
        write(options.results_json, record)
    if options.print_results:
        print(results_line(record), flush=True)
    if options.records_jsonl:
        write_records(options.records_jsonl, state.results)
    runtable.print_summary(record)
    for problem in record.problems:
        log.error("tpserve: %s", problem)
    environment.process_exit_code = 0 if record.ok else 1


def _end_run(environment) -> None:
    # Headless runs end here; in the web UI the run stops and the UI stays up for the next one.
    gevent.spawn_later(0, environment.runner.quit if environment.parsed_options.headless else environment.runner.stop)


class CompletionUser(FastHttpUser):
    """Streams completions: the number of users caps the requests in flight (the concurrency)."""

    wait_time = constant(0)
    network_timeout = 300.0
    connection_timeout = 30.0

    @task
    def complete(self) -> None:
        environment = self.environment
        state: RunState | None = getattr(environment, "tpserve_state", None)
        if state is None:
            raise StopUser()
        if not state.warmed_up:
            warmup = state.next_warmup()
            if warmup is not None:
                self._warm_up(state, warmup)
                return
            environment.tpserve_warm.wait()
        if not environment.tpserve_spawned.is_set():
            environment.tpserve_spawned.wait()
        spec = state.next_spec()
        if spec is None:
            raise StopUser()
        pacer: PoissonPacer | None = environment.tpserve_pacer
        if pacer is not None:
            send_at = pacer.next_send_time(time.perf_counter())
            gevent.sleep(max(0.0, send_at - time.perf_counter()))
            state.send_lateness.append(max(0.0, time.perf_counter() - send_at))
        state.record(self.send(spec, state.plan))
        if state.finished and not _is_worker(environment):
            _end_run(environment)

    def _warm_up(self, state: RunState, spec: RequestSpec) -> None:
        state.record(self.send(spec, state.plan, name="warm-up"), warmup=True)
        if state.warmed_up:
            self.environment.tpserve_warm.set()

    def send(self, spec: RequestSpec, plan: RunPlan, name: str | None = None) -> RequestResult:
        body = {
            "model": plan.model,
            "max_tokens": spec.max_tokens,
            "ignore_eos": True,
            "temperature": plan.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if plan.endpoint == "chat":
            body["messages"] = spec.chat_messages()
        else:
            body["prompt"] = spec.prompt
        path = ENDPOINT_PATHS[plan.endpoint]
        sent = time.perf_counter()
        with self.client.request("POST", path, name=name or path, json=body, stream=True, catch_response=True,
                                 headers=headers(self.environment.parsed_options)) as response:
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
                                 error=self._failure(error))
        if response.status_code != 200:
            text = (response.text or "")[:200].replace("\n", " ")
            return RequestResult(spec.prompt_id, sent, time.perf_counter(), max_tokens=spec.max_tokens,
                                 error=f"HTTP {response.status_code}: {text}")
        return check_length(result_from_stream(spec, sent, _timed_lines(response._response, self.network_timeout)))

    def _failure(self, error: BaseException) -> str:
        """Why a request got no response: a timeout, or the connection's own error."""
        cause = getattr(error, "original", None) or error  # geventhttpclient wraps it once retries are spent
        if isinstance(cause, TimeoutError | gevent.Timeout):
            return f"timed out: no response within {self.network_timeout:g} s (--request-timeout)"
        return f"connection failed: {cause.__class__.__name__}: {cause}"


def _timed_lines(raw, timeout_s: float):
    """Lines of the raw HTTP body as they arrive, each with its arrival time.

    Reads with the socket response's ``readline`` rather than Locust's ``iter_lines``, which reads
    1 KiB blocks and so can hold an event back until a block fills; ``lab/benchmarks/client_headroom.py``
    measures what this reader adds to TTFT.
    """
    while True:
        try:
            line = raw.readline(b"\n")
        except (TimeoutError, gevent.Timeout) as exc:
            raise StreamTimeout(f"no bytes from the server for {timeout_s:g} s (--request-timeout)") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise StreamError(f"connection lost mid-stream: {exc.__class__.__name__}: {exc}") from exc
        if not line:
            return
        yield line, time.perf_counter()
