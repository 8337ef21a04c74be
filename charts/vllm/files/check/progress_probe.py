"""The vLLM server's liveness probe: it fails when /health has failed too long or the engine has stalled.

vLLM's /health keeps answering 200 when the engine behind the API server stops making progress without
dying (measured on 2 x H200: a multi-node leader whose worker was killed kept 64 requests "running" at
0 tokens/s with /health at 200 for as long as it was watched). So this probe also reads /metrics: when
requests are running (vllm:num_requests_running > 0) and neither vllm:prompt_tokens_total nor
vllm:generation_tokens_total has grown for more than --stall-seconds, the engine is stalled. An idle
server is never stalled. Metrics that cannot be read make no stall decision.

The chart runs it as an exec liveness probe with the serving image's own python3 (the one vLLM is installed
in), so it uses the standard library and prometheus_client, which vLLM requires, to read /metrics; where
python3 cannot import it, no stall decision is made. Each run remembers what it saw in the --state file (in a writable emptyDir) for the next
run; it exits 1 with one line on stderr, which the kubelet records as the probe's failure message, and
otherwise prints one line and exits 0.

    python3 progress_probe.py --state /tmp/progress-probe.json --unhealthy-seconds 300 --stall-seconds 180
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass

RUNNING = "vllm:num_requests_running"
PROGRESS = ("vllm:prompt_tokens_total", "vllm:generation_tokens_total")


class ProbeFailed(Exception):
    """Why the server is not alive, in one line, with the state to keep for the next run (None: none)."""

    def __init__(self, message: str, state: State | None = None) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class State:
    """What the previous runs saw: when /health last answered 200, the token total and when it last moved."""

    checked_at: float
    healthy_at: float
    progressed_at: float
    tokens: float | None = None

    @classmethod
    def fresh(cls, now: float) -> State:
        return cls(checked_at=now, healthy_at=now, progressed_at=now)


@dataclass(frozen=True)
class Metrics:
    """The requests running and the prompt + generation token total, each summed over every label set."""

    running: float
    tokens: float


def parse_metrics(exposition: str) -> Metrics:
    """The samples the probe needs from Prometheus text; an absent name counts as 0.

    ValueError: the text is not Prometheus exposition. ImportError: python3 has no prometheus_client,
    imported here so that the probe still answers on /health alone.
    """
    from prometheus_client.parser import text_string_to_metric_families

    totals = {RUNNING: 0.0, **{name: 0.0 for name in PROGRESS}}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += sample.value
    return Metrics(running=totals[RUNNING], tokens=sum(totals[name] for name in PROGRESS))


def load_state(path: str, now: float, stale_after: float) -> State:
    """The saved state, or a fresh one when there is none, it cannot be read, or an earlier container left it.

    The kubelet runs the probe every periodSeconds while the container runs, and the emptyDir outlives a
    container restart: a state not written for longer than the larger budget is from before the restart.
    """
    try:
        with open(path) as file:
            state = State(**{key: value for key, value in json.load(file).items() if key in State.__dataclass_fields__})
        numbers = [state.checked_at, state.healthy_at, state.progressed_at]
        if state.tokens is not None:
            numbers.append(state.tokens)
        if not all(isinstance(n, (int, float)) and math.isfinite(n) for n in numbers):
            raise ValueError("not numbers")
    except (OSError, ValueError, TypeError, AttributeError):
        return State.fresh(now)
    if not 0 <= now - state.checked_at <= stale_after:
        return State.fresh(now)
    return state


def save_state(path: str, state: State) -> None:
    """Write the state whole or not at all: a probe killed at its timeout leaves the previous one."""
    partial = f"{path}.partial"
    try:
        with open(partial, "w") as file:
            json.dump(asdict(state), file)
        os.replace(partial, path)
    except OSError as error:
        raise ProbeFailed(f"cannot write the probe's state {path}: {error.strerror}; "
                          "give --state a file in a writable folder") from error


def _get(url: str, timeout: float) -> tuple[int, str]:
    """The status and body of a GET; 0 and the reason when there is no HTTP answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, ""
    except (OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        return 0, str(reason) or type(reason).__name__


def probe(url: str, state: State, now: float, unhealthy_s: float, stall_s: float, timeout: float) -> tuple[State, str]:
    """The new state and a one-line summary; ProbeFailed when the server has failed a budget."""
    status, body = _get(f"{url}/health", timeout)
    if status != 200:
        since = now - state.healthy_at
        why = f"HTTP {status}" if status else body
        kept = State(now, state.healthy_at, state.progressed_at, state.tokens)
        if since > unhealthy_s:
            raise ProbeFailed(f"vLLM /health has not answered 200 for {since:.0f} s "
                              f"(more than --unhealthy-seconds {unhealthy_s:g}); last: {why}", kept)
        return kept, f"/health not 200 for {since:.0f} s of {unhealthy_s:g} s; last: {why}"
    if not stall_s:
        return State(now, now, now, None), "healthy; stall check off"
    status, body = _get(f"{url}/metrics", timeout)
    try:
        metrics = parse_metrics(body) if status == 200 else None
    except ValueError:
        metrics = None
    except ImportError:
        return (State(now, now, state.progressed_at, state.tokens),
                "healthy; python3 cannot import prometheus_client, no stall decision")
    if metrics is None:
        return State(now, now, state.progressed_at, state.tokens), "healthy; /metrics unreadable, no stall decision"
    if metrics.running <= 0 or metrics.tokens != state.tokens:
        return State(now, now, now, metrics.tokens), f"healthy; {metrics.running:g} running, {metrics.tokens:g} tokens"
    since = now - state.progressed_at
    kept = State(now, now, state.progressed_at, state.tokens)
    if since > stall_s:
        raise ProbeFailed(f"vLLM engine stalled: no prompt or generation token counted for {since:.0f} s while "
                          f"{RUNNING} is {metrics.running:g} (more than --stall-seconds {stall_s:g})", kept)
    return kept, f"healthy; {metrics.running:g} running, no new tokens for {since:.0f} s of {stall_s:g} s"


def _budget(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", required=True, help="the file that carries what one run saw to the next")
    parser.add_argument("--unhealthy-seconds", type=_budget, required=True,
                        help="fail when /health has not answered 200 for longer than this")
    parser.add_argument("--stall-seconds", type=_budget, required=True,
                        help="fail when requests run and no token is counted for longer than this; 0: never")
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server's base URL")
    parser.add_argument("--timeout", type=_budget, default=8.0, help="seconds each HTTP request may take")
    parser.add_argument("--now", type=float, help="the time to use instead of the clock's (for tests)")
    args = parser.parse_args(argv)
    now = time.time() if args.now is None else args.now
    state = load_state(args.state, now, max(args.unhealthy_seconds, args.stall_seconds))
    try:
        try:
            state, summary = probe(args.url.rstrip("/"), state, now, args.unhealthy_seconds, args.stall_seconds,
                                   args.timeout)
        except ProbeFailed as failure:
            if failure.state is not None:
                save_state(args.state, failure.state)
            raise
        save_state(args.state, state)
    except ProbeFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
