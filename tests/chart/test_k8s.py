"""k8s/: the kustomize base and overlays generated from the chart, built with the real kubectl."""

from __future__ import annotations

import shutil
import sys

import pytest
import yaml

from tests.chart.conftest import by_kind, container, load_tool, mounts_of
from tests.conftest import REPO, run

load_tool("k8s_tools")  # render_k8s imports it as a sibling script
render_k8s = load_tool("render_k8s")
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def kustomize(tools, folder) -> dict[str, dict]:
    done = tools.kubectl_run("kustomize", str(folder))
    assert done.returncode == 0, done.stderr
    return by_kind([doc for doc in yaml.safe_load_all(done.stdout) if doc])


def deployed(objects: dict[str, dict]) -> dict[str, dict]:
    """What `helm install` leaves in the cluster without Helm's own labels: the `helm test` pod is a hook."""
    result = {}
    for kind, manifest in objects.items():
        if "helm.sh/hook" in (manifest["metadata"].get("annotations") or {}):
            continue
        pod = manifest.get("spec", {}).get("template", {})
        for labels in (manifest["metadata"]["labels"], pod.get("metadata", {}).get("labels", {})):
            for label in HELM_ONLY_LABELS:
                labels.pop(label, None)
        result[kind] = manifest
    return result


def test_k8s_is_what_the_chart_renders(tools):
    done = run(sys.executable, "tools/render_k8s.py", "--check", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_stale_k8s_fails_the_check_with_a_diff_and_the_command_that_fixes_it(tools, tmp_path):
    k8s = tmp_path / "k8s"
    shutil.copytree(REPO / "k8s", k8s)
    deployment = k8s / "base" / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace('nvidia.com/gpu: 4', 'nvidia.com/gpu: 2'))
    (k8s / "overlays" / "leftover.yaml").write_text("kind: ConfigMap\n")
    done = run(sys.executable, "tools/render_k8s.py", "--check", "--k8s-dir", str(k8s), timeout=120)
    assert done.returncode == 1
    assert "-              nvidia.com/gpu: 2\n+              nvidia.com/gpu: 4\n" in done.stdout
    assert f"--- {k8s / 'overlays/leftover.yaml'} (checked in)" in done.stdout
    assert f"{k8s} is stale; run `python tools/render_k8s.py --k8s-dir {k8s}`" in done.stderr


def test_the_base_is_the_chart_with_release_name_vllm_minus_helm_only_labels_and_hooks(tools, render):
    assert kustomize(tools, REPO / "k8s" / "base") == deployed(render("vllm"))


@pytest.mark.parametrize("overlay", sorted(render_k8s.OVERLAYS))
def test_each_overlay_deploys_what_helm_install_would_with_its_values(tools, render, overlay):
    values = render_k8s.OVERLAYS[overlay]
    assert kustomize(tools, REPO / "k8s" / "overlays" / overlay) == deployed(render(overlay, "-f", str(values)))


def test_the_7b_overlay_serves_7b_on_one_gpu_with_a_memory_backed_dev_shm(tools):
    server = container(kustomize(tools, REPO / "k8s" / "overlays" / "llama-2-7b-tp1")["Deployment"])
    assert server["args"][:6] == [
        "--model", "/models/hf/tpserve/meta-llama--Llama-2-7b-chat-hf/f5db02db724555f92da89c216ac04704f23d4590",
        "--served-model-name", "meta-llama/Llama-2-7b-chat-hf", "--tensor-parallel-size", "1"]
    assert server["resources"]["requests"]["nvidia.com/gpu"] == server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert mounts_of(server)["/dev/shm"]["name"] == "dshm"


def test_the_70b_overlay_serves_70b_on_four_gpus(tools):
    objects = kustomize(tools, REPO / "k8s" / "overlays" / "llama-2-70b-tp4")
    server = container(objects["Deployment"])
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 4
    assert objects["Deployment"]["metadata"]["name"] == "llama-2-70b-tp4-vllm"
    assert objects["PersistentVolumeClaim"]["metadata"]["name"] == "llama-2-70b-tp4-vllm-cache"


def test_json_patches_add_and_remove_list_items_one_by_one():
    assert render_k8s.json_patch({"a": [1, 2, 3]}, {"a": [1, 3]}) == [{"op": "remove", "path": "/a/1"}]
    assert render_k8s.json_patch({"a": [1, 3]}, {"a": [1, 2, 3, 4]}) == [
        {"op": "add", "path": "/a/1", "value": 2}, {"op": "add", "path": "/a/3", "value": 4}]
    assert render_k8s.json_patch({"a": [1, 2]}, {"a": [3]}) == [{"op": "replace", "path": "/a", "value": [3]}]
    assert render_k8s.json_patch({"x/y": 1, "z": 2}, {"x/y": 2}) == [
        {"op": "remove", "path": "/z"}, {"op": "replace", "path": "/x~1y", "value": 2}]
