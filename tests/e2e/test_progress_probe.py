"""The chart's liveness probe against the real vLLM server: idle and streaming pass, a stopped engine fails.

A stopped (SIGSTOP) EngineCore is the stall a multi-node leader shows when its worker is lost: the API
server keeps answering /health with 200 and reports its requests running, but no token is counted. The
probe's clock is given by --now, so the stall budget passes without waiting on the machine's speed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import requests

from tests.conftest import REPO, run, wait_until
from tests.e2e.conftest import MODEL_NAME, requests_in_server
from tpserve.server import _session_members

SCRIPT = REPO / "charts" / "vllm" / "files" / "check" / "progress_probe.py"
MAX_TOKENS = 2000


def probe(server, state: Path, now: float, stall: float = 1):
    # A generous --timeout: at the default 8 s, an answer slowed by a busy machine reads as "/health not 200".
    return run(sys.executable, str(SCRIPT), "--state", str(state), "--url", server.url, "--unhealthy-seconds", "300",
               "--stall-seconds", str(stall), "--now", str(now), "--timeout", "120", timeout=600)


def engine_core(server) -> int:
    """The PID of the server's EngineCore process (vLLM names it in its process title)."""
    found = []
    for pid in _session_members(server.process.pid):
        try:
            if b"EngineCore" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    assert len(found) == 1, f"EngineCore processes in the server's session: {found}"
    return found[0]


def set_priority(pid: int, nice: int) -> None:
    """Give every thread of PID the NICE value (Linux keeps one per thread). Only root may give the old value
    back, so other users leave it as it is (and rely on the retries)."""
    if os.geteuid() != 0:
        return
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), nice)


class Stream(threading.Thread):
    """One streamed completion of MAX_TOKENS tokens; ``first`` is set when its first token arrives."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.first = threading.Event()
        self.usage: dict | None = None
        self.finish_reason: str | None = None
        self.error = ""

    def run(self) -> None:
        body = {"model": MODEL_NAME, "prompt": "Once upon a time", "max_tokens": MAX_TOKENS, "ignore_eos": True,
                "stream": True, "stream_options": {"include_usage": True}}
        try:
            with requests.post(f"{self.url}/v1/completions", json=body, stream=True, timeout=600) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if not line.startswith(b"data: ") or line == b"data: [DONE]":
                        continue
                    chunk = json.loads(line[len(b"data: "):])
                    for choice in chunk.get("choices") or []:
                        self.first.set()
                        self.finish_reason = choice.get("finish_reason") or self.finish_reason
                    self.usage = chunk.get("usage") or self.usage
        except (requests.RequestException, ValueError) as error:
            self.error = str(error)
        finally:
            self.first.set()


def test_the_probe_passes_against_the_idle_server(vllm_server, tmp_path):
    now = time.time()
    for later in (0, 5, 500):
        done = probe(vllm_server, tmp_path / "probe.json", now + later)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("healthy; 0 running, "), done.stdout


def test_a_stopped_engine_fails_the_probe_and_a_resumed_one_passes_and_finishes_its_request(vllm_server, tmp_path):
    state = tmp_path / "probe.json"
    engine = engine_core(vllm_server)
    clock = [time.time()]

    def probe_later():
        clock[0] += 2
        return probe(vllm_server, state, clock[0])

    # On a starved machine the API server can pass tokens on in bursts: the first one may reach the client
    # only after the engine has generated them all, and stopping it then stops an idle engine. So the engine
    # generates at the lowest CPU priority until it is stopped, behind the API server. A request that still
    # finishes with the engine stopped had finished before: the engine resumes and a new request is tried.
    priority = os.getpriority(os.PRIO_PROCESS, engine)
    for _attempt in range(5):
        stream = Stream(vllm_server.url)
        set_priority(engine, 19)
        stream.start()
        assert stream.first.wait(300) and not stream.error, stream.error
        os.kill(engine, signal.SIGSTOP)
        try:
            set_priority(engine, priority)
            # Outputs already on their way may still be counted: the stall is the first run that sees none.
            failed = wait_until(lambda stream=stream: not stream.is_alive()
                                or ((done := probe_later()).returncode == 1 and done),
                                "the probe to see the stall", timeout_s=300)
            if failed is True:  # the request had finished before the engine stopped
                continue
            assert failed.stdout == ""
            assert failed.stderr.startswith("vLLM engine stalled: no prompt or generation token counted for ")
            assert failed.stderr.endswith(" s while vllm:num_requests_running is 1 (more than --stall-seconds 1)\n")
            assert requests.get(f"{vllm_server.url}/health", timeout=60).status_code == 200
            break
        finally:
            os.kill(engine, signal.SIGCONT)
    else:
        raise AssertionError("every request finished before the engine was stopped (5 tries)")
    streaming = wait_until(lambda: (done := probe_later()).returncode == 0 and done,
                           "the probe to pass once the engine resumes and the request streams again", timeout_s=300)
    assert streaming.stderr == "" and streaming.stdout.startswith("healthy; "), streaming.stdout
    stream.join(600)
    assert not stream.is_alive() and not stream.error, stream.error
    assert stream.finish_reason == "length" and stream.usage["completion_tokens"] == MAX_TOKENS
    # vLLM 0.32 sets its gauges from the engine step that finished the request, before the stream's last chunk
    # goes out, but does not document it: wait for them rather than assume it.
    wait_until(lambda: requests_in_server(vllm_server) == 0, "vLLM's gauges to show the finished request gone")
    resumed = probe_later()
    assert resumed.returncode == 0 and resumed.stdout.startswith("healthy; 0 running, "), resumed.stdout + resumed.stderr
