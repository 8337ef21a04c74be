"""The README's path on a real Kubernetes (tools/cluster): install, admission, fetch, probes, `helm test`,
port-forward and the load test, and what the running pod really is (docs/cluster-test.md).

The tests run in file order and share one release: each fixture is one step of a user's session, timed.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request

import pytest

from tests.cluster.conftest import FULLNAME, README_TOKEN, RELEASE, REPORT
from tests.conftest import wait_until
from tests.pod.model import REPO_ID
from tpserve.workload.servermetrics import counter_totals, exposition_samples

LOCAL = "http://localhost:8000"
# The README's lines, as written there.
FORWARD_LINE = f"kubectl port-forward svc/{FULLNAME} 8000:8000"
LOCUST_LINE = f"locust -f loadtest/prompts.py --headless -u 8 -r 8 --host {LOCAL}"


def http_get(url: str, timeout: float = 10) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except OSError as error:
        return getattr(error, "code", 0) or 0, str(error)


def server_counters(text: str) -> dict[str, float]:
    """vLLM's token counters from /metrics text (summed over label sets)."""
    return counter_totals(text, ("vllm:generation_tokens_total", "vllm:prompt_tokens_total"))


def test_the_namespace_enforces_restricted_and_the_server_pod_was_admitted(installed, shell):
    labels = shell.kubectl_json("get", "namespace", "default")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pod = installed["pod"]
    assert pod["status"]["phase"] == "Running"
    # A pod the restricted standard would refuse is refused by this API server: the check is live.
    refused = shell.run("kubectl run privileged-probe --image=localhost/tpserve-cpu:0.1.0 --restart=Never "
                        "--overrides='{\"spec\":{\"containers\":[{\"name\":\"p\",\"image\":\"localhost/tpserve-cpu:0.1.0\","
                        "\"securityContext\":{\"privileged\":true}}]}}'", check=False)
    assert refused.returncode != 0 and "violates PodSecurity \"restricted:latest\"" in refused.stderr, refused.stderr


