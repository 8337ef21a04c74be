"""KEDA on the test cluster: its operator and its metrics API server, run as host processes beside the node and
wired to the API server as KEDA's own release wires its pods.

What comes from KEDA's module at the pinned version (versions.KEDA), not written here: the binaries (ADDONS), the
CRDs (config/crd/bases), the ServiceAccount and the RBAC of both processes (config/service_account, config/rbac,
config/metrics-server). What differs from a release, because the processes are not pods:
- they authenticate as KEDA's ServiceAccount with a token from the TokenRequest API, so KEDA's own ClusterRoles
  are what they may do;
- the APIService for external.metrics.k8s.io points at a Service without a selector whose EndpointSlice names
  the node's address, where the metrics API server listens (the API server routes to endpoints, start.py);
- their TLS (the metrics API server's serving certificate, and the mutual TLS between it and the operator's
  gRPC metrics service) uses one certificate from the cluster's CA (pki.ADDON_CERTIFICATES) instead of KEDA's
  self-rotated ones; the admission webhooks are not run (they only validate).
"""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import crds
import node
import start
import yaml
from configs import PKI
from node import wait_until
from versions import NODE_IP, STATE

NAMESPACE = "keda"
SERVICE_ACCOUNT = "keda-operator"
OPERATOR, ADAPTER = "keda-operator", "keda-adapter"
PROCESSES = (OPERATOR, ADAPTER)
# The metrics API server beside the API server on the node's address; the operator's ports on loopback only.
ADAPTER_PORT = 6445
GRPC_ADDRESS = "127.0.0.1:9666"
OPERATOR_HEALTH = "127.0.0.1:9081"
OPERATOR_METRICS = "127.0.0.1:9080"
ADAPTER_METRICS_PORT = 9022
METRICS_SERVICE = "keda-metrics-apiserver"
STARTUP_TIMEOUT_S = 180
FOLDER = STATE / "keda"


def module_dir() -> Path:
    """KEDA's module at the pinned version, from the CRD module cache (its ScaledObject CRD pins the hash)."""
    crd = crds.crd_file("keda.sh/v1alpha1/ScaledObject", offline=False)
    return crd.parents[3]


def _documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifests(module: Path) -> list[dict]:
    """The namespace, KEDA's CRDs, its ServiceAccount and RBAC, and the APIService with its Service and
    EndpointSlice pointing at the node."""
    objects: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    for crd in sorted((module / "config" / "crd" / "bases").glob("*.yaml")):
        objects += _documents(crd)
    for folder, name in (("service_account", "service_account.yaml"), ("rbac", "role.yaml"),
                         ("rbac", "role_binding.yaml"), ("metrics-server", "role.yaml"),
                         ("metrics-server", "role_binding.yaml")):
        objects += _documents(module / "config" / folder / name)
    for obj in objects:
        # kustomize puts KEDA's namespaced objects into its namespace; the few with one of their own keep it.
        if obj["kind"] in ("ServiceAccount", "Role", "RoleBinding") and "namespace" not in obj["metadata"]:
            obj["metadata"]["namespace"] = NAMESPACE
        for subject in obj.get("subjects", []):
            if subject.get("kind") == "ServiceAccount":
                subject.setdefault("namespace", NAMESPACE)
    ca_bundle = base64.b64encode((PKI / "ca.crt").read_bytes()).decode()
    objects += [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": METRICS_SERVICE, "namespace": NAMESPACE},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": ADAPTER_PORT, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": f"{METRICS_SERVICE}-node", "namespace": NAMESPACE,
                      "labels": {"kubernetes.io/service-name": METRICS_SERVICE}},
         "addressType": "IPv4", "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
         "ports": [{"name": "https", "port": ADAPTER_PORT, "protocol": "TCP"}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
         "spec": {"service": {"name": METRICS_SERVICE, "namespace": NAMESPACE, "port": 443},
                  "group": "external.metrics.k8s.io", "version": "v1beta1", "caBundle": ca_bundle,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]
    return objects


def _write_credentials(token: str) -> tuple[Path, Path]:
    """The certificate folder both processes read (ca.crt, tls.crt, tls.key) and the ServiceAccount's kubeconfig."""
    certs = FOLDER / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PKI / "ca.crt", certs / "ca.crt")
    shutil.copyfile(PKI / "keda.crt", certs / "tls.crt")
    shutil.copyfile(PKI / "keda.key", certs / "tls.key")
    kubeconfig = node.token_kubeconfig(FOLDER / "kubeconfig", SERVICE_ACCOUNT, token, PKI / "ca.crt")
    return certs, kubeconfig


