"""What SIGTERM to `tpserve serve` does to a load in progress, and how long the server takes to go.

Starts the tiny CPU model through `tpserve serve -- --shutdown-timeout N` for each N given (0 is
vLLM's abort mode), runs the load test (8 users, 200 requests of 128 tokens), sends SIGTERM once
requests are in flight, and prints: requests in flight at SIGTERM and how each ended, how requests
sent afterwards were refused, seconds from SIGTERM to the server's exit and to its last process,
or that it hung (still running a minute past its drain; it is then stopped with SIGKILL).
``tests/e2e/test_secrets.py`` asserts the same for N = 120 in CI; this script measures
the other values without spending CI time on more server starts.

    .venv/bin/python lab/benchmarks/sigterm_shutdown.py [--drain 0 --drain 120]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import requests

from tpserve.commandlines import loadtest_command, serve_command
from tpserve.server import LocalServer, _session_members, cpu_env
from tpserve.shapes import TINY_LLAMA, write_model_folder
from tpserve.workload.servermetrics import counter_totals

CACHE = Path(__file__).resolve().parents[2] / ".cache"
HUNG_AFTER_S = 60  # past the drain: a server still running then is hung
IN_SERVER = ("vllm:num_requests_running", "vllm:num_requests_waiting")


def wait_until(condition, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"gave up after {timeout_s:g} s")
        time.sleep(0.1)


def measure(model: Path, drain_s: int, scratch: Path) -> dict:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = serve_command(model, served_model_name="tiny", host="127.0.0.1", port=port, max_model_len=2048,
                         vllm_args=["--load-format", "dummy", "--shutdown-timeout", str(drain_s)])
    server = LocalServer(argv, port=port, log_path=scratch / f"server-{drain_s}.log", env=cpu_env(CACHE))
    records = scratch / f"records-{drain_s}.jsonl"
    with server:
        server.wait_healthy(300)
        loadtest = subprocess.Popen(loadtest_command(server.url, users=8, num_requests=200, max_tokens=128,
                                                     run_time_s=600, records_jsonl=records),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: sum(counter_totals(requests.get(server.url + "/metrics", timeout=10).text,
                                              IN_SERVER).values()) >= 1)
        term = time.perf_counter()  # the monotonic clock the load test stamps its records with
        os.kill(server.process.pid, signal.SIGTERM)
        try:
            status = server.process.wait(timeout=drain_s + HUNG_AFTER_S)
            exited_s = time.perf_counter() - term
            wait_until(lambda: not _session_members(server.process.pid))
            group_s = time.perf_counter() - term
        except subprocess.TimeoutExpired:  # hung: leaving the block stops it (SIGTERM, then SIGKILL)
            status = exited_s = group_s = None
    loadtest.wait(timeout=300)
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    in_flight = [line for line in lines if line["send_time"] < term < line["finish_time"]]
    return {
        "drain_s": drain_s, "server_exit_status": status,
        "server_exited_s": None if exited_s is None else round(exited_s, 1),
        "group_gone_s": None if group_s is None else round(group_s, 1),
        "hung": f"still running {drain_s + HUNG_AFTER_S} s after SIGTERM" if status is None else "",
        "load_test_exit_status": loadtest.returncode,
        "requests": len(lines), "in_flight_at_sigterm": len(in_flight),
        "in_flight_completed_in_full": sum(1 for line in in_flight if not line["error"]
                                           and line["completion_tokens"] == line["max_tokens"]),
        "in_flight_failed": dict(Counter(line["error"][:90] for line in in_flight if line["error"])),
        "sent_after_sigterm": dict(Counter((line["error"] or "completed")[:90]
                                           for line in lines if line["send_time"] > term)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drain", type=int, action="append", help="--shutdown-timeout values (default 0 and 120)")
    args = parser.parse_args()
    model = write_model_folder(TINY_LLAMA, CACHE / "models" / TINY_LLAMA.name)
    with tempfile.TemporaryDirectory() as scratch:
        for drain_s in args.drain or [0, 120]:
            print(json.dumps(measure(model, drain_s, Path(scratch)), indent=2), flush=True)


if __name__ == "__main__":
    main()
