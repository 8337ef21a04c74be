"""The run record: one schema for every producer and reader, readable by vLLM's tools, every version loaded."""

import json
import subprocess
from dataclasses import replace
from fnmatch import fnmatch
from pathlib import Path

import pytest

from tests.conftest import REPO
from tpserve.fetch.errors import ConfigError
from tpserve.report import check_same_workload, load_runs, rows
from tpserve.workload import runrecord
from tpserve.workload.metrics import summarize
from tpserve.workload.requesttypes import RequestResult, RunPlan
from tpserve.workload.runrecord import SCHEMA_VERSION, Layout, Provenance, RunRecord, TokenCheck, merge

PLAN = RunPlan(host="http://127.0.0.1:8100", model="tiny", max_tokens=4, num_requests=2, concurrency=2, seed=7)


def results(*sends, error=None):
    return [RequestResult(f"p{i}", send, send + 1.0, ttft=0.1, latency=1.0, prompt_tokens=3, completion_tokens=4,
                          max_tokens=4, error=error) for i, send in enumerate(sends)]


def record(sent=(0.0, 0.5), check=None, **changes):
    done = results(*sent)
    base = RunRecord(workload=PLAN, metrics=summarize(done), token_check=check or TokenCheck("ok", 8, 6, 8, 6),
                     provenance=Provenance("2026-11-30T10:00:00+00:00", "2026-11-30T10:00:02+00:00", "0.32.0"),
                     layout=Layout("/m/tiny", "CPU (AMD EPYC)", vllm_flags={"--load-format": "dummy"}))
    return replace(base, **changes)


def test_a_record_survives_json_unchanged():
    original = record(context={"name": "tiny", "repeat": 1, "repeats": 2}, errors={"HTTP 500: x": 1},
                      problems=("1 of 3 requests failed",))
    assert RunRecord.from_json(json.loads(json.dumps(original.to_json()))) == original


def test_the_json_carries_vllm_bench_serves_summary_keys_with_their_meaning():
    document = record().to_json()
    assert document[runrecord.VERSION_KEY] == SCHEMA_VERSION == 2
    assert {key: document[key] for key in ("date", "endpoint_type", "model_id", "tokenizer_id", "num_prompts",
                                           "request_rate", "burstiness", "max_concurrency",
                                           "max_concurrent_requests")} == {
        "date": "20261130-100000", "endpoint_type": "openai", "model_id": "tiny", "tokenizer_id": "tiny",
        "num_prompts": 2, "request_rate": "inf", "burstiness": 1.0, "max_concurrency": 2,
        "max_concurrent_requests": 2}
    assert document["output_throughput"] == pytest.approx(8 / 1.5)
    paced = record(workload=replace(PLAN, request_rate=2.5, endpoint="chat")).to_json()
    assert (paced["request_rate"], paced["endpoint_type"]) == (2.5, "openai-chat")


def test_a_file_of_an_unknown_schema_version_is_refused_naming_the_file_and_the_version(tmp_path):
    path = tmp_path / "future.json"
    path.write_text(json.dumps(record().to_json() | {runrecord.VERSION_KEY: 3}))
    with pytest.raises(ConfigError, match=f"{path} is a run record of schema version 3, which this tpserve "
                                          "cannot read \\(it reads versions 1 and 2\\)"):
        runrecord.load(path)


def test_replicas_merge_into_one_run_whose_figures_come_from_all_raw_records():
    a, b = results(0.0, 0.5), results(0.2, error="HTTP 500: x")
    first = record()
    second = record(sent=(0.2,), check=TokenCheck("mismatch: 1 vs 2", 4, 3, 5, 3), problems=("1 of 1 failed",),
                    workload=replace(PLAN, num_requests=1, concurrency=1, seed=8))
    merged = merge([first, second], a + b, part_name="replica")
    assert (merged.workload.num_requests, merged.workload.concurrency, merged.workload.seed) == (3, 3, 7)
    assert merged.metrics == summarize(a + b) and merged.errors == {"HTTP 500: x": 1}
    assert merged.token_check.status == "replica 1: mismatch: 1 vs 2"
    assert (merged.token_check.client_completion_tokens, merged.token_check.server_generation_tokens) == (12, 13)
    assert merged.token_check.parts == (first.token_check, second.token_check)
    assert merged.problems == ("replica 1: 1 of 1 failed",) and not merged.ok and merged.workers == 2


