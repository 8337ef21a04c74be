"""Issue 11's extension points: name overrides, extra volumes and mounts, securityContext overrides.

Each is something users of any chart expect to set, and each keeps the chart's guarantees: every name and
reference follows vllm.fullname (and tpserve.measure.kubernetes.fullname agrees with it), extra volumes never shadow the
chart's own, and overridden security contexts are still checked by vllm.validateValues.
"""

from __future__ import annotations

import pytest
import yaml

from tests.chart.conftest import CHART, container, init_container, mounts_of, pod_spec, volumes_of
from tests.chart.test_validation import problems
from tpserve.measure.kubernetes import fullname, name_overrides

ENABLE_ALL = ("--set", "podDisruptionBudget.enabled=true", "--set", "metrics.serviceMonitor.enabled=true",
              "--set", "replicaCount=2", "--set", "cache.accessMode=ReadWriteMany")


@pytest.mark.parametrize("release, sets, expected", [
    ("llama70b", (), "llama70b-vllm"),
    ("vllm-bench", (), "vllm-bench"),
    ("llama70b", ("nameOverride=llm",), "llama70b-llm"),
    ("my-llm", ("nameOverride=llm",), "my-llm"),
    ("llama70b", ("fullnameOverride=serving",), "serving"),
    ("llama70b", ("nameOverride=llm", "fullnameOverride=" + "x" * 62 + "-y"), "x" * 62),
    ("r" * 52, ("nameOverride=abcdefghi-klmn",), "r" * 52 + "-abcdefghi"),
])
def test_every_object_name_and_reference_follows_the_fullname_and_kube_fullname_agrees(
        render, render_text, release, sets, expected):
    args = [arg for item in sets for arg in ("--set", item)]
    objects = render(release, *ENABLE_ALL, *args)
    assert fullname(release, **name_overrides((), sets)) == expected
    for kind in ("Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "ServiceMonitor"):
        assert objects[kind]["metadata"]["name"] == expected, kind
    assert objects["ConfigMap"]["metadata"]["name"] == f"{expected}-fetch"
    assert objects["PersistentVolumeClaim"]["metadata"]["name"] == f"{expected}-cache"
    volumes = volumes_of(objects["Deployment"])
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == f"{expected}-cache"
    assert volumes["fetch-code"]["configMap"]["name"] == f"{expected}-fetch"
    assert objects["Pod"]["metadata"]["name"] == f"{expected}-test-load"
    assert f"http://{expected}:" in " ".join(container_args(objects["Pod"]))


def container_args(pod: dict) -> list[str]:
    (only,) = pod["spec"]["containers"]
    return [*only.get("command", []), *only.get("args", [])]


def test_name_override_changes_the_name_label_everywhere_and_selectors_still_match(render):
    objects = render("llama70b", *ENABLE_ALL, "--set", "nameOverride=llm")
    for kind, manifest in objects.items():
        assert manifest["metadata"]["labels"]["app.kubernetes.io/name"] == (
            "llm-test" if kind == "Pod" else "llm"), kind
    selector = objects["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == "llm"
    assert objects["Service"]["spec"]["selector"] == selector
    assert objects["Deployment"]["spec"]["template"]["metadata"]["labels"].items() >= selector.items()


def test_notes_commands_name_the_overridden_objects(tools):
    done = tools.helm_run("install", "llama70b", str(CHART), "--dry-run", "--set", "fullnameOverride=serving")
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "deployment/serving " in notes and "svc/serving " in notes
    assert "llama70b-vllm" not in notes


def test_the_sweep_reads_the_overrides_from_values_files_and_sets(tmp_path):
    values = tmp_path / "v.yaml"
    values.write_text(yaml.safe_dump({"nameOverride": "llm", "model": {"name": "a/b"}}))
    assert name_overrides([values], []) == {"name_override": "llm", "fullname_override": ""}
    assert name_overrides([values], ["fullnameOverride=serving"]) == {
        "name_override": "llm", "fullname_override": "serving"}
    assert fullname("r", **name_overrides([values], [])) == "r-llm"


EXTRA = ("--set", "extraVolumes.adapters.persistentVolumeClaim.claimName=lora",
         "--set", "extraVolumes.ca-certs.secret.secretName=corp-ca",
         "--set", "extraVolumeMounts.adapters.mountPath=/adapters",
         "--set", "extraVolumeMounts.ca-certs.mountPath=/etc/ssl/corp",
         "--set", "extraVolumeMounts.ca-certs.subPath=certs")


def test_extra_volumes_mount_read_only_in_the_server_container_only(render):
    deployment = render("llama70b", *EXTRA)["Deployment"]
    volumes = volumes_of(deployment)
    assert volumes["adapters"] == {"name": "adapters", "persistentVolumeClaim": {"claimName": "lora"}}
    assert volumes["ca-certs"] == {"name": "ca-certs", "secret": {"secretName": "corp-ca"}}
    mounts = mounts_of(container(deployment))
    assert mounts["/adapters"] == {"name": "adapters", "mountPath": "/adapters", "readOnly": True}
    assert mounts["/etc/ssl/corp"] == {"name": "ca-certs", "mountPath": "/etc/ssl/corp", "subPath": "certs",
                                       "readOnly": True}
    assert {"adapters", "ca-certs"}.isdisjoint(m["name"] for m in init_container(deployment)["volumeMounts"])


def test_an_extra_mount_is_writable_only_when_asked(render):
    deployment = render("llama70b", "--set", "extraVolumes.work.emptyDir.sizeLimit=1Gi",
                        "--set", "extraVolumeMounts.work.mountPath=/work", "--set", "extraVolumeMounts.work.readOnly=false")["Deployment"]
    assert mounts_of(container(deployment))["/work"]["readOnly"] is False


def test_extra_volumes_that_would_shadow_the_chart_are_refused_all_at_once(render_error):
    stderr = render_error("--set", "extraVolumes.cache.emptyDir.medium=Memory",
                          "--set", "extraVolumes.host.hostPath.path=/etc",
                          "--set", "extraVolumes.a.emptyDir.medium=Memory",
                          "--set", "extraVolumeMounts.a.mountPath=/models",
                          "--set", "extraVolumeMounts.missing.mountPath=/x",
                          "--set", "extraVolumes.b.emptyDir.medium=Memory",
                          "--set", "extraVolumeMounts.b.mountPath=/tmp/b/")
    assert problems(stderr) == [
        "extraVolumes.cache is a volume of the chart (cache, tmp, home, run, fetch-code, dshm): pick another name",
        ("extraVolumes.host is a hostPath, which ties the pod to a node's files and escapes its isolation: use a "
        "persistentVolumeClaim, configMap or secret"),
        ("extraVolumeMounts.a.mountPath=/models is on, inside or above the chart's mount /models/hf: mount it on a "
        "folder of its own, e.g. /adapters"),
        ("extraVolumeMounts.a.mountPath=/models is on, inside or above the chart's mount /models/vllm-cache: mount it "
        "on a folder of its own, e.g. /adapters"),
        ("extraVolumeMounts.b.mountPath=/tmp/b/ is on, inside or above the chart's mount /tmp: mount it on a folder "
        "of its own, e.g. /adapters"),
        "extraVolumeMounts.missing names no volume of extraVolumes: add extraVolumes.missing or remove the mount"]


def test_a_mount_on_the_root_is_refused(render_error):
    assert problems(render_error("--set", "extraVolumes.a.emptyDir.medium=Memory",
                                 "--set", "extraVolumeMounts.a.mountPath=/")) == [
        "extraVolumeMounts.a.mountPath=/ would hide the image: mount it on a folder of its own, e.g. /adapters"]


@pytest.mark.parametrize("value", [
    {"extraVolumeMounts": {"a": {"readOnly": True}}},
    {"extraVolumeMounts": {"a": {"mountPath": "relative"}}},
    {"extraVolumeMounts": {"a": {"mountPath": "/a", "typo": 1}}},
    {"extraVolumes": {"a": "pvc"}},
    {"extraVolumes": {"Bad_Name": {"emptyDir": {}}}},
    {"securityContext": {"runAsUsr": 1}},
    {"podSecurityContext": {"privileged": True}},
    {"podSecurityContext": {"seLinuxOptions": {"typ": "container_t"}}},
    {"securityContext": {"appArmorProfile": {"type": "unconfined"}}},
    {"securityContext": {"procMount": "unmasked"}},
    {"securityContext": {"windowsOptions": {"hostProcess": True}}},
    {"hostNetwork": True},
    {"hostPID": True},
    {"hostIPC": True},
])
def test_the_schema_refuses_malformed_extension_values(tools, tmp_path, value):
    path = tmp_path / "v.yaml"
    path.write_text(yaml.safe_dump(value))
    done = tools.helm_run("template", "r", str(CHART), "-f", str(path))
    assert done.returncode == 1 and "schema" in done.stderr, done.stderr


def test_security_overrides_are_merged_over_the_hardened_defaults(render):
    deployment = render("llama70b", "--set", "podSecurityContext.supplementalGroups={44}",
                        "--set", "podSecurityContext.fsGroupChangePolicy=Always",
                        "--set", "securityContext.capabilities.add={IPC_LOCK}",
                        "--set", "securityContext.seccompProfile.type=RuntimeDefault")["Deployment"]
    assert pod_spec(deployment)["securityContext"] == {
        "runAsUser": 2000, "runAsGroup": 2000, "runAsNonRoot": True, "fsGroup": 2000,
        "fsGroupChangePolicy": "Always", "seccompProfile": {"type": "RuntimeDefault"}, "supplementalGroups": [44]}
    for spec in (container(deployment), init_container(deployment)):
        assert spec["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["IPC_LOCK"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def test_security_overrides_that_break_the_chart_guarantees_are_refused_all_at_once(render_error):
    stderr = render_error("--set", "podSecurityContext.runAsUser=0", "--set", "podSecurityContext.runAsNonRoot=false",
                          "--set", "podSecurityContext.seccompProfile.type=Unconfined",
                          "--set", "securityContext.privileged=true",
                          "--set", "securityContext.allowPrivilegeEscalation=true",
                          "--set", "securityContext.readOnlyRootFilesystem=false",
                          "--set", "securityContext.runAsUser=0",
                          "--set", "securityContext.capabilities.drop={NET_RAW}",
                          "--set", "securityContext.capabilities.add={SYS_ADMIN,SYS_PTRACE}")
    assert problems(stderr) == [
        "podSecurityContext.runAsUser=0 runs as root: the image's user is 2000, keep it",
        "podSecurityContext.runAsNonRoot=false lets the server run as root: remove it",
        ("podSecurityContext.seccompProfile.type=Unconfined lifts the syscall filter: keep RuntimeDefault or use a "
        "Localhost profile"),
        "securityContext.runAsUser=0 runs as root: the image's user is 2000, keep it",
        ("securityContext.privileged=true gives the containers the host's devices and every capability: GPUs come "
        "from gpu.resource, remove it"),
        "securityContext.allowPrivilegeEscalation=true lets a process gain privileges (setuid): remove it",
        ("securityContext.readOnlyRootFilesystem=false makes the image writable: every path the server writes is a "
        "volume already; add one with extraVolumes for yours"),
        ("securityContext.capabilities.drop must contain ALL: capabilities are added back only through "
        "capabilities.add"),
        ("securityContext.capabilities.add SYS_ADMIN is not one the chart allows: only IPC_LOCK (NCCL's memory "
        "registration over InfiniBand/RDMA) and SYS_PTRACE (py-spy on a stuck worker)")]
    assert "9 problem(s)" in stderr


def test_group_zero_unmasked_proc_privileged_selinux_unsafe_sysctls_and_unconfined_apparmor_are_refused(
        render_error):
    stderr = render_error("--set", "podSecurityContext.runAsGroup=0", "--set", "podSecurityContext.fsGroup=0",
                          "--set", "podSecurityContext.supplementalGroups={44,0}",
                          "--set", "podSecurityContext.seLinuxOptions.type=spc_t",
                          "--set", "podSecurityContext.sysctls[0].name=kernel.msgmax",
                          "--set-string", "podSecurityContext.sysctls[0].value=65536",
                          "--set", "podSecurityContext.sysctls[1].name=net.ipv4.ip_local_port_range",
                          "--set-string", "podSecurityContext.sysctls[1].value=1024 65535",
                          "--set", "securityContext.runAsGroup=0", "--set", "securityContext.procMount=Unmasked",
                          "--set", "securityContext.seLinuxOptions.type=container_runtime_t",
                          "--set", "securityContext.seLinuxOptions.user=system_u",
                          "--set", "securityContext.appArmorProfile.type=Unconfined")
    baseline = "container_t, container_init_t, container_kvm_t or container_engine_t"
    assert problems(stderr) == [
        ("podSecurityContext.runAsGroup=0 runs in the root group, which may write what an image leaves "
         "group-writable: the image's group is 2000, keep it"),
        (f"podSecurityContext.seLinuxOptions.type=spc_t is not a confined container type: use {baseline} "
         "(the types Kubernetes' baseline Pod Security Standard allows), or leave it to the runtime"),
        ("securityContext.runAsGroup=0 runs in the root group, which may write what an image leaves "
         "group-writable: the image's group is 2000, keep it"),
        (f"securityContext.seLinuxOptions.type=container_runtime_t is not a confined container type: use "
         f"{baseline} (the types Kubernetes' baseline Pod Security Standard allows), or leave it to the runtime"),
        ("securityContext.seLinuxOptions.user may not be set (Kubernetes' baseline Pod Security Standard): "
         "remove it; type and level are enough"),
        ("securityContext.appArmorProfile.type=Unconfined lifts AppArmor's confinement: keep RuntimeDefault or use "
         "a Localhost profile"),
        ("podSecurityContext.fsGroup=0 gives the root group the pod's volumes: the image's group is 2000, keep it"),
        ("podSecurityContext.supplementalGroups holds 0, the root group: list only the groups of the volumes "
         "you share"),
        ("podSecurityContext.sysctls kernel.msgmax is not a safe sysctl (kernel.shm_rmid_forced, "
         "net.ipv4.ip_local_port_range, net.ipv4.ip_local_reserved_ports, net.ipv4.ip_unprivileged_port_start, "
         "net.ipv4.ping_group_range, net.ipv4.tcp_fin_timeout, net.ipv4.tcp_keepalive_intvl, "
         "net.ipv4.tcp_keepalive_probes, net.ipv4.tcp_keepalive_time, net.ipv4.tcp_syncookies): the others reach "
         "beyond the pod, or need the kubelet's --allowed-unsafe-sysctls; remove it"),
        ("securityContext.procMount=Unmasked shows the container the /proc paths the runtime masks: remove it "
         "(Default)")]


def test_the_confined_selinux_types_safe_sysctls_and_non_root_groups_are_accepted(render):
    deployment = render("llama70b", "--set", "podSecurityContext.seLinuxOptions.type=container_t",
                        "--set", "podSecurityContext.seLinuxOptions.level=s0:c123\\,c456",
                        "--set", "podSecurityContext.sysctls[0].name=net.ipv4.tcp_keepalive_time",
                        "--set-string", "podSecurityContext.sysctls[0].value=600",
                        "--set", "podSecurityContext.supplementalGroups={44}",
                        "--set", "securityContext.procMount=Default",
                        "--set", "securityContext.appArmorProfile.type=RuntimeDefault")["Deployment"]
    context = pod_spec(deployment)["securityContext"]
    assert context["seLinuxOptions"] == {"type": "container_t", "level": "s0:c123,c456"}
    assert context["sysctls"] == [{"name": "net.ipv4.tcp_keepalive_time", "value": "600"}]
    assert container(deployment)["securityContext"]["procMount"] == "Default"
