import json
import re
from dataclasses import replace

import pytest

from tpserve import plan
from tpserve.catalog import GPUS, MODELS, GiB
from tpserve.fetch import cache
from tpserve.fetch.errors import ConfigError, ModelConfigError
from tpserve.plan import (
    ModelSource,
    find_model_config,
    kv_cache_bytes_per_token,
    layout,
    make_plan,
    stage_layers,
    weight_bytes,
)
from tpserve.shapes import TINY_LLAMA

LLAMA_2_7B = MODELS["llama-2-7b"].config
LLAMA_2_70B = MODELS["llama-2-70b"].config


def plan_for(name: str, gpu: str, **options) -> plan.Plan:
    return make_plan(find_model_config(name), GPUS[gpu], **options)


def by_tensor(result: plan.Plan) -> dict[int, plan.LayoutFit]:
    return {item.tensor_parallel: item for item in result.layouts if item.pipeline_parallel == 1}


def test_llama_2_7b_fp16_weights_are_two_bytes_per_parameter():
    assert weight_bytes(LLAMA_2_7B, "fp16") == 2 * 6_738_415_616 == 13_476_831_232


def test_llama_2_7b_kv_cache_takes_half_a_mebibyte_per_token():
    """K and V × 32 layers × 32 KV heads × 128 dims × 2 bytes."""
    assert kv_cache_bytes_per_token(LLAMA_2_7B) == 2 * 32 * 32 * 128 * 2 == 524_288


def test_llama_2_70b_grouped_query_attention_shrinks_its_kv_cache_eightfold_per_layer():
    """K and V × 80 layers × 8 KV heads × 128 dims × 2 bytes."""
    assert kv_cache_bytes_per_token(LLAMA_2_70B) == 2 * 80 * 8 * 128 * 2 == 327_680


def test_fp8_halves_the_layers_but_keeps_embeddings_lm_head_and_norms_in_16_bits():
    """Llama-2-70b: linear weights 80 * 855,638,016 = 68,451,041,280 at one byte; embeddings and lm_head
    2 * 262,144,000, norms 80 * 16,384 + 8,192 = 1,318,912, together 525,606,912 at two bytes."""
    assert weight_bytes(LLAMA_2_70B, "fp8") == 68_451_041_280 + 2 * 525_606_912 == 69_502_255_104


def test_an_fp8_kv_cache_takes_one_byte_per_value():
    assert kv_cache_bytes_per_token(LLAMA_2_70B, "fp8") == 327_680 // 2


@pytest.mark.parametrize("name, dtype", [
    ("llama-2-70b", "fp16"), ("llama-3.1-8b", "bf16"), ("qwen2.5-7b", "bf16"),
])
def test_auto_dtype_is_the_configs_torch_dtype(name, dtype):
    assert plan.model_size(MODELS[name].config).weight_dtype == dtype


def test_llama_2_70b_fp16_needs_four_a100_40gb():
    result = plan_for("llama-2-70b", "a100-40gb", context=4096)
    assert (result.minimum.gpus, result.minimum.tensor_parallel, result.minimum.nodes) == (4, 4, 1)


@pytest.mark.parametrize("tensor, weights", [(1, "128.48"), (2, "64.24")])
def test_one_or_two_a100_40gb_fail_because_the_weights_alone_exceed_what_vllm_may_use(tensor, weights):
    item = by_tensor(plan_for("llama-2-70b", "a100-40gb", context=4096))[tensor]
    assert not item.fits
    assert item.reason == (f"the weights need {weights} GiB per GPU, more than the 36.42 GiB vLLM may use of "
                           "each A100-40GB (0.92 × 39.59 GiB)")


def test_four_a100_40gb_leave_room_for_seven_4k_sequences():
    """Per GPU: 40,536 MiB = 42,505,076,736 bytes; vLLM may use 0.92 of it = 39,104,670,597.
    Weights 137,953,296,384 / 4 = 34,488,324,096; minus the 2 GiB reserve leaves 2,468,862,853 bytes.
    Each GPU holds 2 of the 8 KV heads: 327,680 / 4 = 81,920 bytes a token, so 30,137 tokens, 30,128 in
    whole 16-token blocks: 7 sequences of 4,096."""
    item = by_tensor(plan_for("llama-2-70b", "a100-40gb", context=4096))[4]
    assert item.weight_bytes_per_gpu == 34_488_324_096
    assert item.kv_cache_bytes_per_gpu == 2_468_862_853
    assert (item.kv_cache_tokens, item.max_sequences, item.fits) == (30_128, 7, True)


def test_tensor_parallel_3_is_invalid_for_64_heads_and_8_kv_heads():
    result = plan_for("llama-2-70b", "a100-40gb")
    assert result.valid_tensor_parallel_sizes == (1, 2, 4, 8)
    assert result.invalid_tensor_parallel_sizes == (3, 5, 6, 7)
    assert 3 not in by_tensor(result)


