"""The chart's in-cluster load test for real (issue 25, item 3): `helm upgrade --reuse-values --set
loadtest.enabled=true` on the running release runs the Locust master Job and 2 worker pods against its Service, as
docs/loadtest-in-cluster.md tells a user; `kubectl logs job/... | tpserve loadtest-results -` writes the record
`tpserve report` reads, and its tokens are the server's own counter's increase, read here from the server.

The pods run the load-test image (docker/Dockerfile.loadtest, loaded into the cluster by the images fixture) and
ask for a fifth of a core each: the node's 2 cores are mostly requested by the server.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from tests.cluster.conftest import FULLNAME, RELEASE, REPORT, SELECTOR, wait_ready_pod
from tests.cluster.test_install import http_get, server_counters
from tests.cluster.test_lifecycle import service_url
from tests.conftest import wait_until

RUN = "ci1"
WORKERS = 2
REQUESTS = 16
MAX_TOKENS = 32
MASTER = f"{FULLNAME}-loadtest-{RUN}-master"
WORKER = f"{FULLNAME}-loadtest-{RUN}-worker"
# What a CPU cluster adds to docs/loadtest-in-cluster.md's line: the load-test image as loaded into containerd
# (localhost/, like the serving image), and pods small enough to fit beside the server on 2 cores.
CLUSTER_SETS = "--set tests.image.registry=localhost --set loadtest.resources.cpu=200m"
LOADTEST_SETS = (f"--set loadtest.enabled=true --set loadtest.run={RUN} --set loadtest.workers={WORKERS} "
                 f"--set loadtest.users=4 --set loadtest.numRequests={REQUESTS} --set loadtest.maxTokens={MAX_TOKENS}")


def counters(shell) -> dict[str, float]:
    status, text = http_get(f"{service_url(shell)}/metrics", timeout=30)
    assert status == 200, text[:500]
    return server_counters(text)


def job_finished(shell, name: str) -> str | None:
    """"Complete" or "Failed" once the Job NAME has ended, else None."""
    conditions = shell.kubectl_json("get", "job", name)["status"].get("conditions", [])
    return next((c["type"] for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"),
                None)


@pytest.fixture(scope="module")
def run(installed, shell, tmp_path_factory):
    """The README's load test, run by the chart inside the cluster; its record written by tpserve
    loadtest-results. Turned off again at the end (the Jobs and their Service go)."""
    server = wait_ready_pod(shell, SELECTOR)
    before = counters(shell)
    upgrade = (f"helm upgrade {RELEASE} charts/vllm --reuse-values {LOADTEST_SETS} {CLUSTER_SETS}")
    shell.run(upgrade, timeout=600)
    try:
        outcome = wait_until(lambda: job_finished(shell, MASTER), f"the load test's master Job {MASTER} to end",
                             1200, poll_s=2)
        log = shell.run(f"kubectl logs job/{MASTER}").stdout
        assert outcome == "Complete", log[-3000:] + shell.run(
            f"kubectl describe job {MASTER} {WORKER}; kubectl logs -l job-name={WORKER} --tail 50",
            check=False).stdout[-3000:]
        after = counters(shell)
        folder = tmp_path_factory.mktemp("loadtest")
        written = shell.run(f"kubectl logs job/{MASTER} | tpserve loadtest-results - --json "
                            f"--out {shlex.quote(str(folder / 'lt1.json'))}")
        yield {"server": server, "log": log, "written": json.loads(written.stdout), "folder": folder,
               "served": {name: after[name] - before[name] for name in after}}
    finally:
        shell.run(f"helm upgrade {RELEASE} charts/vllm --reuse-values --set loadtest.enabled=false", timeout=600,
                  check=False)


def test_the_master_and_its_workers_ran_as_jobs_and_the_record_is_token_exact_against_the_server(run, shell):
    (written,) = run["written"]
    assert (written["completed"], written["num_prompts"], written["token_check"]) == (REQUESTS, REQUESTS, "ok")
    record = json.loads(Path(written["path"]).read_text())
    check = record["token_check"]
    assert check["client_completion_tokens"] == REQUESTS * MAX_TOKENS
    # The server's own counter, read here before and after the run: the record's tokens are those.
    assert check["client_completion_tokens"] == run["served"]["vllm:generation_tokens_total"]
    assert check["client_prompt_tokens"] == run["served"]["vllm:prompt_tokens_total"]
    workers = shell.kubectl_json("get", "pods", "-l", f"job-name={WORKER}")["items"]
    assert len(workers) == WORKERS and all(p["status"]["phase"] == "Succeeded" for p in workers), [
        (p["metadata"]["name"], p["status"]["phase"]) for p in workers]
    REPORT.facts["in-cluster load test: requests, output tokens = server's counter, output tok/s"] = (
        written["completed"], check["client_completion_tokens"], round(written["output_throughput"], 1))


def test_tpserve_report_reads_the_record_with_the_layout_the_master_recorded(run, shell):
    (written,) = run["written"]
    assert written["layout"] and written["layout"]["tensor_parallel_size"] == 1, written["layout"]
    report = shell.run(f"tpserve report {shlex.quote(str(run['folder']))}").stdout
    assert "Kubernetes" in report and written["layout"]["model"] in report, report


def test_the_load_test_left_the_server_running_and_turning_it_off_removes_the_jobs(run, shell):
    server = wait_ready_pod(shell, SELECTOR)
    assert server["metadata"]["uid"] == run["server"]["metadata"]["uid"], "the server was not restarted"
    shell.run(f"helm upgrade {RELEASE} charts/vllm --reuse-values --set loadtest.enabled=false", timeout=600)
    wait_until(lambda: not shell.kubectl_json("get", "jobs", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"],
               "the load test's Jobs to go with loadtest.enabled=false", 300, poll_s=1)
