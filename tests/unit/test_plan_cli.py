"""`tpserve plan` as users run it: a separate process, its table, its JSON and its one-line errors."""

import json
import os
import re

import pytest

from tests.conftest import REPO, tpserve


@pytest.fixture
def env(tmp_path) -> dict:
    """An empty model cache, so no fetch on this machine changes what plan reads."""
    return {**os.environ, "TPSERVE_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "100"}


def test_plan_prints_the_layouts_the_minimum_and_why_fewer_gpus_fail(env):
    done = tpserve("plan", "llama-2-70b", "--gpu", "a100-40gb", "--context", "4096", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert ("llama-2-70b (catalog: meta-llama/Llama-2-70b-hf) on A100-40GB, 8 per node, context 4,096 "
            "tokens") in out
    assert "68,976,648,192 parameters: 128.48 GiB of fp16 weights (137,953,296,384 bytes)" in out
    assert "KV cache: 327,680 bytes per token in 16-bit (auto), 1.25 GiB per 4,096-token sequence" in out
    assert "tensor parallel 1, 2, 4, 8 split them evenly, 3, 5, 6, 7 cannot" in out
    assert re.search(r"TP 4\s+│\s+4 │\s+1 │\s+32\.12 │\s+2\.30 │\s+30,128 │\s+7 │ yes", out)
    assert ("minimum: 4 × A100-40GB at TP 4 (1 node): 30,128 tokens of KV cache, 7 sequences of 4,096 tokens "
            "at once") in out
    assert ("TP 2 does not fit: the weights need 64.24 GiB per GPU, more than the 36.42 GiB vLLM may use of "
            "each A100-40GB (0.92 × 39.59 GiB)") in out


def test_plan_json_is_the_whole_plan(env):
    done = tpserve("plan", "meta-llama/Llama-2-70b-chat-hf", "--gpu", "H200", "--json", env=env)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["model"], document["gpu"]["name"]) == ("llama-2-70b", "h200")
    assert document["context_tokens"] == 4096
    assert document["minimum"]["name"] == "TP 2"
    assert document["gpu_memory_utilization"] == 0.92


def test_plan_reads_a_config_json_and_takes_vllms_memory_fraction(env, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
                                  "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32000,
                                  "max_position_embeddings": 4096, "torch_dtype": "float16"}))
    done = tpserve("plan", str(config), "--gpu", "l4", "--gpu-memory-utilization", "0.5", "--json", env=env)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert (document["weight_bytes"], document["model_origin"]) == (13_476_831_232, f"file {config}")
    assert document["minimum"]["tensor_parallel"] == 2


@pytest.mark.parametrize("args, message", [
    (["gpt-5", "--gpu", "h100"], "error: unknown model 'gpt-5': it is not a folder or config.json"),
    (["llama-2-7b", "--gpu", "v100"], "error: unknown GPU kind 'v100': tpserve knows a10, l4, a100-40gb"),
    (["llama-2-7b", "--gpu", "h100", "--context", "5000"],
     "error: --context 5,000 is longer than the 4,096 positions llama-2-7b was built for"),
    (["llama-2-7b", "--gpu", "h100", "--dtype", "fp4"],
     "error: unknown dtype 'fp4': use auto, fp16, bf16, fp8, int8"),
])
def test_bad_plan_input_is_one_line_naming_the_fix(env, args, message):
    done = tpserve("plan", *args, env=env)
    assert done.returncode == 2
    assert done.stderr.startswith(message)
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


