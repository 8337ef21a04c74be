"""checkov and trivy on the chart, offline: no failed check except the waivers in scan_waivers.yaml.

checkov is pinned and lives in its own virtualenv (tools/checkov_env.py). It renders the chart with the
helm it finds on PATH, and finds nothing to scan without one, silently: every scan here asserts that
it saw the chart's objects.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, CI_VALUES, MATRIX, TOOLS_BIN, values_args
from tests.conftest import REPO, run

WAIVERS = yaml.safe_load((Path(__file__).parent / "scan_waivers.yaml").read_text())
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


def test_the_helm_binary_checkov_renders_with_is_the_pinned_one(tools):
    assert tools.helm.parent == TOOLS_BIN


def test_checkov_finds_nothing_in_the_chart_beyond_the_waivers_and_really_scanned_it(checkov, tools, tmp_path):
    report = checkov_scan(checkov, tools, tmp_path, "helm", CHART, "--skip-check", ",".join(WAIVERS["checkov"]))
    assert failed_ids(report) == set(), report["results"]["failed_checks"]
    assert report["summary"]["resource_count"] >= len(CHART_KINDS), "checkov rendered nothing: is helm on PATH?"
    assert report["summary"]["passed"] > 100
    assert report["returncode"] == 0


def test_checkov_finds_nothing_in_any_matrix_rendering_beyond_the_waivers(checkov, tools, tmp_path, render_text):
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    entries = ["defaults"] + [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
    for entry in entries:
        (rendered / f"{entry}.yaml").write_text(render_text("r", *values_args(entry)))
    report = checkov_scan(checkov, tools, tmp_path, "kubernetes", rendered, "--skip-check",
                          ",".join(WAIVERS["checkov"]))
    assert failed_ids(report) == set(), report["results"]["failed_checks"]
    assert report["summary"]["resource_count"] >= len(entries) * len(CHART_KINDS)
    assert report["returncode"] == 0


def test_every_checkov_waiver_is_still_needed_and_has_a_reason(checkov, tools, tmp_path):
    assert all(reason.strip() for reason in WAIVERS["checkov"].values())
    report = checkov_scan(checkov, tools, tmp_path, "helm", CHART, quiet=False)
    assert failed_ids(report) == set(WAIVERS["checkov"])
    skipped = {check["check_id"] for check in report["results"].get("skipped_checks", [])}
    assert skipped == {"CKV_K8S_8", "CKV_K8S_9", "CKV2_K8S_6"}, "the test pod's own waivers changed"


def trivy(tmp_path: Path, ignorefile: str, *values: str) -> tuple[int, dict[str, dict]]:
    """Exit status and the JSON result of each template of `trivy config` on the chart, with an empty cache."""
    trivy_bin = Path(sys.executable).parent / "trivy"
    assert trivy_bin.exists(), "trivy is not in the venv: install the dev extra (make venv)"
    env = {key: value for key, value in os.environ.items() if not key.startswith("TRIVY_")}
    done = run(str(trivy_bin), "config", *TRIVY_OFFLINE, "--cache-dir", str(tmp_path / "trivy-cache"),
               "--config", "", "--ignorefile", ignorefile, "--format", "json", "--quiet", "--exit-code", "1",
               *values, str(CHART.relative_to(REPO)), env=env, timeout=120)
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


SCALE_OUT = Path(__file__).parent / "scale-out-values.yaml"


def test_trivy_finds_nothing_beyond_the_waivers_in_the_scale_out_objects(tmp_path, trivy_ignorefile):
    """multiNode, autoscaling and gateway. The scanners know no CRD, so they run only their generic checks on the
    LeaderWorkerSet and do not look into its pod templates: those are the Deployment's pod spec (vllm.podSpec;
    tests/chart/test_multinode.py pins that), which every other scan here covers."""
    status, results = trivy(tmp_path, trivy_ignorefile, "--helm-values", str(SCALE_OUT.relative_to(REPO)))
    assert {"templates/leaderworkerset.yaml", "templates/scaledobject.yaml", "templates/inferencepool.yaml",
            "templates/httproute.yaml"} <= set(results), sorted(results)
    for result in results.values():
        assert result["MisconfSummary"]["Failures"] == 0, result["Misconfigurations"]
    assert status == 0


def test_checkov_finds_nothing_beyond_the_waivers_in_the_scale_out_objects(checkov, tools, tmp_path, render_text):
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    (rendered / "scale-out.yaml").write_text(render_text("r", "-f", str(SCALE_OUT)))
    report = checkov_scan(checkov, tools, tmp_path, "kubernetes", rendered, "--skip-check",
                          ",".join(WAIVERS["checkov"]))
    assert failed_ids(report) == set(), report["results"]["failed_checks"]
    assert report["summary"]["resource_count"] >= 5
    assert report["returncode"] == 0
