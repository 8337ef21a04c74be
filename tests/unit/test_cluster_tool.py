"""tools/cluster without starting anything: the pins, the node's configuration, the certificates, the cache key.

The cluster itself runs in tests/cluster (`make cluster-test`)."""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools" / "cluster"))
import build
import configs
import crds
import lws
import node
import pki
import versions

CLUSTER_RANGE = ipaddress.ip_network(versions.CLUSTER_RANGE)


def go_mod(component: str) -> str:
    return (versions.GO_MODULES / component / "go.mod").read_text()


@pytest.mark.parametrize("component", [name for name, (module, _, _) in versions.PARTS.items() if module])
def test_each_go_module_requires_the_version_pinned_in_versions_py(component):
    module, version, _ = versions.PARTS[component]
    assert re.search(rf"^require {re.escape(module)} {re.escape(version)}$", go_mod(component), re.MULTILINE), component
    assert (versions.GO_MODULES / component / "go.sum").is_file()


def test_every_kubernetes_staging_module_is_replaced_by_its_release_of_the_same_minor():
    text = go_mod("kubernetes")
    replaces = dict(re.findall(r"^replace (k8s\.io/\S+) => k8s\.io/\S+ (v\S+)$", text, re.MULTILINE))
    assert replaces and set(replaces.values()) == {versions.KUBERNETES_STAGING}
    assert versions.KUBERNETES_STAGING == "v0.37.2" and versions.KUBERNETES.startswith("v1.37.")
    required = set(re.findall(r"^\s+(k8s\.io/[\w-]+) v0\.0\.0$", text, re.MULTILINE))
    assert required <= set(replaces), f"staging modules without a replace: {sorted(required - set(replaces))}"


def test_every_address_of_the_cluster_is_inside_the_benchmarking_range():
    for address in (versions.NODE_IP, versions.POD_GATEWAY, versions.API_SERVICE_IP, versions.DNS_SERVICE_IP):
        assert ipaddress.ip_address(address) in CLUSTER_RANGE, address
    for network in (versions.POD_CIDR, versions.NODE_POD_CIDR, versions.SERVICE_CIDR):
        assert ipaddress.ip_network(network).subnet_of(CLUSTER_RANGE), network
    assert not ipaddress.ip_network(versions.POD_CIDR).overlaps(ipaddress.ip_network(versions.SERVICE_CIDR))


def test_the_kubelet_fits_this_machine_kind_and_gives_pods_no_upstream_resolver():
    kubelet = yaml.safe_load(configs.kubelet_yaml())
    assert (kubelet["cgroupDriver"], kubelet["failCgroupV1"], kubelet["failSwapOn"], kubelet["oomScoreAdj"]) == (
        "cgroupfs", False, False, 0)
    assert kubelet["resolvConf"] == str(configs.EMPTY_RESOLV_CONF)
    assert kubelet["clusterDNS"] == [versions.DNS_SERVICE_IP]
    assert kubelet["podLogsDir"].startswith(str(versions.STATE))
    assert kubelet["makeIPTablesUtilChains"] is False
    assert kubelet["authentication"]["anonymous"]["enabled"] is False


def test_containerd_restricts_oom_score_adj_and_pins_the_locally_built_sandbox_image():
    config = tomllib.loads(configs.containerd_toml())
    runtime = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True and runtime["netns_mounts_under_state_dir"] is True
    assert config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == versions.PAUSE_IMAGE
    assert config["root"].startswith(str(versions.STATE)) and config["state"].startswith(str(versions.RUN))


def test_pod_traffic_is_not_masqueraded_and_cluster_dns_has_no_forwarder():
    (bridge,) = json.loads(configs.cni_conflist())["plugins"]
    assert bridge["ipMasq"] is False and bridge["ipam"]["ranges"] == [[{"subnet": versions.NODE_POD_CIDR,
                                                                        "gateway": versions.POD_GATEWAY}]]
    assert "forward" not in configs.COREFILE
    proxy = yaml.safe_load(configs.kube_proxy_yaml())
    assert proxy["mode"] == "nftables" and proxy["nodePortAddresses"] == [f"{versions.NODE_IP}/32"]


