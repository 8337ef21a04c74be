"""A release's life on a real Kubernetes after the first install (docs/cluster-test.md): a deleted pod comes
back from the claim, an upgrade rolls out under load, a stalled engine is restarted by the kubelet's liveness
probe, a wrong revision stops at the init container, and a reinstall after `helm uninstall` reuses the claim.

Runs after test_install.py (file order) on the release test_install.py installed. Requests go from this machine to the
Service's ClusterIP, which kube-proxy routes to whichever pod serves: they outlive a pod, a port-forward would not.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import threading
import time
from dataclasses import dataclass

import pytest
import requests

from tests.cluster.conftest import (
    FULLNAME,
    RELEASE,
    REPORT,
    ROLLOUT_TIMEOUT,
    ROLLOUT_TIMEOUT_S,
    SELECTOR,
    cpu_values,
    wait_ready_pod,
)
from tests.conftest import REPO, wait_until
from tests.pod.model import REPO_ID
from tpserve.workload.servermetrics import counter_totals

SERVED = REPO_ID


@dataclass
class Outcome:
    """One streamed request: the tokens it got and how it ended ("length", or the error's name)."""

    tokens: int = 0
    finish: str | None = None
    error: str | None = None


def stream(url: str, max_tokens: int, outcome: Outcome, started: threading.Event | None = None) -> None:
    try:
        with requests.post(f"{url}/v1/completions", stream=True, timeout=(10, 600), json={
                "model": SERVED, "prompt": "Tell me a long story.", "max_tokens": max_tokens,
                "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}) as response:
            if response.status_code != 200:
                outcome.error = f"HTTP {response.status_code}"
                return
            for line in response.iter_lines():
                if not line.startswith(b"data: ") or line == b"data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if chunk.get("usage"):
                    outcome.tokens = chunk["usage"]["completion_tokens"]
                for choice in chunk.get("choices", []):
                    if started is not None:
                        started.set()
                    outcome.finish = choice.get("finish_reason") or outcome.finish
    except requests.RequestException as error:
        outcome.error = type(error).__name__


def streams_under_way(url: str, max_tokens: int, count: int = 8) -> tuple[list[Outcome], list[threading.Thread]]:
    """COUNT streamed requests of MAX_TOKENS, once each has its first token."""
    outcomes = [Outcome() for _ in range(count)]
    first_tokens = [threading.Event() for _ in outcomes]
    threads = [threading.Thread(target=stream, args=(url, max_tokens, outcome, event), daemon=True)
               for outcome, event in zip(outcomes, first_tokens, strict=True)]
    for thread in threads:
        thread.start()
    assert all(event.wait(300) for event in first_tokens), [vars(o) for o in outcomes]
    return outcomes, threads


def requests_running(url: str) -> float:
    """vllm:num_requests_running from the server's /metrics (summed over its label sets)."""
    text = requests.get(f"{url}/metrics", timeout=60).text
    return counter_totals(text, ("vllm:num_requests_running",)).get("vllm:num_requests_running", 0.0)


def service_url(shell) -> str:
    service = shell.kubectl_json("get", "service", FULLNAME)
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def server_status(pod: dict) -> dict:
    return next(status for status in pod["status"]["containerStatuses"] if status["name"] == "vllm")


@pytest.fixture(scope="module")
def url(installed, shell) -> str:
    address = service_url(shell)
    outcome = Outcome()
    stream(address, 8, outcome)
    assert outcome.finish == "length" and outcome.tokens == 8, outcome
    return address


def test_a_deleted_pod_comes_back_ready_from_the_claim_without_the_hub(url, shell, hub):
    old = wait_ready_pod(shell, SELECTOR)["metadata"]["name"]
    hub.requests.clear()
    start = time.monotonic()
    shell.run(f"kubectl delete pod {old} --wait=false")
    new = wait_ready_pod(shell, SELECTOR, exclude=old)
    seconds = REPORT.time("deleted pod -> new pod Ready (from the claim)", start)
    assert hub.requests == [], "a cached pinned revision is verified without the network"
    log = shell.run(f"kubectl logs {new['metadata']['name']} -c fetch-model").stdout
    assert "verified at" in log
    outcome = Outcome()
    stream(url, 16, outcome)
    assert (outcome.finish, outcome.tokens) == ("length", 16), outcome
    assert seconds < ROLLOUT_TIMEOUT_S


def test_a_chart_only_upgrade_with_the_same_values_leaves_the_server_pod_running(url, shell, tmp_path):
    before = wait_ready_pod(shell, SELECTOR)
    chart = tmp_path / "vllm"
    shutil.copytree(REPO / "charts" / "vllm", chart)
    chart_yaml = chart / "Chart.yaml"
    chart_yaml.write_text(re.sub(r"(?m)^version: .*$", "version: 9.9.9", chart_yaml.read_text()))
    shell.run(f"helm upgrade {RELEASE} {chart} --reuse-values --wait --timeout {ROLLOUT_TIMEOUT}", timeout=1500)
    assert shell.kubectl_json("get", "deployment", FULLNAME)["metadata"]["labels"]["helm.sh/chart"] == "vllm-9.9.9"
    after = wait_ready_pod(shell, SELECTOR)
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert server_status(after)["restartCount"] == server_status(before)["restartCount"]
    outcome = Outcome()
    stream(url, 16, outcome)
    assert (outcome.finish, outcome.tokens) == ("length", 16), outcome


def test_an_upgrade_with_a_changed_vllm_setting_rolls_out_and_requests_in_flight_finish_or_fail_by_name(
        url, shell, hub):
    before = wait_ready_pod(shell, SELECTOR)["metadata"]["name"]
    outcomes, threads = streams_under_way(url, 1500)
    start = time.monotonic()
    # The stall window is shortened here too, for the liveness test that follows (and named in the docs).
    done = shell.run(f"helm upgrade {RELEASE} charts/vllm {cpu_values(hub)} --set vllm.extraArgs.max-num-seqs=32 "
                     f"--set probes.stallSeconds=20 --wait --timeout {ROLLOUT_TIMEOUT}", timeout=1500, check=False)
    REPORT.time("helm upgrade --wait (Recreate: drain, new pod Ready)", start)
    for thread in threads:
        thread.join(600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    pod = wait_ready_pod(shell, SELECTOR, exclude=before)
    assert "--max-num-seqs=32" in pod["spec"]["containers"][0]["args"], pod["spec"]["containers"][0]["args"]
    finished = [o for o in outcomes if o.finish == "length" and o.tokens == 1500 and o.error is None]
    failed = [o for o in outcomes if o.error is not None]
    REPORT.facts["upgrade: requests in flight finished / failed (reasons)"] = (
        len(finished), len(failed), sorted({o.error for o in failed}))
    assert len(finished) + len(failed) == len(outcomes), [vars(o) for o in outcomes]
    assert all(o.error for o in failed), "every request that did not finish says why"
    outcome = Outcome()
    stream(url, 16, outcome)
    assert (outcome.finish, outcome.tokens) == ("length", 16), outcome


# The PIDs whose command line names vLLM's EngineCore (its process title), this script's own excepted.
ENGINE_PIDS = ("import os\n"
               "for p in os.listdir('/proc'):\n"
               "    try:\n"
               "        if p.isdigit() and int(p) != os.getpid() and b'EngineCore' in open(f'/proc/{p}/cmdline', 'rb').read():\n"
               "            print(p)\n"
               "    except OSError: pass\n")


def test_a_stopped_engine_is_restarted_by_the_liveness_probe_and_serves_again(url, shell):
    pod = wait_ready_pod(shell, SELECTOR)
    name, restarts = pod["metadata"]["name"], server_status(pod)["restartCount"]
    exec_ = f"kubectl exec {name} -c vllm -- "
    (engine,) = shell.run(exec_ + f"python3 -c {shlex.quote(ENGINE_PIDS)}").stdout.split()
    # Requests must be running when the engine stops: an idle stopped engine is not a stall. On a busy machine
    # the streams can end before the signal lands, so the server's own gauge (what the probe reads) decides,
    # and the engine resumes for another try when it shows none running.
    signal = exec_ + "python3 -c 'import os, signal; os.kill({pid}, signal.SIG{name})'"
    for _attempt in range(5):
        _, threads = streams_under_way(url, 2000)
        # The image has no kill(1) (a minimal Debian): Python sends the signal, as the same uid.
        shell.run(signal.format(pid=engine, name="STOP"))
        stopped = time.monotonic()
        if requests_running(url) > 0:
            break
        shell.run(signal.format(pid=engine, name="CONT"))
        for thread in threads:
            thread.join(600)
    else:
        raise AssertionError("every request had finished before the engine stopped (5 tries)")

    def restarted():
        current = shell.kubectl_json("get", "pod", name)
        return server_status(current)["restartCount"] > restarts and current

    wait_until(restarted, "the kubelet to restart the stalled server", 600, poll_s=2)
    REPORT.time("engine stopped -> liveness restart", stopped)
    wait_ready_pod(shell, SELECTOR)
    REPORT.time("engine stopped -> Ready again", stopped)
    events = shell.run(f"kubectl get events --field-selector involvedObject.name={name} -o json").stdout
    assert "Liveness probe failed" in events and "vLLM engine stalled" in events
    outcome = Outcome()
    stream(url, 16, outcome)
    assert (outcome.finish, outcome.tokens) == ("length", 16), outcome


def test_a_wrong_revision_fails_helm_install_and_the_init_container_says_why_in_one_line(url, shell, hub):
    wrong = "f" * 40
    done = shell.run(f"helm install wrong charts/vllm {cpu_values(hub, wrong)} --wait --timeout 90s",
                     timeout=600, check=False)
    try:
        assert done.returncode != 0, done.stdout
        selector = "app.kubernetes.io/instance=wrong,app.kubernetes.io/component=server"
        (pod,) = shell.kubectl_json("get", "pods", "-l", selector)["items"]

        def last_line() -> str:
            log = shell.run(f"kubectl logs {pod['metadata']['name']} -c fetch-model", check=False).stdout.strip()
            return log.splitlines()[-1] if "error:" in log else ""

        # On a busy machine helm's timeout can come before the init container's first run ends.
        message = wait_until(last_line, "the init container's first run to end", 300, poll_s=2)
        assert message.startswith(f"error: {REPO_ID} has no revision '{wrong}'"), message
        assert "vllm" not in [s["name"] for s in pod["status"].get("containerStatuses", []) if "running" in s["state"]]
        REPORT.facts["wrong revision: init container's last line"] = message
    finally:
        shell.run("helm uninstall wrong --wait", check=False)
        shell.run("kubectl delete pvc wrong-vllm-cache --wait=false", check=False)


def test_uninstall_keeps_the_claim_and_a_second_install_serves_from_it_without_the_hub(url, shell, hub):
    shell.run(f"helm uninstall {RELEASE} --wait", timeout=600)
    claim = shell.kubectl_json("get", "pvc", f"{FULLNAME}-cache")
    assert claim["status"]["phase"] == "Bound"
    hub.requests.clear()
    start = time.monotonic()
    shell.run(f"helm install {RELEASE} charts/vllm {cpu_values(hub)} --wait --timeout {ROLLOUT_TIMEOUT}",
              timeout=1500)
    REPORT.time("second helm install --wait (from the kept claim)", start)
    assert hub.requests == []
    outcome = Outcome()
    stream(service_url(shell), 16, outcome)
    assert (outcome.finish, outcome.tokens) == ("length", 16), outcome
