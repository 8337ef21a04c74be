"""How far a run is from its card's physical limit: decode against memory bandwidth, prefill against
tensor throughput.

A user who sees 6,000 tok/s cannot tell a slow setting from a slow GPU; the fraction of the roofline
can. Two bounds, each the speed of a GPU that did nothing but that phase:

- **Decode.** Each step produces one token per running request and reads, per replica, the weights
  (less the embedding table, which a step only gathers a few rows of) and the KV cache of every
  running request at its context. With the run's batch ``B`` and mean context ``C`` a step reads
  ``W + B·C·kv`` bytes across the replica's GPUs and multiplies ``B`` tokens through the layers, so it
  takes at least ``max(bytes / bandwidth, FLOPs / tensor throughput)``; the bound is ``B`` tokens per
  that time. ``B`` is measured (Little's law over the record: completed requests per second × the mean
  time from first token to last), ``C`` is the mean prompt plus half the mean output.
- **Prefill.** Each prompt token costs 2 FLOPs per weight of the layers, the causal attention over the
  prompt (``4 · (I+1)/2 · layers · heads · head_dim``), and one lm_head row per prompt; the bound is
  the GPUs' dense tensor throughput over that.

The two share the run's time (chunked prefill mixes them in one step), so each fraction says what
share of the run the perfect card would have needed for that phase. Sizes come from
:mod:`tpserve.plan` for the dtypes the record says were served (``--quantization fp8`` stores
weights in one byte and, on cards with fp8 tensor cores, multiplies in fp8; ``--kv-cache-dtype fp8``
halves the KV cache). Limits come from the datasheet (:mod:`tpserve.gpuspecs`) or from
``lab/benchmarks/gpu_limits.py`` run on the card (:func:`measured_limits`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path, PurePath

from tpserve import plan
from tpserve.fetch.errors import ConfigError, ModelConfigError
from tpserve.fetch.modelconfig import attention_heads, parameter_count
from tpserve.gpuspecs import GpuSpec, spec_for
from tpserve.workload.runrecord import RunRecord

LIMITS_FILE = "gpu-limits.json"
_DTYPE_FLAGS = {"auto": "auto", "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "half": "fp16",
                "fp16": "fp16"}
_KV_FLAGS = {"auto": "auto", "bfloat16": "bf16", "float16": "fp16", "fp8": "fp8", "fp8_e4m3": "fp8",
             "fp8_e5m2": "fp8"}


@dataclass(frozen=True)
class Limits:
    """What one card of a kind can do: memory GB/s and dense TFLOPS per matmul dtype ("bf16", "fp8")."""

    memory_gb_s: float
    tflops: Mapping[str, float]
    source: str


def spec_limits(spec: GpuSpec) -> Limits:
    tflops = {"bf16": spec.bf16_tflops} | ({"fp8": spec.fp8_tflops} if spec.fp8_tflops is not None else {})
    return Limits(spec.memory_gb_s, tflops, spec.source)


def read_limits(path: Path) -> tuple[str, Limits]:
    """The device name and the measured limits in a ``lab/benchmarks/gpu_limits.py`` JSON file."""
    try:
        document = json.loads(Path(path).read_text())
        matmul = document["matmul"]
        tflops = {dtype: float(matmul[dtype]["tflops"]) for dtype in ("bf16", "fp8")
                  if matmul.get(dtype, {}).get("available")}
        return str(document["device"]), Limits(float(document["memory_gb_s"]), tflops, str(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a lab/benchmarks/gpu_limits.py result ({exc.__class__.__name__}: {exc}): "
                          "pass the JSON that script writes with --out") from None


def measured_limits(paths: Iterable[Path]) -> dict[str, Limits]:
    """Measured limits by device name (lower case) from gpu-limits files; several files for one card
    keep each figure's best, the most that card was seen to achieve."""
    found: dict[str, Limits] = {}
    for path in paths:
        device, limits = read_limits(path)
        key = device.lower()
        if key in found:
            earlier = found[key]
            limits = Limits(max(earlier.memory_gb_s, limits.memory_gb_s),
                            {dtype: max(earlier.tflops.get(dtype, 0.0), limits.tflops.get(dtype, 0.0))
                             for dtype in set(earlier.tflops) | set(limits.tflops)},
                            f"{earlier.source}, {limits.source}")
        found[key] = limits
    return found


