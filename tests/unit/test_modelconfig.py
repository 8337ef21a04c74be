import pytest

from tpserve.fetch.errors import ModelConfigError
from tpserve.fetch.modelconfig import attention_heads, parameter_count
from tpserve.shapes import TINY_LLAMA


def llama(hidden, intermediate, layers, heads, kv_heads, vocab=32000, **extra):
    return {"model_type": "llama", "hidden_size": hidden, "intermediate_size": intermediate,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv_heads,
            "vocab_size": vocab, "tie_word_embeddings": False, **extra}


LLAMA_2_7B = llama(4096, 11008, 32, 32, 32)
LLAMA_2_70B = llama(8192, 28672, 80, 64, 8)


def test_llama_2_7b_has_the_parameters_of_its_checkpoint():
    """Llama-2-7b: hidden 4096, MLP 11008, 32 layers, 32 heads = 32 KV heads (no GQA), vocab 32000.

    embeddings       32000 * 4096                          =   131,072,000
    attention/layer  q, k, v, o each 4096 * 4096 = 16,777,216, times 4 =  67,108,864
    MLP/layer        gate, up, down each 4096 * 11008 = 45,088,768, times 3 = 135,266,304
    norms/layer      2 * 4096                              =         8,192
    one layer        67,108,864 + 135,266,304 + 8,192      =   202,383,360
    32 layers        32 * 202,383,360                      = 6,476,267,520
    final norm                                             =         4,096
    lm_head (untied) 32000 * 4096                          =   131,072,000
    total            131,072,000 + 6,476,267,520 + 4,096 + 131,072,000 = 6,738,415,616
    """
    assert parameter_count(LLAMA_2_7B) == 6_738_415_616


def test_llama_2_70b_counts_grouped_query_attention_with_eight_kv_heads():
    """Llama-2-70b: hidden 8192, MLP 28672, 80 layers, 64 heads of 128, 8 KV heads, vocab 32000.

    embeddings       32000 * 8192                          =    262,144,000
    attention/layer  q 8192*8192 = 67,108,864; k, v 8192*(8*128) = 8,388,608 each;
                     o 8192*8192 = 67,108,864; sum                     =    150,994,944
    MLP/layer        3 * 8192 * 28672 = 3 * 234,881,024                =    704,643,072
    norms/layer      2 * 8192                                          =         16,384
    one layer        150,994,944 + 704,643,072 + 16,384                =    855,654,400
    80 layers        80 * 855,654,400                                  = 68,452,352,000
    final norm + lm_head   8,192 + 262,144,000
    total            262,144,000 + 68,452,352,000 + 8,192 + 262,144,000 = 68,976,648,192
    """
    assert parameter_count(LLAMA_2_70B) == 68_976_648_192


def test_mixtral_counts_every_expert_and_the_router():
    """Mixtral-8x7B (46,702,792,704 parameters, as its model card's 46.7B says).

    attention/layer  q, o 4096*4096 = 16,777,216 each; k, v 4096*1024 = 4,194,304 each = 41,943,040
    experts/layer    8 * 3 * 4096 * 14336 = 8 * 176,160,768                        = 1,409,286,144
    router/layer     4096 * 8                                                      =        32,768
    one layer        41,943,040 + 1,409,286,144 + 32,768 + 8,192 (norms)           = 1,451,270,144
    total            2 * 131,072,000 + 32 * 1,451,270,144 + 4,096                  = 46,702,792,704
    """
    config = {**llama(4096, 14336, 32, 32, 8), "model_type": "mixtral", "num_local_experts": 8}
    assert parameter_count(config) == 46_702_792_704


def test_qwen2_adds_the_q_k_v_biases():
    """Qwen2-7B (7,615,616,512 parameters): hidden 3584, MLP 18944, 28 layers, 28 heads, 4 KV heads.

    attention/layer  q, o 3584*3584 = 12,845,056 each; k, v 3584*512 = 1,835,008 each;
                     biases q 3584 + k 512 + v 512 = 4,608; sum        =    29,364,736
    MLP/layer        3 * 3584 * 18944                                  =   203,685,888
    one layer        29,364,736 + 203,685,888 + 7,168 (norms)          =   233,057,792
    total            2 * 152064 * 3584 + 28 * 233,057,792 + 3,584      = 7,615,616,512
    """
    config = {**llama(3584, 18944, 28, 28, 4, vocab=152064), "model_type": "qwen2"}
    assert parameter_count(config) == 7_615_616_512


def test_tied_embeddings_count_the_matrix_once():
    tied = {**LLAMA_2_7B, "tie_word_embeddings": True}
    assert parameter_count(LLAMA_2_7B) - parameter_count(tied) == 32000 * 4096


def test_an_explicit_head_dim_wins_over_hidden_over_heads():
    """Mistral-Nemo style: 32 heads of 128 on a 5120-wide model, so q is 5120 x 4096, not 5120 x 5120."""
    base = llama(5120, 14336, 1, 32, 8, vocab=1)
    explicit = {**base, "head_dim": 128}
    q_and_o_difference = 2 * 5120 * (5120 - 4096)
    k_and_v_difference = 2 * 5120 * 8 * (160 - 128)
    assert parameter_count(base) - parameter_count(explicit) == q_and_o_difference + k_and_v_difference


def test_the_tiny_demo_llama_has_eight_and_a_half_million_parameters():
    """tpserve's demo model: hidden 128, MLP 344, 2 layers, 4 heads = 4 KV heads, vocab 32000.

    one layer  4 * 128 * 128 + 3 * 128 * 344 + 2 * 128 = 65,536 + 132,096 + 256 = 197,888
    total      2 * 32000 * 128 + 2 * 197,888 + 128     = 8,192,000 + 395,776 + 128 = 8,587,904
    """
    assert parameter_count(TINY_LLAMA.config()) == 8_587_904


@pytest.mark.parametrize("config, heads", [
    ({"num_attention_heads": 64, "num_key_value_heads": 8}, (64, 8)),
    ({"num_attention_heads": 32}, (32, 32)),
    ({"num_attention_heads": 32, "num_key_value_heads": None}, (32, 32)),
])
def test_kv_heads_default_to_the_attention_heads(config, heads):
    assert attention_heads(config) == heads


@pytest.mark.parametrize("config, message", [
    ({"model_type": "llama", "hidden_size": 4096}, (
        "config.json of this llama lacks intermediate_size, num_hidden_layers, num_attention_heads, "
        "vocab_size: it is not a complete Hugging Face config")),
    ({**LLAMA_2_7B, "model_type": "mixtral"}, "config.json of this mixtral lacks num_local_experts"),
    ({**LLAMA_2_7B, "model_type": "gpt2"}, (
        "cannot count the parameters of model_type 'gpt2': tpserve knows llama, mistral, qwen2, mixtral")),
    ({}, "cannot count the parameters of model_type None"),
])
def test_a_config_missing_what_is_needed_is_rejected_by_name(config, message):
    with pytest.raises(ModelConfigError, match=message):
        parameter_count(config)


def test_attention_heads_need_the_head_count():
    with pytest.raises(ModelConfigError, match="lacks num_attention_heads"):
        attention_heads({"model_type": "llama"})
