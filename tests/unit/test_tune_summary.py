"""lab/benchmarks/tune_summary.py groups a GPU tuning session's runs by the point each measured: a layout shared
by its replicas, or one replica alone (its share or the whole load), with the settings that replica served."""

import json

import pytest

from lab.benchmarks.tune_summary import (
    baseline,
    instrument,
    load_runs,
    points,
    short,
    summarize,
    tune_cli_lines,
)
from lab.gpu.tune_on_host import Session, profiler_flags
from lab.gpu.tune_phases import THROUGHPUT, Phase, kv_bytes_per_token, one_gpu_phases, phases

FP8 = ["--dtype", "bfloat16", "--kv-cache-dtype", "fp8", "--quantization", "fp8"]  # the fp8 profile


def run(phase, client, output, round_=1, mode="shared", replica=None, concurrency=256):
    prompt = output * 2
    return {"phase": phase, "client": client, "round": round_, "mode": mode, "replica": replica,
            "load": {"num_requests": 1000, "concurrency": concurrency},
            "figures": {"output_throughput": output, "total_token_throughput": output + prompt, "median_ttft_ms": 500.0,
                        "median_tpot_ms": 10.0, "output_tokens": 256000},
            "server": {"generation_tokens": 256000}}


@pytest.fixture
def session(tmp_path):
    def phase(name, tensor, settings):
        return {"phase": {"name": name, "shape": "llama-2-7b", "tensor": tensor, "settings": settings}, "startup_s": 100}

    document = {"workload": {"num_requests": 1000, "concurrency": 256}, "phases": [phase("tp2-defaults", 2, [[]]), phase("tp1x2-fp8", 1, [FP8, FP8]),
                           phase("pair", 1, [[], FP8])],
                "runs": [run("tp2-defaults", "loadtest", 10000), run("tp2-defaults", "bench", 9800),
                         run("tp1x2-fp8", "loadtest", 14000), run("tp1x2-fp8", "bench", 14200),
                         run("tp1x2-fp8", "loadtest", 8000, mode="each-full", replica=0),
                         run("tp1x2-fp8", "loadtest", 7800, mode="each-full", replica=1),
                         run("tp1x2-fp8", "bench", 7900, mode="each-full", replica=0),
                         run("tp1x2-fp8", "bench", 7600, mode="each-full", replica=1),
                         run("pair", "loadtest", 6000, mode="each-full", replica=0),
                         run("pair", "loadtest", 8100, mode="each-full", replica=1),
                         run("pair", "bench", 6000, mode="each-full", replica=0) | {"figures": {"error": "x"}}]}
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(document))
    return summarize(*load_runs([path]))


def test_each_run_counts_the_gpus_and_settings_of_what_it_loaded(session):
    table = points(session)
    fp8 = " ".join(FP8)
    assert {(p["layout"], p["gpus"], p["settings"], p["runs"]): p["output_tok_s_per_gpu"] for p in table.values()} == {
        ("TP 2", 2, "vLLM defaults", 2): 4950,
        ("2 × TP 1", 2, fp8, 2): 7050,
        ("TP 1", 1, fp8, 5): 7900,  # both replicas of the identical pair, and the pair phase's fp8 replica
        ("TP 1", 1, "vLLM defaults", 1): 6000,  # the failed bench run is left out
    }
    one_gpu = next(p for p in table.values() if p["layout"] == "TP 1" and p["settings"] == fp8)
    assert baseline(table, one_gpu, same_layout=False)["layout"] == "TP 2"
    assert baseline(table, one_gpu, same_layout=True)["output_tok_s_per_gpu"] == 6000


