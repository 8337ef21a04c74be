""".ci/run, the whole of CI: it must run both test commands and stay clean shell."""

from __future__ import annotations

import shutil
import subprocess
import tomllib

import pytest

from tests.conftest import REPO

CI_RUN = REPO / ".ci" / "run"


def test_ci_runs_the_test_suite_and_then_the_pod_test():
    lines = [line.strip() for line in CI_RUN.read_text().splitlines()]
    assert lines.index("make test") < lines.index("make pod-test")


def test_ci_runs_the_scale_out_test_after_the_cluster_test_and_make_test_leaves_it_out():
    lines = [line.strip() for line in CI_RUN.read_text().splitlines()]
    assert lines.index("make cluster-test") < lines.index("make scale-out-test")
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "not scaleout" in addopts


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (.ci/run installs it)")
def test_ci_run_passes_shellcheck():
    done = subprocess.run(["shellcheck", str(CI_RUN)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout


def test_podman_gets_runc_and_ulimits_the_sandbox_allows():
    conf = tomllib.loads((REPO / ".ci" / "containers.conf").read_text())
    assert conf == {"containers": {"default_ulimits": ["nofile=20000:20000", "nproc=32768:32768"]},
                    "engine": {"runtime": "runc"}}
