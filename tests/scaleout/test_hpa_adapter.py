"""The chart's HPA variant for real (issue 25, item 2, `autoscaling.engine=hpa`): a plain autoscaling/v2 HPA on the
External metric vllm_num_requests_waiting, which prometheus-adapter serves from Prometheus's
vllm:num_requests_waiting (scraped through the ServiceMonitor), scales the Deployment from 1 to 2 servers when a
burst passes the per-server target, and back to 1 once the queue is empty.

prometheus-adapter runs beside the node (`python tools/cluster adapter start`, tools/cluster/adapter.py) in KEDA's
place: only one server can own external.metrics.k8s.io, so KEDA is stopped first. Prometheus runs beside it too
(`python tools/cluster monitor`). The burst, the timeline and the release's values are the KEDA test's
(test_autoscaling.py); the second server is not waited for to be Ready (a vLLM start is minutes on a busy 2-core box,
and the KEDA test measures it). The timeline is written to WORK/hpa-adapter-timeline.json.
"""

from __future__ import annotations

import json
import shlex
import sys
import time

import pytest

from tests.cluster.conftest import NAMESPACE, REPORT, WORK
from tests.conftest import REPO, wait_until
from tests.scaleout.test_autoscaling import (
    STABILIZATION_S,
    WAITING_PER_SERVER,
    Timeline,
    autoscaled_release,
    scale_out_and_back,
    service_url,
)

sys.path.insert(0, str(REPO / "tools" / "cluster"))
import adapter
import keda
import node

RELEASE = "hpa"
FULLNAME = f"{RELEASE}-vllm"
METRIC = "vllm_num_requests_waiting"
WAITING = f'sum(vllm:num_requests_waiting{{namespace="{NAMESPACE}",service="{FULLNAME}"}})'
TIMELINE = WORK / "hpa-adapter-timeline.json"


@pytest.fixture(scope="module")
def adapter_running(shell):
    """prometheus-adapter beside the node, external.metrics.k8s.io Available through it; KEDA stopped first when it
    runs. The adapter is stopped at the end (its APIService removed) when started here."""
    if any(node.running(name) for name in keda.PROCESSES):
        shell.run(f"{shlex.quote(sys.executable)} tools/cluster keda stop", timeout=300)
    started_here = not node.running(adapter.NAME)
    if started_here:
        start = time.monotonic()
        done = shell.run(f"{shlex.quote(sys.executable)} tools/cluster adapter start", timeout=3600, check=False)
        assert done.returncode == 0, f"tools/cluster adapter start failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        REPORT.time("hpa: tools/cluster adapter start (build or reuse, start, external metrics Available)", start)
    try:
        yield
    finally:
        if started_here:
            shell.run(f"{shlex.quote(sys.executable)} tools/cluster adapter stop", timeout=300, check=False)


@pytest.fixture(scope="module")
def release(shell, hub, adapter_running):
    """The tiny Llama with the chart's own HPA on its waiting queue (test_autoscaling.py's release otherwise)."""
    with autoscaled_release(shell, hub, RELEASE, "--set autoscaling.engine=hpa",
                            "hpa: helm install --wait (HPA, ServiceMonitor)") as pod:
        yield pod


def external_metric(shell) -> dict | None:
    """The API server's answer for the HPA's metric and selector, through the aggregation layer; None until the
    adapter has listed the series (it lists every adapter.RELIST_INTERVAL) and Prometheus has scraped one."""
    done = shell.run(f"kubectl get --raw '/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{METRIC}"
                     f"?labelSelector=service%3D{FULLNAME}'", check=False)
    if done.returncode != 0:
        return None
    answer = json.loads(done.stdout)
    return answer if answer.get("items") else None


def test_the_adapter_serves_the_hpas_external_metric_and_the_hpa_reads_it(release, shell):
    hpa = shell.kubectl_json("get", "hpa", FULLNAME)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"] == {"name": METRIC, "selector": {"matchLabels": {"service": FULLNAME}}}
    served = wait_until(lambda: external_metric(shell), f"the API server to serve {METRIC} through the adapter", 300,
                        poll_s=2)
    assert served["kind"] == "ExternalMetricValueList" and len(served["items"]) == 1, served
    assert served["items"][0]["metricLabels"] == {"service": FULLNAME}, served
    REPORT.facts["hpa: the HPA's external metric, served by prometheus-adapter"] = served["items"][0]

    def read_by_the_hpa() -> dict | None:
        """The HPA's reading of its metric; until its first one succeeds, the controller lists an entry with an
        empty type."""
        current = shell.kubectl_json("get", "hpa", FULLNAME)["status"].get("currentMetrics") or []
        return next((metric for metric in current if metric.get("type") == "External"), None)

    read = wait_until(read_by_the_hpa, "the HPA to read its metric (status.currentMetrics)", 300, poll_s=2)
    assert read["external"]["metric"]["name"] == METRIC and "averageValue" in read["external"]["current"], read
    REPORT.facts["hpa: the HPA's status.currentMetrics"] = read


def test_a_burst_makes_the_hpa_want_two_servers_and_it_returns_to_one_once_the_queue_is_empty(release, shell):
    timeline = Timeline(shell, deployment=FULLNAME, hpa=FULLNAME, waiting_query=WAITING)
    drained = scale_out_and_back(shell, service_url(shell, FULLNAME), timeline, TIMELINE, [
        (lambda r: r["hpa_desired"] == 2 and r["replicas"] == 2,
         "the HPA to want 2 and the Deployment to have 2 replicas", 600)])
    marks = {
        "queue above target (s)": timeline.at(lambda r: (r["waiting"] or 0) > WAITING_PER_SERVER),
        "HPA desired 2 (s)": timeline.at(lambda r: r["hpa_desired"] == 2),
        "Deployment replicas 2 (s)": timeline.at(lambda r: r["replicas"] == 2),
        "load stopped (s)": round(drained, 1),
        "queue empty after the load (s)": timeline.at(lambda r: r["t_s"] > drained and r["waiting"] == 0),
        "back to 1 (s)": timeline.at(lambda r: r["t_s"] > drained and r["replicas"] == 1),
        "most waiting": max(r["waiting"] or 0 for r in timeline.rows),
    }
    REPORT.facts["hpa: 1 -> 2 -> 1 timeline"] = marks
    print(f"hpa timeline: {json.dumps(marks)}")
    assert marks["queue above target (s)"] <= marks["HPA desired 2 (s)"] <= marks["Deployment replicas 2 (s)"]
    assert marks["back to 1 (s)"] > marks["load stopped (s)"]
    behavior = shell.kubectl_json("get", "hpa", FULLNAME)["spec"]["behavior"]["scaleDown"]
    assert behavior["stabilizationWindowSeconds"] == STABILIZATION_S, behavior
    assert max(r["replicas"] or 0 for r in timeline.rows) == 2, "maxReplicas 2 was passed"