def test_the_instrument_pairs_the_two_clients_on_the_same_server_only(session):
    result = instrument(session)
    fp8 = " ".join(FP8)
    assert result["llama-2-7b TP 2, 256 in flight, vLLM defaults"]["ratios"] == [10000 / 9800]
    assert sorted(result[f"llama-2-7b TP 1, 256 in flight, {fp8}"]["ratios"]) == sorted([8000 / 7900, 7800 / 7600])
    assert "llama-2-7b TP 1, 256 in flight, vLLM defaults" not in result  # its bench run failed: no pair


def test_bars_name_the_fp8_profile_and_what_a_point_adds_to_it():
    assert short("vLLM defaults") == "defaults"
    assert short(" ".join(FP8)) == "fp8"
    assert short(" ".join(FP8 + ["--stream-interval", "10"])) == "fp8\n+ stream-interval 10"
    assert short(" ".join(FP8 + ["--attention-backend", "FLASHINFER", "--attention-config",
                                 '{"disable_flashinfer_q_quantization": true}'])) == (
        "fp8\n+ FlashInfer attention\n+ bf16 queries")
    assert short("--attention-backend TRITON_ATTN --block-size 128") == "Triton attention\nblock-size 128"
    assert short(" ".join(FP8 + ["--max-num-batched-tokens", "16384", "--attention-config",
                                 '{"flash_attn_max_num_splits_for_cuda_graph": 1}'])) == (
        "fp8\n+ max-num-batched-tokens 16384\n+ one attention split")


def test_a_phase_refuses_unknown_modes_and_a_shared_load_over_different_settings():
    with pytest.raises(ValueError, match="known"):
        Phase("x", "llama-2-7b", 1, ((),), modes=("both",))
    with pytest.raises(ValueError, match="'shared' needs one setting"):
        Phase("x", "llama-2-7b", 1, ((), ("--max-num-seqs", "8")), modes=("shared",))


def test_a_profiled_run_and_a_named_workload_stay_out_of_the_points(tmp_path):
    document = {"workload": {"num_requests": 1000, "concurrency": 256},
                "phases": [{"phase": {"name": "fp8", "shape": "llama-2-7b", "tensor": 1, "settings": [FP8]},
                            "startup_s": 100}],
                "runs": [run("fp8", "loadtest", 8000), run("fp8", "bench", 7900),
                         run("fp8", "loadtest", 5000, round_=0, mode="profile"),
                         run("fp8", "loadtest", 4000, round_=0, mode="workload", concurrency=64) | {"workload": "chat"}]}
    path = tmp_path / "tune.json"
    path.write_text(json.dumps(document))
    rows = summarize(*load_runs([path]))
    assert [(p["runs"], p["output_tok_s_per_gpu"]) for p in points(rows).values()] == [(2, 7950)]
    assert [r["ratios"] for r in instrument(rows).values()] == [[8000 / 7900]]


def test_a_one_gpu_host_runs_each_setting_alone_after_the_fp8_reference():
    one = phases(False, gpus=1)
    assert one == one_gpu_phases()
    assert all(p.tensor == 1 and p.replicas == 1 for p in one)
    assert one[0].settings == (tuple(FP8),) and one[0].max_rounds >= 3 and not one[0].optional
    served = [p for p in one if not p.tune_cli]
    assert len({p.settings for p in served}) == len(served)
    assert [p.name for p in one if p.profile] == ["7b-tp1-vllm-defaults"]
    assert any(p.tune_cli and not p.optional for p in one)
    assert phases(False, gpus=2) != one
    with pytest.raises(ValueError, match="one-server phase"):
        Phase("x", "llama-2-7b", 1, ((), ()), modes=("each-full",), profile=(1, 2))
    with pytest.raises(ValueError, match="tpserve tune phase"):
        Phase("x", "llama-2-7b", 1, ((),), profile=(1, 2), tune_cli=("--vllm", "max-num-seqs=8"))


