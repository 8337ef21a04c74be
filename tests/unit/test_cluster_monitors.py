"""tools/cluster/monitors.py: the chart's ServiceMonitor and a PrometheusRule translated as the Prometheus Operator
would, checked against the real helm rendering and, once built, the real promtool.

Prometheus scraping through them on the real cluster is tests/scaleout/test_monitoring.py (`make scale-out-test`).
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import TOOLS_BIN
from tests.conftest import REPO, run

sys.path.insert(0, str(REPO / "tools" / "cluster"))
import monitors
import node
import prometheus

KUBECONFIG = Path("/var/lib/tpserve-cluster/kubeconfig")
TARGET_LABELS = ("namespace", "service", "pod", "container", "job", "endpoint")


def rendered_service_monitor(*values: str, namespace: str = "monitoring") -> dict:
    """The chart's ServiceMonitor from the real helm, with the namespace the API server would store."""
    monitor = yaml.safe_load(_helm_template(values, namespace))
    monitor["metadata"]["namespace"] = namespace
    return monitor


@functools.cache
def _helm_template(values: tuple[str, ...], namespace: str) -> str:
    tools = run(sys.executable, "tools/k8s_tools.py", str(TOOLS_BIN), timeout=300)
    assert tools.returncode == 0, tools.stderr
    helm = next(line for line in tools.stdout.split() if line.endswith("/helm"))
    done = run(helm, "template", "llama70b", "charts/vllm", "--namespace", namespace,
               "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor", "-s", "templates/servicemonitor.yaml",
               "--set", "metrics.serviceMonitor.enabled=true", *values)
    assert done.returncode == 0, done.stderr
    return done.stdout


def relabeling_to(job: dict, label: str) -> list[dict]:
    return [step for step in job["relabel_configs"] if step.get("target_label") == label]


def test_the_charts_service_monitor_becomes_one_endpoints_job_in_its_namespace_through_the_kubeconfig():
    monitor = rendered_service_monitor("--set", "metrics.serviceMonitor.interval=5s")
    (job,) = monitors.scrape_jobs(monitor, KUBECONFIG)
    assert job["job_name"] == "serviceMonitor/monitoring/llama70b-vllm/0"
    assert job["kubernetes_sd_configs"] == [{"role": "endpoints", "kubeconfig_file": str(KUBECONFIG),
                                             "namespaces": {"names": ["monitoring"]}}]
    assert (job["scrape_interval"], job["metrics_path"], job["scheme"]) == ("5s", "/metrics", "http")


