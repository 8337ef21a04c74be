"""Prometheus for real (issue 25, items 2 and 4): it scrapes the chart's server through the ServiceMonitor's scrape
jobs as the Prometheus Operator generates them, and evaluates the chart's PrometheusRule; the engine-stalled alert
fires when vLLM's engine is SIGSTOPped under load and resolves after SIGCONT.

Prometheus runs beside the node (`python tools/cluster monitor`, tools/cluster/prometheus.py), configured from the
objects the release put in the API server. Requests go through `kubectl port-forward`, as the README's do. The
kubelet's own stall restart (probes.stallSeconds) is off for this release, so that the alert alone answers the stop.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
import requests

from tests.cluster.conftest import NAMESPACE, REPORT, ROLLOUT_TIMEOUT, WORK, cpu_values, wait_ready_pod
from tests.cluster.test_lifecycle import ENGINE_PIDS, Outcome, stream
from tests.conftest import REPO, free_port, wait_until
from tpserve.workload.servermetrics import exposition_samples

sys.path.insert(0, str(REPO / "tools" / "cluster"))
import prometheus

RELEASE = "monitored"
FULLNAME = f"{RELEASE}-vllm"
SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=server"
PROMETHEUS = prometheus.URL
MONITORING_APIS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")
# Short on purpose, through the chart's own values: a scrape every 5 s, rules evaluated every 5 s, the alert's rate
# over 1 minute and pending for 30 s.
SCRAPE_INTERVAL = "5s"
EVALUATION_INTERVAL = "5s"
RATE_WINDOW = "1m"
STALLED_FOR = "30s"
ALERT = "TpserveEngineStalled"
# Labels Prometheus adds to a scraped series (target labels); the rest are the server's own.
TARGET_LABELS = {"__name__", "namespace", "service", "pod", "container", "endpoint", "job", "instance"}
TIMELINE = WORK / "monitoring-timeline.json"


def seconds(duration: str) -> float:
    """A Prometheus duration such as 1m30s, in seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"not a Prometheus duration: {duration}"
    return sum(int(number) * units[unit] for number, unit in parts)


def api(path: str, **params) -> dict:
    """Prometheus's HTTP API answer's data."""
    answer = requests.get(f"{PROMETHEUS}/api/v1/{path}", params=params, timeout=30).json()
    assert answer["status"] == "success", answer
    return answer["data"]


def monitor(shell) -> str:
    done = shell.run(f"{shlex.quote(sys.executable)} tools/cluster monitor --evaluation-interval {EVALUATION_INTERVAL}",
                     timeout=1800, check=False)
    assert done.returncode == 0, f"tools/cluster monitor failed (log: {prometheus.LOG}):\n{done.stdout}{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def release(shell, hub):
    """The tiny Llama installed with its ServiceMonitor (scraped every 5 s) and no stall restart; uninstalled at
    the end, its claim deleted, so that a reused cluster is left as found."""
    paths = shell.run(f"{shlex.quote(sys.executable)} tools/cluster crd {' '.join(MONITORING_APIS)}").stdout.split()
    shell.run("kubectl apply --server-side " + " ".join(f"-f {shlex.quote(path)}" for path in paths))
    shell.run("kubectl wait --for=condition=Established --timeout=300s "
              "crd/servicemonitors.monitoring.coreos.com crd/prometheusrules.monitoring.coreos.com")
    start = time.monotonic()
    done = shell.run(f"helm install {RELEASE} charts/vllm {cpu_values(hub)} --set metrics.serviceMonitor.enabled=true "
                     f"--set metrics.serviceMonitor.interval={SCRAPE_INTERVAL} --set probes.stallSeconds=0 "
                     f"--wait --timeout {ROLLOUT_TIMEOUT}", timeout=1500, check=False)
    REPORT.time("monitoring: helm install --wait (with the ServiceMonitor)", start)
    try:
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n" + shell.run(
            f"kubectl describe pods -l {SELECTOR}; kubectl get events", check=False).stdout[-4000:]
        yield wait_ready_pod(shell, SELECTOR)
    finally:
        shell.run(f"helm uninstall {RELEASE} --wait", timeout=600, check=False)
        shell.run(f"kubectl delete pvc {FULLNAME}-cache --wait=false", check=False)


@pytest.fixture(scope="module")
def watched(release, shell) -> dict:
    """Prometheus, started (or reloaded) with the cluster's ServiceMonitors, ready; the server pod."""
    start = time.monotonic()
    loaded = monitor(shell)
    REPORT.time("monitoring: tools/cluster monitor (build or reuse, start, /-/ready)", start)
    assert f"scrape job serviceMonitor/{NAMESPACE}/{FULLNAME}/0" in loaded, loaded
    return release


