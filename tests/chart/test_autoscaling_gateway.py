"""autoscaling (KEDA or HPA on vLLM's queue) and gateway (InferencePool + HTTPRoute): off by default, what each
renders, and the values they refuse."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from tests.chart.conftest import CHART
from tests.chart.test_validation import problems

KEDA = ("--set", "autoscaling.enabled=true", "--set", "cache.accessMode=ReadWriteMany")
HPA = (*KEDA, "--set", "autoscaling.engine=hpa")
KV = ("--set-json", "autoscaling.kvCacheUsagePerReplica=0.8")
MULTI_NODE = ("--set", "multiNode.enabled=true", "--set", "parallelism.tensor=8", "--set", "parallelism.pipeline=2")
GATEWAY = ("--set", "gateway.enabled=true", "--set", "gateway.endpointPicker.name=vllm-epp",
           "--set", "gateway.parentRefs.inference-gateway.namespace=gateway")
METRICS = yaml.safe_load((CHART / "values.yaml").read_text())["autoscaling"]["metrics"]


def test_nothing_scales_or_routes_by_default(render):
    assert not {"ScaledObject", "HorizontalPodAutoscaler", "InferencePool", "HTTPRoute"} & set(render("r"))


def test_keda_scales_the_deployment_on_waiting_requests_per_server_from_prometheus(render):
    scaled = render("r", *KEDA, *KV)["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "r-vllm"}
    assert (spec["minReplicaCount"], spec["maxReplicaCount"], spec["pollingInterval"], spec["cooldownPeriod"]) == \
        (1, 4, 30, 1800)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"] == {
        "scaleDown": {"stabilizationWindowSeconds": 600}}
    address = "http://prometheus-operated.monitoring.svc:9090"
    assert spec["triggers"] == [
        {"type": "prometheus", "name": "waiting", "metricType": "AverageValue", "metadata": {
            "serverAddress": address, "threshold": "4",
            "query": 'sum(vllm:num_requests_waiting{namespace="default",service="r-vllm"})'}},
        {"type": "prometheus", "name": "kv-cache-usage", "metricType": "AverageValue", "metadata": {
            "serverAddress": address, "threshold": "0.8",
            "query": 'sum(vllm:kv_cache_usage_perc{namespace="default",service="r-vllm"})'}}]


def test_the_kv_cache_trigger_is_optional(render):
    assert [t["name"] for t in render("r", *KEDA)["ScaledObject"]["spec"]["triggers"]] == ["waiting"]


def test_the_hpa_reads_external_metrics_and_names_the_vllm_metric_behind_each(render):
    hpa = render("r", *HPA, *KV)["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert json.loads(hpa["metadata"]["annotations"]["tpserve/vllm-metrics"]) == {
        "vllm_num_requests_waiting": "vllm:num_requests_waiting",
        "vllm_kv_cache_usage_perc": "vllm:kv_cache_usage_perc"}
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 4)
    assert spec["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 600}}
    assert spec["metrics"][0] == {"type": "External", "external": {
        "metric": {"name": "vllm_num_requests_waiting", "selector": {"matchLabels": {"service": "r-vllm"}}},
        "target": {"type": "AverageValue", "averageValue": "4"}}}
    assert spec["metrics"][1]["external"]["target"] == {"type": "AverageValue", "averageValue": "0.8"}


@pytest.mark.parametrize("engine", [KEDA, HPA])
def test_a_multinode_release_scales_its_leaderworkerset_through_scale(render, engine):
    objects = render("r", *engine, *MULTI_NODE)
    scaler = objects.get("ScaledObject") or objects["HorizontalPodAutoscaler"]
    assert scaler["spec"]["scaleTargetRef"] == {"apiVersion": "leaderworkerset.x-k8s.io/v1",
                                                "kind": "LeaderWorkerSet", "name": "r-vllm"}
    assert "replicas" not in objects["LeaderWorkerSet"]["spec"]


def test_with_autoscaling_replica_count_is_not_rendered_so_upgrades_do_not_reset_the_count(render):
    deployment = render("r", *KEDA, "--set", "replicaCount=3")["Deployment"]
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert render("r", "--set", "replicaCount=3", "--set", "cache.accessMode=ReadWriteMany")["Deployment"][
        "spec"]["replicas"] == 3


def test_every_vllm_metric_the_scaling_rules_use_is_named_in_autoscaling_metrics(render):
    """The one place a metric rename is made. (The `helm test` client's token counters are its own business.)"""
    scalers = [render("r", *KEDA, *KV)["ScaledObject"], render("r", *HPA, *KV)["HorizontalPodAutoscaler"]]
    assert set(re.findall(r"vllm:[a-z_]+", json.dumps(scalers))) == set(METRICS.values())
    assert "gpu_cache_usage_perc" not in json.dumps(scalers)


@pytest.mark.parametrize(("args", "expected"), [
    (("--set", "autoscaling.minReplicas=5"),
     "autoscaling.minReplicas=5 is above autoscaling.maxReplicas=4: lower it or raise the maximum"),
    (("--set", "autoscaling.engine=hpa", "--set", "autoscaling.minReplicas=0"),
     ("autoscaling.minReplicas=0 (scale to zero) needs autoscaling.engine=keda: an HPA cannot go below 1 replica "
     "without the alpha HPAScaleToZero feature gate; use engine keda, or minReplicas 1")),
    (("--set", "cache.accessMode=ReadWriteOnce"),
     ("autoscaling.maxReplicas=4 needs cache.accessMode=ReadWriteMany: every replica mounts the same cache claim, "
     "which ReadWriteOnce lets only one node mount; or set cache.existingClaim to a claim they can all mount, or "
     "cache.allowReadWriteOnceReplicas=true to run every replica on one node")),
])
def test_autoscaling_values_that_cannot_work_are_refused(render_error, args, expected):
    assert problems(render_error(*KEDA, *args)) == [expected]


def test_the_schema_refuses_an_unknown_engine_and_a_kv_target_above_one(render_error):
    assert "/autoscaling/engine" in render_error(*KEDA, "--set", "autoscaling.engine=vpa")
    assert "/autoscaling/kvCacheUsagePerReplica" in render_error(*KEDA, "--set-json",
                                                                  "autoscaling.kvCacheUsagePerReplica=80")


def test_notes_state_what_scale_to_zero_costs_and_that_it_does_not_wake_itself(tools):
    done = tools.helm_run("install", "r", str(CHART), "--dry-run=client", *KEDA, "--set", "autoscaling.minReplicas=0")
    assert done.returncode == 0, done.stderr
    notes = " ".join(done.stdout.split("NOTES:", 1)[1].split())
    assert "with none running there is no queue to measure, so nothing scales it back up by itself" in notes
    assert "`kubectl scale deployment/r-vllm --replicas=1`" in notes
    assert ("Each cold start costs up to 1755 s (startup.maxLoadSeconds) of loading, plus the download "
            "(fetch.maxSeconds=3600 s) on a claim that does not hold the weights yet") in notes


def test_notes_name_the_autoscalers_prerequisites(tools):
    keda = tools.helm_run("install", "r", str(CHART), "--dry-run=client", *KEDA).stdout
    hpa = tools.helm_run("install", "r", str(CHART), "--dry-run=client", *HPA).stdout
    assert "KEDA must be installed" in keda and "metrics.serviceMonitor.enabled=false: set it" in keda
    assert "A metrics adapter (e.g. prometheus-adapter) must serve the External metrics" in " ".join(hpa.split())


@pytest.mark.parametrize("mode", [(), MULTI_NODE])
def test_the_inference_pool_selects_the_pods_the_service_selects_on_port_8000(render, mode):
    objects = render("r", *GATEWAY, *mode)
    pool = objects["InferencePool"]
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["spec"]["selector"] == {"matchLabels": objects["Service"]["spec"]["selector"]}
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]
    assert pool["spec"]["endpointPickerRef"] == {"kind": "Service", "name": "vllm-epp", "portNumber": 9002,
                                                 "failureMode": "FailClose"}


