"""Models and GPUs tpserve knows without a download: published ``config.json`` numbers and card memory.

``tpserve plan`` sizes a catalog model on a catalog GPU without fetching anything, and ``tpserve
shapes`` writes a catalog model's ``config.json`` for ``--load-format dummy`` benchmarks. The model
numbers are copied from each repository's ``config.json``; only the fields that decide the
architecture, its size and its KV cache are kept (no token ids: a shape folder brings its own
tokenizer). The GPU memory is what the CUDA driver reports as the card's total, because that is the
figure vLLM multiplies by ``gpu_memory_utilization`` (see :class:`GpuKind`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tpserve.fetch.errors import ConfigError

MiB = 1 << 20
GiB = 1 << 30


@dataclass(frozen=True)
class CatalogModel:
    """A published model: the repo it stands for, other repos of the same shape, and its config.json."""

    name: str
    repo_id: str
    config: Mapping = field(repr=False)
    tokenizer: str
    aliases: tuple[str, ...] = ()

    def hf_config(self) -> dict:
        """A fresh, mutable copy of the config (nested dicts copied too)."""
        return {key: dict(value) if isinstance(value, Mapping) else value
                for key, value in self.config.items()}


def _llama(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, *, vocab: int,
           positions: int, rope_theta: float, dtype: str, **extra) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "vocab_size": vocab, "max_position_embeddings": positions,
        "rope_theta": rope_theta, "hidden_act": "silu", "rms_norm_eps": 1e-05, "tie_word_embeddings": False,
        "torch_dtype": dtype, **extra,
    }


# Llama 3.1's long-context RoPE and bias flags, as in every Llama-3.1 config.json.
LLAMA31 = {"head_dim": 128, "attention_bias": False, "mlp_bias": False,
           "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
LLAMA2_TOKENIZER = "Llama-2 SentencePiece, 32,000 entries"
LLAMA3_TOKENIZER = "Llama-3 tiktoken BPE, 128,256 entries"
MISTRAL_TOKENIZER = "Mistral v1 SentencePiece, 32,000 entries"
QWEN2_TOKENIZER = "Qwen2 byte-level BPE, 151,665 entries in a 152,064-row embedding"


def _qwen2(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int) -> dict:
    return {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "vocab_size": 152064, "max_position_embeddings": 32768,
        "rope_theta": 1000000.0, "hidden_act": "silu", "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
        "use_sliding_window": False, "torch_dtype": "bfloat16",
    }


def _model(name: str, repo_id: str, config: dict, tokenizer: str, *aliases: str) -> CatalogModel:
    frozen = {key: MappingProxyType(value) if isinstance(value, dict) else value
              for key, value in config.items()}
    return CatalogModel(name, repo_id, MappingProxyType(frozen), tokenizer, aliases)


_MODELS = (
    _model("llama-2-7b", "meta-llama/Llama-2-7b-hf",
           _llama(4096, 11008, 32, 32, 32, vocab=32000, positions=4096, rope_theta=10000.0, dtype="float16"),
           LLAMA2_TOKENIZER, "meta-llama/Llama-2-7b-chat-hf"),
    _model("llama-2-13b", "meta-llama/Llama-2-13b-hf",
           _llama(5120, 13824, 40, 40, 40, vocab=32000, positions=4096, rope_theta=10000.0, dtype="float16"),
           LLAMA2_TOKENIZER, "meta-llama/Llama-2-13b-chat-hf"),
    _model("llama-2-70b", "meta-llama/Llama-2-70b-hf",
           _llama(8192, 28672, 80, 64, 8, vocab=32000, positions=4096, rope_theta=10000.0, dtype="float16"),
           LLAMA2_TOKENIZER, "meta-llama/Llama-2-70b-chat-hf"),
    _model("llama-3.1-8b", "meta-llama/Llama-3.1-8B",
           _llama(4096, 14336, 32, 32, 8, vocab=128256, positions=131072, rope_theta=500000.0,
                  dtype="bfloat16", **LLAMA31),
           LLAMA3_TOKENIZER, "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B",
           "meta-llama/Meta-Llama-3.1-8B-Instruct"),
    _model("llama-3.1-70b", "meta-llama/Llama-3.1-70B",
           _llama(8192, 28672, 80, 64, 8, vocab=128256, positions=131072, rope_theta=500000.0,
                  dtype="bfloat16", **LLAMA31),
           LLAMA3_TOKENIZER, "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Meta-Llama-3.1-70B",
           "meta-llama/Meta-Llama-3.1-70B-Instruct"),
    _model("llama-3.1-405b", "meta-llama/Llama-3.1-405B",
           _llama(16384, 53248, 126, 128, 8, vocab=128256, positions=131072, rope_theta=500000.0,
                  dtype="bfloat16", **LLAMA31),
           LLAMA3_TOKENIZER, "meta-llama/Llama-3.1-405B-Instruct", "meta-llama/Meta-Llama-3.1-405B",
           "meta-llama/Meta-Llama-3.1-405B-Instruct"),
    _model("mistral-7b", "mistralai/Mistral-7B-v0.1",
           {**_llama(4096, 14336, 32, 32, 8, vocab=32000, positions=32768, rope_theta=10000.0,
                     dtype="bfloat16"),
            "architectures": ["MistralForCausalLM"], "model_type": "mistral", "sliding_window": 4096},
           MISTRAL_TOKENIZER, "mistralai/Mistral-7B-Instruct-v0.1"),
    _model("mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1",
           {**_llama(4096, 14336, 32, 32, 8, vocab=32000, positions=32768, rope_theta=1000000.0,
                     dtype="bfloat16"),
            "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "num_local_experts": 8,
            "num_experts_per_tok": 2, "sliding_window": None},
           MISTRAL_TOKENIZER, "mistralai/Mixtral-8x7B-Instruct-v0.1"),
    _model("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", _qwen2(3584, 18944, 28, 28, 4), QWEN2_TOKENIZER),
    _model("qwen2.5-72b", "Qwen/Qwen2.5-72B-Instruct", _qwen2(8192, 29568, 80, 64, 8), QWEN2_TOKENIZER),
)
MODELS: Mapping[str, CatalogModel] = MappingProxyType({model.name: model for model in _MODELS})


def find_model(name: str) -> CatalogModel | None:
    """The catalog model called NAME (any case), or standing for the Hugging Face repo NAME; else None."""
    wanted = name.strip().lower()
    for model in MODELS.values():
        if wanted == model.name or wanted in (repo.lower() for repo in (model.repo_id, *model.aliases)):
            return model
    return None


@dataclass(frozen=True)
class GpuKind:
    """A GPU model and its memory.

    ``datasheet_gb`` is the capacity on the vendor's datasheet. For these cards that "GB" is not
    10^9 bytes: an A100 40GB has 40 GiB of HBM, an H200's "141 GB" is about 140 GiB. What matters to
    vLLM is the total the CUDA driver reports (``torch.cuda.mem_get_info()[1]``), which is the
    datasheet memory less what the driver and ECC reserve; vLLM multiplies that by
    ``gpu_memory_utilization``. ``memory_bytes`` is that total and ``memory_source`` says where the
    figure comes from.
    """

    name: str
    label: str
    datasheet_gb: int
    memory_bytes: int
    memory_source: str
    aliases: tuple[str, ...] = ()
    # GPU feature discovery's nvidia.com/gpu.product labels of this card: the chart's gpu.product, by which
    # its memory fit check (charts/vllm/templates/_fit.tpl) knows the card.
    products: tuple[str, ...] = ()

    @property
    def datasheet_bytes(self) -> int:
        """The datasheet figure read as decimal gigabytes (10^9 bytes), as vendors' spec sheets print it."""
        return self.datasheet_gb * 10**9