def test_the_addons_make_a_default_storage_class_and_local_volumes_pinned_to_the_node():
    objects = configs.addons(3, "10Gi")
    (storage_class,) = [o for o in objects if o["kind"] == "StorageClass"]
    assert storage_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    volumes = [o for o in objects if o["kind"] == "PersistentVolume"]
    assert [v["spec"]["local"]["path"] for v in volumes] == [str(configs.VOLUMES / f"pv-{i}") for i in range(3)]
    (dns,) = [o for o in objects if o["kind"] == "Service"]
    assert dns["spec"]["clusterIP"] == versions.DNS_SERVICE_IP


def test_the_certificates_name_the_identities_the_default_rbac_binds(tmp_path):
    pki.make_pki(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "apiserver.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} >= {versions.NODE_IP,
                                                                              versions.API_SERVICE_IP}
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    kubelet = x509.load_pem_x509_certificate((tmp_path / "kubelet.crt").read_bytes())
    kubelet.verify_directly_issued_by(ca)
    assert kubelet.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"system:node:{versions.NODE_NAME}"
    assert kubelet.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:nodes"
    assert oct((tmp_path / "ca.key").stat().st_mode & 0o777) == "0o600"


def test_the_aggregation_layer_trusts_the_front_proxy_client_only_from_its_own_ca(tmp_path):
    pki.make_pki(tmp_path)
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    proxy_ca = x509.load_pem_x509_certificate((tmp_path / "front-proxy-ca.crt").read_bytes())
    client = x509.load_pem_x509_certificate((tmp_path / f"{pki.FRONT_PROXY_CLIENT}.crt").read_bytes())
    client.verify_directly_issued_by(proxy_ca)
    with pytest.raises(ValueError):
        client.verify_directly_issued_by(ca)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == pki.FRONT_PROXY_CLIENT
    keda = x509.load_pem_x509_certificate((tmp_path / "keda.crt").read_bytes())
    keda.verify_directly_issued_by(ca)
    usages = keda.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    ips = keda.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    assert versions.NODE_IP in {str(ip) for ip in ips}


def test_the_build_key_changes_with_the_module_and_not_otherwise(tmp_path, monkeypatch):
    shutil.copytree(versions.GO_MODULES / "pause", tmp_path / "pause")
    monkeypatch.setattr(build, "GO_MODULES", tmp_path)
    before = build.build_key("pause")
    assert build.build_key("pause") == before
    (tmp_path / "pause" / "main.go").write_text((tmp_path / "pause" / "main.go").read_text() + "\n// changed\n")
    assert build.build_key("pause") != before


def test_kubernetes_binaries_carry_the_pinned_version_for_kubectl_version_and_helms_kube_version_check():
    flags = build._ldflags("kubernetes")
    assert f"k8s.io/component-base/version.gitVersion={versions.KUBERNETES}" in flags
    assert "k8s.io/component-base/version.gitMinor=37" in flags


def test_the_lws_controller_reports_its_pinned_release_in_its_log_and_user_agent():
    assert f"-X sigs.k8s.io/lws/pkg/version.GitVersion={versions.LWS}" in build._ldflags("lws")


def test_a_wait_that_times_out_names_what_it_waited_for_and_the_log(tmp_path):
    log = tmp_path / "etcd.log"
    log.write_text("first\nlast line of the log\n")
    with pytest.raises(node.ClusterError, match=r"(?s)waiting for etcd to serve; see .*etcd.log.*last line"):
        node.wait_until("etcd to serve", lambda: False, 0.1, log)


def test_down_removes_only_what_appeared_in_the_host_folders_since_up(tmp_path):
    kept, made = tmp_path / "kept", tmp_path / "made"
    (kept / "old").mkdir(parents=True)
    before = {str(kept): node._tree(kept), str(made): node._tree(made)}
    (kept / "new" / "deep").mkdir(parents=True)
    (kept / "new.sock").write_text("")
    (made / "x").mkdir(parents=True)
    removed = node.remove_host_paths(before)
    assert sorted(p.name for p in kept.iterdir()) == ["old"] and not made.exists()
    assert f"folder {made}" in removed


