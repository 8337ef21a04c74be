"""Faults on the wire are counted as failed requests with their reasons: never a crash, a hang,
or a smaller denominator. The misbehaving server is ``lab/benchmarks/sse_server.py``'s fault modes."""

import json
import os
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import REPO, run
from tpserve.commandlines import loadtest_command

SSE_SERVER = REPO / "lab" / "benchmarks" / "sse_server.py"
FAULTS = {
    "fault:500": "HTTP 500: ",
    "fault:cut": "malformed stream: connection lost mid-stream",
    "fault:malformed": "malformed stream: data is not JSON",
    "fault:short": "completion_tokens 4 != max_tokens 5",
    "fault:nousage": "stream had no usage event",
}


@pytest.fixture
def faulty_server(port):
    server = subprocess.Popen([sys.executable, str(SSE_SERVER), "--port", str(port),
                               "--first-delay", "0"])
    _wait_up(port)
    yield f"http://127.0.0.1:{port}"
    server.kill()
    server.wait()


def test_every_fault_is_a_failed_request_with_its_reason_and_the_run_fails(faulty_server, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    lines = [{"prompt": "fine request"}] + [{"prompt": f"{fault} x"} for fault in FAULTS]
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run(*loadtest_command(faulty_server, users=2, prompt_set="file", prompt_file=prompts,
                                 num_requests=2 * len(lines), max_tokens=5, results_json=tmp_path / "run.json",
                                 run_time_s=60), timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    assert (report["num_prompts"], report["completed"], report["failed"]) == (12, 2, 10)
    assert report["problems"][0] == "10 of 12 requests failed (allowed error rate 0)"
    reasons = report["errors"]
    for fault, reason in FAULTS.items():
        assert sum(count for text, count in reasons.items() if text.startswith(reason)) == 2, (fault, reasons)


def test_a_tolerated_error_rate_lets_the_run_pass(faulty_server, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": "fine"}\n{"prompt": "fine"}\n{"prompt": "fault:500"}\n')
    done = run(*loadtest_command(faulty_server, users=1, prompt_set="file", prompt_file=prompts, num_requests=8,
                                 max_tokens=3, run_time_s=60, extra=["--max-error-rate", "0.25"]), timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_stalled_stream_times_out_as_a_failure_and_locusts_own_reports_still_work(faulty_server, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "fine"}\n{"prompt": "fault:stall"}\n')
    env = {**os.environ, "TPSERVE_MAX_TOKENS": "4", "TPSERVE_REQUEST_TIMEOUT": "1.5"}
    done = run(*loadtest_command(faulty_server, users=2, prompt_set="file", prompt_file=prompts, num_requests=2,
                                 results_json=tmp_path / "run.json", run_time_s=60,
                                 extra=["--csv", str(tmp_path / "locust"), "--html", str(tmp_path / "locust.html")]),
               timeout=120, env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["workload"]["max_tokens"] == 4  # set through the environment
    (reason,) = [text for text in report["errors"] if "stall" not in text]
    assert reason == "timed out mid-stream: no bytes from the server for 1.5 s (--request-timeout)"
    assert report["completed"] == 1
    assert report["duration"] < 30  # the stall ended at the timeout, not after 30 s
    stats = (tmp_path / "locust_stats.csv").read_text()
    assert "/v1/completions" in stats and (tmp_path / "locust.html").stat().st_size > 0


def test_measured_requests_start_only_once_every_user_is_spawned(tmp_path, port):
    server = subprocess.Popen([sys.executable, str(SSE_SERVER), "--port", str(port),
                               "--first-delay", "0.3"])
    try:
        _wait_up(port)
        done = run(*loadtest_command(f"http://127.0.0.1:{port}", users=4, spawn_rate=0.5, num_requests=8,
                                     max_tokens=3, records_jsonl=tmp_path / "records.jsonl", run_time_s=60),
                   timeout=120)
    finally:
        server.kill()
        server.wait()
    assert done.returncode == 0, done.stderr
    sends = sorted(json.loads(line)["send_time"] for line in (tmp_path / "records.jsonl").read_text().splitlines())
    # Locust adds a user every 2 s (-r 0.5), the 4th 6 s after the first; all four start together anyway.
    # Half the ramp tells the two apart on however busy a machine.
    assert sends[3] - sends[0] < 3


def _wait_up(port):
    deadline = time.monotonic() + 120
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/version", timeout=1)
            return
        except requests.RequestException:
            assert time.monotonic() < deadline, "the SSE server did not start"
            time.sleep(0.1)
