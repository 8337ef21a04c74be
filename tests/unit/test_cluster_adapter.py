"""tools/cluster/adapter.py: prometheus-adapter beside the node, what it installs and when it refuses to start.

Serving the chart's HPA on the real cluster is tests/scaleout/test_hpa_adapter.py (`make scale-out-test`); that its
rules serve the metric names the chart's HPA asks for is tests/chart/test_hpa_adapter_rules.py.
"""

from __future__ import annotations

import base64
import subprocess
import sys

import pytest
import yaml
from cryptography import x509

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools" / "cluster"))
import adapter
import keda
import node
import pki
import versions

OURS = {"spec": {"service": {"namespace": adapter.NAMESPACE, "name": adapter.SERVICE}}}
KEDAS = {"spec": {"service": {"namespace": keda.NAMESPACE, "name": keda.METRICS_SERVICE}}}


def adapter_module(root):
    """A module folder with the release's deploy/manifests shape: cluster-scoped objects that name a namespace."""
    folder = root / "deploy" / "manifests"
    folder.mkdir(parents=True)
    subject = [{"kind": "ServiceAccount", "name": adapter.SERVICE_ACCOUNT, "namespace": adapter.NAMESPACE}]
    documents = {
        "service-account.yaml": {"apiVersion": "v1", "kind": "ServiceAccount",
                                 "metadata": {"name": adapter.SERVICE_ACCOUNT, "namespace": adapter.NAMESPACE}},
        "cluster-role.yaml": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                              "metadata": {"name": "prometheus-adapter"}, "rules": []},
        "cluster-role-binding.yaml": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                                      "metadata": {"name": "prometheus-adapter", "namespace": adapter.NAMESPACE},
                                      "subjects": subject},
        "cluster-role-binding-delegator.yaml": {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "resource-metrics:system:auth-delegator", "namespace": adapter.NAMESPACE},
            "subjects": subject},
        "role-binding-auth-reader.yaml": {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                                          "metadata": {"name": "resource-metrics-auth-reader",
                                                       "namespace": "kube-system"}, "subjects": subject},
    }
    for name, document in documents.items():
        (folder / name).write_text(yaml.safe_dump(document))
    return root


def test_the_adapter_is_an_addon_built_from_its_modules_cmd_adapter():
    module, version, binaries = versions.ADDONS["prometheus-adapter"]
    assert (module, version) == ("sigs.k8s.io/prometheus-adapter", versions.PROMETHEUS_ADAPTER)
    assert binaries == {adapter.NAME: "sigs.k8s.io/prometheus-adapter/cmd/adapter"}
    assert adapter.NAME in node.ADDON_PROCESSES, "down must stop it"


@pytest.mark.parametrize(("apiservice", "processes", "held"), [
    (None, ["keda-adapter"], r"\(process keda-adapter\)"),
    (KEDAS, [], rf"\(APIService v1beta1\.external\.metrics\.k8s\.io -> keda/{keda.METRICS_SERVICE}\)"),
    (KEDAS, ["keda-operator", "keda-adapter"], r"\(process keda-operator, process keda-adapter, APIService .*\)"),
])
def test_start_is_refused_while_keda_holds_external_metrics_naming_the_command_that_frees_them(
        apiservice, processes, held):
    with pytest.raises(node.ClusterError, match=rf"^external\.metrics\.k8s\.io is KEDA's {held}.*"
                                                r"run python tools/cluster keda stop first$"):
        adapter.refuse_another_owner(apiservice, processes)


@pytest.mark.parametrize("apiservice", [None, OURS])
def test_start_goes_ahead_when_the_group_is_free_or_already_the_adapters(apiservice):
    adapter.refuse_another_owner(apiservice, [])


@pytest.mark.parametrize(("owner", "deleted"), [(adapter.NAMESPACE, False), (keda.NAMESPACE, True)])
def test_keda_stop_takes_away_only_kedas_own_apiservice(monkeypatch, owner, deleted):
    calls = []

    def kubectl(*args, check=True):
        calls.append(args)
        return subprocess.CompletedProcess(args, 0, stdout=owner if args[0] == "get" else "deleted", stderr="")

    monkeypatch.setattr(node, "running", lambda name: 1 if name == "kube-apiserver" else None)
    removed = keda.down(kubectl)
    assert any(call[0] == "delete" for call in calls) is deleted
    assert removed == (["APIService v1beta1.external.metrics.k8s.io"] if deleted else [])


def test_the_apiservice_reaches_the_adapter_on_the_node_address_through_a_selectorless_service(tmp_path):
    objects = adapter.manifests(adapter_module(tmp_path), b"CA PEM")
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    (apiservice,) = by_kind["APIService"]
    assert apiservice["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    assert apiservice["spec"]["service"] == {"name": adapter.SERVICE, "namespace": adapter.NAMESPACE, "port": 443}
    assert base64.b64decode(apiservice["spec"]["caBundle"]) == b"CA PEM"
    (service,) = by_kind["Service"]
    assert "selector" not in service["spec"] and service["spec"]["ports"][0]["targetPort"] == adapter.PORT
    (endpoints,) = by_kind["EndpointSlice"]
    assert endpoints["metadata"]["labels"] == {"kubernetes.io/service-name": adapter.SERVICE}
    assert endpoints["endpoints"][0]["addresses"] == [versions.NODE_IP]
    assert endpoints["ports"][0]["port"] == adapter.PORT != keda.ADAPTER_PORT
    assert all("namespace" not in obj["metadata"] for obj in by_kind["ClusterRoleBinding"] + by_kind["ClusterRole"])
    assert by_kind["RoleBinding"][0]["metadata"]["namespace"] == "kube-system"


def test_the_adapter_serves_tls_on_its_own_port_and_lists_series_every_few_seconds(tmp_path):
    line = adapter.argv(tmp_path / "prometheus-adapter", tmp_path / "certs", tmp_path / "kubeconfig")
    assert f"--secure-port={adapter.PORT}" in line and f"--bind-address={versions.NODE_IP}" in line
    assert "--prometheus-url=http://198.18.0.1:9090" in line
    for flag in ("lister", "authentication", "authorization"):
        assert f"--{flag}-kubeconfig={tmp_path / 'kubeconfig'}" in line
    assert "--metrics-relist-interval=10s" in line


def test_the_serving_certificate_names_the_apiservices_service_and_the_node_address(tmp_path):
    pki.make_pki(tmp_path)
    pki.serving_certificate(tmp_path, tmp_path / "tls.crt", tmp_path / "tls.key", adapter.NAME,
                            (versions.NODE_IP,), names=("prometheus-adapter.monitoring.svc",))
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["prometheus-adapter.monitoring.svc"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == [versions.NODE_IP]


def test_the_adapters_manifests_come_from_the_module_its_go_sum_pins():
    go_sum = (REPO / "tools" / "cluster" / "go" / "prometheus-adapter" / "go.sum").read_text().splitlines()
    assert f"{adapter.MODULE} {versions.PROMETHEUS_ADAPTER} {versions.PROMETHEUS_ADAPTER_SUM}" in go_sum