@dataclass(frozen=True)
class Served:
    """What the record says served the run, as far as the roofline needs it."""

    config: Mapping
    config_origin: str
    weight_dtype: str
    kv_cache_dtype: str
    matmul_dtype: str

    @property
    def dtypes(self) -> str:
        kv = "16-bit" if self.kv_cache_dtype == "auto" else self.kv_cache_dtype
        return f"{self.weight_dtype} / {kv} / {self.matmul_dtype}"


@dataclass(frozen=True)
class Bound:
    """The most tok/s the run's replicas could reach at some limits, and which limit binds decode."""

    decode_tok_s: float
    decode_limit: str
    prefill_tok_s: float


@dataclass(frozen=True)
class Roofline:
    """One run against its card: its measured batch and context, and its bounds from the datasheet and,
    when the card was measured, from the measurement."""

    spec: GpuSpec
    served: Served
    decode_batch: float
    mean_context: float
    bytes_per_step: float
    output_tok_s: float
    input_tok_s: float
    datasheet: Bound
    measured: Bound | None = None
    measured_source: str = ""

    def decode_fraction(self, bound: Bound | None) -> float | None:
        return None if bound is None else self.output_tok_s / bound.decode_tok_s

    def prefill_fraction(self, bound: Bound | None) -> float | None:
        return None if bound is None else self.input_tok_s / bound.prefill_tok_s


@dataclass(frozen=True)
class NoRoofline:
    """Why a run has no roofline (an unknown card, a CPU, a model tpserve cannot size)."""

    reason: str


def served(record: RunRecord) -> Served | NoRoofline:
    """The model config and dtypes the record's layout says were served."""
    layout = record.layout
    flags = {key.replace("_", "-"): value for key, value in layout.vllm_flags.items()}
    source = None
    for name in dict.fromkeys((layout.model, record.model_id, PurePath(layout.model).name)):
        try:
            source = plan.find_model_config(name)
            break
        except (ConfigError, ModelConfigError):
            continue
    if source is None:
        return NoRoofline(f"tpserve cannot find the config.json of {layout.model} here (not a folder on this "
                          "machine, not in tpserve's catalog)")
    config = source.config
    if config.get("model_type") not in ("llama", "mistral", "qwen2"):
        return NoRoofline(f"model_type {config.get('model_type')!r} is not a dense model tpserve can size a "
                          "decode step of")
    quantization = flags.get("--quantization") or (config.get("quantization_config") or {}).get("quant_method")
    if quantization not in (None, "fp8"):
        return NoRoofline(f"quantization {quantization!r} is not sized by tpserve (fp8 is)")
    dtype, kv = str(flags.get("--dtype", "auto")), str(flags.get("--kv-cache-dtype", "auto"))
    if dtype not in _DTYPE_FLAGS or kv not in _KV_FLAGS:
        return NoRoofline(f"--dtype {dtype} / --kv-cache-dtype {kv} are not dtypes tpserve sizes")
    weights = "fp8" if quantization == "fp8" else plan.weight_dtype(config, _DTYPE_FLAGS[dtype])
    return Served(config, source.origin, weights, _KV_FLAGS[kv], "fp8" if weights == "fp8" else "bf16")


def bound(served: Served, limits: Limits, gpus: int, batch: float, context: float, prompt: float,
          replicas: int | None = None) -> Bound | None:
    """The decode and prefill bounds of REPLICAS replicas (default 1) of GPUS GPUs each at LIMITS, BATCH
    requests decoding in each; None when LIMITS lack the throughput of the run's matmul dtype (an fp8 run
    on a card measured without fp8)."""
    if served.matmul_dtype not in limits.tflops or "bf16" not in limits.tflops:
        return None
    shape = _Shape.of(served)
    bandwidth = gpus * limits.memory_gb_s * 1e9
    matmul, attention = (gpus * limits.tflops[dtype] * 1e12 for dtype in (served.matmul_dtype, "bf16"))
    memory_s = shape.bytes_per_step(batch, context, gpus) / bandwidth
    compute_s = batch * (shape.decode_linear_flops / matmul + shape.attention_flops(context) / attention)
    prefill_s = shape.prefill_linear_flops(prompt) / matmul + shape.attention_flops((prompt + 1) / 2) / attention
    replicas = 1 if replicas is None else replicas
    return Bound(replicas * batch / max(memory_s, compute_s), "memory" if memory_s >= compute_s else "compute",
                 replicas / prefill_s)