def fake_go(tmp_path, monkeypatch, answer: dict) -> Path:
    """A `go` on PATH that prints ANSWER as `go mod download -json` would, and records its environment."""
    seen = tmp_path / "env.txt"
    go = tmp_path / "bin" / "go"
    go.parent.mkdir()
    go.write_text(f"#!/bin/sh\nenv > {seen}\ncat <<'EOF'\n{json.dumps(answer)}\nEOF\n")
    go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{go.parent}:{os.environ['PATH']}")
    return seen


def test_a_crd_comes_from_the_module_cache_with_the_proxy_off_at_its_pinned_path(tmp_path, monkeypatch):
    api = "gateway.networking.k8s.io/v1/HTTPRoute"
    _, _, pinned, path = versions.CRD_MODULES[api]
    seen = fake_go(tmp_path, monkeypatch, {"Dir": str(tmp_path / "module"), "Sum": pinned})
    assert crds.crd_file(api) == tmp_path / "module" / path
    assert "GOPROXY=off" in seen.read_text().splitlines()


def test_a_crd_module_whose_hash_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    fake_go(tmp_path, monkeypatch, {"Dir": str(tmp_path), "Sum": "h1:changed="})
    with pytest.raises(SystemExit, match="hashes to h1:changed=, not the pinned"):
        crds.crd_file("keda.sh/v1alpha1/ScaledObject")