def up(bin_dir: Path, kubectl, apply) -> dict[str, float]:
    """Install KEDA's objects, start both processes, and wait until the API server serves
    external.metrics.k8s.io through the metrics API server. KUBECTL(*args) runs the admin's kubectl; APPLY(objects)
    applies them server-side."""
    steps: dict[str, float] = {}
    mark = time.monotonic()
    apply(manifests(module_dir()))
    kubectl("wait", "--for=condition=Established", "--timeout=120s", "crd/scaledobjects.keda.sh")
    token = kubectl("-n", NAMESPACE, "create", "token", SERVICE_ACCOUNT, "--duration=48h").stdout.strip()
    certs, kubeconfig = _write_credentials(token)
    steps["KEDA objects and credentials"] = time.monotonic() - mark

    mark = time.monotonic()
    env = {"KUBECONFIG": str(kubeconfig), "WATCH_NAMESPACE": "", "POD_NAMESPACE": NAMESPACE,
           "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE, "OPERATOR_NAME": OPERATOR}
    node.start(OPERATOR, [str(bin_dir / "keda-operator"), "--leader-elect=false", "--enable-cert-rotation=false",
                     f"--cert-dir={certs}", f"--metrics-service-bind-address={GRPC_ADDRESS}",
                     f"--health-probe-bind-address={OPERATOR_HEALTH}", f"--metrics-bind-address={OPERATOR_METRICS}",
                     "--enable-webhook-patching=false", "--enable-apiservice-patching=false",
                     "--zap-log-level=info", "--zap-encoder=console"], env=env)
    node.start(ADAPTER, [str(bin_dir / "keda-adapter"), f"--secure-port={ADAPTER_PORT}", f"--bind-address={NODE_IP}",
                    f"--cert-dir={certs}", f"--tls-cert-file={certs / 'tls.crt'}",
                    f"--tls-private-key-file={certs / 'tls.key'}", f"--client-ca-file={certs / 'ca.crt'}",
                    f"--lister-kubeconfig={kubeconfig}", f"--authentication-kubeconfig={kubeconfig}",
                    f"--authorization-kubeconfig={kubeconfig}", f"--metrics-service-address={GRPC_ADDRESS}",
                    f"--port={ADAPTER_METRICS_PORT}", "--zap-log-level=info"], env=env)

    exited = [node.alive(name) for name in PROCESSES]

    def serving() -> bool:
        for check in exited:
            check()
        return start.external_metrics_available(kubectl)

    wait_until("KEDA's metrics API server to be available through the API server", serving, STARTUP_TIMEOUT_S,
               node.LOGS / f"{ADAPTER}.log")
    steps["keda-operator, keda-adapter (external metrics Available)"] = time.monotonic() - mark
    return steps


def down(kubectl) -> list[str]:
    """Stop both processes and take the APIService away first: an aggregated API that no longer answers makes
    every client's discovery (helm, kubectl) warn or fail; another server's (prometheus-adapter's) is left alone.
    KEDA's other objects stay until `down`."""
    removed = start.remove_external_metrics(NAMESPACE, kubectl) if node.running("kube-apiserver") else []
    removed += filter(None, map(node.stop_named, PROCESSES))
    return removed