@dataclass(frozen=True)
class _Shape:
    """The served model's sizes the bounds need, from tpserve.plan for the served dtypes."""

    weight_bytes: int
    kv_bytes_per_token: int
    kv_heads: int
    embedding: int
    lm_head: int
    parameters: int
    attention_width: int
    layers: int

    @classmethod
    def of(cls, served: Served) -> _Shape:
        config = dict(served.config)
        size = plan.model_size(config, served.weight_dtype, served.kv_cache_dtype)
        embedding = int(config["vocab_size"]) * int(config["hidden_size"])
        heads, kv_heads = attention_heads(config)
        return cls(size.weight_bytes, size.kv_cache_bytes_per_token, kv_heads, embedding,
                   embedding if not config.get("tie_word_embeddings", False) else 0, parameter_count(config),
                   heads * size.head_dim, size.layers)

    def bytes_per_step(self, batch: float, context: float, gpus: int) -> float:
        """The weights but an embedding table apart from the lm_head (16-bit in every dtype tpserve sizes;
        a step gathers a few rows of it), and the KV cache; above one GPU per KV head vLLM keeps a copy
        of a head on each GPU that shares it."""
        gathered = self.embedding if self.lm_head else 0
        copies = max(1, self.kv_heads // gpus) * gpus / self.kv_heads
        return self.weight_bytes - 2 * gathered + batch * context * self.kv_bytes_per_token * copies

    @property
    def layer_parameters(self) -> int:
        return self.parameters - self.embedding - self.lm_head

    @property
    def decode_linear_flops(self) -> float:
        """A decoded token goes through the layers and the lm_head (the embedding matrix when tied)."""
        return 2 * (self.layer_parameters + self.embedding)

    def prefill_linear_flops(self, prompt: float) -> float:
        """A prompt token goes through the layers; only a prompt's last token goes through the lm_head."""
        return 2 * self.layer_parameters + 2 * self.embedding / prompt

    def attention_flops(self, attended: float) -> float:
        """Scores and weighted values of one token over ATTENDED earlier tokens, in every layer."""
        return 4 * attended * self.attention_width * self.layers


def roofline(record: RunRecord, measured: Mapping[str, Limits] | None = None) -> Roofline | NoRoofline:
    """RECORD's run against its card's datasheet and, when MEASURED has that card, its measured limits."""
    layout = record.layout
    if layout is None:
        return NoRoofline("the record does not say what served it")
    device = layout.device_kind
    spec = spec_for(device)
    if spec is None:
        where = "served on a CPU, which" if device.lower().startswith("cpu") else f"{device} is a card that"
        return NoRoofline(f"{where} has no datasheet figures in tpserve.gpuspecs")
    if layout.pipeline_parallel_size > 1:
        return NoRoofline("pipeline-parallel runs have no roofline yet: each stage reads its weights once per "
                          "microbatch, which the record does not show")
    what = served(record)
    if isinstance(what, NoRoofline):
        return what
    if what.matmul_dtype == "fp8" and spec.fp8_tflops is None:
        what = replace(what, matmul_dtype="bf16")  # fp8 weights, multiplied in 16 bits (Marlin on Ampere)
    metrics = record.metrics
    if not metrics.completed or metrics.duration <= 0 or not metrics.total_input_tokens:
        return NoRoofline("no request completed with a prompt")
    prompt = metrics.total_input_tokens / metrics.completed
    output = metrics.total_output_tokens / metrics.completed
    batch = metrics.request_throughput * (metrics.mean_e2el_ms - metrics.mean_ttft_ms) / 1000 / layout.replicas
    context = prompt + output / 2
    gpus = layout.tensor_parallel_size
    try:
        step_bytes = _Shape.of(what).bytes_per_step(batch, context, gpus)
    except (ConfigError, ModelConfigError) as exc:
        return NoRoofline(f"tpserve cannot size {layout.model}: {exc}")
    datasheet = bound(what, spec_limits(spec), gpus, batch, context, prompt, layout.replicas)
    if datasheet is None:
        return NoRoofline(f"{spec.label} has no figure for {what.matmul_dtype} matmuls")
    limits = (measured or {}).get(device.lower())
    measured_bound = bound(what, limits, gpus, batch, context, prompt, layout.replicas) if limits else None
    return Roofline(spec, what, batch, context, step_bytes,
                    metrics.output_throughput, metrics.total_input_tokens / metrics.duration, datasheet,
                    measured_bound, limits.source if limits else "")
