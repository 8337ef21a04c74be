"""Checks ``tpserve serve`` makes before vLLM starts, so a bad launch fails in a second, not minutes.

Each check returns the problems it found as sentences that name the fix; :func:`check_launch`
reports all of them at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from .errors import ModelConfigError
from .modelconfig import attention_heads, parameter_count

# NCCL passes data between the GPUs of one host through /dev/shm. Docker's default is 64 MiB, which
# fails at TP > 1; vLLM's docs run containers with --ipc=host or a shm of several GiB.
MIN_SHM_BYTES = 1 << 30
MAX_TP = 64
_NVIDIA_DEVICE = re.compile(r"^nvidia\d+$")


def visible_gpus(env: Mapping[str, str] = os.environ, dev: str = "/dev") -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES, else the container runtime's list, else /dev."""
    for variable in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        value = env.get(variable)
        if value is None or (variable == "NVIDIA_VISIBLE_DEVICES" and value.strip() == "all"):
            continue
        if value.strip().lower() in ("", "-1", "none", "void", "nodevfiles"):
            return 0
        return len([entry for entry in value.split(",") if entry.strip()])
    try:
        return sum(1 for name in os.listdir(dev) if _NVIDIA_DEVICE.match(name))
    except OSError:
        return 0


def valid_tensor_parallel_sizes(heads: int, kv_heads: int, limit: int = MAX_TP) -> list[int]:
    """TP sizes vLLM accepts: they divide the attention heads, and divide or are a multiple of the KV heads."""
    return [tp for tp in range(1, limit + 1)
            if heads % tp == 0 and (kv_heads % tp == 0 if kv_heads >= tp else tp % kv_heads == 0)]


def check_gpus(tensor: int, pipeline: int, gpus: int) -> list[str]:
    world = tensor * pipeline
    if world <= 1 or gpus >= world:
        return []
    seen = "none is visible" if gpus == 0 else f"only {gpus} {'is' if gpus == 1 else 'are'} visible"
    return [(f"tensor × pipeline parallel = {tensor} × {pipeline} = {world} needs {world} GPUs but {seen}: "
            f"request nvidia.com/gpu: {world} (or set CUDA_VISIBLE_DEVICES), or lower the parallelism")]


def check_heads(model_config: dict, tensor: int, pipeline: int, model: str) -> list[str]:
    heads, kv_heads = attention_heads(model_config)
    problems = []
    valid = valid_tensor_parallel_sizes(heads, kv_heads)
    if tensor not in valid:
        problems.append(
            f"{model} has {heads} attention heads and {kv_heads} KV heads, which tensor parallel {tensor} "
            f"cannot split evenly: use one of {', '.join(map(str, valid))}")
    layers = model_config.get("num_hidden_layers")
    if isinstance(layers, int) and pipeline > layers:
        problems.append(f"{model} has {layers} layers, fewer than pipeline parallel {pipeline}: lower it")
    return problems


# A declared parameter count may differ this much from config.json's: the values are rounded to 0.01 billion,
# and a size class of the tuned settings spans far more.
PARAMETER_TOLERANCE = 0.02


def check_declared_shape(model_config: dict, declared: Mapping[str, float], model: str) -> list[str]:
    """Refuse chart values (``model.attentionHeads`` and friends, keyed by their names) that describe another
    model than MODEL's config.json: the chart sized, validated and tuned the release for them, so a model name
    changed without them would be served under another model's plan. Undeclared values are not checked."""
    heads, kv_heads = attention_heads(model_config)
    try:
        billions = round(parameter_count(model_config) / 1e9, 2)
    except ModelConfigError:
        billions = None
    actual = {"model.attentionHeads": heads, "model.kvHeads": kv_heads,
              "model.layers": model_config.get("num_hidden_layers"), "model.parameterBillions": billions,
              "model.hiddenSize": model_config.get("hidden_size"), "model.vocabSize": model_config.get("vocab_size")}
    wrong = []
    for name, value in declared.items():
        truth = actual[name]
        if truth is None:
            continue
        off = (abs(value - truth) > PARAMETER_TOLERANCE * truth if name == "model.parameterBillions"
               else value != truth)
        if off:
            wrong.append(f"{name}={value:g} (config.json: {truth:g})")
    if not wrong:
        return []
    fix = " ".join(f"--set {name}={value:g}" for name, value in actual.items() if value is not None)
    return [(f"the model values describe another model than {model}'s config.json: {', '.join(wrong)}, and the "
            f"chart sized, validated and tuned for them: set {fix}")]


def shm_bytes(path: str = "/dev/shm") -> int | None:
    try:
        stats = os.statvfs(path)
    except OSError:
        return None
    return stats.f_frsize * stats.f_blocks


def check_shm(tensor: int, pipeline: int, path: str = "/dev/shm") -> list[str]:
    world = tensor * pipeline
    size = shm_bytes(path)
    if world <= 1 or (size is not None and size >= MIN_SHM_BYTES):
        return []
    have = "missing" if size is None else f"{size / 2**20:.0f} MiB"
    return [(f"{path} is {have}, and NCCL needs at least {MIN_SHM_BYTES >> 30} GiB there for {world} GPUs: "
            "run the container with --ipc=host or --shm-size=16g; on Kubernetes mount a memory-backed "
            "emptyDir at /dev/shm (the tpserve chart does)")]
