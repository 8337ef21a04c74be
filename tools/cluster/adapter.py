"""prometheus-adapter (sigs.k8s.io/prometheus-adapter) as a host process beside the node: the server of the HPA's
External metrics for the chart's `autoscaling.engine=hpa`, answering them with Prometheus queries.

What comes from the module at the pinned version (versions.PROMETHEUS_ADAPTER), not written here: the binary
(ADDONS, its cmd/adapter) and its ServiceAccount and RBAC (deploy/manifests: read of namespaces, pods, services and
nodes, system:auth-delegator, the extension-apiserver-authentication reader in kube-system). What differs from a
release, because the process is not a pod (as keda.py does for KEDA's metrics server):
- it authenticates as its ServiceAccount with a token from the TokenRequest API;
- the APIService for external.metrics.k8s.io points at a Service without a selector whose EndpointSlice names the
  node's address and PORT, where it listens;
- its serving certificate, for SERVICE.NAMESPACE.svc, comes from the cluster's CA, issued by `start` (a cluster
  started before this file existed has none, and needs no new `up`);
- its rules are CONFIGURATION's, the chart's External metrics from the series the ServiceMonitor's scrape labels
  with namespace and service (monitors.py), queried at prometheus.URL.

Only one server can own external.metrics.k8s.io: `start` refuses while KEDA's is there. `stop` removes the
APIService (when it is this adapter's), its Service and EndpointSlice, the process and its files; `down` stops the
process too (node.ADDON_PROCESSES). Its files live in STATE/prometheus-adapter, its log in LOGS/prometheus-adapter.log.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import build
import crds
import keda
import node
import pki
import prometheus
import start
import yaml
from configs import PKI
from node import ClusterError
from versions import ADDONS, LOGS, NODE_IP, PROMETHEUS_ADAPTER, PROMETHEUS_ADAPTER_SUM, STATE

NAME = "prometheus-adapter"
MODULE = ADDONS[NAME][0]
# The release's names (deploy/manifests): its ServiceAccount and Service, in its namespace.
NAMESPACE = "monitoring"
SERVICE_ACCOUNT = SERVICE = "prometheus-adapter"
ENDPOINT_SLICE = f"{SERVICE}-node"
APISERVICE = start.EXTERNAL_METRICS
# Beside the API server (6443) and KEDA's metrics API server (6445), on the node's address.
PORT = 6446
HOME = STATE / NAME
LOG = LOGS / f"{NAME}.log"
# The adapter serves only the series it has listed: the release's 10 minutes would hide a server started after it
# for that long, so it lists every few seconds and keeps what it saw for two minutes.
RELIST_INTERVAL = "10s"
MAX_AGE = "2m"
STARTUP_TIMEOUT_S = 180
# The ServiceAccount and RBAC of the module's deploy/manifests; the rest there is its Deployment and the
# resource-metrics (metrics.k8s.io) APIService, which this adapter does not serve.
RBAC_MANIFESTS = ("service-account.yaml", "cluster-role.yaml", "cluster-role-binding.yaml",
                  "cluster-role-binding-delegator.yaml", "role-binding-auth-reader.yaml")
# External metric -> the vLLM series it is served from: the chart's defaults, autoscaling.hpa.* and
# autoscaling.metrics.* (tests/chart/test_hpa_adapter_rules.py holds them to the chart's HPA).
EXTERNAL_METRICS = {"vllm_num_requests_waiting": "vllm:num_requests_waiting",
                    "vllm_kv_cache_usage_perc": "vllm:kv_cache_usage_perc"}
# The label the chart's HPA selects its servers by (matchLabels service=<fullname>), set by the ServiceMonitor's scrape.
SERVICE_LABEL = "service"


def configuration() -> dict:
    """The adapter's --config: one external rule per EXTERNAL_METRICS entry, summing the series over the servers of
    the Service the HPA selects, in the HPA's namespace (the adapter adds namespace="NS" itself)."""
    return {"externalRules": [
        {"seriesQuery": f'{series}{{namespace!="",{SERVICE_LABEL}!=""}}',
         "resources": {"overrides": {"namespace": {"resource": "namespace"}}},
         "name": {"matches": f"^{re.escape(series)}$", "as": external},
         "metricsQuery": f"sum(<<.Series>>{{<<.LabelMatchers>>}}) by ({SERVICE_LABEL})"}
        for external, series in EXTERNAL_METRICS.items()]}


def module_dir() -> Path:
    """The module at the pinned version, unpacked in the project's own module cache (whatever HOME is: the tests run
    with a fresh one) and checked against its go.sum hash, for its deploy/ manifests."""
    return crds.pinned_module_dir(MODULE, PROMETHEUS_ADAPTER, PROMETHEUS_ADAPTER_SUM, offline=False)


