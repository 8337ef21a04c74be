"""The real helm and kubectl, pinned by tools/k8s_tools.py, and helpers that render charts/vllm with them.

Helm and kubectl run with their homes in a temporary folder and a kubeconfig that does not exist, so
nothing here reads the user's clusters or settings.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run

CHART = REPO / "charts" / "vllm"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
TOOLS_BIN = REPO / ".cache" / "tools" / "bin"
# Helm logs this line on every load of the chart folder, which links files/tpserve to src/tpserve/fetch
# (tests/chart/test_fetch_package.py pins it); helm_run leaves it out so stderr reads as the user's error.
SYMLINK_NOTICE = re.compile(r'^level=INFO msg="found symbolic link in path\. .*\n', re.MULTILINE)
# Every matrix entry: the chart's defaults, then each values file of charts/vllm/ci.
MATRIX = pytest.mark.parametrize("entry", ["defaults"] + [path.name.removesuffix("-values.yaml") for path in CI_VALUES])


def load_tool(name: str):
    """A script of tools/ as a module, for its pinned constants."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = sys.modules.setdefault(name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


def values_args(entry: str) -> tuple[str, ...]:
    """The helm arguments of a matrix entry."""
    return () if entry == "defaults" else ("-f", str(CHART / "ci" / f"{entry}-values.yaml"))


# The custom resources the chart renders. Its templates refuse each unless the cluster serves its API, so renders
# here pass them as a cluster with every controller installed would (`bare=True` renders without them); client-side
# dry runs, which cannot be given API versions, run with the check off (helm lint only logs a template's `fail`).
CRD_API_VERSIONS = ("leaderworkerset.x-k8s.io/v1/LeaderWorkerSet", "keda.sh/v1alpha1/ScaledObject",
                    "inference.networking.k8s.io/v1/InferencePool", "gateway.networking.k8s.io/v1/HTTPRoute",
                    "monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path
    env: dict[str, str]

    def helm_run(self, *args: str, bare: bool = False):
        if not bare and args[0] == "template":
            args = (*args, *(f"--api-versions={api}" for api in CRD_API_VERSIONS))
        elif not bare and args[0] in ("install", "upgrade"):
            args = (*args, "--set", "requireAPIs=false")
        done = run(str(self.helm), *args, env=self.env, timeout=60)
        done.stderr = SYMLINK_NOTICE.sub("", done.stderr)
        return done

    def kubectl_run(self, *args: str):
        return run(str(self.kubectl), *args, env=self.env, timeout=60)


@pytest.fixture(scope="session")
def tools(tmp_path_factory) -> Tools:
    done = run(sys.executable, "tools/k8s_tools.py", str(TOOLS_BIN), timeout=300)
    assert done.returncode == 0, done.stderr
    helm, kubectl = (Path(line) for line in done.stdout.split())
    home = tmp_path_factory.mktemp("k8s-home")
    env = {**os.environ, "HOME": str(home), "KUBECONFIG": str(home / "no-cluster"),
           "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    return Tools(helm=helm, kubectl=kubectl, env=env)


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    found = {manifest["kind"]: manifest for manifest in manifests}
    assert len(found) == len(manifests), "one object per kind expected"
    return found


@pytest.fixture(scope="session")
def render_text(tools):
    """``render_text("llama70b", "--set", "parallelism.tensor=1")`` -> helm template's output, cached."""
    cache: dict[tuple[str, ...], str] = {}

    def render_text(release: str = "llama70b", *args: str) -> str:
        key = (release, *args)
        if key not in cache:
            done = tools.helm_run("template", release, str(CHART), *args)
            assert done.returncode == 0, done.stderr
            cache[key] = done.stdout
        return cache[key]

    return render_text


@pytest.fixture(scope="session")
def render(render_text):
    """``render("llama70b", "--set", "parallelism.tensor=1")`` -> the rendered objects by kind."""

    def render(release: str = "llama70b", *args: str) -> dict[str, dict]:
        return by_kind([doc for doc in yaml.safe_load_all(render_text(release, *args)) if doc])

    return render


@pytest.fixture(scope="session")
def render_error(tools):
    """``render_error("--set", "model.name=")`` -> helm template's stderr, which must be a failure."""

    def render_error(*args: str) -> str:
        done = tools.helm_run("template", "llama70b", str(CHART), *args)
        assert done.returncode == 1, done.stdout[-2000:]
        return done.stderr

    return render_error


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def container(deployment: dict) -> dict:
    (only,) = pod_spec(deployment)["containers"]
    return only


def init_container(deployment: dict) -> dict:
    (only,) = pod_spec(deployment)["initContainers"]
    return only


def env_of(container_spec: dict) -> dict[str, dict]:
    """A container's variables by name; each as written (value or valueFrom). Names must be unique."""
    names = [var["name"] for var in container_spec["env"]]
    assert len(names) == len(set(names)), f"a variable is set twice: {names}"
    return {var["name"]: var for var in container_spec["env"]}


def mounts_of(container_spec: dict) -> dict[str, dict]:
    return {mount["mountPath"]: mount for mount in container_spec["volumeMounts"]}


def volumes_of(deployment: dict) -> dict[str, dict]:
    return {volume["name"]: volume for volume in pod_spec(deployment)["volumes"]}
