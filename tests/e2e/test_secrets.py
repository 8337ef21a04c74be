"""A real vLLM server started through ``tpserve serve`` with a planted API key (and a planted HF_TOKEN in
its environment): the key reaches vLLM through VLLM_API_KEY only, so no process's command line holds it,
and neither the server's log, the load test's output, its results, records and Locust report files, nor
``tpserve report`` ever shows it. A load test without the key stops in one line.

The same server, started with a drain period, then takes SIGTERM mid-load (the last test: it ends the
server); run with ``-s`` to see the shutdown times (``docs/reliability.md`` records them).
"""

import json
import os
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from tests.conftest import run, tpserve, wait_until
from tests.e2e.conftest import counters, healthy_server, requests_in_server, under_way
from tpserve.commandlines import loadtest_command, served_layout
from tpserve.commands.serve import serve_config
from tpserve.server import _session_members
from tpserve.workload import runrecord
from tpserve.workload.servermetrics import GENERATION_TOKENS

TOKEN = "hf_PLANTEDtoken0123456789"
API_KEY = "sk-planted-api-key"
DRAIN_S = 120
STARTED_USERS = ("Ramping to", "All users spawned", "Aggregated", "Traceback")


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text and API_KEY not in text


def _generated_since(before: dict, server) -> bool:
    return counters(server).get(GENERATION_TOKENS, 0.0) > before.get(GENERATION_TOKENS, 0.0)


def _env(api_key: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "TPSERVE_API_KEY"}
    return env if api_key is None else {**env, "TPSERVE_API_KEY": api_key}


@pytest.fixture(scope="module")
def keyed_server(tiny_model, tmp_path_factory):
    with healthy_server(tiny_model, tmp_path_factory.mktemp("keyed"), env={"VLLM_API_KEY": API_KEY, "HF_TOKEN": TOKEN},
                        vllm_args=["--shutdown-timeout", str(DRAIN_S)]) as server:
        yield server
    assert_no_secret(server.log_path.read_text(errors="replace"))


def test_the_key_is_enforced_yet_no_server_process_has_it_on_its_command_line(keyed_server):
    assert requests.get(keyed_server.url + "/v1/models", timeout=30).status_code == 401
    headers = {"Authorization": f"Bearer {API_KEY}"}
    assert requests.get(keyed_server.url + "/v1/models", headers=headers, timeout=30).status_code == 200

    members = _session_members(keyed_server.process.pid)
    assert members  # vLLM's API server and its engine core
    for pid in members:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        assert_no_secret(argv.decode(errors="replace"))