@pytest.fixture(scope="module")
def url(watched, shell):
    """`kubectl port-forward svc/monitored-vllm PORT:8000`, running until the module ends."""
    local = free_port()
    forward = shell.popen(f"kubectl port-forward svc/{FULLNAME} {local}:8000", stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    address = f"http://127.0.0.1:{local}"

    def answers() -> bool:
        assert forward.poll() is None, "kubectl port-forward exited"
        try:
            return requests.get(f"{address}/health", timeout=10).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(answers, "the port-forward to answer /health", 120, poll_s=0.5)
        yield address
    finally:
        forward.terminate()
        forward.wait(30)


def server_counters(address: str) -> dict[tuple[str, frozenset], float]:
    """Every vllm: counter sample of the server's own /metrics, by name and labels."""
    exposition = requests.get(f"{address}/metrics", timeout=60).text
    return {(found.name, frozenset(found.labels.items())): found.value for found in exposition_samples(exposition)
            if found.name.startswith("vllm:") and found.name.endswith("_total")}


def prometheus_counters(pod: str) -> dict[tuple[str, frozenset], float]:
    """The same counters as Prometheus has them for this release's pod, without the target labels it adds."""
    query = f'{{__name__=~"vllm:.+_total",namespace="{NAMESPACE}",service="{FULLNAME}",pod="{pod}"}}'
    return {(series["metric"]["__name__"],
             frozenset((k, v) for k, v in series["metric"].items() if k not in TARGET_LABELS)): float(series["value"][1])
            for series in api("query", query=query)["result"]}


def test_prometheus_scrapes_the_server_through_its_service_monitor_with_the_release_namespace_and_service(
        watched, shell):
    pod = watched["metadata"]["name"]

    def server_target():
        targets = api("targets", state="active")["activeTargets"]
        return next((t for t in targets if t["scrapePool"] == f"serviceMonitor/{NAMESPACE}/{FULLNAME}/0"
                     and t["health"] == "up"), None)

    start = time.monotonic()
    target = wait_until(server_target, f"Prometheus to scrape {FULLNAME} (log: {prometheus.LOG})", 300, poll_s=1)
    REPORT.time("monitoring: Prometheus ready -> the server's target up", start)
    labels = target["labels"]
    assert {key: labels.get(key) for key in ("namespace", "service", "pod", "container", "endpoint", "job")} == {
        "namespace": NAMESPACE, "service": FULLNAME, "pod": pod, "container": "vllm", "endpoint": "http",
        "job": FULLNAME}
    assert target["scrapeUrl"] == f"http://{watched['status']['podIP']}:8000/metrics"
    REPORT.facts["monitoring: the server's target labels"] = labels


def test_vllm_counters_through_prometheus_equal_the_servers_own_metrics_once_quiet(watched, url):
    pod = watched["metadata"]["name"]
    outcomes = [Outcome() for _ in range(4)]
    threads = [threading.Thread(target=stream, args=(url, 32, outcome)) for outcome in outcomes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert [(o.finish, o.tokens) for o in outcomes] == [("length", 32)] * 4, [vars(o) for o in outcomes]

    def equal():
        server, scraped = server_counters(url), prometheus_counters(pod)
        return server == scraped and (server, scraped)

    server, scraped = wait_until(equal, "Prometheus's vllm: counters to equal the server's once it is quiet", 300,
                                 poll_s=1)
    generated = {name: value for (name, _), value in scraped.items() if name == "vllm:generation_tokens_total"}
    assert sum(generated.values()) == sum(o.tokens for o in outcomes) == 128, generated
    assert set(server) == set(scraped) and len(scraped) >= 3, sorted(name for name, _ in scraped)
    REPORT.facts["monitoring: vllm: counters equal through Prometheus"] = len(scraped)


def alert_of_this_release() -> dict | None:
    for alert in api("alerts")["alerts"]:
        labels = alert["labels"]
        if labels["alertname"] == ALERT and labels.get("namespace") == NAMESPACE and labels.get("service") == FULLNAME:
            return alert
    return None


def signal_engine(shell, pod: str, engine: str, name: str) -> None:
    # The image has no kill(1): Python sends the signal, as the same uid.
    shell.run(f"kubectl exec {pod} -c vllm -- python3 -c "
              + shlex.quote(f"import os, signal; os.kill({engine}, signal.SIG{name})"))


def requests_running(address: str) -> float:
    exposition = requests.get(f"{address}/metrics", timeout=60).text
    return sum(s.value for s in exposition_samples(exposition) if s.name == "vllm:num_requests_running")


def loaded_alert_rule(shell) -> dict:
    """The TpserveEngineStalled rule as Prometheus has it once `tools/cluster monitor` has loaded the cluster's rules."""
    loaded = monitor(shell)
    assert "rule file" in loaded, loaded
    rules = [rule for group in api("rules", type="alert")["groups"] for rule in group["rules"] if rule["name"] == ALERT]
    assert rules, f"Prometheus has no {ALERT} rule; it loaded:\n{loaded}"
    return rules[0]


@pytest.fixture(scope="module")
def stalled_alert_rule(watched, shell) -> dict:
    """The chart's alert rules, turned on with short windows by `helm upgrade --reuse-values` (the server pod
    stays), loaded into Prometheus."""
    shell.run(f"helm upgrade {RELEASE} charts/vllm --reuse-values --set metrics.prometheusRule.enabled=true "
              f"--set metrics.prometheusRule.rateWindow={RATE_WINDOW} "
              f"--set metrics.prometheusRule.engineStalled.for={STALLED_FOR} --wait --timeout {ROLLOUT_TIMEOUT}",
              timeout=1500)
    assert wait_ready_pod(shell, SELECTOR)["metadata"]["uid"] == watched["metadata"]["uid"], "the rule alone changed"
    return loaded_alert_rule(shell)


def test_a_stopped_engine_under_load_fires_the_engine_stalled_alert_and_sigcont_resolves_it(
        watched, url, shell, stalled_alert_rule):
    pod = watched["metadata"]["name"]
    pending_for = stalled_alert_rule["duration"]
    assert pending_for == seconds(STALLED_FOR), stalled_alert_rule
    # The rate window must first slide past the last token, then the alert pends for its duration; each step
    # waits up to a scrape and an evaluation. Generous on top: CI is a busy 2-core box.
    timeout_s = seconds(RATE_WINDOW) + pending_for + 4 * (seconds(SCRAPE_INTERVAL) + seconds(EVALUATION_INTERVAL)) + 300
    assert alert_of_this_release() is None, "the alert is active before the engine stopped"

    (engine,) = shell.run(f"kubectl exec {pod} -c vllm -- python3 -c {shlex.quote(ENGINE_PIDS)}").stdout.split()
    timeline: dict[str, float | str] = {}
    outcomes = [Outcome() for _ in range(4)]
    firsts = [threading.Event() for _ in outcomes]
    threads = [threading.Thread(target=stream, args=(url, 2000, outcome, first), daemon=True)
               for outcome, first in zip(outcomes, firsts, strict=True)]
    for thread in threads:
        thread.start()
    assert all(first.wait(300) for first in firsts), [vars(o) for o in outcomes]
    signal_engine(shell, pod, engine, "STOP")
    stopped = time.monotonic()
    timeline["stopped_utc"] = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        assert requests_running(url) > 0, "every request had finished before the engine stopped"

        def state(wanted: str):
            alert = alert_of_this_release()
            if alert and alert["state"] in ("pending", "firing") and "pending_s" not in timeline:
                timeline["pending_s"] = round(time.monotonic() - stopped, 1)
            return alert if alert and alert["state"] == wanted else None

        firing = wait_until(lambda: state("firing"), f"{ALERT} to fire for {FULLNAME} (log: {prometheus.LOG})",
                            timeout_s, poll_s=1)
        timeline["firing_s"] = round(time.monotonic() - stopped, 1)
        timeline["firing_labels"] = json.dumps(firing["labels"], sort_keys=True)
        timeline["prometheus_active_at"] = firing["activeAt"]
    finally:
        signal_engine(shell, pod, engine, "CONT")
    timeline["continued_s"] = round(time.monotonic() - stopped, 1)
    wait_until(lambda: alert_of_this_release() is None, f"{ALERT} to resolve after SIGCONT", timeout_s, poll_s=1)
    timeline["resolved_s"] = round(time.monotonic() - stopped, 1)
    for thread in threads:
        thread.join(600)
    timeline["requests_finished"] = sum(o.finish == "length" and o.tokens == 2000 for o in outcomes)
    timeline.update(rate_window=RATE_WINDOW, pending_for=STALLED_FOR, scrape_interval=SCRAPE_INTERVAL,
                    evaluation_interval=EVALUATION_INTERVAL)
    TIMELINE.write_text(json.dumps(timeline, indent=2) + "\n")
    print(f"{ALERT} timeline (s after SIGSTOP): {json.dumps(timeline)}")
    REPORT.facts[f"monitoring: {ALERT} timeline (s after SIGSTOP)"] = timeline
    assert timeline["pending_s"] <= timeline["firing_s"] <= timeline["continued_s"] <= timeline["resolved_s"]
    assert timeline["firing_s"] >= pending_for, "the alert fired before its pending duration"
    assert timeline["requests_finished"] == len(outcomes), [vars(o) for o in outcomes]
    after = shell.kubectl_json("get", "pod", pod)
    assert restarts(after) == restarts(watched), "the server restarted: the alert was to answer the stop alone"


def restarts(pod: dict) -> int:
    return next(s["restartCount"] for s in pod["status"]["containerStatuses"] if s["name"] == "vllm")