def test_a_two_gpu_host_measures_the_goal_and_70b_in_one_session_first():
    two = [p for p in phases(False, gpus=2) if not p.optional]
    assert [(p.name, p.tensor, p.settings) for p in two] == [
        ("7b-tp2-vllm-defaults", 2, ((),)), ("7b-tp1-pair-fp8-vs-fp8-batch16k", 1,
                                             (tuple(FP8), (*FP8, "--max-num-batched-tokens", "16384"))),
        ("70b-tp2-vllm-defaults", 2, ((),)), ("70b-tp2-fp8", 2, (tuple(FP8),))]


def test_the_session_lists_each_tpserve_tune_search_it_ran_with_its_candidates(tmp_path):
    argv = ("--vllm", "kv-cache-dtype=default,fp8", "--budget-runs", "2")
    (tmp_path / "tune.json").write_text(json.dumps({"phases": [
        {"phase": {"name": "t", "tune_cli": list(argv)}, "exit_status": 0, "wall_s": 300.0},
        {"phase": {"name": "gone", "tune_cli": list(argv)}, "exit_status": 143, "wall_s": 60.0, "stopped": "out of time"},
        {"phase": {"name": "served", "tune_cli": []}, "startup_s": 100}]}))
    search = tmp_path / "tune-cli" / "t"
    search.mkdir(parents=True)
    search.joinpath("tune.json").write_text(json.dumps({
        "candidates": [{"label": "tp1x1", "phase": "layouts", "status": "dropped", "output_tok_s_per_gpu": 6000.0,
                        "median_ttft_ms": 800.0, "median_tpot_ms": 37.5},
                       {"label": "tp1x1-kv-cache-dtype=fp8", "phase": "axis kv-cache-dtype", "status": "winner",
                        "output_tok_s_per_gpu": 7000.0, "median_ttft_ms": 790.0, "median_tpot_ms": 32.0}],
        "winner": {"label": "tp1x1-kv-cache-dtype=fp8"}, "ratio_to_defaults": 7000 / 6000, "server_starts": 2,
        "runs": 2, "stopped": ""}))
    assert tune_cli_lines([tmp_path / "tune.json"]) == [
        "\ntpserve tune (t, exit status 0, 300.0 s): " + " ".join(argv),
        "  tp1x1 (layouts): 6,000 output tok/s per GPU, TTFT 800 ms, TPOT 37.5 ms; dropped",
        "  tp1x1-kv-cache-dtype=fp8 (axis kv-cache-dtype): 7,000 output tok/s per GPU, TTFT 790 ms, TPOT 32.0 ms; winner",
        "  winner: tp1x1-kv-cache-dtype=fp8, 1.17 × vLLM's defaults; 2 server starts, 2 runs",
        "\ntpserve tune (gone, exit status 143, 60.0 s): " + " ".join(argv),
        "  no tune.json: out of time"]


def test_the_profiler_waits_for_its_window_and_knows_the_cache_size(tmp_path):
    session = Session(tmp_path, 0.0, cpu=False, load=THROUGHPUT)
    phase = next(p for p in one_gpu_phases() if p.profile)
    flags = profiler_flags(session, phase)
    assert flags[0] == "--profiler-config"
    config = json.loads(flags[1])
    assert config | {"torch_profiler_dir": ""} == {
        "profiler": "torch", "torch_profiler_dir": "", "delay_iterations": phase.profile[0],
        "max_iterations": phase.profile[1], "ignore_frontend": True, "torch_profiler_with_stack": False,
        "detailed_trace_annotation": True}
    assert config["torch_profiler_dir"] == str((tmp_path / "profile" / phase.name).resolve())
    assert profiler_flags(session, next(p for p in one_gpu_phases() if not p.profile)) == []
    # Llama-2-7b: 32 layers × (K + V) × 32 heads × 128 values, one byte each in fp8, two in bfloat16
    assert kv_bytes_per_token(Phase("f", "llama-2-7b", 1, (tuple(FP8),))) == 32 * 2 * 32 * 128
    assert kv_bytes_per_token(phase) == 32 * 2 * 32 * 128 * 2