def test_llama_2_70b_fits_on_two_h200():
    result = plan_for("llama-2-70b", "h200")
    assert (result.minimum.gpus, result.minimum.tensor_parallel) == (2, 2)
    assert result.minimum.max_sequences == 99


def test_one_h200_holds_the_weights_but_leaves_nothing_for_the_kv_cache():
    item = by_tensor(plan_for("llama-2-70b", "h200"))[1]
    assert item.reason == ("the weights (128.48 GiB per GPU) and 2.00 GiB for activations fill the 128.62 "
                           "GiB vLLM may use of each H200-141GB (0.92 × 139.80 GiB), leaving nothing for the "
                           "KV cache")


@pytest.mark.parametrize("name, measured_reserve_gib, vllm_tokens", [
    ("llama-2-70b", 0.75 + 0.07, 1_254_080),
    ("llama-2-7b", 0.42 + 0.06, 1_023_536),
])
def test_with_vllms_measured_profile_the_kv_capacity_is_what_vllm_allocated(name, measured_reserve_gib,
                                                                             vllm_tokens):
    """vLLM 0.26.0 on 4 × H200 at TP 4 (results/20261126-h200x4-tp4/*-server.log) measured peak activation
    and non-torch memory and then allocated this many KV tokens. Given those measurements instead of the
    2 GiB reserve, the plan's arithmetic lands within 0.05 % (7b's loaded weights were 0.05 GiB more)."""
    reserve = int(measured_reserve_gib * GiB)
    item = layout(MODELS[name].config, GPUS["h200"], 4, 1, context=4096, reserve=reserve)
    assert item.kv_cache_tokens == pytest.approx(vllm_tokens, rel=5e-4)


def test_llama_3_1_405b_needs_pipeline_stages_across_two_h100_nodes():
    result = plan_for("llama-3.1-405b", "h100", context=8192)
    assert not any(item.fits for item in result.layouts if item.pipeline_parallel == 1)
    minimum = result.minimum
    assert (minimum.tensor_parallel, minimum.pipeline_parallel, minimum.gpus, minimum.nodes) == (8, 2, 16, 2)
    assert minimum.name == "TP 8 × PP 2"


def test_with_two_gpus_per_node_llama_2_70b_spreads_two_stages_over_two_nodes():
    result = plan_for("llama-2-70b", "a100-40gb", gpus_per_node=2, context=4096)
    assert [item.name for item in result.layouts] == ["TP 1", "TP 2", "TP 2 × PP 2"]
    assert (result.minimum.gpus, result.minimum.nodes) == (4, 2)


@pytest.mark.parametrize("layers, pipeline, stages", [
    (32, 1, [32]), (126, 2, [63, 63]), (80, 3, [27, 27, 26]), (10, 4, [2, 3, 3, 2]),
])
def test_pipeline_stages_split_layers_as_vllm_does(layers, pipeline, stages):
    assert stage_layers(layers, pipeline) == stages


def test_kv_heads_are_replicated_when_tensor_parallel_exceeds_them():
    """8 heads of 16 and 2 KV heads at TP 4: each GPU holds one whole KV head (vLLM replicates them), not
    half of one. Its k and v weights are 2 layers * 2 * 128 * 16 * 2 bytes = 16,384 bytes instead of an
    even split's 8,192: 8,192 more. Its KV cache holds one head: 2 * 2 layers * 16 * 2 bytes = 128 a token."""
    config = {**TINY_LLAMA.config(), "num_attention_heads": 8, "num_key_value_heads": 2}
    even = weight_bytes(config, "fp16") // 4
    item = layout(config, GPUS["h100"], 4, 1, context=2048)
    assert item.weight_bytes_per_gpu - even == 8_192
    assert item.kv_cache_tokens == (int(GPUS["h100"].memory_bytes * 0.92) - item.weight_bytes_per_gpu
                                    - 2 * GiB) // 128 // 16 * 16


def test_context_defaults_to_the_models_maximum_as_in_vllm():
    result = plan_for("llama-3.1-8b", "a10")
    assert result.context_tokens == 131_072
    assert by_tensor(result)[1].reason == (
        "the KV cache holds 28,304 tokens, less than one 131,072-token sequence, so vLLM refuses to start: "
        "lower --context or use more GPUs")
    assert result.minimum.tensor_parallel == 2


def test_a_sliding_window_model_carries_a_note():
    assert plan_for("mistral-7b", "l4").notes == (
        ("this model attends over a sliding window of 4,096 tokens; vLLM keeps only that window's KV cache, "
         "so longer sequences need less than counted here"),)


