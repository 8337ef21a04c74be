"""The user the server runs as is the image's own (docs/chart.md, "The image's user").

The official vllm/vllm-openai image runs as root unless told otherwise; newer builds of it carry a `vllm` user,
uid 2000 (gid 0), home /home/vllm, which they do not switch to. tpserve's images (docker/Dockerfile,
docker/Dockerfile.loadtest) end with USER 1000:1000. The chart runs the official image as uid/gid 2000 and
tpserve's as 1000, and in both cases gives HOME and every written path a volume of its own, so nothing
depends on the image's passwd entry or on a path of the image being writable.
"""

from __future__ import annotations

import pytest
import yaml

from tests.chart.conftest import CHART, REPO, container, env_of, init_container, mounts_of, pod_spec

OFFICIAL_UID = 2000
TPSERVE_UID = 1000
# Paths of the official image only root can write: its WORKDIR and root's home.
ROOT_ONLY = ("/root", "/vllm-workspace")


def ids(pod: dict) -> dict:
    return {key: pod["securityContext"].get(key) for key in ("runAsUser", "runAsGroup", "fsGroup")}


@pytest.mark.parametrize("set_args, uid", [((), OFFICIAL_UID), (("--set", "image.tpserve=true"), TPSERVE_UID),
                                           (("-f", str(CHART / "values-cpu.yaml")), TPSERVE_UID)])
def test_the_server_pod_runs_as_the_images_own_uid(render, set_args, uid):
    pod = pod_spec(render("r", *set_args)["Deployment"])
    assert ids(pod) == {"runAsUser": uid, "runAsGroup": uid, "fsGroup": uid}
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_an_explicit_uid_still_wins_over_the_images(render):
    pod = pod_spec(render("r", "--set", "podSecurityContext.runAsUser=1234",
                          "--set", "podSecurityContext.runAsGroup=1234",
                          "--set", "podSecurityContext.fsGroup=1234")["Deployment"])
    assert ids(pod) == {"runAsUser": 1234, "runAsGroup": 1234, "fsGroup": 1234}


def test_root_is_refused_naming_the_images_uid(render_error):
    assert "the image's user is 2000, keep it" in render_error("--set", "podSecurityContext.runAsUser=0")
    assert "the image's user is 1000, keep it" in render_error("--set", "image.tpserve=true",
                                                               "--set", "securityContext.runAsUser=0")


def test_the_helm_test_pod_runs_as_the_loadtest_images_uid_1000(render):
    dockerfile = (REPO / "docker" / "Dockerfile.loadtest").read_text()
    assert "USER 1000:1000" in dockerfile
    pod = render()["Pod"]["spec"]
    assert {key: pod["securityContext"][key] for key in ("runAsUser", "runAsGroup")} == {
        "runAsUser": TPSERVE_UID, "runAsGroup": TPSERVE_UID}


@pytest.mark.parametrize("set_args", [(), ("--set", "image.tpserve=true")])
def test_home_user_and_caches_are_on_writable_volumes_never_under_root_only_paths(render, set_args):
    deployment = render("r", *set_args)["Deployment"]
    for spec in (container(deployment), init_container(deployment)):
        env = {name: item.get("value") for name, item in env_of(spec).items()}
        assert env["HOME"] == "/home/vllm" and env["USER"] == "vllm", spec["name"]
        mounts = mounts_of(spec)
        assert mounts["/home/vllm"]["name"] == "home" and not mounts["/home/vllm"].get("readOnly")
        # Caches that default under HOME (XDG, Triton, FlashInfer, numba, outlines) or /tmp (inductor) are
        # left to those defaults; any cache variable the chart sets must be on a writable mount.
        for name, value in env.items():
            if value and value.startswith("/"):
                assert not value.startswith(ROOT_ONLY), (spec["name"], name, value)
        for name in ("XDG_CACHE_HOME", "TRITON_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE", "TORCHINDUCTOR_CACHE_DIR",
                     "VLLM_CACHE_ROOT", "HF_MODULES_CACHE"):
            if env.get(name):
                writable = [path for path, mount in mounts.items() if not mount.get("readOnly")]
                assert any(env[name] == path or env[name].startswith(path + "/") for path in writable), name
        assert spec.get("workingDir", "/home/vllm") not in ROOT_ONLY


def test_the_uid_waivers_name_the_uids_the_chart_renders(render):
    waivers = yaml.safe_load((REPO / "tests" / "chart" / "scan_waivers.yaml").read_text())
    official = pod_spec(render()["Deployment"])["securityContext"]
    tpserve = pod_spec(render("r", "--set", "image.tpserve=true")["Deployment"])["securityContext"]
    for text in (waivers["checkov"]["CKV_K8S_40"], waivers["trivy"]["KSV-0020"]):
        assert f"uid {official['runAsUser']}" in text and f"uid {tpserve['runAsUser']}" in text, text
    assert f"gid {official['runAsGroup']}" in waivers["trivy"]["KSV-0021"]
    assert f"gid {tpserve['runAsGroup']}" in waivers["trivy"]["KSV-0021"]
    assert "runs as root" in waivers["checkov"]["CKV_K8S_40"]
