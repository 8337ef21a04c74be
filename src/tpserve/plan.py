"""How many GPUs of a kind a model needs under vLLM, and how much KV cache each layout leaves.

The memory model is vLLM's own start-up arithmetic, done ahead of time. On each GPU vLLM may use
``gpu_memory_utilization`` × the total the CUDA driver reports; from that it takes the GPU's share of
the weights and what its profiling run measured (peak activations and non-PyTorch memory), and
fills the rest with KV-cache blocks. It refuses to start when those blocks cannot hold one sequence
of the context length. tpserve cannot run the profile, so it reserves :data:`ACTIVATION_RESERVE_BYTES`
per GPU instead. ``docs/plan.md`` works through Llama-2-70b on A100-40GB and H200.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from tpserve import catalog
from tpserve.catalog import GiB, GpuKind
from tpserve.fetch import cache
from tpserve.fetch.errors import ConfigError, ModelConfigError
from tpserve.fetch.modelconfig import attention_heads, parameter_count
from tpserve.fetch.preflight import valid_tensor_parallel_sizes

# vLLM 0.26.0's default, the version of the serving image: its log on this project's H200 host says
# "Desired GPU memory utilization is (0.92, 128.62 GiB)" with no --gpu-memory-utilization given.
GPU_MEMORY_UTILIZATION = 0.92
# What vLLM's profiling run takes besides the weights. vLLM 0.26.0 measured 0.82 GiB for Llama-2-70b at
# TP=4 (0.75 peak activations + 0.07 non-PyTorch) and 0.48 GiB for Llama-2-7b at TP=4 on H200, with its
# default 8,192 batched tokens; TP=1 and vocabularies of 128k-152k (whose sampler profiles fp32 logits
# for up to 1,024 sequences) take more. 2 GiB covers those; CUDA graphs come out of the other 8%.
ACTIVATION_RESERVE_BYTES = 2 * GiB
# vLLM 0.26.0 quantizes a 16-bit checkpoint to fp8 (--quantization fp8, no fp8 checkpoint) one module at a time
# as it loads, not after loading the whole model: Fp8Config.get_quant_method gives every LinearBase layer (q/k/v,
# o, gate/up, down; the experts of a layer as one FusedMoE module) Fp8PerTensorOnlineLinearMethod, whose
# create_weights puts the 16-bit weight on the meta device (layers/quantization/online/fp8.py); the loader's
# wrapper (model_loader/reload/layerwise.py, initialize_online_processing) buffers a module's shards, and once
# all arrived materializes that module in 16 bits, quantizes it and frees the 16-bit copy. Embeddings, lm_head
# (VocabParallelEmbedding, not LinearBase) and norms stay 16-bit. --load-format dummy takes the same path
# (model_loader/dummy_loader.py: _process_online_quant_layer, one module at a time). So loading peaks at the
# fp8 weights plus the largest module's shard in 16 bits. Older releases held the whole 16-bit model first
# (vllm-project/vllm#32773 on 0.13/0.14; #31914 moved the weights to meta); 0.32.0 keeps the 0.26 path.
# Memory freed after loading does not shrink the KV cache (vLLM resets its peak before profiling), but the
# peak must fit beside the CUDA context. docs/plan.md has the details.
LOAD_QUANTIZATION_NOTE = "vLLM quantizes the 16-bit checkpoint one module at a time"
# What the CUDA context (and NCCL at TP > 1) holds before the weights load: vLLM 0.26.0 found 139.29 of the
# H200's 139.80 GiB free at TP 1 (0.51 GiB taken) and 138.27-138.38 at TP 2 and 4 (up to 1.53 GiB taken;
# results/20261126-h200x4-sweep/*/logs, "Free memory on device"). 2 GiB covers both.
LOAD_RESERVE_BYTES = 2 * GiB
# vLLM allocates the KV cache in blocks of 16 tokens: its capacity is a whole number of blocks.
KV_BLOCK_TOKENS = 16
DEFAULT_GPUS_PER_NODE = 8

WEIGHT_DTYPES = {"fp16": 2, "bf16": 2, "fp8": 1, "int8": 1}
# "auto" is vLLM's kv_cache_dtype default: the model's 16-bit activation dtype, even for fp8/int8 weights.
KV_DTYPES = {"auto": 2, "fp16": 2, "bf16": 2, "fp8": 1}
_CONFIG_DTYPES = {"float16": "fp16", "bfloat16": "bf16"}


@dataclass(frozen=True)
class ModelSource:
    """A model's config.json and where it came from: a folder, a file, the fetch cache or the catalog."""

    name: str
    origin: str
    config: Mapping
    # What `tpserve serve --model` takes for it: the folder, or the repo id.
    serve_model: str = ""


