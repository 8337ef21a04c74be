"""GPU tests: real vLLM (CUDA build) with tensor parallelism. They run only where GPUs are visible.

Run them on a GPU host with ``pytest tests/gpu`` (``lab/gpu/run_on_host.sh`` does the whole job
on the project's offline 4-GPU host); everywhere else they are skipped, not failed.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tpserve.fetch.preflight import visible_gpus

RESULTS = Path(os.environ.get("TPSERVE_GPU_RESULTS", "results"))


def pytest_collection_modifyitems(items):
    gpus = visible_gpus()
    for item in items:
        if "/gpu/" not in str(item.fspath):
            continue
        item.add_marker(pytest.mark.gpu)
        needed = item.get_closest_marker("needs_gpus")
        wanted = needed.args[0] if needed else 1
        if gpus < wanted:
            item.add_marker(pytest.mark.skip(reason=f"needs {wanted} visible NVIDIA GPUs, found {gpus}"))


def pytest_configure(config):
    config.addinivalue_line("markers", "needs_gpus(n): skip unless n NVIDIA GPUs are visible")