def test_the_job_keeps_only_services_with_every_selector_label_and_the_endpoint_port_of_the_monitors_name():
    monitor = rendered_service_monitor()
    (job,) = monitors.scrape_jobs(monitor, KUBECONFIG)
    keeps = [step for step in job["relabel_configs"] if step.get("action") == "keep"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert keeps == [
        *({"action": "keep", "regex": f"({value});true",
           "source_labels": [f"__meta_kubernetes_service_label_{name}",
                             f"__meta_kubernetes_service_labelpresent_{name}"]}
          for name, value in sorted((key.replace(".", "_").replace("/", "_"), value)
                                    for key, value in selector.items())),
        {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": "http"}]


@pytest.mark.parametrize(("label", "source"), [
    ("namespace", "__meta_kubernetes_namespace"),
    ("service", "__meta_kubernetes_service_name"),
    ("container", "__meta_kubernetes_pod_container_name"),
    ("job", "__meta_kubernetes_service_name"),
])
def test_the_target_labels_the_charts_queries_select_on_come_from_the_discovered_objects(label, source):
    (job,) = monitors.scrape_jobs(rendered_service_monitor(), KUBECONFIG)
    assert [step["source_labels"] for step in relabeling_to(job, label)] == [[source]]


def test_the_endpoint_label_is_the_port_name_and_finished_pods_are_dropped():
    (job,) = monitors.scrape_jobs(rendered_service_monitor(), KUBECONFIG)
    assert relabeling_to(job, "endpoint") == [{"target_label": "endpoint", "replacement": "http"}]
    assert {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"],
            "regex": "(Failed|Succeeded)"} in job["relabel_configs"]


def test_a_namespace_selector_names_its_namespaces_or_any_drops_the_restriction():
    monitor = rendered_service_monitor()
    monitor["spec"]["namespaceSelector"] = {"matchNames": ["a", "b"]}
    assert monitors.scrape_jobs(monitor, KUBECONFIG)[0]["kubernetes_sd_configs"][0]["namespaces"] == {
        "names": ["a", "b"]}
    monitor["spec"]["namespaceSelector"] = {"any": True}
    assert "namespaces" not in monitors.scrape_jobs(monitor, KUBECONFIG)[0]["kubernetes_sd_configs"][0]


@pytest.mark.parametrize(("change", "named"), [
    (lambda spec: spec["endpoints"][0].update(tlsConfig={"insecureSkipVerify": True}), "spec.endpoints[0] sets tlsConfig"),
    (lambda spec: spec["endpoints"][0].update(relabelings=[]), "spec.endpoints[0] sets relabelings"),
    (lambda spec: spec.update(targetLabels=["app"]), "spec sets targetLabels"),
    (lambda spec: spec["selector"].update(matchExpressions=[]), "spec.selector sets matchExpressions"),
])
def test_a_service_monitor_field_the_translator_does_not_know_is_refused_by_name(change, named):
    monitor = rendered_service_monitor()
    change(monitor["spec"])
    with pytest.raises(monitors.MonitorError, match=rf"ServiceMonitor monitoring/llama70b-vllm {re.escape(named)}, which "
                                                    r"tools/cluster/monitors.py does not translate"):
        monitors.scrape_jobs(monitor, KUBECONFIG)


def test_an_endpoint_without_a_port_name_is_refused_with_the_fix():
    monitor = rendered_service_monitor()
    del monitor["spec"]["endpoints"][0]["port"]
    with pytest.raises(monitors.MonitorError, match=r"spec.endpoints\[0\] names no port: set port to the Service"):
        monitors.scrape_jobs(monitor, KUBECONFIG)


STALLED_RULE = {
    "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
    "metadata": {"name": "llama70b-vllm", "namespace": "monitoring", "uid": "1234-abcd"},
    "spec": {"groups": [{"name": "tpserve", "rules": [{
        "alert": "EngineStalled", "for": "30s",
        "expr": "sum by (namespace, service) (vllm:num_requests_running) > 0",
        "labels": {"severity": "critical"}}]}]},
}


def test_a_prometheus_rule_becomes_a_rule_file_of_its_groups_named_by_namespace_name_and_uid():
    name, content = monitors.rule_file(STALLED_RULE)
    assert name == "monitoring-llama70b-vllm-1234-abcd.yaml"
    assert content == {"groups": STALLED_RULE["spec"]["groups"]}


def test_the_whole_configuration_reads_every_rule_file_and_scrapes_every_monitor():
    config = monitors.config([rendered_service_monitor(), rendered_service_monitor(namespace="other")],
                             KUBECONFIG, Path("/rules"), "5s")
    assert config["global"] == {"scrape_interval": "30s", "evaluation_interval": "5s"}
    assert config["rule_files"] == ["/rules/*.yaml"]
    assert [job["job_name"] for job in config["scrape_configs"]] == [
        "serviceMonitor/monitoring/llama70b-vllm/0", "serviceMonitor/other/llama70b-vllm/0"]


PROMTOOL = prometheus.promtool()


@pytest.mark.skipif(not PROMTOOL.is_file(), reason="promtool is not built: python tools/cluster build prometheus")
def test_promtool_accepts_the_translated_configuration_and_rule_file(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://198.18.0.1:6443"}}],
        "users": [{"name": "u", "user": {}}], "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    rules = tmp_path / "rules"
    rules.mkdir()
    name, content = monitors.rule_file(STALLED_RULE)
    (rules / name).write_text(yaml.safe_dump(content))
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(monitors.config([rendered_service_monitor()], kubeconfig, rules, "5s")))
    done = subprocess.run([str(PROMTOOL), "check", "config", str(config)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rules found" in done.stdout, done.stdout


def test_the_written_config_replaces_old_rule_files_and_has_a_job_per_service_monitor_endpoint(tmp_path, monkeypatch):
    objects = {prometheus.SERVICE_MONITORS: [rendered_service_monitor()], prometheus.PROMETHEUS_RULES: [STALLED_RULE]}
    monkeypatch.setattr(prometheus, "_objects", objects.__getitem__)
    monkeypatch.setattr(prometheus, "CONFIG", tmp_path / "prometheus.yml")
    monkeypatch.setattr(prometheus, "RULES", tmp_path / "rules")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a-deleted-rule.yaml").write_text("groups: []\n")
    written = prometheus.write_config("5s")
    assert sorted(path.name for path in (tmp_path / "rules").iterdir()) == ["monitoring-llama70b-vllm-1234-abcd.yaml"]
    assert written == [f"rule file {tmp_path / 'rules' / 'monitoring-llama70b-vllm-1234-abcd.yaml'}",
                       "scrape job serviceMonitor/monitoring/llama70b-vllm/0"]
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert config["rule_files"] == [str(tmp_path / "rules" / "*.yaml")]
    assert config["scrape_configs"][0]["kubernetes_sd_configs"][0]["kubeconfig_file"] == str(prometheus.KUBECONFIG)


def test_down_stops_prometheus_and_the_other_add_ons_before_the_node_parts(monkeypatch):
    stopped = []
    monkeypatch.setattr(node, "running", lambda name: name)
    monkeypatch.setattr(node, "stop", stopped.append)
    monkeypatch.setattr(node, "_processes_under", lambda paths: [])
    node.stop_all()
    addons = len(node.ADDON_PROCESSES)
    assert prometheus.NAME in stopped[:addons] and stopped[addons:] == list(reversed(node.ORDER))
