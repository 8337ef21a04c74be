"""The init container's code: the package the chart ships, run the way the pod runs it.

The chart mounts charts/vllm/files/tpserve (a link to src/tpserve/fetch) as a `tpserve` package on
PYTHONPATH and runs `python3 -m tpserve.fetchjob` with the image's own Python and huggingface_hub. These
tests run exactly those files, in a subprocess with that PYTHONPATH, against the fake hub of lab/hubfake
(the real huggingface_hub client over HTTP).
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import pytest
from huggingface_hub import snapshot_download

from lab.hubfake import HubFake, fixture_files
from tests.chart.conftest import CHART
from tests.conftest import REPO, run

SHIPPED = CHART / "files" / "tpserve"
MODEL = "tiny-org/tiny-llama"
FILES = fixture_files("tiny-llama")


@pytest.fixture
def hub():
    fake = HubFake().start()
    yield fake
    fake.stop()


@pytest.fixture
def pod(tmp_path):
    """Paths of a pod's volumes, as the chart lays them out."""
    return {"cache": tmp_path / "models" / "hf" / "tpserve", "path_file": tmp_path / "run" / "model-path",
            "compile": tmp_path / "models" / "vllm-cache", "home": tmp_path / "hf-home"}


def fetchjob(hub: HubFake, pod: dict, *args: str, token: str | None = None):
    """`python3 -m tpserve.fetchjob` from the shipped files, with the init container's environment."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("HF_", "HUGGING_FACE", "TPSERVE_")) and key.lower() not in (
               "http_proxy", "https_proxy", "all_proxy")}
    env |= {"PYTHONPATH": str(SHIPPED.parent), "PYTHONDONTWRITEBYTECODE": "1", "HF_ENDPOINT": hub.url,
            "HF_HOME": str(pod["home"]), "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "NO_PROXY": "127.0.0.1,localhost"}
    if token:
        env["HF_TOKEN"] = token
    argv = ["--model", MODEL, "--cache-dir", str(pod["cache"]), "--path-file", str(pod["path_file"]),
            "--mkdir", str(pod["compile"]), *args]
    return run(sys.executable, "-m", "tpserve.fetchjob", *argv, env=env, timeout=120)


def test_the_shipped_folder_is_a_link_to_the_fetch_package():
    assert SHIPPED.is_symlink()
    assert SHIPPED.resolve() == REPO / "src" / "tpserve" / "fetch"


def test_the_shipped_modules_import_only_each_other_the_standard_library_and_huggingface_hub():
    """In the pod the package is named `tpserve`, in the repo `tpserve.fetch`: only relative imports work in both."""
    for path in SHIPPED.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1, f"{path.name} imports from outside its package"
                names = [node.module] if node.module else [alias.name for alias in node.names]
                for name in names:
                    assert (SHIPPED / f"{name}.py").is_file(), f"{path.name} imports .{name}"
                continue
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "huggingface_hub", f"{path.name} imports {name}"


def test_the_init_container_imports_the_shipped_files_not_an_installed_tpserve():
    env = {**os.environ, "PYTHONPATH": str(SHIPPED.parent), "PYTHONDONTWRITEBYTECODE": "1"}
    done = run(sys.executable, "-c", "import tpserve.fetchjob as m; print(m.__file__)", env=env)
    assert Path(done.stdout.strip()) == SHIPPED / "fetchjob.py", done.stderr


def test_a_pinned_commit_is_fetched_verified_and_its_folder_handed_to_the_server(hub, pod):
    sha = hub.publish(MODEL, FILES)
    done = fetchjob(hub, pod, "--revision", sha, "--tensor-parallel-size", "2")
    assert done.returncode == 0, done.stderr
    folder = pod["cache"] / "tiny-org--tiny-llama" / sha
    assert pod["path_file"].read_text() == f"{folder}\n"
    assert (folder / "tpserve-manifest.json").is_file() and (folder / "model.safetensors").is_file()
    assert pod["compile"].is_dir()
    assert done.stdout.splitlines()[-1].startswith(f"{MODEL}@{sha} = {sha}: 5 files, ")
    assert done.stdout.splitlines()[-1].endswith(f"verified at {folder}")


def test_a_second_start_with_a_pinned_commit_needs_no_network(hub, pod):
    sha = hub.publish(MODEL, FILES)
    assert fetchjob(hub, pod, "--revision", sha).returncode == 0
    hub.requests.clear()
    pod["path_file"].unlink()
    done = fetchjob(hub, pod, "--revision", sha)
    assert done.returncode == 0, done.stderr
    assert hub.requests == []
    assert pod["path_file"].read_text() == f"{pod['cache'] / 'tiny-org--tiny-llama' / sha}\n"


def test_a_moving_revision_is_refused_unless_allowed(hub, pod):
    hub.publish(MODEL, FILES)
    done = fetchjob(hub, pod, "--revision", "main")
    assert done.returncode == 2
    assert done.stderr == (
        f"error: revision 'main' of {MODEL} is a branch or tag, so what is served could change on any restart: "
        "pin a 40-hex commit sha, or pass --allow-moving-revision (the chart's model.allowMovingRevision)\n")
    assert not pod["path_file"].exists() and hub.requests == []


def test_an_allowed_moving_revision_hands_over_the_commit_it_resolved_to(hub, pod):
    first = hub.publish(MODEL, FILES)
    assert fetchjob(hub, pod, "--revision", "main", "--allow-moving-revision").returncode == 0
    assert pod["path_file"].read_text() == f"{pod['cache'] / 'tiny-org--tiny-llama' / first}\n"
    second = hub.publish(MODEL, {**FILES, "generation_config.json": b'{"temperature": 0.5}'})
    assert second != first
    done = fetchjob(hub, pod, "--revision", "main", "--allow-moving-revision")
    assert done.returncode == 0, done.stderr
    assert pod["path_file"].read_text() == f"{pod['cache'] / 'tiny-org--tiny-llama' / second}\n"


def test_a_tensor_parallel_size_the_heads_cannot_take_fails_before_the_server_starts(hub, pod):
    sha = hub.publish(MODEL, FILES)
    done = fetchjob(hub, pod, "--revision", sha, "--tensor-parallel-size", "3", "--pipeline-parallel-size", "3")
    assert done.returncode == 2
    assert done.stderr == (
        f"error: {MODEL} has 4 attention heads and 2 KV heads, which tensor parallel 3 cannot split evenly: "
        f"use one of 1, 2, 4; {MODEL} has 2 layers, fewer than pipeline parallel 3: lower it\n")
    assert not pod["path_file"].exists()


def test_chart_values_of_another_model_fail_before_the_server_starts_naming_config_jsons_values(hub, pod):
    sha = hub.publish(MODEL, FILES)
    done = fetchjob(hub, pod, "--revision", sha, "--declared", "model.attentionHeads=64",
                    "--declared", "model.kvHeads=8", "--declared", "model.layers=80")
    assert done.returncode == 2
    assert done.stderr == (
        f"error: the model values describe another model than {MODEL}'s config.json: model.attentionHeads=64 "
        "(config.json: 4), model.kvHeads=8 (config.json: 2), model.layers=80 (config.json: 2), and the chart "
        "sized, validated and tuned for them: set --set model.attentionHeads=4 --set model.kvHeads=2 "
        "--set model.layers=2 --set model.parameterBillions=0 --set model.hiddenSize=64 --set model.vocabSize=256\n")
    assert not pod["path_file"].exists()
    assert fetchjob(hub, pod, "--revision", sha, "--declared", "model.attentionHeads=4").returncode == 0


def test_a_declared_value_that_is_not_a_number_is_refused_by_name(hub, pod):
    done = fetchjob(hub, pod, "--revision", "0" * 40, "--declared", "model.layers=eighty")
    assert done.returncode == 2
    assert "--declared model.layers=eighty: expected NAME=NUMBER" in done.stderr


def test_a_gated_model_without_a_token_says_how_to_get_access(hub, pod):
    sha = hub.publish(MODEL, FILES, gated=True)
    done = fetchjob(hub, pod, "--revision", sha)
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: {MODEL} is gated: set HF_TOKEN to a token of an account that accepted "
                                  f"its terms at {hub.url}/{MODEL}")


def test_a_gated_model_is_fetched_with_the_token_from_hf_token(hub, pod):
    sha = hub.publish(MODEL, FILES, gated=True)
    hub.valid_tokens.add("hf_granted")
    hub.repos[MODEL].granted.add("hf_granted")
    done = fetchjob(hub, pod, "--revision", sha, token="hf_granted")
    assert done.returncode == 0, done.stderr
    assert {request.token for request in hub.requests} == {"hf_granted"}


def test_a_model_whose_config_tpserve_cannot_read_is_left_to_vllm_to_check(hub, pod):
    sha = hub.publish(MODEL, {**FILES, "config.json": b'{"model_type": "other", "text_config": {}}'})
    done = fetchjob(hub, pod, "--revision", sha, "--tensor-parallel-size", "4")
    assert done.returncode == 0, done.stderr
    assert "note: cannot check tensor parallel 4 against" in done.stdout


def prefill_claim(hub: HubFake, pod: dict) -> str:
    """Fill the claim in Hugging Face hub layout at the path the chart reads (hf/hub), then stop the hub."""
    sha = hub.publish(MODEL, FILES)
    snapshot_download(MODEL, revision=sha, cache_dir=pod["cache"].parent / "hub", endpoint=hub.url)
    hub.requests.clear()
    hub.stop()
    return sha


def test_offline_adopts_a_claim_filled_in_hub_layout_without_a_token_or_the_network(hub, pod):
    sha = prefill_claim(hub, pod)
    hub_cache = pod["cache"].parent / "hub"
    done = fetchjob(hub, pod, "--revision", sha, "--offline", "--from", str(hub_cache))
    assert done.returncode == 0, done.stderr
    folder = pod["cache"] / "tiny-org--tiny-llama" / sha
    assert pod["path_file"].read_text() == f"{folder}\n"
    assert '"source": "offline"' in (folder / "tpserve-manifest.json").read_text()
    assert done.stdout.splitlines()[0] == f"verifying {MODEL}@{sha} offline in {hub_cache}"
    assert hub.requests == []


def test_offline_names_the_missing_file(hub, pod):
    sha = prefill_claim(hub, pod)
    hub_cache = pod["cache"].parent / "hub"
    (hub_cache / "models--tiny-org--tiny-llama" / "snapshots" / sha / "config.json").unlink()
    done = fetchjob(hub, pod, "--revision", sha, "--offline", "--from", str(hub_cache))
    assert done.returncode == 1
    assert done.stderr.startswith(f"error: config.json is missing from {hub_cache}/models--tiny-org--tiny-llama/"
                                  f"snapshots/{sha}; fill it with hf download {MODEL} --revision {sha} ")
    assert not pod["path_file"].exists()


@pytest.mark.parametrize("revision", ["main", "a" * 40])
def test_offline_refuses_a_moving_revision(hub, pod, revision):
    done = fetchjob(hub, pod, "--revision", revision, "--offline", "--allow-moving-revision")
    assert done.returncode == 2
    assert done.stderr == ("error: --offline cannot resolve a moving revision without the hub: pin "
                           "model.revision to a 40-hex commit sha and drop --allow-moving-revision "
                           "(the chart's model.allowMovingRevision)\n")
    assert hub.requests == []