@pytest.mark.parametrize("how", ["--api-key", "TPSERVE_API_KEY"])
def test_the_load_test_and_the_report_never_show_the_key(keyed_server, tmp_path, how):
    results, records = tmp_path / "run.json", tmp_path / "records.jsonl"
    extra = ["--api-key", API_KEY] if how == "--api-key" else []
    extra += ["--csv", str(tmp_path / "locust"), "--html", str(tmp_path / "locust.html")]
    done = run(*loadtest_command(keyed_server.url, users=2, num_requests=4, max_tokens=4, results_json=results,
                                 records_jsonl=records, run_time_s=120, extra=extra),
               env=_env(API_KEY if how == "TPSERVE_API_KEY" else None), timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(results.read_text())
    assert (document["completed"], document["total_output_tokens"], document["token_check"]["status"]) == (4, 16, "ok")
    reports = sorted(tmp_path.glob("locust*"))
    assert {"locust.html", "locust_stats.csv"} <= {path.name for path in reports}
    assert_no_secret(*(path.read_text() for path in reports))
    # As tpserve demo and sweep do, the layout is added by whoever started the server.
    record = runrecord.load(results)
    config, cache_dir = serve_config(keyed_server.argv[keyed_server.argv.index("serve") + 1:])
    runrecord.write(results, replace(record, layout=served_layout(config, cache_dir, "cpu")))
    report = tpserve("report", str(results), timeout=120)
    assert report.returncode == 0, report.stderr
    assert_no_secret(done.stdout, done.stderr, results.read_text(), records.read_text(), report.stdout,
                     report.stderr)


@pytest.mark.parametrize(("api_key", "message"), [
    (None, "wants an API key (HTTP 401 from /v1/models): set TPSERVE_API_KEY or pass --api-key"),
    ("not-the-key", "refused the API key (HTTP 401 from /v1/models): check TPSERVE_API_KEY or --api-key"),
])
def test_a_load_test_without_the_right_key_says_so_in_one_line_and_starts_no_user(keyed_server, tmp_path, api_key,
                                                                                 message):
    before = counters(keyed_server)
    done = run(*loadtest_command(keyed_server.url, users=2, num_requests=4, max_tokens=8, run_time_s=120,
                                 results_json=tmp_path / "run.json"), timeout=300, env=_env(api_key))
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and errors[0].endswith(f"tpserve: the server at {keyed_server.url} {message}")
    assert not any(sign in done.stderr + done.stdout for sign in STARTED_USERS)
    assert counters(keyed_server) == before and not (tmp_path / "run.json").exists()


# Output tokens a request of the SIGTERM test: 8 back-to-back users run in waves, and SIGTERM must land inside one.
# At 128 a wave took 0.4 s in one CI run on the 2-core CPU box and ended just as SIGTERM came: the next wave's
# requests, sent milliseconds before it, were refused with the rest and none was left to drain. 1,024 tokens make
# a wave 8 × as many decoding steps.
LONG = 1024


def test_sigterm_mid_load_drains_the_requests_in_flight_and_refuses_new_ones(keyed_server, tmp_path):
    records, log = tmp_path / "records.jsonl", tmp_path / "loadtest.log"
    before = counters(keyed_server)
    with log.open("w") as output:  # a file, not a pipe left unread while the test waits: a full one stops Locust
        loadtest = subprocess.Popen(
            loadtest_command(keyed_server.url, users=8, num_requests=200, max_tokens=LONG, run_time_s=600,
                             results_json=tmp_path / "run.json", records_jsonl=records),
            stdout=output, stderr=subprocess.STDOUT, env=_env(API_KEY))
    # Mid-load: the load test still runs (8 users sending back to back) and the server is working on it.
    wait_until(under_way(loadtest, log, lambda: requests_in_server(keyed_server) >= 1
                         or _generated_since(before, keyed_server)),
               "the server to work on the load test's requests", timeout_s=900)
    # perf_counter is the system's monotonic clock, the one the load test stamps its records with.
    term = time.perf_counter()
    os.kill(keyed_server.process.pid, signal.SIGTERM)  # the tpserve serve process, which is vLLM since the exec
    status = keyed_server.process.wait(timeout=DRAIN_S + 300)
    gone_s = time.perf_counter() - term
    wait_until(lambda: not _session_members(keyed_server.process.pid), "the server's other processes to exit")
    group_gone_s = time.perf_counter() - term
    loadtest.wait(timeout=300)
    logged = log.read_text()

    assert status == 0 and loadtest.returncode == 1 and "Traceback" not in logged
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert len(lines) == 200
    in_flight = [line for line in lines if line["send_time"] < term < line["finish_time"]]
    drained = [line for line in in_flight if not line["error"]]
    sent_after = [line for line in lines if line["send_time"] > term]
    assert all(line["completion_tokens"] == LONG for line in drained) and drained
    assert all(line["error"] for line in in_flight if line not in drained)
    assert all(line["error"] for line in sent_after)
    refusals = sorted({line["error"][:70] for line in lines if line["error"]})
    print(f"\nfault-times: SIGTERM mid-load, --shutdown-timeout {DRAIN_S}: server exited {gone_s:.1f} s after "
          f"SIGTERM (status {status}), its whole group {group_gone_s:.1f} s; {len(in_flight)} in flight, "
          f"{len(drained)} completed in full; {len(sent_after)} sent after SIGTERM all failed: {refusals}")
