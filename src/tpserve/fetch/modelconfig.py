"""What a Hugging Face ``config.json`` says about a model's size, without loading any weights.

The parameter count goes into the cache manifest so a folder's model can be told apart at a glance
(6.7 billion is not 69 billion), and the head counts decide which tensor-parallel sizes are possible.
"""

from __future__ import annotations

from .errors import ModelConfigError

DENSE_TYPES = ("llama", "mistral", "qwen2")
MOE_TYPES = ("mixtral",)
REQUIRED = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")


def attention_heads(config: dict) -> tuple[int, int]:
    """``(num_attention_heads, num_key_value_heads)``; without grouped-query attention both are the same."""
    _require(config, ("num_attention_heads",))
    heads = int(config["num_attention_heads"])
    kv_heads = config.get("num_key_value_heads")
    return heads, heads if kv_heads is None else int(kv_heads)


def parameter_count(config: dict) -> int:
    """Parameters of a dense Llama/Mistral/Qwen2 or a Mixtral-style mixture-of-experts model.

    Counts the embeddings, each layer's attention (q/k/v/o, grouped-query aware), MLP (gate/up/down,
    once per expert for MoE, plus the router) and two RMSNorms, the final norm, and the lm_head unless
    it shares the embedding matrix.
    """
    model_type = config.get("model_type")
    if model_type not in DENSE_TYPES + MOE_TYPES:
        raise ModelConfigError(
            f"cannot count the parameters of model_type {model_type!r}: tpserve knows "
            f"{', '.join(DENSE_TYPES + MOE_TYPES)}")
    needed = REQUIRED + (("num_local_experts",) if model_type in MOE_TYPES else ())
    _require(config, needed)
    hidden = int(config["hidden_size"])
    vocab = int(config["vocab_size"])
    heads, kv_heads = attention_heads(config)
    head_dim = int(config.get("head_dim") or hidden // heads)

    q_size, kv_size = heads * head_dim, kv_heads * head_dim
    attention = hidden * q_size + 2 * hidden * kv_size + q_size * hidden
    if model_type == "qwen2":
        attention += q_size + 2 * kv_size
    elif config.get("attention_bias"):
        attention += q_size + 2 * kv_size + hidden

    mlp = 3 * hidden * int(config["intermediate_size"])
    if config.get("mlp_bias"):
        mlp += 2 * int(config["intermediate_size"]) + hidden
    if model_type in MOE_TYPES:
        experts = int(config["num_local_experts"])
        mlp = experts * mlp + hidden * experts

    layer = attention + mlp + 2 * hidden
    # These architectures default to an untied lm_head when config.json does not say.
    lm_head = 0 if config.get("tie_word_embeddings", False) else vocab * hidden
    return vocab * hidden + int(config["num_hidden_layers"]) * layer + hidden + lm_head


def _require(config: dict, fields: tuple[str, ...]) -> None:
    missing = [name for name in fields if config.get(name) is None]
    if missing:
        kind = config.get("model_type") or "model"
        raise ModelConfigError(
            f"config.json of this {kind} lacks {', '.join(missing)}: it is not a complete Hugging Face "
            "config; check the file or fetch the model again")