def test_a_model_that_fits_no_layout_is_an_error_after_the_table(env, tmp_path):
    """Two layers of 275 billion parameters each: even one layer per pipeline stage overflows 8 L4s."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 131072, "intermediate_size": 524288,
                                  "num_hidden_layers": 2, "num_attention_heads": 1024, "vocab_size": 32000,
                                  "max_position_embeddings": 4096}))
    done = tpserve("plan", str(config), "--gpu", "l4", env=env)
    assert done.returncode == 1
    assert "TP 8 × PP 2" in done.stdout
    assert done.stderr.startswith(f"error: {config} fits on no layout of L4: at TP 8 × PP 2, the weights "
                                  "need ")


def test_a_missing_gpu_kind_is_a_usage_error_not_a_traceback(env):
    done = tpserve("plan", "llama-2-7b", env=env)
    assert done.returncode == 2
    assert "Error: Missing option '--gpu'." in done.stderr
    assert "Traceback" not in done.stderr


def test_plan_recommends_the_settings_profile_and_how_to_serve_each_layout_that_fits(env):
    done = tpserve("plan", "llama-2-70b", "--gpu", "h200", "--context", "4096", env=env)
    assert done.returncode == 0, done.stderr
    assert "settings tuned, no tuned settings for 69.0 B parameters on GPUs of 139.8 GiB: adds no flag" in done.stdout
    assert "  TP 2: tpserve serve --model meta-llama/Llama-2-70b-hf -tp 2 --max-model-len 4096\n" in done.stdout
    assert ("chart: --set model.name=meta-llama/Llama-2-70b-hf --set parallelism.tensor=4 --set parallelism.pipeline=1 --set gpu.perNode=8 --set "
            "vllm.maxModelLen=4096 --set model.attentionHeads=64 --set model.kvHeads=8 --set model.layers=80 "
            "--set model.parameterBillions=68.98 --set model.hiddenSize=8192 --set model.vocabSize=32000 "
            "--set gpu.product=NVIDIA-H200 --set gpu.memoryGiB=139.8\n") in done.stdout
    assert "TP 1:" not in done.stdout  # does not fit: nothing to serve


def test_plan_json_carries_the_profile_and_a_command_per_layout_that_fits(env):
    done = tpserve("plan", "meta-llama/Llama-2-7b-chat-hf", "--gpu", "a100-40gb", "--settings", "fp8",
                   "--gpus-per-node", "2", "--json", env=env)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["settings"]["flags"] == {"--kv-cache-dtype": "fp8", "--quantization": "fp8"}
    assert [item["layout"] for item in document["recommendations"]] == ["TP 1", "TP 2"]
    assert document["recommendations"][0]["serve_command"] == (
        "tpserve serve --model meta-llama/Llama-2-7b-chat-hf -tp 1 --max-model-len 4096 --settings fp8")
    assert document["recommendations"][1]["chart_values"]["vllm.settings"] == "fp8"


def test_plan_refuses_an_unknown_profile_in_one_line(env):
    done = tpserve("plan", "llama-2-7b", "--gpu", "h200", "--settings", "fast", env=env)
    assert (done.returncode, done.stderr.strip().splitlines()) == (
        2, ["error: --settings must be one of tuned, fp8, vllm (TPSERVE_SETTINGS), got 'fast'"])


def test_plan_reports_the_measured_best_layouts_and_profiles_for_the_size_on_those_gpus(env):
    done = tpserve("plan", "llama-2-7b", "--gpu", "h200", "--gpus-per-node", "2", "--context", "4096", env=env)
    assert done.returncode == 0, done.stderr
    where = ("2 × H200, vLLM 0.26.0, Llama-2-7b shape, 1,000 random prompts, 512 in / 256 out, 256 in flight "
             "(results/20261130c-h200x2-tune)")
    lines = (("measured, most per GPU: 1 × TP 1, the whole load on 1 GPU, with --settings fp8: 7,965 output tok/s "
              "per GPU, TTFT p50 1,044 ms, TPOT p50 27.4 ms = 1.50 × vLLM's defaults at TP 2 (5,317, same session); "),
             ("measured, on both GPUs: 2 × TP 1, the whole load on 2 GPUs, with --settings fp8: 7,204 output tok/s "
              "per GPU, TTFT p50 676 ms, TPOT p50 14.8 ms = 1.35 × vLLM's defaults at TP 2 (5,317, same session); "),
             ("measured, outputs unchanged (no fp8): 1 × TP 1, the whole load on 1 GPU, with --settings vllm: 6,175 "
              "output tok/s per GPU, TTFT p50 702 ms, TPOT p50 38.2 ms = 1.16 × vLLM's defaults at TP 2 (5,317, "
              "same session); "))
    for line in lines:
        assert line + where in done.stdout
    big = tpserve("plan", "llama-2-70b", "--gpu", "h200", "--gpus-per-node", "2", "--json", env=env)
    (line,) = json.loads(big.stdout)["measured"]
    assert "1,863 output tok/s per GPU" in line and "(1,268, measured in another session, " in line
    assert line.endswith("; measured with --max-num-batched-tokens 16384 too, which --settings fp8 no longer adds")
    # Nothing was measured on smaller cards: nothing is claimed.
    other = tpserve("plan", "llama-2-7b", "--gpu", "a100-80gb", "--json", env=env)
    assert json.loads(other.stdout)["measured"] == []


def test_the_measured_figures_plan_reports_are_the_committed_sessions_medians():
    from lab.benchmarks.tune_summary import FP8_PROFILE, load_runs, points, summarize
    from tpserve.settings import MEASURED

    def table(folder: str) -> dict:
        return points(summarize(*load_runs(sorted((REPO / folder).glob("call*/tune.json")))))

    for row in MEASURED:
        measured = table(row["measured_in"])
        baseline = table(row["baseline_in"]) if row["baseline_in"] else measured
        shape = "llama-2-7b" if row["parameters_b"][1] == 15 else "llama-2-70b"
        layout = f"TP {row['tensor']}" if row["replicas"] == 1 else f"{row['replicas']} × TP {row['tensor']}"
        settings = "vLLM defaults" if row["profile"] == "vllm" else FP8_PROFILE
        settings += f" {row['measured_with']}" if row.get("measured_with") else ""
        (point,) = [p for p in measured.values() if (p["shape"], p["layout"], p["settings"]) == (shape, layout, settings)]
        (base,) = [p for p in baseline.values() if p["shape"] == shape and p["settings"] == "vLLM defaults"
                   and p["layout"] == f"TP {row['defaults_tensor']}"]
        assert row["output_tok_s_per_gpu"] == round(point["output_tok_s_per_gpu"])
        assert (row["ttft_ms"], row["tpot_ms"]) == (round(point["median_ttft_ms"]), round(point["median_tpot_ms"], 1))
        assert row["defaults_output_tok_s_per_gpu"] == round(base["output_tok_s_per_gpu"])


def test_plan_with_the_fp8_profile_sizes_fp8_weights_and_kv_cache_and_fits_70b_on_one_h200(env):
    done = tpserve("plan", "llama-2-70b", "--gpu", "h200", "--settings", "fp8", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert ("68,976,648,192 parameters: 64.73 GiB of fp8 weights (69,502,255,104 bytes), quantized from 16 bits "
            "as vLLM loads them: loading peaks 0.88 GiB above them per GPU at TP 1") in out
    assert "KV cache: 163,840 bytes per token in fp8, 0.62 GiB per 4,096-token sequence" in out
    assert "sized for --settings fp8: --dtype fp8 --kv-dtype fp8" in out
    assert re.search(r"TP 1\s+│\s+1 │\s+1 │\s+64\.73 │\s+65\.60 │\s+61\.89 │\s+405,600 │\s+99 │ yes", out)
    assert ("minimum: 1 × H200-141GB at TP 1 (1 node): 405,600 tokens of KV cache, 99 sequences of 4,096 "
            "tokens at once") in out
    assert "  TP 1: tpserve serve --model meta-llama/Llama-2-70b-hf -tp 1 --max-model-len 4096 --settings fp8\n" in out


def test_plan_with_the_fp8_profile_fits_70b_on_one_h100_too(env):
    document = json.loads(tpserve("plan", "llama-2-70b", "--gpu", "h100", "--settings", "fp8", "--json",
                                  env=env).stdout)
    assert (document["weight_dtype"], document["kv_cache_dtype"], document["quantized_at_load"]) == (
        "fp8", "fp8", True)
    assert (document["minimum"]["name"], document["minimum"]["kv_cache_tokens"]) == ("TP 1", 40_064)


def test_a_dtype_given_on_the_command_line_wins_over_the_profiles(env):
    done = tpserve("plan", "llama-2-70b", "--gpu", "h200", "--settings", "fp8", "--dtype", "fp16", "--json",
                   env=env)
    document = json.loads(done.stdout)
    assert (document["weight_dtype"], document["kv_cache_dtype"]) == ("fp16", "fp8")
    assert document["minimum"]["name"] == "TP 2"
