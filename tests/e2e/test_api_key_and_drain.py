"""One real server, started through ``tpserve serve`` with an API key and a drain period, for two faults:
a load test without the key, and SIGTERM to the server mid-load (last, since it ends the server).

Run with ``-s`` to see the shutdown times measured (``docs/reliability.md`` records them).
"""

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import run
from tests.e2e.conftest import counters, healthy_server, requests_in_server, wait_until
from tpserve.commandlines import loadtest_command
from tpserve.server import _session_members

API_KEY = "planted-api-key-5f3c9a"  # a planted value: it must show up nowhere the load test writes
DRAIN_S = 120


@pytest.fixture(scope="module")
def keyed_server(tiny_model, tmp_path_factory):
    with healthy_server(tiny_model, tmp_path_factory.mktemp("keyed"), env={"VLLM_API_KEY": API_KEY},
                        vllm_args=["--shutdown-timeout", str(DRAIN_S)]) as server:
        yield server


def _env(api_key: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TPSERVE_API_KEY"}
    return env if api_key is None else {**env, "TPSERVE_API_KEY": api_key}


@pytest.mark.parametrize(("api_key", "message"), [
    (None, "wants an API key (HTTP 401 from /v1/models): set TPSERVE_API_KEY or pass --api-key"),
    ("not-the-key", "refused the API key (HTTP 401 from /v1/models): check TPSERVE_API_KEY or --api-key"),
])
def test_a_load_test_without_the_right_api_key_says_so_in_one_line_and_sends_nothing(keyed_server, tmp_path,
                                                                                     api_key, message):
    before = counters(keyed_server)
    done = run(*loadtest_command(keyed_server.url, users=2, num_requests=4, max_tokens=8, run_time_s=120,
                                 results_json=tmp_path / "run.json"), timeout=300, env=_env(api_key))
    assert done.returncode == 2
    assert f"tpserve: the server at {keyed_server.url} {message}\n" in done.stderr
    assert "Traceback" not in done.stderr
    assert counters(keyed_server) == before and not (tmp_path / "run.json").exists()


@pytest.mark.parametrize("how", ["option", "environment"])
def test_with_the_api_key_a_run_passes_and_the_key_is_in_none_of_its_output(keyed_server, tmp_path, how):
    option = ["--api-key", API_KEY] if how == "option" else []
    outputs = tmp_path / "outputs"
    done = run(*loadtest_command(keyed_server.url, users=4, num_requests=12, max_tokens=24, run_time_s=300,
                                 results_json=outputs / "run.json", records_jsonl=outputs / "records.jsonl",
                                 extra=[*option, "--csv", str(outputs / "locust"), "--html", str(outputs / "run.html")]),
               timeout=400, env=_env(API_KEY if how == "environment" else None))
    assert done.returncode == 0, done.stderr
    report = json.loads((outputs / "run.json").read_text())
    assert (report["completed"], report["failed"], report["token_check"]["status"]) == (12, 0, "ok")
    assert report["total_output_tokens"] == 12 * 24
    written = {path.name: path.read_text() for path in outputs.iterdir()}
    assert {"run.json", "records.jsonl", "run.html", "locust_stats.csv"} <= set(written)
    assert [name for name, text in {**written, "stdout": done.stdout, "stderr": done.stderr}.items()
            if API_KEY in text] == []


def test_sigterm_mid_load_drains_the_requests_in_flight_and_refuses_new_ones(keyed_server, tmp_path):
    records = tmp_path / "records.jsonl"
    loadtest = subprocess.Popen(
        loadtest_command(keyed_server.url, users=8, num_requests=200, max_tokens=128, run_time_s=600,
                         results_json=tmp_path / "run.json", records_jsonl=records),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(API_KEY))
    wait_until(lambda: requests_in_server(keyed_server) >= 1, "requests in flight")
    # perf_counter is the system's monotonic clock, the one the load test stamps its records with.
    term = time.perf_counter()
    os.kill(keyed_server.process.pid, signal.SIGTERM)  # the tpserve serve process, which is vLLM since the exec
    status = keyed_server.process.wait(timeout=DRAIN_S + 300)
    gone_s = time.perf_counter() - term
    wait_until(lambda: not _session_members(keyed_server.process.pid), "the server's other processes to exit")
    group_gone_s = time.perf_counter() - term
    _, stderr = loadtest.communicate(timeout=300)

    assert status == 0 and loadtest.returncode == 1 and "Traceback" not in stderr
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(lines) == 200
    in_flight = [line for line in lines if line["send_time"] < term < line["finish_time"]]
    drained = [line for line in in_flight if not line["error"]]
    sent_after = [line for line in lines if line["send_time"] > term]
    assert all(line["completion_tokens"] == 128 for line in drained) and drained
    assert all(line["error"] for line in in_flight if line not in drained)
    assert all(line["error"] for line in sent_after)
    refusals = sorted({line["error"][:70] for line in lines if line["error"]})
    print(f"\nfault-times: SIGTERM mid-load, --shutdown-timeout {DRAIN_S}: server exited {gone_s:.1f} s after "
          f"SIGTERM (status {status}), its whole group {group_gone_s:.1f} s; {len(in_flight)} in flight, "
          f"{len(drained)} completed in full; {len(sent_after)} sent after SIGTERM all failed: {refusals}")