@pytest.mark.parametrize("options, message", [
    ({"context": 8192}, ("--context 8,192 is longer than the 4,096 positions llama-2-70b was built for, "
                         "and vLLM refuses such a --max-model-len: use at most 4,096")),
    ({"context": 0}, "--context must be at least 1 token, got 0"),
    ({"gpus_per_node": 0}, "--gpus-per-node must be at least 1, got 0"),
    ({"dtype": "fp4"}, "unknown dtype 'fp4': use auto, fp16, bf16, fp8, int8"),
    ({"kv_dtype": "int4"}, "unknown KV-cache dtype 'int4': use auto, fp16, bf16, fp8"),
    ({"utilization": 1.5}, "--gpu-memory-utilization must be in (0, 1], got 1.5"),
])
def test_impossible_settings_are_refused_with_the_reason(options, message):
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        plan_for("llama-2-70b", "a100-40gb", **options)


def test_an_unknown_model_lists_the_catalog_and_how_to_pass_a_config(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(
            f"unknown model 'llama-2-65b': it is not a folder or config.json, not a repo fetched into "
            f"{tmp_path}, and not in tpserve's catalog (llama-2-7b, llama-2-13b, llama-2-70b, llama-3.1-8b, "
            "llama-3.1-70b, llama-3.1-405b, mistral-7b, mixtral-8x7b, qwen2.5-7b, qwen2.5-72b); pass a model "
            "folder or its config.json, or run `tpserve fetch ORG/NAME` first")):
        find_model_config("llama-2-65b", tmp_path)


def test_a_model_folder_and_its_config_json_give_the_same_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(TINY_LLAMA.config()))
    folder, file = find_model_config(str(tmp_path)), find_model_config(str(tmp_path / "config.json"))
    assert folder.config == file.config == TINY_LLAMA.config()
    assert (folder.origin, file.origin) == (f"folder {tmp_path}", f"file {tmp_path / 'config.json'}")


def test_a_folder_without_config_json_is_refused(tmp_path):
    with pytest.raises(ModelConfigError, match=re.escape(
            f"{tmp_path / 'config.json'} does not exist: a model folder needs its config.json")):
        find_model_config(str(tmp_path))


def fake_fetch(cache_dir, repo_id: str, config: dict) -> None:
    """A cache folder as `tpserve fetch` leaves it, as far as find_cached reads it: config and manifest."""
    sha = "0" * 40
    folder = cache.model_path(cache_dir, repo_id, sha)
    folder.mkdir(parents=True)
    (folder / cache.CONFIG_NAME).write_text(json.dumps(config))
    manifest = cache.Manifest(repo_id=repo_id, requested_revision="main", resolved_sha=sha, files=(),
                              config_sha256="", parameter_count=None, created_at="2026-11-26T00:00:00+00:00",
                              tpserve_version="test")
    (folder / cache.MANIFEST_NAME).write_text(manifest.to_json())


def test_a_fetched_repo_is_sized_from_its_own_config_before_the_catalog(tmp_path):
    fake_fetch(tmp_path, "meta-llama/Llama-2-70b-chat-hf", TINY_LLAMA.config())
    source = find_model_config("meta-llama/Llama-2-70b-chat-hf", tmp_path)
    assert source.config == TINY_LLAMA.config()
    assert source.origin == f"fetched main at {tmp_path / 'meta-llama--Llama-2-70b-chat-hf' / ('0' * 40)}"


def test_a_repo_id_that_is_not_fetched_falls_back_to_the_catalog_shape(tmp_path):
    source = find_model_config("meta-llama/Llama-2-70b-chat-hf", tmp_path)
    assert (source.name, source.origin) == ("llama-2-70b", "catalog: meta-llama/Llama-2-70b-hf")


def test_the_json_form_holds_every_layout_and_the_minimum():
    document = json.loads(plan_for("llama-2-70b", "a100-40gb", context=4096).to_json())
    assert document["weight_bytes"] == 137_953_296_384
    assert document["kv_cache_bytes_per_token"] == 327_680
    assert document["gpu"]["memory_bytes"] == 40_536 * 2**20
    assert document["invalid_tensor_parallel_sizes"] == [3, 5, 6, 7]
    assert [item["name"] for item in document["layouts"]] == ["TP 1", "TP 2", "TP 4", "TP 8"]
    assert document["minimum"]["gpus"] == 4


def test_a_config_tpserve_cannot_count_is_refused_by_model_type():
    source = ModelSource("gpt2", "test", {"model_type": "gpt2", "num_attention_heads": 12})
    with pytest.raises(ModelConfigError, match="cannot count the parameters of model_type 'gpt2'"):
        make_plan(source, GPUS["h100"], context=1024)


