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