def test_a_build_past_its_deadline_stops_the_compilers_it_started_and_says_the_cache_keeps_their_work(
        tmp_path, monkeypatch):
    # A `go` whose build starts a child compiler and never finishes; both pids are written so the test sees them go.
    pids = tmp_path / "pids"
    go = tmp_path / "bin" / "go"
    go.parent.mkdir()
    go.write_text(f'#!/bin/sh\n[ "$1" = env ] && {{ echo go1.26.8; exit 0; }}\n'
                  f"sleep 600 & echo $! >> {pids}\necho $$ >> {pids}\nwait\n")
    go.chmod(0o755)
    monkeypatch.setenv("PATH", f"{go.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(build, "BUILDS", tmp_path / "builds")
    with pytest.raises(build.BuildTimeout, match="still compiling when its time ran out.*Go.s build cache"):
        build.build_all({"pause": versions.PARTS["pause"]}, within_s=1)

    def gone(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")

    started = [int(pid) for pid in pids.read_text().split()]
    assert len(started) == 2 and all(gone(pid) for pid in started)
    assert not (tmp_path / "builds").exists() or not any((tmp_path / "builds").iterdir())


def lws_module(root: Path) -> Path:
    """The two files of config/webhook that webhook_configurations reads, in the module's shape (v0.9.0): the
    generated manifests, and the release's patch that gives the pod webhook its object selector."""
    folder = root / "config" / "webhook"
    folder.mkdir(parents=True)
    hooks = [{"name": name, "clientConfig": {"service": {"name": "webhook-service", "namespace": "system",
                                                         "path": path}},
              "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"]}
             for name, path in (("mleaderworkerset.kb.io", "/mutate-leaderworkerset-x-k8s-io-v1-leaderworkerset"),
                                ("mpod.kb.io", "/mutate--v1-pod"))]
    manifests = [{"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
                  "metadata": {"name": f"{kind[:-len('WebhookConfiguration')].lower()}-webhook-configuration"},
                  "webhooks": hooks} for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")]
    (folder / "manifests.yaml").write_text(yaml.safe_dump_all(manifests))
    selected = {**hooks[1], "objectSelector": {"matchExpressions": [
        {"key": "leaderworkerset.sigs.k8s.io/name", "operator": "Exists"}]}}
    patch = yaml.safe_dump([{"op": "replace", "path": "/webhooks/1", "value": selected}])
    (folder / "mutating-patch.yaml").write_text(patch)
    (folder / "validating-patch.yaml").write_text(patch)
    return root


def test_the_lws_webhooks_call_the_controller_on_the_node_address_trusting_the_cluster_ca(tmp_path):
    made = lws.webhook_configurations(lws_module(tmp_path), b"CA PEM")
    assert {document["kind"]: document["metadata"]["name"] for document in made} == lws.WEBHOOK_CONFIGURATIONS
    for document in made:
        leaderworkerset, pod = document["webhooks"]
        assert leaderworkerset["clientConfig"] == {
            "url": f"https://{versions.NODE_IP}:{lws.WEBHOOK_PORT}/mutate-leaderworkerset-x-k8s-io-v1-leaderworkerset",
            "caBundle": "Q0EgUEVN"}
        assert pod["objectSelector"]["matchExpressions"][0]["key"] == "leaderworkerset.sigs.k8s.io/name", (
            "the release's patch: pods of no LeaderWorkerSet never wait on this controller")


def test_a_webhook_patch_lws_py_cannot_apply_is_refused_by_name(tmp_path):
    module = lws_module(tmp_path)
    (module / "config" / "webhook" / "mutating-patch.yaml").write_text(
        yaml.safe_dump([{"op": "add", "path": "/webhooks/2", "value": {}}]))
    with pytest.raises(node.ClusterError, match=r"applies only replacements of one webhook, not .*'op': 'add'"):
        lws.webhook_configurations(module, b"")


def test_the_lws_controller_runs_alone_without_cert_rotation_its_webhooks_on_the_node_address():
    config = lws.configuration()
    assert config["leaderElection"] == {"leaderElect": False}
    assert config["internalCertManagement"] == {"enable": False}
    assert config["webhook"] == {"host": versions.NODE_IP, "port": lws.WEBHOOK_PORT,
                                 "certDir": str(versions.STATE / "lws" / "certs")}
    assert config["health"]["healthProbeBindAddress"].startswith("127.0.0.1:")
    assert lws.crd_path(Path("/m"), lws.CRDS[0]) == Path(
        "/m/config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml")


def test_the_webhook_certificate_is_the_cluster_cas_for_the_node_address(tmp_path):
    pki.make_pki(tmp_path)
    pki.serving_certificate(tmp_path, tmp_path / "tls.crt", tmp_path / "tls.key", "lws-controller",
                            (versions.NODE_IP,))
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == [versions.NODE_IP]
    assert oct((tmp_path / "tls.key").stat().st_mode & 0o777) == "0o600"


def test_down_stops_the_processes_started_beside_the_node_before_the_nodes_own(tmp_path, monkeypatch):
    monkeypatch.setattr(node, "PIDS", tmp_path)
    for name in ("lws-controller", "etcd", "kube-apiserver"):
        (tmp_path / f"{name}.pid").write_text("1\n")
    stopped = []
    monkeypatch.setattr(node, "running", lambda name: 1 if (tmp_path / f"{name}.pid").is_file() else None)
    monkeypatch.setattr(node, "stop", lambda pid: stopped.append(pid))
    monkeypatch.setattr(node, "_processes_under", lambda paths: [])
    assert [line.split()[1] for line in node.stop_all()] == ["lws-controller", "kube-apiserver", "etcd"]


def test_an_image_the_cluster_loaded_with_the_same_podman_id_is_not_copied_again(tmp_path, monkeypatch):
    import start

    monkeypatch.setattr(start, "LOADED", tmp_path / "loaded-images.json")
    monkeypatch.setattr(start, "_podman_id", lambda image: "sha256:aaaa")
    monkeypatch.setattr(start, "_ctr", lambda folders, *args, stdin=None: subprocess.CompletedProcess(
        args, 0, stdout="docker.io/localhost/tpserve-cpu:0.1.0\n", stderr=""))
    saved = []

    def save(argv, **kwargs):
        saved.append(argv)
        raise OSError("podman save is not run in this test")

    monkeypatch.setattr(start.subprocess, "Popen", save)
    (tmp_path / "loaded-images.json").write_text(json.dumps({"localhost/tpserve-cpu:0.1.0": "sha256:aaaa"}))
    start.load_images({}, ["localhost/tpserve-cpu:0.1.0"])
    assert saved == []
    monkeypatch.setattr(start, "_podman_id", lambda image: "sha256:bbbb")
    with pytest.raises(OSError, match="not run in this test"):
        start.load_images({}, ["localhost/tpserve-cpu:0.1.0"])
    assert saved and saved[0][:2] == ["podman", "save"]
