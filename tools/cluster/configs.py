"""The configuration files of the node's parts, as pure functions of the paths and addresses in versions.py.

Each setting that differs from the upstream default carries why: most come from this machine kind (PID 1
is not systemd, cgroups v1, no CAP_SYS_RESOURCE) or from the network rule (nothing leaves the machine).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml
from versions import (
    API_PORT,
    BRIDGE,
    CLUSTER_DOMAIN,
    CNI_BIN_DIR,
    COREDNS_IMAGE,
    DNS_SERVICE_IP,
    NODE_IP,
    NODE_NAME,
    NODE_POD_CIDR,
    PAUSE_IMAGE,
    POD_CIDR,
    POD_GATEWAY,
    RUN,
    STATE,
)

PKI = STATE / "pki"
CONTAINERD_SOCKET = RUN / "containerd" / "containerd.sock"
CNI_CONF_DIR = STATE / "cni"
KUBELET_DIR = STATE / "kubelet"
VOLUMES = STATE / "volumes"
# Pods get no upstream resolver: their resolv.conf names cluster DNS only (dnsPolicy Default gets none).
EMPTY_RESOLV_CONF = STATE / "resolv.conf"
STORAGE_CLASS = "tpserve-local"


def containerd_toml() -> str:
    """containerd 2.x (config version 3): its own root, state and socket, the locally built sandbox image."""
    return f"""\
version = 3
root = "{STATE / 'containerd'}"
state = "{RUN / 'containerd'}"

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    # No registry exists here: the sandbox image is built by tools/cluster and imported.
    sandbox = "{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  # No CAP_SYS_RESOURCE here: a negative oom_score_adj (the kubelet's for Guaranteed pods) would fail.
  restrict_oom_score_adj = true
  # Pod network namespaces under containerd's state folder, so `down` finds every one it must unmount.
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = "/usr/sbin/runc"
      SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{CNI_CONF_DIR}"

[plugins.'io.containerd.grpc.v1.cri']
  # kubectl exec, logs and port-forward go API server -> kubelet -> this server, on loopback.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


def cni_conflist() -> str:
    """One bridge for the node's pods with addresses from the node's pod range. No portmap: it writes iptables
    chains outside the tables this tool removes, and the chart uses no hostPort."""
    return json.dumps({
        "cniVersion": "1.0.0",
        "name": "tpserve",
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "hairpinMode": True,
             # No masquerade: pod traffic has nowhere to go but this machine (the guard table drops the rest).
             "ipMasq": False,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": NODE_POD_CIDR, "gateway": POD_GATEWAY}]],
                      "dataDir": str(STATE / "cni-ipam"), "routes": [{"dst": "0.0.0.0/0"}]}},
        ],
    }, indent=2) + "\n"


def kubeconfig(user: str, server: str = f"https://{NODE_IP}:{API_PORT}") -> str:
    """A kubeconfig for USER's client certificate (pki/USER.crt), trusting the cluster's CA."""
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "tpserve", "cluster": {"server": server,
                                                      "certificate-authority": str(PKI / "ca.crt")}}],
        "users": [{"name": user, "user": {"client-certificate": str(PKI / f"{user}.crt"),
                                          "client-key": str(PKI / f"{user}.key")}}],
        "contexts": [{"name": "tpserve", "context": {"cluster": "tpserve", "user": user}}],
        "current-context": "tpserve",
    }, sort_keys=False)


def admin_kubeconfig() -> str:
    """The user's kubeconfig: certificates embedded, so it is readable wherever it is copied."""
    config = yaml.safe_load(kubeconfig("admin"))
    config["clusters"][0]["cluster"] = {"server": f"https://{NODE_IP}:{API_PORT}",
                                        "certificate-authority-data": _b64(PKI / "ca.crt")}
    config["users"][0]["user"] = {"client-certificate-data": _b64(PKI / "admin.crt"),
                                  "client-key-data": _b64(PKI / "admin.key")}
    return yaml.safe_dump(config, sort_keys=False)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubelet_yaml() -> str:
    return yaml.safe_dump({
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(PKI / "ca.crt")}},
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
        # PID 1 is not systemd and the cgroup controllers are v1 here.
        "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
        # No CAP_SYS_RESOURCE: the kubelet cannot lower its own oom_score_adj.
        "oomScoreAdj": 0,
        "clusterDNS": [DNS_SERVICE_IP], "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(EMPTY_RESOLV_CONF),
        # Container logs inside the cluster's state folder (the default is /var/log/pods), so `down` removes them.
        "podLogsDir": str(STATE / "pod-logs"),
        "podCIDR": NODE_POD_CIDR, "maxPods": 40,
        # The images were imported, not pulled: they cannot come back once collected, so no image GC.
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        # A shared CI disk's free space is not this cluster's to police; memory still evicts.
        "evictionHard": {"memory.available": "200Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "serializeImagePulls": False,
        # Its iptables chains serve kube-proxy's iptables mode; this node runs the nftables mode.
        "makeIPTablesUtilChains": False,
        "shutdownGracePeriod": "0s",
    }, sort_keys=False)


def kube_proxy_yaml() -> str:
    return yaml.safe_dump({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(PKI / "kube-proxy.kubeconfig")},
        "hostnameOverride": NODE_NAME,
        "clusterCIDR": POD_CIDR,
        "bindAddress": NODE_IP,
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
        # NodePorts on the node's own address only, never on the machine's other interfaces.
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # Leave the machine's conntrack sysctls alone.
        "conntrack": {"maxPerCore": 0},
    }, sort_keys=False)


COREFILE = f"""\
.:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
    loop
    reload
    loadbalance
}}
"""


def addons(pv_count: int, pv_size: str) -> list[dict]:
    """Cluster DNS (CoreDNS with no forwarder) and the node's storage: a default StorageClass whose
    PersistentVolumes are folders on this node (local volumes, so fsGroup applies), made in advance."""
    labels = {"k8s-app": "kube-dns"}
    dns = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": "kube-system"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "coredns", "namespace": "kube-system"},
         "data": {"Corefile": COREFILE}},
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "coredns", "namespace": "kube-system", "labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                  "template": {"metadata": {"labels": labels}, "spec": {
                      "serviceAccountName": "coredns", "dnsPolicy": "Default",
                      "priorityClassName": "system-cluster-critical",
                      "containers": [{
                          "name": "coredns", "image": COREDNS_IMAGE, "imagePullPolicy": "Never",
                          "args": ["-conf", "/etc/coredns/Corefile"],
                          "ports": [{"containerPort": 53, "protocol": "UDP", "name": "dns"},
                                    {"containerPort": 53, "protocol": "TCP", "name": "dns-tcp"}],
                          "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                        "limits": {"memory": "170Mi"}},
                          "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                              "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
                          "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                          "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
                          "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns", "readOnly": True}]}],
                      "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
         "spec": {"selector": labels, "clusterIP": DNS_SERVICE_IP,
                  "ports": [{"name": "dns", "port": 53, "protocol": "UDP"},
                            {"name": "dns-tcp", "port": 53, "protocol": "TCP"}]}},
    ]
    storage = [{"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": STORAGE_CLASS,
                             "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Retain"}]
    for index in range(pv_count):
        storage.append({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{STORAGE_CLASS}-{index}"},
            "spec": {"capacity": {"storage": pv_size}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                     "local": {"path": str(VOLUMES / f"pv-{index}")},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}}}})
    return dns + storage
