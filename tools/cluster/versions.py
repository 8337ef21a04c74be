"""Every version and address of the test cluster, in one place.

The Go modules under ``go/`` pin the same versions in their go.mod and go.sum (the checksums); a test
holds each go.mod to the table here, and the build cache is keyed by these files.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GO_MODULES = HERE / "go"

KUBERNETES = "v1.37.2"
# The staging modules k8s.io/kubernetes replaces with its own tree are published as v0.MINOR.PATCH.
KUBERNETES_STAGING = "v0" + KUBERNETES.removeprefix("v1")
ETCD = "v3.6.17"
CONTAINERD = "v2.4.2"
COREDNS = "v1.15.0"
PROMETHEUS = "v0.316.0"
KEDA = "v2.20.2"
LWS = "v0.9.0"
# v0.13.0 is refused by the Go proxy here (2026-12-06).
PROMETHEUS_ADAPTER = "v0.12.0"
# Its go.sum hash: adapter.py reads the module's deploy/ manifests from a copy checked against it.
PROMETHEUS_ADAPTER_SUM = "h1:e29A6BIwA/NKxPZeuamBMHJsvz0sSUXTb92Obg7RMV4="


# Go module folder under go/ -> (the upstream module it requires, its version, {binary: package built}).
COMPONENTS: dict[str, tuple[str, str, dict[str, str]]] = {
    "kubernetes": ("k8s.io/kubernetes", KUBERNETES, {
        name: f"k8s.io/kubernetes/cmd/{name}"
        for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet")}),
    "etcd": ("go.etcd.io/etcd/server/v3", ETCD, {"etcd": "go.etcd.io/etcd/server/v3"}),
    "containerd": ("github.com/containerd/containerd/v2", CONTAINERD, {
        name: f"github.com/containerd/containerd/v2/cmd/{name}"
        for name in ("containerd", "containerd-shim-runc-v2", "ctr")}),
    # Cluster DNS: CoreDNS's own main with only the plugins the Corefile names (go/coredns/main.go).
    "coredns": ("github.com/coredns/coredns", COREDNS, {"coredns": "."}),
    # The pod sandbox's process, written here (go/pause/main.go).
    "pause": ("", "", {"pause": "."}),
}

# Parts only the scale-out test runs (make scale-out-test): built on demand (`build NAME`), never by `up`, so the
# cluster test does not wait for them. Same shape as COMPONENTS.
ADDONS: dict[str, tuple[str, str, dict[str, str]]] = {
    "prometheus": ("github.com/prometheus/prometheus", PROMETHEUS, {
        name: f"github.com/prometheus/prometheus/cmd/{name}" for name in ("prometheus", "promtool")}),
    # KEDA's operator (ScaledObject -> HPA, scale to and from zero) and its metrics API server, which serves the
    # HPA's External metrics through the API server's aggregation layer. go/keda copies KEDA's replace block:
    # without it the module graph takes newer k8s.io modules than KEDA builds with.
    "keda": ("github.com/kedacore/keda/v2", KEDA, {
        "keda-operator": "github.com/kedacore/keda/v2/cmd/operator",
        "keda-adapter": "github.com/kedacore/keda/v2/cmd/adapter"}),
    # The LeaderWorkerSet controller (multiNode), on the host, its webhooks served on the node address (lws.py).
    "lws": ("sigs.k8s.io/lws", LWS, {"lws-controller": "sigs.k8s.io/lws/cmd"}),
    # The other server of External metrics (autoscaling.engine=hpa): Prometheus queries behind the chart's plain HPA,
    # on the host beside the node (adapter.py). KEDA's metrics server owns the same API group: one runs at a time.
    "prometheus-adapter": ("sigs.k8s.io/prometheus-adapter", PROMETHEUS_ADAPTER, {
        "prometheus-adapter": "sigs.k8s.io/prometheus-adapter/cmd/adapter"}),
}
PARTS = COMPONENTS | ADDONS

# The CRDs of the custom resources the chart renders, each from its project's module at a pinned version (the
# YAML its release installs), with the module's go.sum hash. The proxy refuses sigs.k8s.io/lws's version list
# (403, 2026-12-06) but serves its exact versions, so the LeaderWorkerSet's pin is an exact one, like the others.
CRD_MODULES: dict[str, tuple[str, str, str, str]] = {
    "leaderworkerset.x-k8s.io/v1/LeaderWorkerSet": (
        "sigs.k8s.io/lws", LWS, "h1:DcJCgxjjoGOx//QHZkeKpyiblxYq70aCRZNYSfykWyI=",
        "config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml"),
    "gateway.networking.k8s.io/v1/HTTPRoute": (
        "sigs.k8s.io/gateway-api", "v1.6.3", "h1:lKpJa5bGlraC/QeACvCpsHLdmO6y0iKfzVl6gzaFEYc=",
        "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"),
    "inference.networking.k8s.io/v1/InferencePool": (
        "sigs.k8s.io/gateway-api-inference-extension", "v1.6.2", "h1:GfTwDiMta9z6vtsZZuYE2xlryUGw+PiCdTJzYePY23M=",
        "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"),
    "monitoring.coreos.com/v1/ServiceMonitor": (
        "github.com/prometheus-operator/prometheus-operator", "v0.85.0",
        "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=",
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"),
    "monitoring.coreos.com/v1/PrometheusRule": (
        "github.com/prometheus-operator/prometheus-operator", "v0.85.0",
        "h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=",
        "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"),
    # v2.21 needs Go 1.27.4; the CRD's fields the chart uses are the same in v2.20.
    "keda.sh/v1alpha1/ScaledObject": (
        "github.com/kedacore/keda/v2", KEDA, "h1:SR60v8uIcelbveS8n/1jcl8tLdBBIbHMxmdOHw8tKqA=",
        "config/crd/bases/keda.sh_scaledobjects.yaml"),
}

# Debian's packages the node runs besides the built parts (.ci/run installs them).
DEBIAN_PACKAGES = ("runc", "containernetworking-plugins", "nftables", "iproute2", "conntrack", "openssl")
CNI_BIN_DIR = Path("/usr/lib/cni")

# Addresses: everything inside 198.18.0.0/15 (RFC 2544's benchmarking range), on interfaces this tool
# makes. Nothing routes there from outside, and a guard table drops pod traffic to anywhere else.
CLUSTER_RANGE = "198.18.0.0/15"
NODE_NAME = "tpserve-node"
NODE_INTERFACE = "tpserve0"
NODE_IP = "198.18.0.1"
BRIDGE = "tpservebr0"
POD_CIDR = "198.19.0.0/16"
NODE_POD_CIDR = "198.19.0.0/24"
POD_GATEWAY = "198.19.0.1"
SERVICE_CIDR = "198.18.16.0/20"
API_SERVICE_IP = "198.18.16.1"
DNS_SERVICE_IP = "198.18.16.10"
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
ETCD_CLIENT = "http://127.0.0.1:23790"
ETCD_PEER = "http://127.0.0.1:23800"

# Where the running cluster lives; `down` removes all three. Builds and logs stay under .cache/cluster.
STATE = Path("/var/lib/tpserve-cluster")
RUN = Path("/run/tpserve-cluster")
CACHE = REPO / ".cache" / "cluster"
KUBECONFIG = CACHE / "kubeconfig"
LOGS = CACHE / "logs"

# The images the node needs that no registry gives: the sandbox's and cluster DNS's, built here.
PAUSE_IMAGE = "localhost/tpserve-pause:1.0"
COREDNS_IMAGE = f"localhost/tpserve-coredns:{COREDNS.removeprefix('v')}"
