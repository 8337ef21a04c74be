"""How long `tpserve serve` takes from start to the vLLM exec, checks included, on a 70b-shaped cache,
and how long `tpserve fetch` takes when that cache is already complete.

Builds a model cache entry shaped like meta-llama/Llama-2-70b-chat-hf (the real config numbers,
a tokenizer, and 15 sparse safetensors shards adding up to the fp16 weight size, so that size
checks see ~138 GB without using the disk), then times whole `tpserve serve --dry-run` processes —
interpreter start, imports, manifest and size verification, head/GPU/shm checks, argv — which stop
exactly where a real launch would exec vLLM. Prints the figures and writes them under results/.

    .venv/bin/python lab/benchmarks/serve_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tpserve.commandlines import serve_command
from tpserve.fetch import cache
from tpserve.fetch.modelconfig import parameter_count
from tpserve.machine import describe_machine
from tpserve.shapes import LLAMA2_70B

REPO = "meta-llama/Llama-2-70b-chat-hf"
SHA = "e9149a12809580e8602995856f8098ce973d1080"  # any 40-hex commit: the cache is keyed by it
SHARDS = 15


def build_cache(cache_dir: Path) -> Path:
    folder = cache.model_path(cache_dir, REPO, SHA)
    folder.mkdir(parents=True)
    config = LLAMA2_70B.config()
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    total = parameter_count(config) * 2  # fp16
    names = [f"model-{i:05d}-of-{SHARDS:05d}.safetensors" for i in range(1, SHARDS + 1)]
    for i, name in enumerate(names):
        with (folder / name).open("wb") as shard:
            shard.truncate(total // SHARDS + (total % SHARDS if i == 0 else 0))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}}))
    files = sorted(p.name for p in folder.iterdir())
    manifest = cache.Manifest(
        repo_id=REPO, requested_revision="main", resolved_sha=SHA,
        files=tuple(cache.ManifestFile(name, (folder / name).stat().st_size) for name in files),
        config_sha256=hashlib.sha256((folder / "config.json").read_bytes()).hexdigest(),
        parameter_count=parameter_count(config), created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tpserve_version="benchmark",
    )
    (folder / cache.MANIFEST_NAME).write_text(manifest.to_json())
    cache.verify(folder, repo_id=REPO, revision="main")
    return folder


def time_runs(argv: list[str], runs: int, env: dict) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        seconds.append(time.perf_counter() - started)
        if done.returncode != 0:
            sys.exit(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args()
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1,2,3", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as scratch:
        cache_dir = Path(scratch) / "cache"
        folder = build_cache(cache_dir)
        weights = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
        serve = serve_command(REPO, revision="main", cache_dir=cache_dir, tensor_parallel_size=4,
                              allreduce_fusion=False, dry_run=True)
        fetch = [sys.executable, "-m", "tpserve", "fetch", REPO, "--revision", SHA, "--cache-dir", str(cache_dir),
                 "--no-progress"]
        time_runs(serve, 2, env)  # warm the page cache for the interpreter and packages
        python_only = time_runs([sys.executable, "-c", "pass"], args.runs, env)
        serve_s = time_runs(serve, args.runs, env)
        fetch_s = time_runs(fetch, args.runs, env)  # a complete cache: verified on disk, no download
    figures = {
        "benchmark": "serve_startup",
        "what": "tpserve serve start to vLLM exec (--dry-run stops at the exec), checks included",
        "model": REPO, "tensor_parallel_size": 4, "weights_bytes": weights, "files": SHARDS + 3,
        "runs": args.runs,
        "serve_median_s": statistics.median(serve_s), "serve_max_s": max(serve_s), "serve_min_s": min(serve_s),
        "python_startup_median_s": statistics.median(python_only),
        "fetch_noop_median_s": statistics.median(fetch_s), "fetch_noop_max_s": max(fetch_s),
        "target_s": 2.0,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
    }
    print(f"tpserve serve → exec on a {weights / 1e9:.1f} GB {REPO} cache, TP=4, {args.runs} runs: "
          f"median {figures['serve_median_s']:.3f} s, max {figures['serve_max_s']:.3f} s "
          f"(bare Python start {figures['python_startup_median_s']:.3f} s; target < 2 s) "
          f"on {figures['machine']['cpu']}, {figures['machine']['cores']} cores")
    print(f"tpserve fetch on the complete cache (a no-op): median {figures['fetch_noop_median_s']:.3f} s, "
          f"max {figures['fetch_noop_max_s']:.3f} s (target < 1 s)")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    (args.out / f"{stamp}-serve-startup.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
