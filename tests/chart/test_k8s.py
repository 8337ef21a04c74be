"""k8s/: the kustomize base generated from the chart, and the overlays built on it, with the real kubectl."""

from __future__ import annotations

import shutil
import sys

import yaml

from tests.chart.conftest import by_kind, container
from tests.conftest import REPO, run

OVERLAY = REPO / "k8s" / "overlays" / "llama-2-7b-tp1"
HELM_ONLY_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")


def kustomize(tools, folder) -> dict[str, dict]:
    done = tools.kubectl_run("kustomize", str(folder))
    assert done.returncode == 0, done.stderr
    return by_kind([doc for doc in yaml.safe_load_all(done.stdout) if doc])


def without_helm_labels(manifest: dict) -> dict:
    pod = manifest.get("spec", {}).get("template", {})
    for labels in (manifest["metadata"]["labels"], pod.get("metadata", {}).get("labels", {})):
        for label in HELM_ONLY_LABELS:
            labels.pop(label, None)
    return manifest


def test_k8s_base_is_what_the_chart_renders(tools):
    done = run(sys.executable, "tools/render_k8s.py", "--check", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_stale_base_fails_the_check_with_a_diff_and_the_command_that_fixes_it(tools, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(REPO / "k8s" / "base", base)
    deployment = base / "deployment.yaml"
    deployment.write_text(deployment.read_text().replace('- "4"', '- "2"'))
    (base / "leftover.yaml").write_text("kind: ConfigMap\n")
    done = run(sys.executable, "tools/render_k8s.py", "--check", "--base", str(base), timeout=120)
    assert done.returncode == 1
    assert '-            - "2"\n+            - "4"\n' in done.stdout
    assert f"--- {base / 'leftover.yaml'} (checked in)" in done.stdout
    assert f"{base} is stale; run `python tools/render_k8s.py --base {base}`" in done.stderr


def test_the_base_is_the_chart_with_release_name_vllm_minus_helm_only_labels(tools, render):
    assert kustomize(tools, REPO / "k8s" / "base") == {
        kind: without_helm_labels(manifest) for kind, manifest in render("vllm").items()}


def test_the_7b_overlay_builds_offline_with_one_gpu_and_the_7b_model(tools):
    deployment = kustomize(tools, OVERLAY)["Deployment"]
    server = container(deployment)
    assert server["args"][:6] == ["--model", "meta-llama/Llama-2-7b-chat-hf",
                                  "--served-model-name", "meta-llama/Llama-2-7b-chat-hf",
                                  "--tensor-parallel-size", "1"]
    assert server["resources"]["requests"]["nvidia.com/gpu"] == server["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_7b_overlay_deploys_what_helm_would_with_the_same_values(tools, render):
    helm = render("llama-2-7b-tp1", "--set", "model.name=meta-llama/Llama-2-7b-chat-hf",
                  "--set", "parallelism.tensor=1")
    assert kustomize(tools, OVERLAY) == {kind: without_helm_labels(manifest) for kind, manifest in helm.items()}
