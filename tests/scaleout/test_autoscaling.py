"""KEDA for real (issue 25, item 2): the chart's ScaledObject, reconciled by KEDA's operator into an HPA that the
kube-controller-manager drives through KEDA's metrics API server, scales the Deployment from 1 to 2 servers when a
burst makes vllm:num_requests_waiting (scraped by Prometheus through the ServiceMonitor) pass its per-server target,
and back to 1 once the queue is empty; with minReplicas 0 it scales to zero, and a request then finds no server.

KEDA runs beside the node (`python tools/cluster keda start`, tools/cluster/keda.py) and Prometheus too (`python
tools/cluster monitor`). Every step is a condition waited on, with a generous bound: a second CPU server's start on
a busy 2-core box is minutes. The timeline (the queue as Prometheus has it, the HPA's desired replicas, the
Deployment's replicas and ready replicas) is written to WORK/autoscaling-timeline.json.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.cluster.conftest import (
    NAMESPACE,
    REPORT,
    ROLLOUT_TIMEOUT,
    ROLLOUT_TIMEOUT_S,
    WORK,
    cpu_values,
    wait_ready_pod,
)
from tests.conftest import REPO, wait_until
from tests.pod.model import REPO_ID

sys.path.insert(0, str(REPO / "tools" / "cluster"))
import keda
import node
import prometheus

RELEASE = "autoscaled"
FULLNAME = f"{RELEASE}-vllm"
SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=server"
HPA = f"keda-hpa-{FULLNAME}"
MONITORING_APIS = ("monitoring.coreos.com/v1/ServiceMonitor",)
# Two sequences in the batch, so that a burst of BURST streams leaves most of them waiting; 2 waiting per server.
MAX_NUM_SEQS = 2
WAITING_PER_SERVER = 2
BURST = 12
POLLING_S = 5
STABILIZATION_S = 30
COOLDOWN_S = 30
TIMELINE = WORK / "autoscaling-timeline.json"
WAITING = f'sum(vllm:num_requests_waiting{{namespace="{NAMESPACE}",service="{FULLNAME}"}})'


@pytest.fixture(scope="module")
def keda_running(shell):
    """KEDA's operator and metrics API server beside the node, external.metrics.k8s.io Available; stopped at the
    end (its APIService removed) when started here."""
    started_here = not all(node.running(name) for name in keda.PROCESSES)
    if started_here:
        start = time.monotonic()
        done = shell.run(f"{shlex.quote(sys.executable)} tools/cluster keda start", timeout=3600, check=False)
        assert done.returncode == 0, f"tools/cluster keda start failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        REPORT.time("autoscaling: tools/cluster keda start (build or reuse, start, external metrics Available)", start)
    try:
        yield
    finally:
        if started_here:
            shell.run(f"{shlex.quote(sys.executable)} tools/cluster keda stop", timeout=300, check=False)


@contextmanager
def autoscaled_release(shell, hub, release: str, engine_sets: str, what: str):
    """RELEASE: the tiny Llama autoscaled on its waiting queue (1 to 2 servers) by ENGINE_SETS, scraped every 5 s
    through its ServiceMonitor by the Prometheus beside the node; its Ready server pod. Uninstalled at the end with
    its claim, so that a reused cluster is left as found. WHAT names the install in the timings."""
    fullname, selector = f"{release}-vllm", f"app.kubernetes.io/instance={release},app.kubernetes.io/component=server"
    paths = shell.run(f"{shlex.quote(sys.executable)} tools/cluster crd {' '.join(MONITORING_APIS)}").stdout.split()
    shell.run("kubectl apply --server-side " + " ".join(f"-f {shlex.quote(path)}" for path in paths))
    shell.run("kubectl wait --for=condition=Established --timeout=300s crd/servicemonitors.monitoring.coreos.com")
    # Prometheus first: until KEDA can query it, a ScaledObject is not Ready, and helm's --wait waits for that.
    shell.run(f"{shlex.quote(sys.executable)} tools/cluster monitor", timeout=1800)
    start = time.monotonic()
    done = shell.run(
        f"helm install {release} charts/vllm {cpu_values(hub)} --set metrics.serviceMonitor.enabled=true "
        f"--set metrics.serviceMonitor.interval=5s --set vllm.extraArgs.max-num-seqs={MAX_NUM_SEQS} "
        # Two CPU servers on one node: vLLM's automatic binding would pin both engines' threads to the same core
        # (each sees the whole node), and the second server would start on what the first leaves of it.
        "--set vllm.extraEnv.VLLM_CPU_OMP_THREADS_BIND=nobind "
        "--set autoscaling.enabled=true --set autoscaling.minReplicas=1 --set autoscaling.maxReplicas=2 "
        "--set cache.allowReadWriteOnceReplicas=true "
        f"--set autoscaling.waitingPerReplica={WAITING_PER_SERVER} "
        f"--set autoscaling.scaleDownStabilizationSeconds={STABILIZATION_S} {engine_sets} "
        f"--wait --timeout {ROLLOUT_TIMEOUT}",
        timeout=1500, check=False)
    REPORT.time(what, start)
    try:
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n" + shell.run(
            f"kubectl describe pods -l {selector}; kubectl get events", check=False).stdout[-4000:]
        loaded = shell.run(f"{shlex.quote(sys.executable)} tools/cluster monitor", timeout=1800).stdout
        assert f"serviceMonitor/{NAMESPACE}/{fullname}/0" in loaded, loaded
        yield wait_ready_pod(shell, selector)
    finally:
        shell.run(f"helm uninstall {release} --wait", timeout=600, check=False)
        # Waited for: an install of the same name right after would otherwise find the claim still going, and its
        # pod would stay Pending on a claim that is then gone.
        shell.run(f"kubectl delete pvc {fullname}-cache --ignore-not-found --timeout=300s", timeout=400, check=False)


@pytest.fixture(scope="module")
def release(shell, hub, keda_running):
    """The tiny Llama, autoscaled by KEDA on its waiting queue."""
    with autoscaled_release(shell, hub, RELEASE, f"--set autoscaling.pollingSeconds={POLLING_S} "
                            f"--set autoscaling.keda.serverAddress={prometheus.URL}",
                            "autoscaling: helm install --wait (ScaledObject, ServiceMonitor)") as pod:
        yield pod


def waiting_in_prometheus(query: str = WAITING) -> float | None:
    answer = requests.get(f"{prometheus.URL}/api/v1/query", params={"query": query}, timeout=30).json()
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


@dataclass
class Timeline:
    """Samples every second or two of what scales the Deployment, from a thread, until stopped."""

    shell: object
    deployment: str = FULLNAME
    hpa: str = HPA
    waiting_query: str = WAITING
    rows: list[dict] = field(default_factory=list)
    began: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)

    def sample(self) -> dict:
        deployment = self.shell.kubectl_json("get", "deployment", self.deployment)
        hpa = self.shell.run(f"kubectl get hpa {self.hpa} -o json", check=False)
        status = json.loads(hpa.stdout)["status"] if hpa.returncode == 0 else {}
        row = {"t_s": round(time.monotonic() - self.began, 1), "waiting": waiting_in_prometheus(self.waiting_query),
               "hpa_desired": status.get("desiredReplicas"), "replicas": deployment["spec"].get("replicas"),
               "ready": deployment["status"].get("readyReplicas", 0)}
        self.rows.append(row)
        return row

    def run(self) -> None:
        while not self.done.wait(1):
            try:
                self.sample()
            except (requests.RequestException, subprocess.SubprocessError, ValueError, KeyError):
                continue

    def first(self, condition) -> dict | None:
        return next((row for row in self.rows if condition(row)), None)

    def at(self, condition) -> float | None:
        """When CONDITION first held (seconds since the start), or None."""
        row = self.first(condition)
        return row and row["t_s"]


def burst(url: str, count: int, stop: threading.Event, failures: list[str]) -> list[threading.Thread]:
    """COUNT clients, each sending long streamed requests one after another until STOP is set (then it drops the
    one under way, which the server aborts): the queue stays full however long the second server takes to start.
    A request the server refuses goes to FAILURES, and that client stops."""
    def one() -> None:
        while not stop.is_set():
            try:
                with requests.post(f"{url}/v1/completions", stream=True, timeout=(10, 600), json={
                        "model": REPO_ID, "prompt": "Tell me a long story.", "max_tokens": 1500, "ignore_eos": True,
                        "stream": True}) as response:
                    if response.status_code != 200:
                        failures.append(f"HTTP {response.status_code}: {response.text[:300]}")
                        return
                    for _ in response.iter_lines():
                        if stop.is_set():
                            return
            except requests.RequestException as error:
                if not stop.is_set():
                    failures.append(f"{type(error).__name__}: {error}"[:300])
                return
    threads = [threading.Thread(target=one, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads


def service_url(shell, name: str = FULLNAME) -> str:
    service = shell.kubectl_json("get", "service", name)
    return f"http://{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"


def scale_out_and_back(shell, url: str, timeline: Timeline, keep: Path, steps) -> float:
    """A burst of BURST clients at URL until the queue passes the per-server target and each of STEPS ((condition on
    a timeline row, what, bound in seconds)) has held, in order; then the clients stop, and the wait is for the
    Deployment back at 1. TIMELINE samples throughout and is kept in KEEP. When the clients stopped (seconds)."""
    sampler = threading.Thread(target=timeline.run, daemon=True)
    sampler.start()
    stop = threading.Event()
    failures: list[str] = []
    threads = burst(url, BURST, stop, failures)

    def seen(condition):
        assert not failures, failures
        return timeline.first(condition)

    try:
        wait_until(lambda: seen(lambda r: (r["waiting"] or 0) > WAITING_PER_SERVER),
                   "Prometheus to see the queue pass the per-server target", 600, poll_s=1)
        for condition, what, bound in steps:
            wait_until(lambda condition=condition: seen(condition), what, bound, poll_s=1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(600)
    drained = time.monotonic() - timeline.began
    try:
        wait_until(lambda: timeline.first(lambda r: r["t_s"] > drained and r["replicas"] == 1),
                   "the HPA to scale back to 1 after the queue drained", STABILIZATION_S + 900, poll_s=1)
    finally:
        timeline.done.set()
        sampler.join(60)
        keep.write_text(json.dumps(timeline.rows, indent=1) + "\n")
    return drained


def test_keda_made_an_hpa_on_the_external_metric_served_through_the_aggregation_layer(release, shell):
    scaled = shell.kubectl_json("get", "scaledobject", FULLNAME)
    ready = {c["type"]: c["status"] for c in scaled["status"].get("conditions", [])}
    assert ready.get("Ready") == "True", scaled["status"]
    hpa = wait_until(lambda: shell.run(f"kubectl get hpa {HPA} -o json", check=False).returncode == 0
                     and shell.kubectl_json("get", "hpa", HPA), f"KEDA to create the HPA {HPA}", 300, poll_s=1)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External" and metric["external"]["target"] == {
        "type": "AverageValue", "averageValue": str(WAITING_PER_SERVER)}, metric
    name = metric["external"]["metric"]["name"]
    selector = f"scaledobject.keda.sh%2Fname%3D{FULLNAME}"
    served = json.loads(shell.run(f"kubectl get --raw /apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/"
                                  f"{name}?labelSelector={selector}").stdout)
    assert served["kind"] == "ExternalMetricValueList" and len(served["items"]) == 1, served
    REPORT.facts["autoscaling: the HPA's external metric, served by KEDA"] = served["items"][0]


def test_a_burst_scales_the_servers_from_one_to_two_on_the_waiting_queue_and_back_to_one_when_it_drains(
        release, shell):
    timeline = Timeline(shell)
    drained = scale_out_and_back(shell, service_url(shell), timeline, TIMELINE, [
        (lambda r: r["replicas"] == 2, "the HPA to scale the Deployment to 2", 600),
        (lambda r: r["ready"] == 2, "the second server to be Ready", ROLLOUT_TIMEOUT_S)])
    marks = {
        "queue above target (s)": timeline.at(lambda r: (r["waiting"] or 0) > WAITING_PER_SERVER),
        "HPA desired 2 (s)": timeline.at(lambda r: r["hpa_desired"] == 2),
        "Deployment replicas 2 (s)": timeline.at(lambda r: r["replicas"] == 2),
        "2 ready (s)": timeline.at(lambda r: r["ready"] == 2),
        "load stopped (s)": round(drained, 1),
        "back to 1 (s)": timeline.at(lambda r: r["t_s"] > drained and r["replicas"] == 1),
        "most waiting": max(r["waiting"] or 0 for r in timeline.rows),
    }
    REPORT.facts["autoscaling: 1 -> 2 -> 1 timeline"] = marks
    print(f"autoscaling timeline: {json.dumps(marks)}")
    assert marks["queue above target (s)"] <= marks["Deployment replicas 2 (s)"] <= marks["2 ready (s)"]
    assert marks["back to 1 (s)"] > marks["load stopped (s)"]
    behavior = shell.kubectl_json("get", "hpa", HPA)["spec"]["behavior"]["scaleDown"]
    assert behavior["stabilizationWindowSeconds"] == STABILIZATION_S, behavior
    assert max(r["replicas"] or 0 for r in timeline.rows) == 2, "maxReplicas 2 was passed"


def test_with_min_replicas_zero_it_scales_to_zero_a_request_is_refused_and_a_paused_scale_of_one_serves_again(
        release, shell):
    url = service_url(shell)
    shell.run(f"helm upgrade {RELEASE} charts/vllm --reuse-values --set autoscaling.minReplicas=0 "
              f"--set autoscaling.cooldownSeconds={COOLDOWN_S}", timeout=600)
    upgraded = time.monotonic()
    wait_until(lambda: shell.kubectl_json("get", "deployment", FULLNAME)["spec"]["replicas"] == 0,
               "KEDA to scale the idle Deployment to zero", COOLDOWN_S + 900, poll_s=1)
    REPORT.time("autoscaling: minReplicas 0 -> Deployment at 0", upgraded)
    wait_until(lambda: not shell.kubectl_json("get", "pods", "-l", SELECTOR)["items"], "the last server pod to go",
               600, poll_s=1)
    # What a client sees at zero: the Service has no endpoint, and kube-proxy refuses the connection.
    with pytest.raises(requests.ConnectionError) as refused:
        requests.post(f"{url}/v1/completions", json={"model": REPO_ID, "prompt": "hi", "max_tokens": 4}, timeout=30)
    REPORT.facts["autoscaling: a request at zero servers"] = f"{type(refused.value).__name__}: {refused.value}"[:300]
    # Nothing scales it back on a request (the queue it scales on lives in the server); KEDA's pause annotation
    # holds it at one, and that start is the cold start a user pays.
    start = time.monotonic()
    shell.run(f"kubectl annotate scaledobject {FULLNAME} autoscaling.keda.sh/paused-replicas=1 --overwrite")
    wait_ready_pod(shell, SELECTOR)
    cold = time.monotonic() - start
    answer = requests.post(f"{url}/v1/completions", json={"model": REPO_ID, "prompt": "hi", "max_tokens": 4},
                           timeout=120)
    assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] == 4, answer.text
    REPORT.timings["autoscaling: from zero, paused at 1 -> Ready (the cold start)"] = round(cold, 1)
    shell.run(f"kubectl annotate scaledobject {FULLNAME} autoscaling.keda.sh/paused-replicas-", check=False)