def test_the_http_route_sends_the_path_to_the_pool_from_each_gateway(render):
    route = render("r", *GATEWAY, "--set", "gateway.parentRefs.public.sectionName=https")["HTTPRoute"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "inference-gateway", "namespace": "gateway"},
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "sectionName": "https"}]
    assert route["spec"]["rules"] == [{
        "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
        "backendRefs": [{"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "r-vllm"}]}]


def test_a_gateway_without_its_picker_or_a_parent_is_refused_with_both_fixes(render_error):
    assert problems(render_error("--set", "gateway.enabled=true")) == [
        ("gateway.endpointPicker.name is empty: name the Service of the endpoint picker (EPP) deployed from the "
        "Gateway API inference extension, e.g. --set gateway.endpointPicker.name=vllm-epp"),
        ("gateway.parentRefs is empty: name the Gateway the HTTPRoute attaches to, e.g. "
        "--set gateway.parentRefs.inference-gateway.namespace=gateway")]


def test_notes_say_the_endpoint_picker_is_not_installed_by_the_chart(tools):
    notes = " ".join(tools.helm_run("install", "r", str(CHART), "--dry-run=client", *GATEWAY).stdout.split())
    assert ("the endpoint picker Service vllm-epp:9002 (deployed from the inference extension project; this chart "
            "does not install it)") in notes


RESTRICTED = ("--set", "networkPolicy.namespaces.clients=true")
PICKER_LABELS = ("--set", "gateway.endpointPicker.podLabels.app=vllm-epp")


def ingress_sources(policy: dict) -> list[dict]:
    return [source for rule in policy["spec"]["ingress"] for source in rule.get("from", [])]


def test_a_restricted_policy_admits_each_gateways_namespace_and_the_picker_pods(render):
    objects = render("r", *GATEWAY, "--set", "gateway.parentRefs.local.sectionName=http", *RESTRICTED, *PICKER_LABELS,
                     "--namespace", "llm")
    sources = ingress_sources(objects["NetworkPolicy"])
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateway"}}} in sources
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "llm"}}} in sources
    assert {"podSelector": {"matchLabels": {"app": "vllm-epp"}}} in sources


def test_a_restricted_policy_with_a_gateway_but_no_picker_labels_is_refused_with_the_fix(render_error):
    assert ("gateway.enabled=true with networkPolicy.namespaces restricting the sources would shut out the endpoint "
            "picker, which reads each server's /metrics: set gateway.endpointPicker.podLabels to its pods' labels "
            "(e.g. --set gateway.endpointPicker.podLabels.app=vllm-epp)") in problems(
        render_error(*GATEWAY, *RESTRICTED))


def test_an_open_policy_needs_no_picker_labels_and_notes_say_what_a_restricted_one_admits(render, tools):
    assert "from" not in render("r", *GATEWAY)["NetworkPolicy"]["spec"]["ingress"][0]
    notes = " ".join(tools.helm_run("install", "r", str(CHART), "--dry-run=client", *GATEWAY, *RESTRICTED,
                                    *PICKER_LABELS).stdout.split())
    assert ("The NetworkPolicy admits the Gateways' namespaces (gateway) and the endpoint picker's pods "
            "(app=vllm-epp) on port 8000") in notes