def committed_results(pattern: str) -> list[Path]:
    """The files under results/ matching PATTERN that git tracks: `make demo` adds its own run there."""
    tracked = subprocess.run(["git", "ls-files", "-z", "results"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split("\0")
    return sorted(REPO / name for name in tracked if name and fnmatch(name, pattern))


COMMITTED = [path for path in committed_results("results/*.json")
             if runrecord.is_run_document(json.loads(path.read_text()))]


def test_the_committed_results_hold_run_records_of_every_shape():
    assert len(COMMITTED) == 150
    assert {runrecord.load(path).provenance.command for path in COMMITTED} == {"demo", "sweep", "gpu test",
                                                                                "loadtest"}


# Runs under a fault (a worker killed mid-load, results/*-faults/) fail on purpose and say why.
FAULT_RUNS = [path for path in COMMITTED if "-faults" in path.parent.parent.name and "kill" in path.name]
MEASURED = [path for path in COMMITTED if path not in FAULT_RUNS]


@pytest.mark.parametrize("path", FAULT_RUNS, ids=lambda path: str(path.relative_to(REPO / "results")))
def test_every_committed_fault_run_loads_and_names_its_failure(path):
    loaded = runrecord.load(path)
    assert len(FAULT_RUNS) == 3
    assert not loaded.ok and loaded.problems
    assert loaded.metrics.completed + loaded.metrics.failed <= loaded.workload.num_requests


@pytest.mark.parametrize("path", MEASURED, ids=lambda path: str(path.relative_to(REPO / "results")))
def test_every_committed_result_loads_and_says_what_served_it(path):
    loaded = runrecord.load(path)
    original = json.loads(path.read_text())
    assert loaded.metrics.output_throughput == original["output_throughput"]
    assert loaded.token_check.ok and loaded.ok
    # Bare load tests (the pod rehearsal's helm-test pods, the tuning session's runs) cannot know what served
    # them; their folder's pod-rehearsal.json or tune.json says. Every other producer fills the layout. The H100
    # time-to-ready sessions' load tests had it added by hand from the server commands in their logs (their READMEs
    # say); lab/gpu/ready_on_host.py fills it itself since.
    by_hand = path.parent.parent.name in ("20261206-h100x1-ready", "20261206c-h100x1-fork")
    assert (loaded.layout is None) == (loaded.provenance.command == "loadtest" and not by_hand)
    # The reference note's workload, the throughput-bound one of the tuning sessions, or the chat one (its file).
    assert (loaded.workload.prompt_set in ("builtin (59 prompts)", "random (512 input tokens)")
            or loaded.workload.prompt_set.endswith(("/loadtest/data/chat.jsonl", "/tpserve/data/chat.jsonl")))
    assert RunRecord.from_json(json.loads(json.dumps(loaded.to_json()))) == loaded


def test_version_1_layouts_come_from_the_sweep_the_gpu_test_and_the_demo():
    def layout(name):
        return runrecord.load(REPO / "results" / name).layout

    assert layout("20261126-h200x4-sweep/sweep-7b-x4/llama-2-7b-tp1x4-run1.json") == Layout(
        "llama-2-7b", "NVIDIA H200", 1, replicas=4)
    assert layout("20261126-h200x4-tp4/20261126T093809Z-llama-2-70b-tp4.json") == Layout(
        "llama-2-70b", "NVIDIA H200", 4)
    assert layout("20261126T092807Z-demo.json") == Layout(".cache/models/tiny-llama", "CPU (AMD EPYC)")


@pytest.mark.parametrize("folder, layouts", [
    ("20261126-h200x4-sweep", 6), ("20261126-h200x4-tp4", 2)])
def test_the_report_reads_each_committed_gpu_experiment(folder, layouts):
    runs = load_runs([REPO / "results" / folder])
    assert check_same_workload(runs)["max_tokens"] == 256 and len(rows(runs)) == layouts


def test_the_two_committed_demos_are_one_workload_on_one_layout():
    runs = load_runs([path for path in committed_results("results/*-demo.json") if path.parent == REPO / "results"])
    check_same_workload(runs)
    (row,) = rows(runs)
    assert (row.model, row.device, row.runs) == ("tiny-llama", "CPU (AMD EPYC)", 2)
