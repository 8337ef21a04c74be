import pytest

from tpserve.catalog import GPUS, MODELS, GiB, find_model, gpu_kind
from tpserve.fetch.errors import ConfigError
from tpserve.fetch.modelconfig import attention_heads, parameter_count
from tpserve.fetch.preflight import valid_tensor_parallel_sizes

# Sizes as the model cards and papers state them, to the digits they give.
PUBLISHED_BILLIONS = [
    ("llama-2-7b", 6.74, 2),
    ("llama-2-13b", 13.0, 1),
    ("llama-2-70b", 69.0, 1),
    ("llama-3.1-8b", 8.03, 2),
    ("llama-3.1-70b", 70.6, 1),
    ("llama-3.1-405b", 405.9, 1),
    ("mistral-7b", 7.24, 2),
    ("mixtral-8x7b", 46.7, 1),
    ("qwen2.5-7b", 7.62, 2),
    ("qwen2.5-72b", 72.7, 1),
]


@pytest.mark.parametrize("name, billions, digits", PUBLISHED_BILLIONS)
def test_each_catalog_model_has_its_published_parameter_count(name, billions, digits):
    assert round(parameter_count(MODELS[name].hf_config()) / 1e9, digits) == billions


def test_the_catalog_holds_the_models_the_issue_names():
    assert sorted(MODELS) == sorted(name for name, _, _ in PUBLISHED_BILLIONS)


def test_llama_3_1_8b_counts_its_128k_vocabulary_twice():
    """Llama-3.1-8B: hidden 4096, MLP 14336, 32 layers, 32 heads, 8 KV heads of 128, vocab 128256.

    embeddings + lm_head  2 * 128256 * 4096                              =  1,050,673,152
    attention/layer       q, o 4096*4096 each; k, v 4096*1024 each       =     41,943,040
    MLP/layer             3 * 4096 * 14336                               =    176,160,768
    one layer             41,943,040 + 176,160,768 + 8,192 (norms)       =    218,112,000
    total                 1,050,673,152 + 32 * 218,112,000 + 4,096       =  8,030,261,248
    """
    assert parameter_count(MODELS["llama-3.1-8b"].hf_config()) == 8_030_261_248


def test_llama_3_1_405b_has_126_layers_of_16384():
    """Llama-3.1-405B: hidden 16384, MLP 53248, 126 layers, 128 heads, 8 KV heads of 128, vocab 128256.

    embeddings + lm_head  2 * 128256 * 16384                             =   4,202,692,608
    attention/layer       q, o 16384^2 each; k, v 16384*1024 each        =     570,425,344
    MLP/layer             3 * 16384 * 53248                              =   2,617,245,696
    one layer             570,425,344 + 2,617,245,696 + 32,768 (norms)   =   3,187,703,808
    total                 4,202,692,608 + 126 * 3,187,703,808 + 16,384   = 405,853,388,800
    """
    assert parameter_count(MODELS["llama-3.1-405b"].hf_config()) == 405_853_388_800


def test_qwen2_5_72b_adds_its_qkv_biases():
    """Qwen2.5-72B: hidden 8192, MLP 29568, 80 layers, 64 heads, 8 KV heads, vocab 152064, q/k/v biases.

    embeddings + lm_head  2 * 152064 * 8192                                      =  2,491,416,576
    attention/layer       q, o 8192^2 each; k, v 8192*1024 each; biases 10,240   =    151,005,184
    one layer             151,005,184 + 3 * 8192 * 29568 + 16,384 (norms)        =    877,684,736
    total                 2,491,416,576 + 80 * 877,684,736 + 8,192               = 72,706,203,648
    """
    assert parameter_count(MODELS["qwen2.5-72b"].hf_config()) == 72_706_203_648


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_catalog_config_names_what_vllm_needs_to_build_it(name):
    config = MODELS[name].hf_config()
    assert config["architectures"][0].endswith("ForCausalLM")
    assert config["torch_dtype"] in ("float16", "bfloat16")
    assert config["max_position_embeddings"] >= 4096
    heads, kv_heads = attention_heads(config)
    assert heads % kv_heads == 0
    assert 1 in valid_tensor_parallel_sizes(heads, kv_heads)


@pytest.mark.parametrize("name, heads", [
    ("llama-2-70b", (64, 8)), ("llama-2-13b", (40, 40)), ("qwen2.5-7b", (28, 4)),
    ("llama-3.1-405b", (128, 8)),
])
def test_catalog_head_counts_are_the_published_ones(name, heads):
    assert attention_heads(MODELS[name].hf_config()) == heads


def test_a_catalog_config_cannot_be_changed_through_a_copy():
    copy = MODELS["llama-3.1-8b"].hf_config()
    copy["rope_scaling"]["factor"] = 1.0
    copy["vocab_size"] = 1
    assert MODELS["llama-3.1-8b"].hf_config()["rope_scaling"]["factor"] == 8.0
    assert MODELS["llama-3.1-8b"].config["vocab_size"] == 128256


@pytest.mark.parametrize("text, name", [
    ("llama-2-70b", "llama-2-70b"),
    ("Llama-2-70B", "llama-2-70b"),
    ("meta-llama/Llama-2-70b-hf", "llama-2-70b"),
    ("meta-llama/Llama-2-70b-chat-hf", "llama-2-70b"),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", "llama-3.1-8b"),
    ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b"),
])
def test_a_model_is_found_by_catalog_name_or_by_a_repo_of_its_shape(text, name):
    assert find_model(text).name == name


def test_an_unknown_model_is_not_in_the_catalog():
    assert find_model("meta-llama/Llama-2-65b-hf") is None


@pytest.mark.parametrize("text, name", [
    ("a100-40gb", "a100-40gb"), ("A100-40GB", "a100-40gb"), ("h100", "h100"), ("H100-80GB", "h100"),
    ("h200-141gb", "h200"), ("MI300X", "mi300x"), ("a10g", "a10"), ("l4", "l4"), ("b200", "b200"),
])
def test_a_gpu_kind_is_found_by_name_label_or_alias(text, name):
    assert gpu_kind(text).name == name


def test_an_unknown_gpu_kind_lists_the_known_ones():
    with pytest.raises(ConfigError, match=(
            r"^unknown GPU kind 'v100': tpserve knows a10, l4, a100-40gb, a100-80gb, h100, h200, b200, "
            r"mi300x "
            r"\(or their labels, e.g. A100-40GB\)$")):
        gpu_kind("v100")


@pytest.mark.parametrize("name", sorted(GPUS))
def test_each_gpu_reports_a_little_less_than_its_datasheet_memory(name):
    """The driver keeps some memory (and ECC some more on GDDR cards): never more than the datasheet."""
    gpu = GPUS[name]
    assert 0.9 * gpu.datasheet_gb * GiB < gpu.memory_bytes <= gpu.datasheet_gb * GiB
    assert gpu.datasheet_bytes == gpu.datasheet_gb * 10**9


def test_the_h100_figure_is_the_one_measured_on_an_h100():
    """torch.cuda.mem_get_info() on an H100 80GB HBM3 (driver 580.159.04): nvidia-smi's 81,559 MiB
    total less its 480 MiB reserved = 81,079 MiB."""
    assert GPUS["h100"].memory_bytes == 85_017_493_504 == 81_079 * 2**20
