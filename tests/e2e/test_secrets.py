"""A real vLLM server started through ``tpserve serve`` with a planted API key (and a planted HF_TOKEN in
its environment): the key reaches vLLM through VLLM_API_KEY only, so no process's command line holds it,
and neither the server's log, the load test's output, its results and records files, nor
``tpserve report`` ever shows it.
"""

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port, run, tpserve
from tests.e2e.conftest import CACHE, MODEL_NAME
from tpserve.commandlines import loadtest_command, serve_command, served_layout
from tpserve.server import LocalServer, _session_members, cpu_env
from tpserve.workload import runrecord

TOKEN = "hf_PLANTEDtoken0123456789"
API_KEY = "sk-planted-api-key"


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text and API_KEY not in text


@pytest.fixture(scope="module")
def keyed_server(tiny_model, tmp_path_factory):
    port = free_port()
    argv = serve_command(tiny_model, served_model_name=MODEL_NAME, host="127.0.0.1", port=port, max_model_len=2048,
                         vllm_args=["--load-format", "dummy"])
    env = cpu_env(CACHE, {**os.environ, "VLLM_API_KEY": API_KEY, "HF_TOKEN": TOKEN})
    server = LocalServer(argv, port=port, log_path=tmp_path_factory.mktemp("keyed") / "server.log", env=env)
    server.start()
    try:
        server.wait_healthy(300)
        yield server
    finally:
        server.stop()
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
    env = {**os.environ, **({"TPSERVE_API_KEY": API_KEY} if how == "TPSERVE_API_KEY" else {})}
    done = run(*loadtest_command(keyed_server.url, users=2, num_requests=4, max_tokens=4, results_json=results,
                                 records_jsonl=records, run_time_s=120, extra=extra), env=env, timeout=300)

    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(results.read_text())["completed"] == 4
    # As tpserve demo and sweep do, the layout is added by whoever started the server.
    record = runrecord.load(results)
    runrecord.write(results, replace(record, layout=served_layout(keyed_server.argv, "cpu")))
    report = tpserve("report", str(results), timeout=120)
    assert report.returncode == 0, report.stderr
    assert_no_secret(done.stdout, done.stderr, results.read_text(), records.read_text(), report.stdout,
                     report.stderr)
