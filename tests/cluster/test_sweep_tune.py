"""`tpserve sweep --on kubernetes --load-in-cluster 2` (two points, each measured by the chart's Locust master and
2 worker Jobs) and `tpserve tune --on kubernetes` (two candidates, measured through `kubectl port-forward`) against
the real cluster, the CPU profile, their records read by `tpserve report` (docs/cluster-test.md).

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
from tests.cluster.test_loadtest import CLUSTER_SETS
from tests.pod.model import REPO_ID

LOAD = "--tensor 1 --replicas 1 --repeats 1 --num-requests 16 --max-tokens 32 --concurrency 4"


def search_on_kubernetes(shell, hub, command: str, release: str, axis: str, out, extra: str = "") -> None:
    """`tpserve COMMAND` on the cluster with the CPU values (-f and --set, as helm takes them), timed."""
    start = time.monotonic()
    done = shell.run(f"tpserve {command} {REPO_ID} --on kubernetes --release {release} --namespace default "
                     f"--chart charts/vllm {cpu_values(hub)} {LOAD} --vllm {axis} {extra} --out {shlex.quote(str(out))}",
                     timeout=3600, check=False)
    REPORT.time(f"tpserve {command} --on kubernetes {extra} (2 server starts)".replace("  ", " "), start)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def records(folder) -> list[dict]:
    """The run records a search wrote (NAME-LABEL-runN.json, the served name's slash as --), one per run."""
    return [json.loads(path.read_text()) for path in sorted(folder.glob("*-run*.json"))]


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
    search_on_kubernetes(shell, hub, "sweep", release("sweep"), "max-num-seqs=default,32", out,
                         f"--load-in-cluster 2 {CLUSTER_SETS}")
    runs = records(out)
    assert len(runs) == 2, [str(path.relative_to(out)) for path in out.rglob("*.json")]
    assert {path.name for path in out.glob("*-run*.json")} == {"tpserve-test--tiny-llama-tp1x1-run1.json",
                                                               "tpserve-test--tiny-llama-tp1x1-max-num-seqs=32-run1.json"}
    assert json.loads((out / "failures.json").read_text()) == []
    assert not shell.kubectl_json("get", "jobs", "-l", "app.kubernetes.io/instance=sweep")["items"], "Jobs removed"
    for run in runs:
        assert (run["completed"], run["failed"]) == (16, 0), run.get("failure")
        assert run["token_check"]["status"] == "ok"
        # Measured by the master Job's pod (its host name is the pod's), not from this machine.
        assert run["provenance"]["client_host"].startswith("sweep-vllm-loadtest-"), run["provenance"]
    flags = sorted(json.dumps(run.get("layout", {}).get("vllm_flags", {}), sort_keys=True) for run in runs)
    assert any("max-num-seqs" in flag for flag in flags), flags
    report = shell.run(f"tpserve report {shlex.quote(str(out))}").stdout
    rows = [line for line in report.splitlines() if line.startswith(f"| {REPO_ID} | CPU (Kubernetes release default/sweep)")]
    assert len(rows) == 2 and sum("--max-num-seqs=32" in row for row in rows) == 1, report
    REPORT.facts["sweep on kubernetes: output tok/s per point"] = [round(run["output_throughput"], 1) for run in runs]


def test_tune_on_kubernetes_compares_two_candidates_and_names_the_helm_line_of_the_winner(
        shell, hub, tmp_path, release, installed):
    out = tmp_path / "tune"
    search_on_kubernetes(shell, hub, "tune", release("tune"), "max-num-seqs=32", out)
    summary = json.loads((out / "tune.json").read_text())
    assert len(summary["candidates"]) == 2, summary["candidates"]
    assert summary["winner"]["deploy"].startswith("helm upgrade --install tune charts/vllm --namespace default")
    report = shell.run(f"tpserve report {shlex.quote(str(out))}")
    assert report.returncode == 0
    REPORT.facts["tune on kubernetes: winner"] = summary["winner"].get("label") or summary["winner"]["deploy"]
