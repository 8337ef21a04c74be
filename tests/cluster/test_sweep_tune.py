"""`tpserve sweep --on kubernetes` (two points) and `tpserve tune --on kubernetes` (two candidates) against the
real cluster, the CPU profile, their records read by `tpserve report` (docs/cluster-test.md).

Each command deploys its own release (a claim of its own, fetched from the hub stand-in) with `helm upgrade
--install`, waits for the rollout through the kubernetes client, measures through `kubectl port-forward`, and
leaves the release for the user; the test uninstalls it afterwards.
"""

from __future__ import annotations

import json
import shlex
import time

import pytest

from tests.cluster.conftest import REPORT, cpu_values
from tests.pod.model import REPO_ID

LOAD = "--tensor 1 --replicas 1 --repeats 1 --num-requests 16 --max-tokens 32 --concurrency 4"


def chart_options(hub) -> str:
    """The CPU values as the sweep takes them (-f and --set, as helm does)."""
    return cpu_values(hub)


def records(folder) -> list[dict]:
    found = [json.loads(path.read_text()) for path in sorted(folder.rglob("*.json"))
             if path.name not in ("tune.json", "sweep.json")]
    return [record for record in found if "output_throughput" in record or "failure" in record]


@pytest.fixture
def release(shell):
    """A release name the test removes afterwards, with its claim."""
    names = []

    def name(base: str) -> str:
        names.append(base)
        return base

    yield name
    for base in names:
        shell.run(f"helm uninstall {base} --wait", check=False, timeout=600)
        shell.run(f"kubectl delete pvc {base}-vllm-cache --wait=false", check=False)


def test_sweep_on_kubernetes_measures_two_points_and_report_reads_them(shell, hub, tmp_path, release, installed):
    out = tmp_path / "sweep"
    start = time.monotonic()
    done = shell.run(f"tpserve sweep {REPO_ID} --on kubernetes --release {release('sweep')} --namespace default "
                     f"--chart charts/vllm {chart_options(hub)} {LOAD} --vllm max-num-seqs=default,32 "
                     f"--out {shlex.quote(str(out))}", timeout=3600, check=False)
    REPORT.time("tpserve sweep --on kubernetes (2 points)", start)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = records(out)
    assert len(runs) == 2, [path.name for path in out.rglob("*.json")]
    for run in runs:
        assert (run["completed"], run["failed"]) == (16, 0), run.get("failure")
        assert run["token_check"]["status"] == "ok"
    flags = sorted(json.dumps(run.get("layout", {}).get("vllm_flags", {}), sort_keys=True) for run in runs)
    assert any("max-num-seqs" in flag for flag in flags), flags
    report = shell.run(f"tpserve report {shlex.quote(str(out))}")
    assert "Kubernetes release default/sweep" in report.stdout or "sweep" in report.stdout, report.stdout
    REPORT.facts["sweep on kubernetes: output tok/s per point"] = [round(run["output_throughput"], 1) for run in runs]


def test_tune_on_kubernetes_compares_two_candidates_and_names_the_helm_line_of_the_winner(
        shell, hub, tmp_path, release, installed):
    out = tmp_path / "tune"
    start = time.monotonic()
    done = shell.run(f"tpserve tune {REPO_ID} --on kubernetes --release {release('tune')} --namespace default "
                     f"--chart charts/vllm {chart_options(hub)} {LOAD} --vllm max-num-seqs=32 "
                     f"--out {shlex.quote(str(out))}", timeout=3600, check=False)
    REPORT.time("tpserve tune --on kubernetes (2 candidates)", start)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "tune.json").read_text())
    assert len(summary["candidates"]) == 2, summary["candidates"]
    assert summary["winner"]["deploy"].startswith("helm upgrade --install tune charts/vllm --namespace default")
    report = shell.run(f"tpserve report {shlex.quote(str(out))}")
    assert report.returncode == 0
    REPORT.facts["tune on kubernetes: winner"] = summary["winner"].get("label") or summary["winner"]["deploy"]