@dataclass(frozen=True)
class ModelSize:
    """What a model occupies: its weights in one dtype and its KV cache per token of context."""

    parameters: int
    weight_dtype: str
    weight_bytes: int
    kv_cache_dtype: str
    kv_cache_bytes_per_token: int
    # True when vLLM turns 16-bit checkpoint weights into fp8 as it loads them (LOAD_QUANTIZATION_NOTE).
    quantized_at_load: bool
    layers: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    hidden_size: int
    vocab_size: int
    max_position_embeddings: int | None


@dataclass(frozen=True)
class LayoutFit:
    """One way to place the model: tensor parallel within a node × pipeline stages, and what it leaves.

    Per-GPU figures are those of the tightest GPU (the first or last pipeline stage, which also hold
    the embeddings or the lm_head). ``reason`` says why the layout does not fit; it is empty when it does.
    """

    tensor_parallel: int
    pipeline_parallel: int
    gpus: int
    nodes: int
    weight_bytes_per_gpu: int
    load_peak_bytes_per_gpu: int
    kv_cache_bytes_per_gpu: int
    kv_cache_tokens: int
    max_sequences: int
    fits: bool
    reason: str

    @property
    def name(self) -> str:
        stages = f" × PP {self.pipeline_parallel}" if self.pipeline_parallel > 1 else ""
        return f"TP {self.tensor_parallel}{stages}"


