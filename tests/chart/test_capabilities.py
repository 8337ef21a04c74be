"""Custom resources render only where the cluster serves their API: a missing CRD is refused in the chart's own
problem list, naming the controller to install, instead of failing at apply outside it."""

from __future__ import annotations

import pytest

from tests.chart.conftest import CHART, CRD_API_VERSIONS

FEATURES = {
    "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet": (
        "multiNode.enabled=true", ("--set", "multiNode.enabled=true", "--set", "parallelism.tensor=8",
                                   "--set", "multiNode.nodes=2")),
    "keda.sh/v1alpha1/ScaledObject": ("autoscaling.enabled=true", ("--set", "autoscaling.enabled=true",
                                                                   "--set", "cache.accessMode=ReadWriteMany")),
    "inference.networking.k8s.io/v1/InferencePool": ("gateway.enabled=true", (
        "--set", "gateway.enabled=true", "--set", "gateway.endpointPicker.name=vllm-epp",
        "--set", "gateway.parentRefs.inference-gateway.namespace=gateway")),
    "gateway.networking.k8s.io/v1/HTTPRoute": ("gateway.enabled=true", (
        "--set", "gateway.enabled=true", "--set", "gateway.endpointPicker.name=vllm-epp",
        "--set", "gateway.parentRefs.inference-gateway.namespace=gateway")),
    "monitoring.coreos.com/v1/ServiceMonitor": ("metrics.serviceMonitor.enabled=true",
                                                ("--set", "metrics.serviceMonitor.enabled=true")),
    "monitoring.coreos.com/v1/PrometheusRule": ("metrics.prometheusRule.enabled=true",
                                                ("--set", "metrics.prometheusRule.enabled=true")),
}


def template(tools, *args: str):
    """helm template with exactly ARGS: no API versions besides helm's built-in ones unless ARGS give them."""
    return tools.helm_run("template", "llama70b", str(CHART), "--set", "requireAPIs=true", *args, bare=True)


def test_every_custom_resource_the_chart_renders_is_checked():
    assert set(FEATURES) == set(CRD_API_VERSIONS)


@pytest.mark.parametrize("api", sorted(FEATURES))
def test_a_custom_resource_whose_api_the_cluster_lacks_is_refused_with_the_controller_to_install(tools, api):
    value, args = FEATURES[api]
    others = [f"--api-versions={other}" for other in CRD_API_VERSIONS if other != api]
    done = template(tools, *args, *others)
    assert done.returncode == 1
    group_version, kind = api.rsplit("/", 1)
    assert f"{value} renders a {kind} ({group_version}), which this cluster does not serve: install" in done.stderr
    assert f"--api-versions {api}" in done.stderr
    assert "nothing was applied" in done.stderr


@pytest.mark.parametrize("api", sorted(FEATURES))
def test_a_custom_resource_renders_when_the_cluster_serves_its_api(tools, api):
    _, args = FEATURES[api]
    done = template(tools, *args, *(f"--api-versions={each}" for each in CRD_API_VERSIONS))
    assert done.returncode == 0, done.stderr
    assert f"kind: {api.rsplit('/', 1)[1]}\n" in done.stdout


def test_the_defaults_need_no_custom_resource_api(tools):
    done = template(tools)
    assert done.returncode == 0, done.stderr


def test_a_client_side_dry_run_which_cannot_be_given_api_versions_passes_with_the_check_off(tools):
    _, args = FEATURES["leaderworkerset.x-k8s.io/v1/LeaderWorkerSet"]
    install = ("install", "llama70b", str(CHART), "--dry-run=client", *args)
    refused = tools.helm_run(*install, bare=True)
    assert refused.returncode == 1 and "--set requireAPIs=false" in refused.stderr
    done = tools.helm_run(*install, "--set", "requireAPIs=false", bare=True)
    assert done.returncode == 0, done.stderr
    assert "kind: LeaderWorkerSet" in done.stdout