def manifests(module: Path, ca_bundle: bytes) -> list[dict]:
    """The namespace, the module's ServiceAccount and RBAC, and the APIService with its Service and EndpointSlice
    pointing at the node, trusting CA_BUNDLE."""
    objects: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}]
    for name in RBAC_MANIFESTS:
        objects += [doc for doc in yaml.safe_load_all((module / "deploy" / "manifests" / name).read_text()) if doc]
    for obj in objects:
        if obj["kind"].startswith("Cluster"):
            obj["metadata"].pop("namespace", None)  # the release's files set one on cluster-scoped objects
    objects += [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": PORT, "protocol": "TCP"}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"name": ENDPOINT_SLICE, "namespace": NAMESPACE,
                      "labels": {"kubernetes.io/service-name": SERVICE}},
         "addressType": "IPv4", "endpoints": [{"addresses": [NODE_IP], "conditions": {"ready": True}}],
         "ports": [{"name": "https", "port": PORT, "protocol": "TCP"}]},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
         "spec": {"service": {"name": SERVICE, "namespace": NAMESPACE, "port": 443},
                  "group": "external.metrics.k8s.io", "version": "v1beta1",
                  "caBundle": base64.b64encode(ca_bundle).decode(),
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]
    return objects


def _apiservice() -> dict | None:
    done = start.kubectl("get", "apiservice", APISERVICE, "-o", "json", check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _owner(apiservice: dict) -> str:
    service = apiservice["spec"].get("service") or {}
    return f"{service.get('namespace')}/{service.get('name')}"


def refuse_another_owner(apiservice: dict | None, keda_processes: list[str]) -> None:
    """Refuse to start while KEDA's processes run or the APIService names another server: only one can own
    external.metrics.k8s.io, and the second would take the group from the first."""
    held = [f"process {name}" for name in keda_processes]
    if apiservice and _owner(apiservice) != f"{NAMESPACE}/{SERVICE}":
        held.append(f"APIService {APISERVICE} -> {_owner(apiservice)}")
    if held:
        raise ClusterError(f"external.metrics.k8s.io is KEDA's ({', '.join(held)}) and only one server can own it: "
                           "run python tools/cluster keda stop first")


def _write_credentials(token: str) -> tuple[Path, Path]:
    """The serving certificate (issued when missing) and the ServiceAccount's kubeconfig."""
    certs = HOME / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    if not (certs / "tls.crt").is_file():
        pki.serving_certificate(PKI, certs / "tls.crt", certs / "tls.key", NAME, (NODE_IP,),
                                names=(f"{SERVICE}.{NAMESPACE}.svc",))
    kubeconfig = node.token_kubeconfig(HOME / "kubeconfig", SERVICE_ACCOUNT, token, PKI / "ca.crt")
    return certs, kubeconfig


def argv(binary: Path, certs: Path, kubeconfig: Path) -> list[str]:
    return [str(binary), f"--secure-port={PORT}", f"--bind-address={NODE_IP}", f"--cert-dir={certs}",
            f"--tls-cert-file={certs / 'tls.crt'}", f"--tls-private-key-file={certs / 'tls.key'}",
            f"--client-ca-file={PKI / 'ca.crt'}", f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}", f"--authorization-kubeconfig={kubeconfig}",
            f"--prometheus-url={prometheus.URL}", f"--config={HOME / 'config.yaml'}",
            f"--metrics-relist-interval={RELIST_INTERVAL}", f"--metrics-max-age={MAX_AGE}"]


def start_adapter() -> list[str]:
    """Build (or reuse), apply the objects, start the adapter and wait until the API server serves
    external.metrics.k8s.io through it; a no-op when it runs. What it made, one line each."""
    if node.running(NAME):
        return []
    refuse_another_owner(_apiservice(), [name for name in keda.PROCESSES if node.running(name)])
    folder, seconds = build.build(NAME)
    objects = manifests(module_dir(), (PKI / "ca.crt").read_bytes())
    start.apply(objects)
    token = start.kubectl("-n", NAMESPACE, "create", "token", SERVICE_ACCOUNT, "--duration=48h").stdout.strip()
    certs, kubeconfig = _write_credentials(token)
    (HOME / "config.yaml").write_text(yaml.safe_dump(configuration(), sort_keys=False))
    node.start(NAME, argv(folder / NAME, certs, kubeconfig))
    alive = node.alive(NAME, "prometheus-adapter")

    node.wait_until("prometheus-adapter to be available through the API server",
                    lambda: alive() or start.external_metrics_available(), STARTUP_TIMEOUT_S, LOG)
    return [f"build {'reused' if seconds is None else f'in {seconds:.0f} s'} ({folder})",
            *(f"{obj['kind']} {obj['metadata']['name']}" for obj in objects),
            f"process {NAME} ({node.running(NAME)}), querying {prometheus.URL}"]


def stop_adapter() -> list[str]:
    """Take the APIService away first (an aggregated API that no longer answers makes every client's discovery warn
    or fail), then the Service, the process and its files; KEDA's APIService is left alone."""
    undone = []
    if node.running("kube-apiserver"):
        undone += start.remove_external_metrics(NAMESPACE)
        for kind, name in (("endpointslice", ENDPOINT_SLICE), ("service", SERVICE)):
            if start.kubectl("-n", NAMESPACE, "delete", kind, name, "--ignore-not-found", check=False).stdout.strip():
                undone.append(f"{kind} {NAMESPACE}/{name}")
    if stopped := node.stop_named(NAME):
        undone.append(stopped)
    if HOME.exists():
        shutil.rmtree(HOME)
        undone.append(f"folder {HOME}")
    return undone
