"""``tpserve sweep`` locally on the real vLLM server (CPU), then ``tpserve report`` over its results."""

import json

from tests.conftest import tpserve
from tests.e2e.conftest import CACHE
from tpserve.server import cpu_env


def test_a_local_sweep_measures_each_layout_records_failures_and_reports(tiny_model, tmp_path, port):
    out = tmp_path / "sweep"
    done = tpserve("sweep", str(tiny_model), "--served-model-name", "tiny", "--tensor", "1,2", "--replicas", "1,2",
                   "--repeats", "2", "--num-requests", "8", "--max-tokens", "8", "--concurrency", "4",
                   "--dummy-weights", "--serve-arg=--max-model-len=1024", "--base-port", str(port),
                   "--health-timeout", "300", "--out", str(out), env=cpu_env(CACHE), timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = sorted(p.name for p in out.glob("tiny-*.json"))
    assert runs == ["tiny-tp1x1-run1.json", "tiny-tp1x1-run2.json", "tiny-tp1x2-run1.json", "tiny-tp1x2-run2.json"]
    two = json.loads((out / "tiny-tp1x2-run1.json").read_text())
    assert two["layout"]["replicas"] == 2 and two["completed"] == 8 and two["token_check"]["status"] == "ok"
    assert len(two["token_check"]["parts"]) == 2 and two["workers"] == 2
    assert two["layout"]["vllm_flags"] == {"--max-model-len": "1024", "--load-format": "dummy"}
    assert two["context"] == {"name": "tiny", "repeat": 1, "repeats": 2}
    failures = {(f["tensor"], f["replicas"]): f["error"] for f in json.loads((out / "failures.json").read_text())}
    assert failures[(2, 1)].startswith("the server exited with status 2 before it became healthy — error: tensor "
                                       "× pipeline parallel = 2 × 1 = 2 needs 2 GPUs but none is visible")
    assert failures[(2, 2)] == "tp2x2 needs 4 devices but 2 are available (0,1)"

    plot = tmp_path / "tps.png"
    done = tpserve("report", str(out), "--plot", str(plot), "--price", "epyc=0.1", "--tpot-budget-ms", "1000")
    assert done.returncode == 0, done.stderr
    assert "| tiny | CPU (" in done.stdout and "| 1 (1 × 1) |" in done.stdout and "| 2 (1 × 2) |" in done.stdout
    assert "Most tok/s per GPU: tiny on" in done.stdout and "$ per 1M output tokens" in done.stdout
    assert plot.stat().st_size > 10_000
