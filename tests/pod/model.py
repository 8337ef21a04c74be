"""The model the pod test serves: tpserve's tiny Llama as a hub repo, with real (random) safetensors weights.

The folder is the demo's (``tpserve.shapes.write_model_folder``: config.json and the 32k tokenizer converted
from mistral_common); the weights are written here, seeded, so the init container downloads and verifies a
real weights file and vLLM reads it from the read-only mount, as it would a hub model's. ``--load-format
dummy`` would skip exactly that read.
"""

from __future__ import annotations

from pathlib import Path

from tpserve.shapes import TINY_LLAMA, write_model_folder

REPO_ID = "tpserve-test/tiny-llama"


def llama_tensors(config: dict, seed: int = 0) -> dict:
    """Every tensor vLLM's LlamaForCausalLM loads, in fp16: small random matrices, unit norms."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head_dim = hidden // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim

    def matrix(rows: int, cols: int):
        return (torch.randn(rows, cols, generator=generator) * 0.02).to(torch.float16)

    tensors = {"model.embed_tokens.weight": matrix(vocab, hidden), "lm_head.weight": matrix(vocab, hidden),
               "model.norm.weight": torch.ones(hidden, dtype=torch.float16)}
    for layer in range(config["num_hidden_layers"]):
        prefix = f"model.layers.{layer}"
        tensors |= {
            f"{prefix}.self_attn.q_proj.weight": matrix(hidden, hidden),
            f"{prefix}.self_attn.k_proj.weight": matrix(kv, hidden),
            f"{prefix}.self_attn.v_proj.weight": matrix(kv, hidden),
            f"{prefix}.self_attn.o_proj.weight": matrix(hidden, hidden),
            f"{prefix}.mlp.gate_proj.weight": matrix(inter, hidden),
            f"{prefix}.mlp.up_proj.weight": matrix(inter, hidden),
            f"{prefix}.mlp.down_proj.weight": matrix(hidden, inter),
            f"{prefix}.input_layernorm.weight": torch.ones(hidden, dtype=torch.float16),
            f"{prefix}.post_attention_layernorm.weight": torch.ones(hidden, dtype=torch.float16),
        }
    return tensors


def tiny_llama_files(directory: Path) -> dict[str, bytes]:
    """The repo's files by name: the demo's folder plus ``model.safetensors``."""
    from safetensors.torch import save_file

    folder = write_model_folder(TINY_LLAMA, directory)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        save_file(llama_tensors(TINY_LLAMA.config()), str(weights), metadata={"format": "pt"})
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}
