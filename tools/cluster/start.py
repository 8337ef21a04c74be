"""Bring the node up part by part, each waited for on its own health signal, and load images into it."""

from __future__ import annotations

import functools
import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import build
import configs
import node
import pki
from configs import CONTAINERD_SOCKET, KUBELET_DIR, PKI
from node import ClusterError, start, wait_until
from versions import (
    API_PORT,
    CNI_BIN_DIR,
    ETCD_CLIENT,
    ETCD_PEER,
    KUBECONFIG,
    LOGS,
    NODE_IP,
    NODE_NAME,
    POD_CIDR,
    REPO,
    RUN,
    SERVICE_CIDR,
    STATE,
)

# Generous: the CI box is busy, and a condition met early returns early.
PART_TIMEOUT_S = 180
K8S_TOOLS = REPO / "tools" / "k8s_tools.py"


def preflight() -> None:
    """Refuse at once, naming what is missing, before anything on the machine changes."""
    problems = []
    if os.geteuid() != 0:
        problems.append("run as root (the node makes interfaces, mounts and cgroups)")
    for tool in ("runc", "nft", "ip", "podman", "go", "umount"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            problems.append(f"{tool} is not installed")
    for plugin in ("bridge", "host-local", "loopback"):
        if not (CNI_BIN_DIR / plugin).is_file():
            problems.append(f"CNI plugin {CNI_BIN_DIR / plugin} is missing (Debian: containernetworking-plugins)")
    if not Path("/proc/sys/net/bridge/bridge-nf-call-iptables").exists():
        problems.append("bridge netfilter is unavailable (kernel module br_netfilter)")
    if node.running("kube-apiserver") or (RUN / "made.json").exists():
        problems.append("a cluster is already up (or was not taken down): run `python tools/cluster down` first")
    if problems:
        raise ClusterError("cannot start the cluster: " + "; ".join(problems))


@functools.cache
def kubectl_path() -> Path:
    """The pinned kubectl (tools/k8s_tools.py verifies its sha256), found once per run."""
    done = subprocess.run([sys.executable, str(K8S_TOOLS)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ClusterError(f"tools/k8s_tools.py failed: {done.stderr.strip()}")
    return next(Path(line) for line in done.stdout.split() if line.endswith("/kubectl"))


def kubectl(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([str(kubectl_path()), "--kubeconfig", str(KUBECONFIG), *args], input=stdin,
                          capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise ClusterError(f"kubectl {' '.join(args)} failed: {done.stderr.strip()}")
    return done


def _answers_200(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _as_admin() -> ssl.SSLContext:
    """The API server's TLS: the cluster's CA, the admin's client certificate."""
    context = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    context.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    return context


def _unverified() -> ssl.SSLContext:
    """The controllers' own healthz: self-signed serving certificates, /healthz open to all."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def write_files() -> None:
    for folder in (STATE, RUN, PKI, configs.CNI_CONF_DIR, KUBELET_DIR, configs.VOLUMES, LOGS):
        folder.mkdir(parents=True, exist_ok=True)
    pki.make_pki(PKI)
    for user in ("kube-controller-manager", "kube-scheduler", "kube-proxy", "kubelet"):
        (PKI / f"{user}.kubeconfig").write_text(configs.kubeconfig(user))
    KUBECONFIG.parent.mkdir(parents=True, exist_ok=True)
    KUBECONFIG.write_text(configs.admin_kubeconfig())
    KUBECONFIG.chmod(0o600)
    (STATE / "containerd.toml").write_text(configs.containerd_toml())
    (configs.CNI_CONF_DIR / "10-tpserve.conflist").write_text(configs.cni_conflist())
    (STATE / "kubelet.yaml").write_text(configs.kubelet_yaml())
    (STATE / "kube-proxy.yaml").write_text(configs.kube_proxy_yaml())
    configs.EMPTY_RESOLV_CONF.write_text("")


def _log(name: str) -> Path:
    return LOGS / f"{name}.log"


def _waited(name: str, condition) -> None:
    alive = node.alive(name)
    wait_until(f"{name} to serve", lambda: alive() or condition(), PART_TIMEOUT_S, _log(name))


def up(folders: dict[str, Path], pv_count: int, pv_size: str) -> dict[str, float]:
    """Start every part in order; the seconds each took to serve."""
    preflight()
    shutil.rmtree(LOGS, ignore_errors=True)
    steps: dict[str, float] = {}
    mark = time.monotonic()
    write_files()
    node.setup_network()
    steps["certificates, configs, network"] = time.monotonic() - mark
    k8s, etcd_bin, containerd_bin = folders["kubernetes"], folders["etcd"], folders["containerd"]
    kubeconfig = {name: str(PKI / f"{name}.kubeconfig") for name in ("kube-controller-manager", "kube-scheduler")}

    mark = time.monotonic()
    start("etcd", [str(etcd_bin / "etcd"), "--name", NODE_NAME, "--data-dir", str(STATE / "etcd"),
                   "--listen-client-urls", ETCD_CLIENT, "--advertise-client-urls", ETCD_CLIENT,
                   "--listen-peer-urls", ETCD_PEER, "--initial-advertise-peer-urls", ETCD_PEER,
                   "--initial-cluster", f"{NODE_NAME}={ETCD_PEER}", "--listen-metrics-urls", "http://127.0.0.1:23810",
                   "--quota-backend-bytes", str(2 * 2**30)])
    _waited("etcd", lambda: _answers_200(f"{ETCD_CLIENT}/health"))
    steps["etcd"] = time.monotonic() - mark

    mark = time.monotonic()
    start("kube-apiserver", [
        str(k8s / "kube-apiserver"), f"--etcd-servers={ETCD_CLIENT}",
        f"--bind-address={NODE_IP}", f"--advertise-address={NODE_IP}", f"--secure-port={API_PORT}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--client-ca-file={PKI / 'ca.crt'}",
        f"--tls-cert-file={PKI / 'apiserver.crt'}", f"--tls-private-key-file={PKI / 'apiserver.key'}",
        f"--kubelet-client-certificate={PKI / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={PKI / 'apiserver-kubelet-client.key'}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={PKI / 'sa.pub'}", f"--service-account-signing-key-file={PKI / 'sa.key'}",
        # The kubelet by its address: its node name would be looked up in the machine's resolver.
        "--kubelet-preferred-address-types=InternalIP",
        "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true", "--profiling=false", "--anonymous-auth=true",
        # The aggregation layer, for extension API servers such as KEDA's metrics API server: the API server
        # proxies to them as front-proxy-client and reaches them at their endpoints' addresses.
        f"--requestheader-client-ca-file={PKI / 'front-proxy-ca.crt'}",
        f"--requestheader-allowed-names={pki.FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={PKI / (pki.FRONT_PROXY_CLIENT + '.crt')}",
        f"--proxy-client-key-file={PKI / (pki.FRONT_PROXY_CLIENT + '.key')}",
        "--enable-aggregator-routing=true"])
    _waited("kube-apiserver", lambda: _answers_200(f"https://{NODE_IP}:{API_PORT}/readyz", _as_admin()))
    steps["kube-apiserver"] = time.monotonic() - mark

    mark = time.monotonic()
    start("kube-controller-manager", [
        str(k8s / "kube-controller-manager"), f"--kubeconfig={kubeconfig['kube-controller-manager']}",
        f"--authentication-kubeconfig={kubeconfig['kube-controller-manager']}",
        f"--authorization-kubeconfig={kubeconfig['kube-controller-manager']}",
        "--bind-address=127.0.0.1", "--leader-elect=false",
        f"--cluster-signing-cert-file={PKI / 'ca.crt'}", f"--cluster-signing-key-file={PKI / 'ca.key'}",
        f"--root-ca-file={PKI / 'ca.crt'}", f"--service-account-private-key-file={PKI / 'sa.key'}",
        "--use-service-account-credentials=true",
        "--allocate-node-cidrs=true", f"--cluster-cidr={POD_CIDR}", "--node-cidr-mask-size=24",
        f"--service-cluster-ip-range={SERVICE_CIDR}"])
    start("kube-scheduler", [
        str(k8s / "kube-scheduler"), f"--kubeconfig={kubeconfig['kube-scheduler']}",
        f"--authentication-kubeconfig={kubeconfig['kube-scheduler']}",
        f"--authorization-kubeconfig={kubeconfig['kube-scheduler']}",
        "--bind-address=127.0.0.1", "--leader-elect=false"])
    _waited("kube-controller-manager", lambda: _answers_200("https://127.0.0.1:10257/healthz", _unverified()))
    _waited("kube-scheduler", lambda: _answers_200("https://127.0.0.1:10259/healthz", _unverified()))
    steps["kube-controller-manager, kube-scheduler"] = time.monotonic() - mark

    mark = time.monotonic()
    path = f"{containerd_bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    start("containerd", [str(containerd_bin / "containerd"), "--config", str(STATE / "containerd.toml")],
          env={"PATH": path})
    _waited("containerd", lambda: CONTAINERD_SOCKET.is_socket() and _ctr(folders, "version").returncode == 0)
    steps["containerd"] = time.monotonic() - mark

    mark = time.monotonic()
    load_images(folders, build.node_images(folders))
    steps["sandbox and DNS images"] = time.monotonic() - mark

    mark = time.monotonic()
    start("kubelet", [str(k8s / "kubelet"), f"--config={STATE / 'kubelet.yaml'}",
                      f"--kubeconfig={PKI / 'kubelet.kubeconfig'}", f"--root-dir={KUBELET_DIR}",
                      f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}",
                      f"--cert-dir={KUBELET_DIR / 'pki'}"], env={"PATH": path})
    start("kube-proxy", [str(k8s / "kube-proxy"), f"--config={STATE / 'kube-proxy.yaml'}"])
    _waited("kubelet", lambda: kubectl("get", "node", NODE_NAME, "-o",
                                       "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                                       check=False).stdout.strip() == "True")
    steps["kubelet, kube-proxy (node Ready)"] = time.monotonic() - mark

    mark = time.monotonic()
    apply(configs.addons(pv_count, pv_size))
    for index in range(pv_count):
        volume = configs.VOLUMES / f"pv-{index}"
        volume.mkdir(parents=True, exist_ok=True)
        volume.chmod(0o777)
    kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", f"--timeout={PART_TIMEOUT_S}s")
    steps["cluster DNS, storage"] = time.monotonic() - mark
    return steps


# The API group the HPA reads External metrics from; KEDA's metrics server or prometheus-adapter serves it, one at a time.
EXTERNAL_METRICS = "v1beta1.external.metrics.k8s.io"


def external_metrics_available(kubectl=kubectl) -> bool:
    """Whether the API server serves external.metrics.k8s.io through the server its APIService names."""
    done = kubectl("get", "apiservice", EXTERNAL_METRICS, "-o",
                   "jsonpath={.status.conditions[?(@.type=='Available')].status}", check=False)
    return done.stdout.strip() == "True"


def remove_external_metrics(namespace: str, kubectl=kubectl) -> list[str]:
    """Delete the external.metrics.k8s.io APIService when it names a Service in NAMESPACE (its server's), leaving
    the other server's alone; what was removed, as lines."""
    owner = kubectl("get", "apiservice", EXTERNAL_METRICS, "-o", "jsonpath={.spec.service.namespace}", check=False)
    if owner.returncode != 0 or owner.stdout.strip() != namespace:
        return []
    done = kubectl("delete", "apiservice", EXTERNAL_METRICS, "--ignore-not-found", check=False)
    return [f"APIService {EXTERNAL_METRICS}"] if done.returncode == 0 and done.stdout.strip() else []


def apply(objects: list[dict]) -> None:
    import yaml
    kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(objects, sort_keys=False))


def _ctr(folders: dict[str, Path], *args: str, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(folders["containerd"] / "ctr"), "--address", str(CONTAINERD_SOCKET),
                           "--namespace", "k8s.io", *args], stdin=stdin, capture_output=True, text=True,
                          check=False)


LOADED = RUN / "loaded-images.json"


def _podman_id(image: str) -> str:
    done = subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}", image], capture_output=True,
                          text=True, check=False)
    return done.stdout.strip()


def load_images(folders: dict[str, Path], images: list[str]) -> None:
    """Copy podman's IMAGES into containerd's k8s.io namespace (podman save | ctr images import); an image this
    cluster already loaded, with the same podman image ID, is not copied again (a 4 GB image takes minutes)."""
    loaded = json.loads(LOADED.read_text()) if LOADED.is_file() else {}
    for image in images:
        start_s = time.monotonic()
        image_id = _podman_id(image)
        listed = _ctr(folders, "images", "list", "--quiet").stdout.split()
        if image_id and loaded.get(image) == image_id and any(name.endswith(image.split("/", 1)[-1])
                                                              for name in listed):
            print(f"{image} is loaded already (podman image {image_id[:12]})", flush=True)
            continue
        save = subprocess.Popen(["podman", "save", "--format", "docker-archive", image], stdout=subprocess.PIPE)
        done = _ctr(folders, "images", "import", "--no-unpack=false", "--local", "-", stdin=save.stdout)
        save.stdout.close()
        if save.wait() != 0 or done.returncode != 0:
            raise ClusterError(f"loading {image} failed: podman save exit {save.returncode}; ctr: "
                               f"{(done.stderr or done.stdout).strip()}")
        listed = _ctr(folders, "images", "list", "--quiet").stdout.split()
        if not any(name.endswith(image.split("/", 1)[-1]) for name in listed):
            raise ClusterError(f"{image} was imported but containerd lists only: {', '.join(listed)}")
        if image_id:
            loaded[image] = image_id
            LOADED.write_text(json.dumps(loaded, indent=2) + "\n")
        print(f"loaded {image} in {time.monotonic() - start_s:.1f} s", flush=True)