MEASURED_HERE = "measured here: lab/benchmarks/gpu_memory.py (torch.cuda.mem_get_info())"
VLLM_LOG = "vLLM 0.26.0's log on this project's H200 host (results/20261126-h200x4-tp4)"
PUBLISHED = "total PyTorch reports on this card in public logs; not measured here"

_GPUS = (
    GpuKind("a10", "A10", 24, 22_722 * MiB, PUBLISHED + " (22.19 GiB, A10G)", ("a10-24gb", "a10g"),
            ("NVIDIA-A10", "NVIDIA-A10G")),
    GpuKind("l4", "L4", 24, 22_579 * MiB, PUBLISHED + " (22.05 GiB)", ("l4-24gb",), ("NVIDIA-L4",)),
    GpuKind("a100-40gb", "A100-40GB", 40, 40_536 * MiB, PUBLISHED + " (39.59 GiB)", ("a100-40",),
            ("NVIDIA-A100-SXM4-40GB", "NVIDIA-A100-PCIE-40GB")),
    GpuKind("a100-80gb", "A100-80GB", 80, 81_050 * MiB, PUBLISHED + " (79.15 GiB)", ("a100-80",),
            ("NVIDIA-A100-SXM4-80GB", "NVIDIA-A100-80GB-PCIe")),
    GpuKind("h100", "H100-80GB", 80, 85_017_493_504, MEASURED_HERE + " on an H100 80GB HBM3, 2026-11",
            ("h100-80gb", "h100-sxm"), ("NVIDIA-H100-80GB-HBM3",)),
    GpuKind("h200", "H200-141GB", 141, 143_160 * MiB, VLLM_LOG + ": 0.92 x total = 128.62 GiB",
            ("h200-141gb",), ("NVIDIA-H200",)),
    GpuKind("b200", "B200-192GB", 192, 182_750 * MiB,
            "nvidia-smi's 183,359 MiB less a driver reserve like the H200's; an estimate", ("b200-192gb",),
            ("NVIDIA-B200",)),
    GpuKind("mi300x", "MI300X-192GB", 192, 205_822_885_888, "ROCm's reported VRAM total; not measured here",
            ("mi300x-192gb",)),
)
GPUS: Mapping[str, GpuKind] = MappingProxyType({gpu.name: gpu for gpu in _GPUS})


def gpu_kind(name: str) -> GpuKind:
    """The GPU kind called NAME or one of its aliases, in any case; an error listing the kinds otherwise."""
    wanted = name.strip().lower()
    for gpu in GPUS.values():
        if wanted in (gpu.name, gpu.label.lower(), *gpu.aliases):
            return gpu
    raise ConfigError(
        f"unknown GPU kind {name!r}: tpserve knows {', '.join(gpu.name for gpu in GPUS.values())} "
        "(or their labels, e.g. A100-40GB)")
