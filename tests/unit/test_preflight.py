import pytest

from tpserve import catalog
from tpserve.fetch.preflight import (
    MIN_SHM_BYTES,
    check_declared_shape,
    check_gpus,
    check_heads,
    check_shm,
    valid_tensor_parallel_sizes,
    visible_gpus,
)

LLAMA2_70B = {"model_type": "llama", "num_attention_heads": 64, "num_key_value_heads": 8, "num_hidden_layers": 80}
LLAMA2_7B = {"model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32}


def test_70b_splits_over_1_2_4_8_gpus_but_not_3():
    assert valid_tensor_parallel_sizes(64, 8)[:5] == [1, 2, 4, 8, 16]
    assert 3 not in valid_tensor_parallel_sizes(64, 8)


def test_a_tp_that_does_not_divide_heads_is_rejected_naming_the_valid_sizes():
    (problem,) = check_heads(LLAMA2_70B, 3, 1, "meta-llama/Llama-2-70b-chat-hf")
    assert problem == ("meta-llama/Llama-2-70b-chat-hf has 64 attention heads and 8 KV heads, which tensor "
                       "parallel 3 cannot split evenly: use one of 1, 2, 4, 8, 16, 32, 64")


def test_kv_heads_default_to_attention_heads():
    assert check_heads(LLAMA2_7B, 4, 1, "7b") == []
    assert "32 KV heads" in check_heads(LLAMA2_7B, 6, 1, "7b")[0]


def test_more_pipeline_stages_than_layers_is_rejected():
    assert check_heads({**LLAMA2_7B, "num_hidden_layers": 2}, 1, 4, "tiny") == [
        "tiny has 2 layers, fewer than pipeline parallel 4: lower it"]


@pytest.mark.parametrize("tensor, pipeline, gpus, fragment", [
    (4, 1, 2, "= 4 × 1 = 4 needs 4 GPUs but only 2 are visible"),
    (2, 2, 0, "= 2 × 2 = 4 needs 4 GPUs but none is visible"),
    (2, 1, 1, "needs 2 GPUs but only 1 is visible"),
])
def test_more_parallelism_than_visible_gpus_is_rejected(tensor, pipeline, gpus, fragment):
    (problem,) = check_gpus(tensor, pipeline, gpus)
    assert fragment in problem and "request nvidia.com/gpu" in problem


def test_one_process_needs_no_gpu_check():
    assert check_gpus(1, 1, 0) == [] and check_gpus(4, 1, 8) == []


@pytest.mark.parametrize("env, expected", [
    ({"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, 4),
    ({"CUDA_VISIBLE_DEVICES": ""}, 0),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, 0),
    ({"NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b"}, 2),
    ({"NVIDIA_VISIBLE_DEVICES": "void"}, 0),
])
def test_visible_gpus_follow_the_environment(env, expected, tmp_path):
    assert visible_gpus(env, dev=str(tmp_path)) == expected


def test_visible_gpus_count_device_files_when_the_runtime_exposes_all(tmp_path):
    for name in ("nvidia0", "nvidia1", "nvidiactl", "nvidia-uvm"):
        (tmp_path / name).touch()
    assert visible_gpus({"NVIDIA_VISIBLE_DEVICES": "all"}, dev=str(tmp_path)) == 2


def test_a_small_or_missing_shm_is_rejected_only_beyond_one_gpu(tmp_path, monkeypatch):
    monkeypatch.setattr("tpserve.fetch.preflight.shm_bytes", lambda path: 64 << 20)
    (problem,) = check_shm(4, 1)
    assert problem.startswith("/dev/shm is 64 MiB, and NCCL needs at least 1 GiB there for 4 GPUs")
    assert "--ipc=host" in problem
    assert check_shm(1, 1) == []
    monkeypatch.setattr("tpserve.fetch.preflight.shm_bytes", lambda path: MIN_SHM_BYTES)
    assert check_shm(4, 1) == []
    monkeypatch.setattr("tpserve.fetch.preflight.shm_bytes", lambda path: None)
    assert check_shm(2, 1)[0].startswith("/dev/shm is missing")


LLAMA2_7B_FULL = dict(catalog.find_model("llama-2-7b").config)
SEVENTY_B_VALUES = {"model.attentionHeads": 64, "model.kvHeads": 8, "model.layers": 80,
                    "model.parameterBillions": 68.98, "model.hiddenSize": 8192, "model.vocabSize": 32000}


def test_declared_values_that_match_config_json_pass():
    declared = {"model.attentionHeads": 32, "model.kvHeads": 32, "model.layers": 32, "model.parameterBillions": 6.74}
    assert check_declared_shape(LLAMA2_7B_FULL, declared, "meta-llama/Llama-2-7b-hf") == []


def test_values_of_another_model_are_named_beside_config_json_with_the_line_that_fixes_them():
    assert check_declared_shape(LLAMA2_7B_FULL, SEVENTY_B_VALUES, "meta-llama/Llama-2-7b-hf") == [
        ("the model values describe another model than meta-llama/Llama-2-7b-hf's config.json: "
        "model.attentionHeads=64 (config.json: 32), model.kvHeads=8 (config.json: 32), model.layers=80 "
        "(config.json: 32), model.parameterBillions=68.98 (config.json: 6.74), model.hiddenSize=8192 (config.json: "
        "4096), and the chart sized, validated and tuned for them: set --set model.attentionHeads=32 --set "
        "model.kvHeads=32 --set model.layers=32 --set model.parameterBillions=6.74 --set model.hiddenSize=4096 "
        "--set model.vocabSize=32000")]


def test_a_parameter_count_within_two_percent_passes_and_undeclared_values_are_not_checked():
    assert check_declared_shape(LLAMA2_7B_FULL, {"model.parameterBillions": 6.7}, "7b") == []
    assert check_declared_shape(LLAMA2_7B_FULL, {"model.parameterBillions": 6.5}, "7b") != []
    assert check_declared_shape(LLAMA2_7B_FULL, {}, "7b") == []


def test_a_parameter_count_tpserve_cannot_compute_is_left_unchecked():
    other = {**LLAMA2_7B, "model_type": "gpt_neox"}
    assert check_declared_shape(other, {"model.parameterBillions": 20.0, "model.layers": 32}, "x") == []


def test_an_unknown_declared_value_is_a_programming_error():
    with pytest.raises(KeyError):
        check_declared_shape(LLAMA2_7B_FULL, {"model.intermediateSize": 11008}, "x")
