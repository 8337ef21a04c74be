"""A real vLLM server that dies, hangs or answers slowly mid-load: the load test records every
request with its reason, writes its partial results, exits by itself, and shows delays in its figures.

Run with ``-s`` to see the times measured (``docs/reliability.md`` records them).
"""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import run, wait_until
from tests.e2e.conftest import counters, healthy_server, requests_in_server, under_way
from tests.e2e.tcpproxy import TcpProxy
from tpserve.commandlines import loadtest_command
from tpserve.server import _session_members
from tpserve.workload.servermetrics import GENERATION_TOKENS

# What a request cut off by a dead server may say; each names how it failed.
DEAD_SERVER_REASONS = ("connection failed: ", "malformed stream: connection lost mid-stream: ",
                       "stream ended before [DONE]")


@pytest.fixture
def doomed_server(tiny_model, tmp_path):
    with healthy_server(tiny_model, tmp_path) as server:
        yield server


def test_a_server_killed_mid_load_fails_each_request_with_its_reason_and_the_partial_run_is_written(
        doomed_server, tmp_path):
    results, records, log = tmp_path / "run.json", tmp_path / "records.jsonl", tmp_path / "loadtest.log"
    # The load test writes to a file: a pipe nobody reads while the test waits fills with Locust's stats
    # table (about 64 KiB after two or three minutes) and then stops the load test mid-write.
    with log.open("w") as output:
        loadtest = subprocess.Popen(
            loadtest_command(doomed_server.url, users=8, num_requests=200, max_tokens=128, results_json=results,
                             records_jsonl=records, run_time_s=600),
            stdout=output, stderr=subprocess.STDOUT)
    started = time.monotonic()
    # Mid-run: some requests' tokens counted, and the load test (8 users sending back to back) still running.
    wait_until(under_way(loadtest, log, lambda: counters(doomed_server)[GENERATION_TOKENS] >= 8 * 128),
               "tokens counted while the load test runs")
    killed = time.monotonic()
    os.killpg(doomed_server.process.pid, signal.SIGKILL)
    loadtest.wait(timeout=300)
    exited_s = time.monotonic() - killed
    logged = log.read_text()

    assert loadtest.returncode == 1, logged
    assert "Traceback" not in logged
    report = json.loads(results.read_text())
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert report["num_prompts"] == len(lines) == 200  # every request issued has its record
    assert report["completed"] + report["failed"] == 200 and report["failed"] >= 1
    failed = [line["error"] for line in lines if line["error"]]
    assert all(reason.startswith(DEAD_SERVER_REASONS) for reason in failed), set(failed)
    assert all(line["completion_tokens"] == 128 for line in lines if not line["error"])
    assert report["problems"][0].startswith(
        f"the server stopped answering during the run: cannot reach {doomed_server.url}/metrics")
    assert report["problems"][1] == f"{report['failed']} of 200 requests failed (allowed error rate 0)"
    assert report["token_check"]["status"] == "skipped: the server's counters could not be read after the run"
    assert "tpserve: the server stopped answering during the run" in logged
    doomed_server.process.wait(timeout=300)  # reaped, so that it no longer counts as a member of its session
    wait_until(lambda: not _session_members(doomed_server.process.pid), "the killed server's processes to go")
    print(f"\nfault-times: SIGKILL mid-load ({killed - started:.0f} s into the load test): load test exited "
          f"{exited_s:.1f} s after the kill; "
          f"{report['completed']} completed, {report['failed']} failed: {report['errors']}")


@pytest.mark.parametrize(("stall_after_bytes", "reason"), [
    (0, "timed out: no response within 2 s (--request-timeout)"),
    (1000, "timed out mid-stream: no bytes from the server for 2 s (--request-timeout)"),
])
def test_a_stalled_server_fails_every_request_at_the_request_timeout(vllm_server, tmp_path, stall_after_bytes,
                                                                      reason):
    with TcpProxy(vllm_server.port, stall_after_bytes=stall_after_bytes) as proxy:
        started = time.monotonic()
        done = run(*loadtest_command(proxy.url, users=4, num_requests=8, max_tokens=64, run_time_s=300,
                                     results_json=tmp_path / "run.json", extra=["--request-timeout", "2"]),
                   timeout=300)
        took_s = time.monotonic() - started
    # The server finishes (or drops) the requests the client gave up on before the next test reads counters.
    wait_until(lambda: requests_in_server(vllm_server) == 0, "the server to be idle")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["errors"] == {reason: 8} and proxy.stalled == 8
    assert report["problems"][0] == "8 of 8 requests failed (allowed error rate 0)"
    print(f"\nfault-times: stall after {stall_after_bytes} bytes, --request-timeout 2: "
          f"load test exited after {took_s:.1f} s (8 requests, 4 users)")


def test_a_slow_server_shows_its_delay_in_ttft_and_the_run_still_passes(vllm_server, tmp_path):
    delay_s = 1.0
    with TcpProxy(vllm_server.port, first_byte_delay_s=delay_s) as proxy:
        done = run(*loadtest_command(proxy.url, users=4, num_requests=8, max_tokens=32, run_time_s=300,
                                     results_json=tmp_path / "run.json", records_jsonl=tmp_path / "records.jsonl"),
                   timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    assert (report["completed"], report["failed"], report["token_check"]["status"]) == (8, 0, "ok")
    lines = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert all(line["ttft"] >= delay_s and line["completion_tokens"] == 32 for line in lines)
    for figure in ("mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "median_e2el_ms"):
        assert report[figure] >= delay_s * 1000, figure
    print(f"\nfault-times: first byte delayed {delay_s:g} s: median TTFT {report['median_ttft_ms']:.0f} ms, "
          f"median TPOT {report['median_tpot_ms']:.1f} ms")
