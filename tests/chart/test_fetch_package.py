"""How the fetch package reaches the chart and k8s/ without a copy, shown with the real helm and kubectl.

charts/vllm/files/tpserve is a link to src/tpserve/fetch. Helm's chart loader follows it in `helm template`,
`helm install` and `helm package` (logging one line for it), and git keeps it, so a fresh clone packages the
same chart; the packaged chart holds plain files. kustomize
refuses a file reached through such a link, or from outside the kustomization's folder, so k8s/base takes the
files from kustomize Components inside the folders that hold them (tools/render_k8s.py writes them).
"""

from __future__ import annotations

import tarfile

import pytest
import yaml

from tests.chart.conftest import CHART
from tests.conftest import REPO, run

PACKAGE = REPO / "src" / "tpserve" / "fetch"
CHECK = CHART / "files" / "check"


def shipped_files(*folders) -> dict[str, str]:
    """What the fetch ConfigMap must hold: every *.py file of FOLDERS, by name, byte for byte."""
    return {path.name: path.read_bytes().decode() for folder in folders for path in sorted(folder.glob("*.py"))}


def fetch_configmap(text: str) -> dict:
    (configmap,) = [doc for doc in yaml.safe_load_all(text)
                    if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-fetch")]
    return configmap


def test_the_chart_reaches_the_package_through_a_link_git_keeps():
    assert (CHART / "files" / "tpserve").is_symlink()
    assert (CHART / "files" / "tpserve").resolve() == PACKAGE
    done = run("git", "ls-files", "-s", "charts/vllm/files/tpserve")
    assert done.stdout.startswith("120000 "), done.stdout  # git's mode for a symbolic link


def test_helm_logs_one_line_on_stderr_for_the_link_and_renders_all_the_same(tools):
    """Helm's loader logs every link it follows (helm/helm#7523 kept that on purpose); tools that fail on any
    helm stderr, as checkov does, scan the packaged chart instead (tests/chart/test_scanners.py)."""
    done = run(str(tools.helm), "template", "r", str(CHART), env=tools.env, timeout=60)
    assert done.returncode == 0
    assert done.stderr == (f'level=INFO msg="found symbolic link in path. Contents of linked file included and '
                           f'used" path={CHART / "files" / "tpserve"} resolved={PACKAGE}\n')


@pytest.mark.parametrize("how", ["template", "install --dry-run=client", "package, then template the .tgz"])
def test_helm_puts_the_package_files_byte_for_byte_in_the_fetch_configmap(tools, tmp_path, how):
    chart = str(CHART)
    if how.startswith("package"):
        done = tools.helm_run("package", chart, "--destination", str(tmp_path))
        assert done.returncode == 0, done.stderr
        (chart,) = map(str, tmp_path.glob("vllm-*.tgz"))
    argv = ("install", "r", chart, "--dry-run=client") if how.startswith("install") else ("template", "r", chart)
    done = tools.helm_run(*argv)
    assert done.returncode == 0, done.stderr
    manifest = done.stdout.split("MANIFEST:\n", 1)[-1].split("\nNOTES:\n", 1)[0]
    assert fetch_configmap(manifest)["data"] == shipped_files(PACKAGE, CHECK)


def test_the_packaged_chart_holds_the_package_files_and_no_kustomize_or_python_cache_files(tools, tmp_path):
    done = tools.helm_run("package", str(CHART), "--destination", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (archive,) = tmp_path.glob("vllm-*.tgz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        shipped = {name.removeprefix("vllm/files/tpserve/"): tar.extractfile(name).read()
                   for name in names if name.startswith("vllm/files/tpserve/")}
    assert shipped == {path.name: path.read_bytes() for path in PACKAGE.glob("*.py")}
    assert not [name for name in names if name.endswith("kustomization.yaml") or "__pycache__" in name]


def test_a_fresh_clone_packages_a_chart_that_renders_the_same_package(tools, tmp_path):
    clone = tmp_path / "clone"
    done = run("git", "clone", "--quiet", "--depth", "1", f"file://{REPO}", str(clone), timeout=300)
    assert done.returncode == 0, done.stderr
    assert (clone / "charts" / "vllm" / "files" / "tpserve").is_symlink()
    done = tools.helm_run("package", str(clone / "charts" / "vllm"), "--destination", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (archive,) = tmp_path.glob("vllm-*.tgz")
    done = tools.helm_run("template", "r", str(archive))
    assert done.returncode == 0, done.stderr
    clone_package = clone / "src" / "tpserve" / "fetch"
    assert fetch_configmap(done.stdout)["data"] == shipped_files(clone_package, clone / "charts/vllm/files/check")


def test_the_kustomize_base_puts_the_package_files_byte_for_byte_in_the_fetch_configmap(tools):
    done = tools.kubectl_run("kustomize", str(REPO / "k8s" / "base"))
    assert done.returncode == 0, done.stderr
    assert fetch_configmap(done.stdout)["data"] == shipped_files(PACKAGE, CHECK)


@pytest.mark.parametrize("reached", ["through a link to its folder", "through a link to the file",
                                     "by a path out of the kustomization's folder"])
def test_kustomize_refuses_a_generator_file_from_outside_its_folder(tools, tmp_path, reached):
    """Why k8s/base uses Components in the package's own folder rather than a link or a ../ path."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "job.py").write_text("print('fetch')\n")
    base = tmp_path / "base"
    base.mkdir()
    if reached == "through a link to its folder":
        (base / "code").symlink_to("../code")
        source = "code/job.py"
    elif reached == "through a link to the file":
        (base / "job.py").symlink_to("../code/job.py")
        source = "job.py"
    else:
        source = "../code/job.py"
    (base / "kustomization.yaml").write_text(yaml.safe_dump(
        {"configMapGenerator": [{"name": "fetch", "files": [source]}]}))
    done = tools.kubectl_run("kustomize", str(base))
    assert done.returncode != 0
    assert "security; file" in done.stderr and f"is not in or below '{base}'" in done.stderr
