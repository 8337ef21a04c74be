"""The chart's HPA (autoscaling.engine=hpa) against the prometheus-adapter rules tools/cluster/adapter.py runs: each
External metric the HPA asks for is served, from the vLLM series the HPA's annotation names, selected by the labels
the ServiceMonitor's scrape gives. A renamed value in values.yaml, or a renamed rule, fails here before the scale-out
test (tests/scaleout/test_hpa_adapter.py) would.
"""

from __future__ import annotations

import json
import re
import sys

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools" / "cluster"))
import adapter
import monitors

# Both rules: the queue, and the optional KV-cache target (off by default).
HPA = ("--set", "autoscaling.enabled=true", "--set", "autoscaling.engine=hpa", "--set",
       "cache.accessMode=ReadWriteMany", "--set-json", "autoscaling.kvCacheUsagePerReplica=0.8")


def served() -> dict[str, str]:
    """External metric -> the series its rule reads, from the adapter's configuration as written to its --config."""
    rules = {}
    for rule in adapter.configuration()["externalRules"]:
        series = re.fullmatch(r"([\w:]+)\{.*\}", rule["seriesQuery"]).group(1)
        assert re.fullmatch(rule["name"]["matches"], series), rule
        rules[rule["name"]["as"]] = series
    return rules


def test_every_external_metric_of_the_charts_hpa_is_served_from_the_vllm_series_its_annotation_names(render):
    hpa = render("r", *HPA)["HorizontalPodAutoscaler"]
    asked = {metric["external"]["metric"]["name"] for metric in hpa["spec"]["metrics"]}
    sources = json.loads(hpa["metadata"]["annotations"]["tpserve/vllm-metrics"])
    assert asked == set(sources) == {"vllm_num_requests_waiting", "vllm_kv_cache_usage_perc"}
    assert served() == sources


def test_the_rules_select_and_sum_by_the_label_the_hpa_selects_which_the_service_monitor_scrape_sets(render):
    objects = render("r", *HPA, "--set", "metrics.serviceMonitor.enabled=true",
                     "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    hpa, service = objects["HorizontalPodAutoscaler"], objects["Service"]
    for metric in hpa["spec"]["metrics"]:
        assert metric["external"]["metric"]["selector"] == {
            "matchLabels": {adapter.SERVICE_LABEL: service["metadata"]["name"]}}, metric
    monitor = objects["ServiceMonitor"]
    monitor["metadata"]["namespace"] = "default"
    (job,) = monitors.scrape_jobs(monitor, REPO / "kubeconfig")
    target_labels = {step["target_label"]: step.get("source_labels") for step in job["relabel_configs"]
                     if "target_label" in step}
    assert target_labels[adapter.SERVICE_LABEL] == ["__meta_kubernetes_service_name"]
    assert target_labels["namespace"] == ["__meta_kubernetes_namespace"]
    for rule in adapter.configuration()["externalRules"]:
        assert f'{adapter.SERVICE_LABEL}!=""' in rule["seriesQuery"] and 'namespace!=""' in rule["seriesQuery"]
        assert rule["metricsQuery"].endswith(f"by ({adapter.SERVICE_LABEL})"), rule
        assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"}}, (
            "the adapter adds the HPA's namespace to each query through this label")