def test_the_init_container_fetched_the_model_from_the_hub_into_the_claim(installed, shell, hub):
    pod = installed["pod"]["metadata"]["name"]
    log = shell.run(f"kubectl logs {pod} -c fetch-model").stdout
    assert f"verified at /models/hf/tpserve/{REPO_ID.replace('/', '--')}/{hub.sha}" in log, log
    downloaded = sorted(request.path.rsplit("/", 1)[-1] for request in installed["hub_requests"]
                        if request.method == "GET" and "/resolve/" in request.path)
    assert downloaded == sorted(hub.files), "every file fetched from the hub stand-in once"
    assert {request.token for request in installed["hub_requests"]} == {README_TOKEN}, "with the Secret's token"
    claim = shell.kubectl_json("get", "pvc", f"{FULLNAME}-cache")
    assert claim["status"]["phase"] == "Bound"
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_the_kubelet_ran_the_charts_probes_and_ready_came_after_health(installed, shell):
    pod = installed["pod"]
    (server,) = [status for status in pod["status"]["containerStatuses"] if status["name"] == "vllm"]
    started = server["state"]["running"]["startedAt"]
    ready = next(c["lastTransitionTime"] for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready > started, "Ready came after the server container started, not with it"
    node = pod["spec"]["nodeName"]
    metrics = shell.run(f"kubectl get --raw /api/v1/nodes/{node}/proxy/metrics/probes").stdout
    name = pod["metadata"]["name"]

    def count(probe: str, result: str) -> float:
        wanted = {"container": "vllm", "pod": name, "probe_type": probe, "result": result}
        return sum(s.value for s in exposition_samples(metrics)
                   if s.name == "prober_probe_total" and wanted.items() <= s.labels.items())

    REPORT.facts["kubelet probes of the first server (startup failed/ok, readiness ok)"] = (
        count("Startup", "failed"), count("Startup", "successful"), count("Readiness", "successful"))
    assert count("Startup", "successful") == 1, "the startup probe passed once, then handed over"
    assert count("Startup", "failed") >= 1, "vLLM loading answered /health only after the kubelet had tried"
    assert count("Readiness", "successful") >= 1


@pytest.fixture(scope="module")
def helm_test(installed, shell) -> str:
    start = time.monotonic()
    done = shell.run(f"helm test {RELEASE} --logs --timeout 15m", timeout=1200, check=False)
    REPORT.time("helm test", start)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_helm_test_passes_with_client_tokens_equal_to_the_servers(helm_test):
    line = next(line for line in helm_test.splitlines() if line.startswith("helm test passed:"))
    match = re.search(r"(\d+)/(\d+) requests .*completion tokens client (\d+) = server (\d+); prompt tokens "
                      r"client (\d+) = server (\d+)", line)
    assert match, line
    completed, requests, client, server, client_prompt, server_prompt = map(int, match.groups())
    assert completed == requests == 16 and client == server == 16 * 32 and client_prompt == server_prompt
    REPORT.facts["helm test"] = line


@pytest.fixture(scope="module")
def forwarded(installed, shell):
    """`kubectl port-forward svc/llama70b-vllm 8000:8000`, running until the module ends."""
    forward = shell.popen(FORWARD_LINE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: forward.poll() is not None or http_get(f"{LOCAL}/health")[0] == 200,
                   "the port-forward to answer /health", 120, poll_s=0.5)
        assert forward.poll() is None, "kubectl port-forward exited"
        yield forward
    finally:
        forward.terminate()
        forward.wait(30)


def test_the_readme_load_test_through_port_forward_serves_every_request_token_exact(forwarded, shell, tmp_path):
    before = server_counters(http_get(f"{LOCAL}/metrics")[1])
    results = tmp_path / "locust.json"
    start = time.monotonic()
    done = shell.run(f"TPSERVE_RESULTS_JSON={results} {LOCUST_LINE}", timeout=1200, check=False)
    REPORT.time("locust (README line) through port-forward", start)
    after = server_counters(http_get(f"{LOCAL}/metrics")[1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(results.read_text())
    assert (report["completed"], report["failed"]) == (59, 0)
    assert report["token_check"]["status"] == "ok"
    generated = after["vllm:generation_tokens_total"] - before["vllm:generation_tokens_total"]
    assert report["total_output_tokens"] == generated == 59 * 128
    REPORT.facts["locust through port-forward: requests, output tok/s, TTFT p50 ms"] = (
        report["completed"], round(report["output_throughput"], 1), round(report["median_ttft_ms"], 1))


def test_the_running_server_is_uid_1000_read_only_without_capabilities_with_its_shm(installed, shell):
    pod = installed["pod"]["metadata"]["name"]
    exec_ = f"kubectl exec {pod} -c vllm -- "
    status = shell.run(exec_ + "cat /proc/1/status").stdout
    fields = {key: value.strip() for key, _, value in (line.partition(":") for line in status.splitlines())}
    assert fields["Uid"].split() == ["1000"] * 4 and fields["Gid"].split() == ["1000"] * 4
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0 and int(fields["CapBnd"], 16) == 0
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"
    write = shell.run(exec_ + "touch /probe", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    weights = shell.run(exec_ + "touch /models/hf/probe", check=False)
    assert weights.returncode != 0 and "Read-only file system" in weights.stderr
    shm = shell.run(exec_ + "python3 -c \"import os; s = os.statvfs('/dev/shm'); print(s.f_blocks * s.f_frsize)\"")
    assert int(shm.stdout) == 2**30
    mounts = shell.run(exec_ + "cat /proc/self/mountinfo").stdout
    assert any(line.split()[4] == "/dev/shm" and " - tmpfs " in line for line in mounts.splitlines())
    limits = installed["pod"]["spec"]["containers"][0]["resources"]["limits"]
    REPORT.facts["server pod: uid, limits"] = (fields["Uid"].split()[0], limits)