@dataclass(frozen=True)
class Plan:
    """Every layout worth showing for a model on a GPU kind, with the memory model's settings."""

    model: str
    model_origin: str
    gpu: GpuKind
    gpus_per_node: int
    context_tokens: int
    gpu_memory_utilization: float
    activation_reserve_bytes: int
    load_reserve_bytes: int
    size: ModelSize
    valid_tensor_parallel_sizes: tuple[int, ...]
    invalid_tensor_parallel_sizes: tuple[int, ...]
    layouts: tuple[LayoutFit, ...]
    notes: tuple[str, ...]

    @property
    def usable_bytes_per_gpu(self) -> int:
        return int(self.gpu.memory_bytes * self.gpu_memory_utilization)

    @property
    def minimum(self) -> LayoutFit | None:
        """The fitting layout with the fewest GPUs, or None when none fits."""
        fitting = [layout for layout in self.layouts if layout.fits]
        return min(fitting, key=lambda layout: (layout.gpus, layout.pipeline_parallel)) if fitting else None

    def to_dict(self) -> dict:
        gpu = asdict(self.gpu) | {"datasheet_bytes": self.gpu.datasheet_bytes}
        minimum = self.minimum
        return {
            "model": self.model, "model_origin": self.model_origin, "gpu": gpu,
            "gpus_per_node": self.gpus_per_node, "context_tokens": self.context_tokens,
            "gpu_memory_utilization": self.gpu_memory_utilization,
            "usable_bytes_per_gpu": self.usable_bytes_per_gpu,
            "activation_reserve_bytes": self.activation_reserve_bytes,
            "load_reserve_bytes": self.load_reserve_bytes,
            **asdict(self.size),
            "valid_tensor_parallel_sizes": list(self.valid_tensor_parallel_sizes),
            "invalid_tensor_parallel_sizes": list(self.invalid_tensor_parallel_sizes),
            "layouts": [asdict(layout) | {"name": layout.name} for layout in self.layouts],
            "minimum": None if minimum is None else asdict(minimum) | {"name": minimum.name},
            "notes": list(self.notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def find_model_config(model: str, cache_dir: str | Path | None = None, revision: str = "main") -> ModelSource:
    """Find MODEL's config.json: a folder or file, else a fetched repo in CACHE_DIR, else the catalog.

    A fetched repo wins over the catalog entry of the same name: its config is the real one.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return ModelSource(model, f"folder {path}", _read_config(path / cache.CONFIG_NAME), model)
    if path.is_file():
        return ModelSource(model, f"file {path}", _read_config(path), str(path.parent))
    if cache_dir is not None and "/" in model and cache.REPO_ID.fullmatch(model) and "--" not in model:
        folder = cache.find_cached(model, revision, cache_dir)
        if folder is not None:
            config = _read_config(folder / cache.CONFIG_NAME)
            return ModelSource(model, f"fetched {revision} at {folder}", config, model)
    entry = catalog.find_model(model)
    if entry is not None:
        return ModelSource(entry.name, f"catalog: {entry.repo_id}", entry.hf_config(),
                           model if "/" in model else entry.repo_id)
    where = f"fetched into {cache_dir}" if cache_dir is not None else "fetched"
    raise ConfigError(
        f"unknown model {model!r}: it is not a folder or config.json, not a repo {where}, and not in "
        f"tpserve's catalog ({', '.join(catalog.MODELS)}); pass a model folder or its config.json, or "
        "run `tpserve fetch ORG/NAME` first")


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelConfigError(f"{path} does not exist: a model folder needs its config.json") from None
    except (OSError, ValueError) as exc:
        raise ModelConfigError(f"{path} is not a readable JSON config ({exc})") from exc
    if not isinstance(config, dict):
        raise ModelConfigError(f"{path} holds no JSON object: it is not a Hugging Face config.json")
    return config


def weight_dtype(config: Mapping, dtype: str) -> str:
    """DTYPE checked; "auto" is config.json's torch_dtype, as in vLLM (which serves fp32 in 16 bits)."""
    if dtype == "auto":
        return _CONFIG_DTYPES.get(str(config.get("torch_dtype")), "bf16")
    if dtype not in WEIGHT_DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}: use auto, {', '.join(WEIGHT_DTYPES)}")
    return dtype


def _kv_dtype(kv_dtype: str) -> str:
    if kv_dtype not in KV_DTYPES:
        raise ConfigError(f"unknown KV-cache dtype {kv_dtype!r}: use {', '.join(KV_DTYPES)}")
    return kv_dtype


@dataclass(frozen=True)
class _Parts:
    """Parameter counts by where they live: embeddings, lm_head and final norm at the ends, layers between."""

    hidden: int
    layers: int
    embedding: int
    lm_head: int
    final_norm: int
    layer_linear: int
    layer_norms: int


def _parts(config: Mapping) -> _Parts:
    total = parameter_count(dict(config))
    hidden, vocab, layers = (int(config[key]) for key in ("hidden_size", "vocab_size", "num_hidden_layers"))
    lm_head = 0 if config.get("tie_word_embeddings", False) else vocab * hidden
    per_layer = (total - vocab * hidden - lm_head - hidden) // layers
    return _Parts(hidden, layers, vocab * hidden, lm_head, hidden, per_layer - 2 * hidden, 2 * hidden)


def head_dim(config: Mapping) -> int:
    return int(config.get("head_dim") or int(config["hidden_size"]) // int(config["num_attention_heads"]))


def weight_bytes(config: Mapping, dtype: str) -> int:
    """Bytes of all weights. fp8 and int8 quantize the layers' linear weights only: embeddings, lm_head and
    norms stay 16-bit, as in vLLM's fp8 quantization (LinearBase layers only) and published fp8 checkpoints.
    The per-tensor scales (4 bytes per module) are left out."""
    parts, width = _parts(config), WEIGHT_DTYPES[weight_dtype(config, dtype)]
    sixteen_bit = parts.embedding + parts.lm_head + parts.final_norm + parts.layers * parts.layer_norms
    return parts.layers * parts.layer_linear * width + sixteen_bit * 2


def quantized_at_load(config: Mapping, dtype: str) -> bool:
    """fp8 weights from a checkpoint without a quantization_config: vLLM quantizes them as it loads."""
    return weight_dtype(config, dtype) == "fp8" and not config.get("quantization_config")


def largest_module_parameters(config: Mapping, tensor: int) -> int:
    """Parameters per GPU of the largest module vLLM quantizes at once: q/k/v, o, gate/up or down of a
    layer, or all experts of a mixture-of-experts layer (one FusedMoE module)."""
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    _, kv_heads = attention_heads(dict(config))
    dim, intermediate = head_dim(config), int(config["intermediate_size"])
    qkv = hidden * dim * (heads // tensor + 2 * max(1, kv_heads // tensor)) if heads >= tensor else 0
    mlp = 2 * hidden * intermediate
    if config.get("num_local_experts"):
        mlp = int(config["num_local_experts"]) * 3 * hidden * intermediate
    return max(qkv, -(-mlp // tensor))


def kv_cache_bytes_per_token(config: Mapping, kv_dtype: str = "auto") -> int:
    """2 (K and V) × layers × KV heads × head dim × bytes per value: the KV cache of one token."""
    _, kv_heads = attention_heads(dict(config))
    return 2 * int(config["num_hidden_layers"]) * kv_heads * head_dim(config) * KV_DTYPES[_kv_dtype(kv_dtype)]


def model_size(config: Mapping, dtype: str = "auto", kv_dtype: str = "auto") -> ModelSize:
    dtype, kv_dtype = weight_dtype(config, dtype), _kv_dtype(kv_dtype)
    heads, kv_heads = attention_heads(dict(config))
    positions = config.get("max_position_embeddings")
    return ModelSize(
        parameters=parameter_count(dict(config)), weight_dtype=dtype,
        weight_bytes=weight_bytes(config, dtype),
        kv_cache_dtype=kv_dtype, kv_cache_bytes_per_token=kv_cache_bytes_per_token(config, kv_dtype),
        quantized_at_load=quantized_at_load(config, dtype),
        layers=int(config["num_hidden_layers"]), attention_heads=heads, kv_heads=kv_heads,
        head_dim=head_dim(config), hidden_size=int(config["hidden_size"]), vocab_size=int(config["vocab_size"]),
        max_position_embeddings=None if positions is None else int(positions))


def stage_layers(layers: int, pipeline: int) -> list[int]:
    """Layers of each pipeline stage as vLLM splits them: evenly, one more on the stages before the last."""
    stages = [layers // pipeline] * pipeline
    for index in range(2, layers % pipeline + 2):
        stages[-index] += 1
    return stages


def layout(config: Mapping, gpu: GpuKind, tensor: int, pipeline: int, *, context: int, dtype: str = "auto",
           kv_dtype: str = "auto", gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
           utilization: float = GPU_MEMORY_UTILIZATION, reserve: int = ACTIVATION_RESERVE_BYTES,
           load_reserve: int = LOAD_RESERVE_BYTES) -> LayoutFit:
    """What TENSOR × PIPELINE GPUs of GPU leave for the KV cache, and whether vLLM would start: the weights
    fit in what vLLM may use, their load peak beside the CUDA context, and one sequence in the KV cache."""
    dtype, kv_dtype = weight_dtype(config, dtype), _kv_dtype(kv_dtype)
    parts, width = _parts(config), WEIGHT_DTYPES[dtype]
    _, kv_heads = attention_heads(dict(config))
    dim = head_dim(config)
    kv_heads_per_gpu = max(1, kv_heads // tensor)  # vLLM replicates KV heads when TP exceeds them
    replicated_kv = 2 * parts.hidden * dim * (kv_heads_per_gpu * tensor - kv_heads) * width
    usable = int(gpu.memory_bytes * utilization)
    weights, kv = [], []  # per GPU of each stage: weight bytes, (KV tokens, KV bytes)
    for index, layers in enumerate(stage_layers(parts.layers, pipeline)):
        stage = layers * (parts.layer_linear * width + parts.layer_norms * 2 + replicated_kv)
        if index == 0:
            stage += parts.embedding * 2
        if index == pipeline - 1:  # a tied lm_head is the embedding, held again when it is on another stage
            stage += ((parts.lm_head or (parts.embedding if pipeline > 1 else 0)) + parts.final_norm) * 2
        weights.append(-(-stage // tensor))
        free = max(usable - weights[-1] - reserve, 0)
        kv_per_token = 2 * layers * kv_heads_per_gpu * dim * KV_DTYPES[kv_dtype]
        kv.append((free // kv_per_token // KV_BLOCK_TOKENS * KV_BLOCK_TOKENS, free))
    heaviest, (tokens, kv_bytes) = max(weights), min(kv)
    module = largest_module_parameters(config, tensor) * 2 if quantized_at_load(config, dtype) else 0
    peak, free_at_load = heaviest + module, gpu.memory_bytes - load_reserve
    reason = ""
    where = f"each {gpu.label} ({utilization:g} × {gib(gpu.memory_bytes)})"
    if heaviest > usable:
        reason = (f"the weights need {gib(heaviest)} per GPU, more than the {gib(usable)} vLLM may use of "
                  f"{where}")
    elif peak > free_at_load:
        reason = (f"the fp8 weights fit ({gib(heaviest)} per GPU) but loading peaks at {gib(peak)} while "
                  f"quantizing ({LOAD_QUANTIZATION_NOTE}, {gib(module)} of it in 16 bits at once), more than "
                  f"the {gib(free_at_load)} free on each {gpu.label} ({gib(gpu.memory_bytes)} less "
                  f"{gib(load_reserve)} for the CUDA context): use more GPUs or an fp8 checkpoint")
    elif heaviest + reserve >= usable:
        reason = (f"the weights ({gib(heaviest)} per GPU) and {gib(reserve)} for activations fill the "
                  f"{gib(usable)} vLLM may use of {where}, leaving nothing for the KV cache")
    elif tokens < context:
        reason = (f"the KV cache holds {tokens:,} tokens, less than one {context:,}-token sequence, so vLLM "
                  "refuses to start: lower --context or use more GPUs")
    return LayoutFit(tensor_parallel=tensor, pipeline_parallel=pipeline, gpus=tensor * pipeline,
                  nodes=-(-tensor * pipeline // gpus_per_node), weight_bytes_per_gpu=heaviest,
                  load_peak_bytes_per_gpu=peak,
                  kv_cache_bytes_per_gpu=kv_bytes, kv_cache_tokens=tokens, max_sequences=tokens // context,
                  fits=not reason, reason=reason)


def make_plan(source: ModelSource, gpu: GpuKind, *, gpus_per_node: int = DEFAULT_GPUS_PER_NODE,
              context: int | None = None, dtype: str = "auto", kv_dtype: str = "auto",
              utilization: float = GPU_MEMORY_UTILIZATION, reserve: int = ACTIVATION_RESERVE_BYTES,
              load_reserve: int = LOAD_RESERVE_BYTES) -> Plan:
    """Each tensor-parallel size that splits the heads within one node; when none fits, pipeline stages
    across nodes at the largest of them, up to the first number of nodes that fits."""
    config = source.config
    size = model_size(config, dtype, kv_dtype)
    if gpus_per_node < 1:
        raise ConfigError(f"--gpus-per-node must be at least 1, got {gpus_per_node}")
    if not 0 < utilization <= 1:
        raise ConfigError(f"--gpu-memory-utilization must be in (0, 1], got {utilization:g}")
    context = _context(source.name, size, context)
    valid = valid_tensor_parallel_sizes(size.attention_heads, size.kv_heads, limit=gpus_per_node)
    if not valid:
        raise ConfigError(f"{source.name} has {size.attention_heads} attention heads and {size.kv_heads} KV "
                          f"heads: no tensor-parallel size up to {gpus_per_node} splits them")
    settings = {"context": context, "dtype": size.weight_dtype, "kv_dtype": size.kv_cache_dtype,
                "gpus_per_node": gpus_per_node, "utilization": utilization, "reserve": reserve,
                "load_reserve": load_reserve}
    layouts = [layout(config, gpu, tensor, 1, **settings) for tensor in valid]
    if not any(item.fits for item in layouts):
        tensor, tried = valid[-1], []
        for pipeline in range(2, size.layers + 1):
            tried.append(layout(config, gpu, tensor, pipeline, **settings))
            if tried[-1].fits:
                break
        layouts += tried[-2:]
    return Plan(
        model=source.name, model_origin=source.origin, gpu=gpu, gpus_per_node=gpus_per_node,
        context_tokens=context, gpu_memory_utilization=utilization, activation_reserve_bytes=reserve,
        load_reserve_bytes=load_reserve, size=size,
        valid_tensor_parallel_sizes=tuple(valid),
        invalid_tensor_parallel_sizes=tuple(n for n in range(1, gpus_per_node + 1) if n not in valid),
        layouts=tuple(layouts), notes=_notes(config, size))


def _context(name: str, size: ModelSize, context: int | None) -> int:
    """The context length to size for: vLLM's default is the model's max_position_embeddings."""
    if context is None:
        if size.max_position_embeddings is None:
            raise ConfigError(f"{name}'s config.json has no max_position_embeddings: pass --context")
        return size.max_position_embeddings
    if context < 1:
        raise ConfigError(f"--context must be at least 1 token, got {context}")
    if size.max_position_embeddings is not None and context > size.max_position_embeddings:
        raise ConfigError(
            f"--context {context:,} is longer than the {size.max_position_embeddings:,} positions {name} "
            f"was built for, and vLLM refuses such a --max-model-len: use at most "
            f"{size.max_position_embeddings:,}")
    return context


def _notes(config: Mapping, size: ModelSize) -> tuple[str, ...]:
    notes = []
    if config.get("sliding_window") and config.get("use_sliding_window", True):
        notes.append(f"this model attends over a sliding window of {config['sliding_window']:,} tokens; vLLM "
                     "keeps only that window's KV cache, so longer sequences need less than counted here")
    if size.weight_dtype in ("fp8", "int8"):
        notes.append(f"{size.weight_dtype} counts the layers' linear weights at one byte and the embeddings, "
                     "lm_head and norms at two, as vLLM's fp8 quantization and quantized checkpoints keep them")
    return tuple(notes)


def gib(count: float) -> str:
    return f"{count / GiB:.2f} GiB"
