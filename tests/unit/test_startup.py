"""tpserve startup: the phases of a server's start, read from recorded vLLM logs (GPU 0.26.0, CPU 0.32.0)."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
from datetime import datetime

import pytest

from tests.conftest import REPO
from tpserve.fetch.errors import StartupLogError
from tpserve.startup import (
    COLD_FIXED_S,
    LOAD_BYTES_PER_S,
    STEPS,
    WARM_FIXED_S,
    expected_ready,
    line_time,
    read_startup,
    startup,
)

CPU_LOG = REPO / "tests/data/vllm-0.32.0-cpu-startup.log"
GPU_LOGS = [
    REPO / "results/20261126-h200x4-tp4/llama-2-7b-tp4-server.log",
    REPO / "results/20261126-h200x4-tp4/llama-2-70b-tp4-server.log",
    REPO / "results/20261130-h200x2-pod-rehearsal/server.log",
    REPO / "results/20261201b-h200x1-tune/call3/logs/7b-tp1-fp8-0.log.gz",
    REPO / "results/20261201b-h200x1-tune/call3/tune-cli/7b-tp1-tpserve-tune/logs/tp1x1-replica0.log.gz",
]


def lines_of(path):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", errors="replace") as log:
        return log.readlines()


def prefix_time(line: str) -> float:
    return datetime.fromisoformat(line.split(" ", 1)[0]).timestamp()


@pytest.mark.parametrize("path", [CPU_LOG, *GPU_LOGS], ids=lambda p: p.parent.name + "/" + p.name)
def test_phases_add_up_to_the_total_and_their_shares_to_one(path):
    result = read_startup(path)
    assert result.phases
    assert sum(p.seconds for p in result.phases) == pytest.approx(result.total_s, abs=0.01)
    assert sum(p.share for p in result.phases) == pytest.approx(1, abs=0.01)
    assert all(p.seconds >= 0 for p in result.phases)


@pytest.mark.parametrize("path", GPU_LOGS, ids=lambda p: p.parent.name + "/" + p.name)
def test_gpu_phases_come_in_vllms_order_and_keep_vllms_own_figures(path):
    text = "".join(lines_of(path))
    result = read_startup(path)
    names = [p.name for p in result.phases]
    assert names == sorted(names, key=[s.name for s in STEPS].index)
    assert {"weight loading", "torch.compile", "CUDA-graph capture", "engine warm-up after capture"} <= set(names)
    phases = {p.name: p for p in result.phases}
    compile_s = float(re.search(r"torch\.compile took ([\d.]+) s in total", text).group(1))
    assert phases["torch.compile"].reported_s == compile_s
    assert result.facts["kv_cache_tokens"] == int(re.search(r"GPU KV cache size: ([\d,]+)", text).group(1).replace(",", ""))
    assert result.facts["dummy_weights"] is True


def test_a_gpu_log_without_line_prefixes_has_no_time_for_health_and_says_so():
    result = read_startup(GPU_LOGS[0])
    assert result.ready
    assert any("/health 200 has no timestamp" in note for note in result.notes)
    assert "first /health 200" not in [p.name for p in result.phases]


def test_tensor_parallel_loading_ends_with_the_slowest_worker():
    lines = lines_of(GPU_LOGS[0])
    loaded = [line_time(line)[0] for line in lines if "Model loading took" in line]
    assert len(loaded) == 4
    result = startup(lines)
    started = next(line_time(line)[0] for line in lines if "Loading model from scratch" in line)
    assert {p.name: p.seconds for p in result.phases}["weight loading"] == max(loaded) - started


def test_a_timestamped_cpu_log_runs_from_the_command_to_the_first_health_200():
    lines = lines_of(CPU_LOG)
    health = next(line for line in lines if '"GET /health HTTP/1.1" 200' in line)
    result = startup(lines)
    assert result.ready and not result.notes
    assert result.total_s == pytest.approx(prefix_time(health) - prefix_time(lines[0]), abs=0.001)
    names = [p.name for p in result.phases]
    assert names[0] == "tpserve checks" and names[-1] == "first /health 200"
    assert "CUDA-graph capture" not in names


def test_a_cpu_server_captures_no_graphs_so_its_time_goes_to_the_next_phase():
    phases = {p.name: p for p in read_startup(CPU_LOG).phases}
    assert "CUDA-graph capture" in phases["engine warm-up after capture"].note


def test_only_the_first_start_in_a_log_counts():
    lines = lines_of(CPU_LOG)
    once = startup(lines)
    assert startup(lines + lines).total_s == once.total_s


def test_a_server_that_never_became_ready_reports_the_phases_it_reached():
    lines = lines_of(CPU_LOG)
    cut = next(i for i, line in enumerate(lines) if "KV cache size" in line)
    result = startup(lines[:cut])
    assert not result.ready
    assert result.phases[-1].name == "torch.compile"
    assert "not ready" in result.notes[-1]


def test_vllm_stamps_without_a_year_step_into_the_next_year_across_new_year():
    lines = ["(APIServer pid=1) INFO 12-31 23:59:50 [api_utils.py:1] banner\n",
             "(APIServer pid=1) INFO 12-31 23:59:58 [model.py:1] Resolved architecture: LlamaForCausalLM\n",
             "(EngineCore pid=2) INFO 01-01 00:00:10 [core.py:1] Initializing a V1 LLM engine (v0.26.0)\n"]
    assert startup(lines).total_s == 20


@pytest.mark.parametrize("text", ["", "hello\nworld\n", "INFO:     127.0.0.1:1 - \"GET /health HTTP/1.1\" 200 OK\n"])
def test_a_file_with_no_vllm_start_is_refused_with_the_fix(text):
    with pytest.raises(StartupLogError, match="no vLLM start in this log: pass a vLLM server's own log"):
        startup(text.splitlines(keepends=True))


def test_the_command_prints_a_table_and_a_missing_file_is_one_line():
    shown = subprocess.run([sys.executable, "-m", "tpserve", "startup", str(CPU_LOG)], check=False, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "| torch.compile |" in shown.stdout and "**total**" in shown.stdout
    missing = subprocess.run([sys.executable, "-m", "tpserve", "startup", str(CPU_LOG) + ".absent"],
                             check=False, capture_output=True, text=True)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [f"error: no log at {CPU_LOG}.absent: pass the server's log file"]


@pytest.mark.parametrize("checkpoint_bytes", [0, 13_476_864_776, 137_953_296_384])
def test_expected_time_to_ready_is_the_measured_fixed_cost_plus_the_read_at_the_measured_rate(checkpoint_bytes):
    ready = expected_ready(checkpoint_bytes)
    read_s = checkpoint_bytes / LOAD_BYTES_PER_S
    assert ready.cold_s == pytest.approx(COLD_FIXED_S + read_s, abs=0.05)
    assert ready.warm_s == pytest.approx(WARM_FIXED_S + read_s, abs=0.05)
    assert ready.warm_s < ready.cold_s


def test_plan_gives_each_layout_a_time_to_ready_that_falls_as_its_gpus_read_less():
    shown = subprocess.run([sys.executable, "-m", "tpserve", "plan", "llama-2-70b", "--gpu", "h200", "--settings",
                            "fp8", "--json"], check=False, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    ready = json.loads(shown.stdout)["time_to_ready"]
    assert "results/20261206-h100x1-ready" in ready["basis"]
    colds = [ready["layouts"][name]["cold_s"] for name in ("TP 1", "TP 2", "TP 4", "TP 8")]
    assert colds == sorted(colds, reverse=True)
    # quantized at load, a server reads the 16-bit checkpoint, not the fp8 weights it keeps
    assert colds[0] == pytest.approx(COLD_FIXED_S + 68_976_648_192 * 2 / LOAD_BYTES_PER_S, abs=1)
