"""What the real API server says of the chart's objects (docs/chart.md, "Third review"): names that are valid for
every release name helm accepts, and custom resources refused by the chart until the cluster serves their API.

`helm install --dry-run=server` sends every object to the API server, which validates and admits it (a CRD's own
schema included) without storing it: a refusal here is the API server's or the chart's, never a test's guess.
Runs before test_install.py (file order) and leaves nothing behind but the CRDs it applies.
"""

from __future__ import annotations

import shlex
import sys

import pytest

from tests.cluster.conftest import cpu_values

GATEWAY = ("--set gateway.enabled=true --set gateway.endpointPicker.name=vllm-epp "
           "--set gateway.parentRefs.inference-gateway.namespace=gateway")
GATEWAY_APIS = ("inference.networking.k8s.io/v1/InferencePool", "gateway.networking.k8s.io/v1/HTTPRoute")
SERVICE_MONITOR = "monitoring.coreos.com/v1/ServiceMonitor"
KEDA = "keda.sh/v1alpha1/ScaledObject"


def dry_run(shell, hub, release: str, extra: str = ""):
    return shell.run(f"helm install {shlex.quote(release)} charts/vllm {cpu_values(hub)} {extra} --dry-run=server",
                     check=False)


@pytest.mark.parametrize("release", ["7b", "l" * 53, "llama.2-70b"])
def test_the_api_server_admits_every_object_for_short_long_and_digit_leading_release_names(shell, hub, release):
    done = dry_run(shell, hub, release)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "kind: Service\n" in done.stdout


def test_custom_resources_are_refused_by_the_chart_until_their_crds_are_installed_then_admitted(shell, hub):
    refused = dry_run(shell, hub, "gw", f"{GATEWAY} --set metrics.serviceMonitor.enabled=true")
    assert refused.returncode == 1
    for api in (*GATEWAY_APIS, SERVICE_MONITOR):
        group_version, kind = api.rsplit("/", 1)
        assert f"renders a {kind} ({group_version}), which this cluster does not serve" in refused.stderr, api
    assert "nothing was applied" in refused.stderr
    assert shell.run("helm status gw", check=False).returncode != 0

    files = shell.run(f"{shlex.quote(sys.executable)} tools/cluster crd {' '.join((*GATEWAY_APIS, SERVICE_MONITOR, KEDA))}").stdout.split()
    shell.run(" && ".join(f"kubectl apply --server-side -f {path}" for path in files))
    shell.run("kubectl wait --for condition=Established --timeout 120s "
              "crd/inferencepools.inference.networking.k8s.io crd/httproutes.gateway.networking.k8s.io "
              "crd/servicemonitors.monitoring.coreos.com crd/scaledobjects.keda.sh")
    admitted = dry_run(shell, hub, "gw", f"{GATEWAY} --set metrics.serviceMonitor.enabled=true "
                                         "--set autoscaling.enabled=true --set cache.accessMode=ReadWriteMany")
    assert admitted.returncode == 0, admitted.stderr[-3000:]
    for kind in ("InferencePool", "HTTPRoute", "ServiceMonitor", "ScaledObject"):
        assert f"kind: {kind}\n" in admitted.stdout

    multinode = dry_run(shell, hub, "mn", "--set multiNode.enabled=true --set multiNode.nodes=2 "
                                          "--set parallelism.pipeline=2")
    assert multinode.returncode == 1
    assert "renders a LeaderWorkerSet (leaderworkerset.x-k8s.io/v1), which this cluster does not serve" in (
        multinode.stderr)
