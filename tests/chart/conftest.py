"""The real helm and kubectl, pinned by tools/k8s_tools.py, and helpers that render charts/vllm with them.

Helm and kubectl run with their homes in a temporary folder and a kubeconfig that does not exist, so
nothing here reads the user's clusters or settings.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, run

CHART = REPO / "charts" / "vllm"
TOOLS_BIN = REPO / ".cache" / "tools" / "bin"


def load_tool(name: str):
    """A script of tools/ as a module, for its pinned constants."""
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = sys.modules.setdefault(name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path
    env: dict[str, str]

    def helm_run(self, *args: str):
        return run(str(self.helm), *args, env=self.env, timeout=60)

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
def render(tools):
    """``render("llama70b", "--set", "parallelism.tensor=1")`` -> the rendered objects by kind."""

    def render(release: str = "llama70b", *args: str) -> dict[str, dict]:
        done = tools.helm_run("template", release, str(CHART), *args)
        assert done.returncode == 0, done.stderr
        return by_kind([doc for doc in yaml.safe_load_all(done.stdout) if doc])

    return render


def container(deployment: dict) -> dict:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only