def test_fp8_weights_of_the_7b_shape_put_its_linear_layers_at_one_byte():
    """Llama-2-7b: linear weights 32 * (4 * 4096² + 3 * 4096 * 11008) = 6,476,005,376 at one byte; embeddings
    and lm_head 2 * 131,072,000, norms 32 * 8,192 + 4,096, together 262,410,240 at two bytes."""
    assert weight_bytes(LLAMA_2_7B, "fp8") == 6_476_005_376 + 2 * 262_410_240 == 7_000_825_856


@pytest.mark.parametrize("name, tensor, linear_parameters", [
    ("llama-2-7b", 1, 2 * 4096 * 11008),   # gate_up_proj, larger than qkv_proj's 3 * 4096²
    ("llama-2-70b", 1, 2 * 8192 * 28672),
    ("llama-2-70b", 4, 2 * 8192 * 28672 // 4),
    ("mixtral-8x7b", 2, 8 * 3 * 4096 * 14336 // 2),  # the experts of a layer are one module
])
def test_quantizing_at_load_peaks_at_the_fp8_weights_plus_the_largest_module_in_16_bits(name, tensor,
                                                                                         linear_parameters):
    """vLLM 0.26.0 quantizes a 16-bit checkpoint one module at a time: the module being quantized is held
    in 16 bits beside the fp8 weights already loaded (LOAD_QUANTIZATION_NOTE)."""
    item = layout(MODELS[name].config, GPUS["h200"], tensor, 1, context=4096, dtype="fp8", kv_dtype="fp8")
    assert item.load_peak_bytes_per_gpu == item.weight_bytes_per_gpu + 2 * linear_parameters


def test_a_checkpoint_already_in_fp8_loads_without_a_peak():
    config = {**LLAMA_2_70B, "quantization_config": {"quant_method": "fp8"}}
    item = layout(config, GPUS["h200"], 1, 1, context=4096, dtype="fp8")
    assert item.load_peak_bytes_per_gpu == item.weight_bytes_per_gpu


def test_16_bit_weights_load_without_a_peak_above_the_weights():
    item = layout(LLAMA_2_70B, GPUS["h200"], 2, 1, context=4096)
    assert item.load_peak_bytes_per_gpu == item.weight_bytes_per_gpu == 137_953_296_384 // 2


def test_llama_2_70b_in_fp8_fits_one_h200_with_405_600_kv_tokens():
    """0.92 × 150,114,140,160 = 138,105,008,947 bytes usable; less 69,502,255,104 of fp8 weights and the
    2 GiB reserve leaves 66,455,270,195 for the KV cache; at 163,840 bytes a token (fp8) that is 405,611
    tokens, 405,600 in whole blocks: 99 sequences of 4,096. Loading peaks at 69,502,255,104 + 2 × 469,762,048
    = 70,441,779,200 bytes, far below the card's total."""
    item = by_tensor(plan_for("llama-2-70b", "h200", dtype="fp8", kv_dtype="fp8"))[1]
    assert (item.weight_bytes_per_gpu, item.load_peak_bytes_per_gpu) == (69_502_255_104, 70_441_779_200)
    assert item.kv_cache_bytes_per_gpu == 66_455_270_195
    assert (item.kv_cache_tokens, item.max_sequences, item.fits) == (405_600, 99, True)


def test_llama_2_70b_in_fp8_fits_one_h100_with_40_064_kv_tokens():
    """0.92 × 85,017,493,504 = 78,216,094,023 usable; less the fp8 weights and 2 GiB: 6,566,355,271 bytes,
    40,077 tokens of 163,840 bytes, 40,064 in whole blocks: 9 sequences of 4,096."""
    item = by_tensor(plan_for("llama-2-70b", "h100", dtype="fp8", kv_dtype="fp8"))[1]
    assert item.kv_cache_bytes_per_gpu == 6_566_355_271
    assert (item.kv_cache_tokens, item.max_sequences, item.fits) == (40_064, 9, True)


def test_a_layout_whose_fp8_weights_fit_but_whose_load_peak_does_not_is_refused_for_that_reason():
    """A 67 GiB card at utilization 0.99: 66.33 GiB usable holds the 64.73 GiB of fp8 weights, but loading
    peaks at 65.60 GiB, more than the 65.00 GiB left once the CUDA context's 2 GiB are taken."""
    card = replace(GPUS["h100"], name="test", label="test-67GiB", memory_bytes=67 * GiB)
    item = layout(LLAMA_2_70B, card, 1, 1, context=4096, dtype="fp8", kv_dtype="fp8", utilization=0.99)
    assert not item.fits
    assert item.reason == (
        "the fp8 weights fit (64.73 GiB per GPU) but loading peaks at 65.60 GiB while quantizing (vLLM "
        "quantizes the 16-bit checkpoint one module at a time, 0.88 GiB of it in 16 bits at once), more than "
        "the 65.00 GiB free on each test-67GiB (67.00 GiB less 2.00 GiB for the CUDA context): use more GPUs "
        "or an fp8 checkpoint")
