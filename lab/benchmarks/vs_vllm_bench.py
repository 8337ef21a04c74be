"""tpserve's load test against ``vllm bench serve`` on the same server, with the server's /metrics as arbiter.

Alternates ``vllm bench serve`` and ``locust -f loadtest/prompts.py`` on one workload, swapping which goes
first every round: random prompts of exactly INPUT_LEN tokens (``--prompts random``, the default) or the
59 built-in prompts (``--prompts builtin``: vLLM's custom dataset without chat template, tpserve's prompt
file), exactly OUTPUT_LEN output tokens (ignore_eos), NUM_PROMPTS requests, CONCURRENCY in flight, no
warm-up requests inside a measured run (they would enter the server's window). Before the rounds each
tool runs once, measured but left out of the medians: the first run on a fresh server is the warm-up.

Around every client run it scrapes the server's /metrics, and every SAMPLE_S seconds during it, so each run
has the server's own figures next to the client's: generated tokens per second over the client's duration
and over the time the server was busy, its rate while requests were queued (its batch full), TTFT and E2E
medians from its histograms, and how many requests it held. Each client's per-request records show how it
held its concurrency (time-averaged in flight, ramp-up, drain, the gap between a finish and the next send).
Prints each run, each client's tok/s ÷ the server's own per run, and the ratios of the medians (load test ÷
bench; goal 0.97–1.03), and writes results/DATE-vs-vllm-bench-PROMPTS-cCONCURRENCY-MACHINE.json.

By default it starts the real vLLM server for CPU (tiny Llama, dummy weights, prefix caching off, vLLM's
default batch of 128 sequences) through ``tpserve serve``, pinned to core 0 with the clients on core 1, and
records the CPU time other processes took on the server's core. The default point is throughput-bound:
768 requests of 128 prompt and 32 output tokens, 256 in flight, twice what the server batches. With --url
it measures a running server instead (a GPU server: pass --model and --tokenizer too) and pins nothing.

    .venv/bin/python lab/benchmarks/vs_vllm_bench.py                     # throughput-bound point on CPU
    .venv/bin/python lab/benchmarks/vs_vllm_bench.py --prompts builtin --num-prompts 59 --concurrency 8 \\
        --output-len 64
    .venv/bin/python lab/benchmarks/vs_vllm_bench.py --url http://127.0.0.1:8000 --model llama-2-7b \\
        --tokenizer /models/llama-2-7b --num-prompts 1000 --input-len 512 --output-len 256 --concurrency 256
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import requests
from vllm_cli import bench_serve_command, random_dataset  # the sibling script: this one runs as a script

from tpserve.commandlines import loadtest_command, serve_command
from tpserve.machine import describe_machine, device_kind
from tpserve.server import LocalServer, cpu_env
from tpserve.shapes import TINY_LLAMA, write_model_folder
from tpserve.workload.promptsets import BUILTIN_PROMPTS
from tpserve.workload.servermetrics import (
    Sample,
    busy_seconds,
    mean_in_flight,
    sample,
    saturated_throughput,
    server_window,
)

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("tpserve", "vllm_bench")
# The server runs on core 0 and each client on core 1, so that a client's own CPU use cannot slow the
# server it measures (on a 2-core machine they would otherwise compete).
SERVER_CORE, CLIENT_CORE = "0", "1"
# Figures compared as ratios of medians (load test ÷ bench): client, then server.
COMPARED = ("client_output_throughput", "client_median_ttft_ms", "server_throughput_client_window",
            "server_throughput_busy", "server_throughput_queued", "server_median_ttft_ms", "server_median_e2el_ms")


class Scraper:
    """Scrapes /metrics every INTERVAL seconds in a thread, from start() until stop()."""

    def __init__(self, url: str, interval: float, core_use: CoreUse | None = None):
        self.url, self.interval, self.core_use = url.rstrip("/") + "/metrics", interval, core_use
        self.samples: list[Sample] = []
        self.core_readings: list[tuple] = []
        self.missed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def scrape(self) -> str:
        response = requests.get(self.url, timeout=30)
        response.raise_for_status()
        return response.text

    def _take(self) -> None:
        self.samples.append(sample(self.scrape(), time.perf_counter()))
        if self.core_use is not None:
            self.core_readings.append(self.core_use.read())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._take()
            except requests.RequestException:
                self.missed += 1  # a starved server answers late: the next scrape still counts

    def __enter__(self) -> Self:
        self._take()
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()
        self._take()

    def core_use_while_busy(self) -> dict | None:
        """CPU use on the server's core from the scrape before the first generated token to the one after
        the last."""
        moved = [i for i in range(1, len(self.samples))
                 if self.samples[i].generation_tokens > self.samples[i - 1].generation_tokens]
        if not self.core_readings or not moved:
            return None
        first, last = moved[0] - 1, moved[-1]
        return CoreUse.between(self.core_readings[first], self.core_readings[last],
                               self.samples[last].at - self.samples[first].at)


class CoreUse:
    """CPU seconds spent on the server's core during a run: by the server's processes (its session) and by
    everything else — other processes on a shared machine, which slow the server down — from /proc."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, session: int, core: int):
        self.session, self.core = session, core

    def _core_busy(self) -> tuple[float, float]:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{self.core} "):
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in line.split()[1:9])
                return (user + nice + system + irq + softirq) / self.TICK, steal / self.TICK
        return 0.0, 0.0

    def _server_cpu(self) -> float:
        total = 0
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[3]) == self.session:
                    total += int(fields[11]) + int(fields[12])
        return total / self.TICK

    def read(self) -> tuple[float, float, float]:
        return (*self._core_busy(), self._server_cpu())

    @staticmethod
    def between(before: tuple, after: tuple, seconds: float) -> dict:
        busy, steal, server = (b - a for a, b in zip(before, after, strict=True))
        return {"core_busy_s": busy, "server_cpu_s": server, "other_cpu_s": max(0.0, busy - server),
                "steal_s": steal, "other_share": max(0.0, busy - server) / seconds if seconds > 0 else None,
                "load_average_1m": os.getloadavg()[0]}


def holding(intervals: list[tuple[float, float]], concurrency: int) -> dict:
    """How a client held its concurrency, from each request's (send, finish) times on its own clock.

    in_flight_mean: requests in flight averaged over the duration (Little's law: the sum of latencies ÷
    the duration). ramp_s: first send to the CONCURRENCY-th. drain_s: the last send to the last finish,
    when fewer and fewer are in flight. refill_gap_ms: once the first CONCURRENCY are out, how long after
    the latest finish each next request was sent (median and p99) — the client's own turnaround.
    """
    intervals = sorted(intervals)
    starts = [s for s, _ in intervals]
    ends = sorted(e for _, e in intervals)
    duration = max(ends) - starts[0]
    gaps = []
    for start in starts[concurrency:]:
        done = [e for e in ends if e <= start]
        if done:
            gaps.append((start - done[-1]) * 1000)
    gaps.sort()
    return {
        "in_flight_mean": sum(e - s for s, e in intervals) / duration if duration > 0 else 0.0,
        "ramp_s": starts[min(concurrency, len(starts)) - 1] - starts[0],
        "drain_s": max(ends) - starts[-1],
        "refill_gap_median_ms": statistics.median(gaps) if gaps else None,
        "refill_gap_p99_ms": gaps[int(0.99 * (len(gaps) - 1))] if gaps else None,
        "records_span_s": duration,
    }


def run_checked(argv: list[str], env: dict, what: str, pin: bool) -> None:
    argv = ["taskset", "-c", CLIENT_CORE, *argv] if pin else argv
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, check=False, timeout=1800)
    if done.returncode != 0:
        sys.exit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")


def vllm_bench(args, env: dict, out: Path, seed: int, prompt_file: Path) -> tuple[dict, list]:
    dataset = (["--dataset-name", "custom", "--dataset-path", str(prompt_file), "--custom-output-len",
                str(args.output_len), "--skip-chat-template"] if args.prompts == "builtin" else
               random_dataset(args.input_len, args.output_len))
    run_checked(bench_serve_command(args.url, args.model, args.tokenizer, dataset, num_prompts=args.num_prompts,
                                    concurrency=args.concurrency, seed=seed, result=out,
                                    extra=["--num-warmups", "0", "--ready-check-timeout-sec", "0",
                                           "--percentile-metrics", "ttft,tpot,itl,e2el", "--save-detailed"]),
                env, "vllm bench serve", args.pin)
    result = json.loads(out.read_text())
    intervals = [(s, s + lat) for s, lat, err in zip(result["start_times"], result["latencies"], result["errors"],
                                                     strict=True) if not err]
    return result, intervals


def tpserve_locust(args, env: dict, out: Path, seed: int, prompt_file: Path) -> tuple[dict, list]:
    prompts = ({"prompt_set": "file", "prompt_file": prompt_file} if args.prompts == "builtin" else
               {"prompt_set": "random", "random_input_len": args.input_len})
    records = out.with_suffix(".jsonl")
    run_checked(loadtest_command(args.url, users=args.concurrency, model=args.model, max_tokens=args.output_len,
                                 num_requests=args.num_prompts, warmup_requests=0, seed=seed, run_time_s=1800,
                                 only_summary=True, results_json=out, records_jsonl=records, **prompts),
                env, "tpserve load test", args.pin)
    rows = [json.loads(line) for line in records.read_text().splitlines()]
    return json.loads(out.read_text()), [(r["send_time"], r["finish_time"]) for r in rows if r["error"] is None]


def measure(tool: str, args, env: dict, out: Path, seed: int, prompt_file: Path) -> dict:
    """One client run inside the arbiter: the client's figures and the server's own for the same run."""
    client = vllm_bench if tool == "vllm_bench" else tpserve_locust
    scraper = Scraper(args.url, args.sample_s, getattr(args, "core_use", None))
    before = scraper.scrape()
    with scraper:
        result, intervals = client(args, env, out, seed, prompt_file)
    window = server_window(before, scraper.scrape())
    if window.requests_finished != args.num_prompts:
        sys.exit(f"{tool}: the server finished {window.requests_finished} requests in the window, not "
                 f"{args.num_prompts}: is another client using the server?")
    busy, busy_error = busy_seconds(scraper.samples) or (None, None)
    queued = saturated_throughput(scraper.samples)
    return {
        "client_output_throughput": result["output_throughput"],
        "client_median_ttft_ms": result["median_ttft_ms"],
        "client_median_e2el_ms": result["median_e2el_ms"],
        "client_duration_s": result["duration"],
        "client_output_tokens": result["total_output_tokens"],
        "client_input_tokens": result["total_input_tokens"],
        "completed": result["completed"],
        "server_throughput_client_window": window.output_throughput(result["duration"]),
        "server_busy_s": busy,
        "server_busy_error_s": busy_error,
        "server_throughput_busy": window.output_throughput(busy) if busy else None,
        "client_over_server_busy": result["output_throughput"] / window.output_throughput(busy) if busy else None,
        "server_throughput_queued": queued[0] if queued else None,
        "server_queued_s": queued[1] if queued else None,
        "server_in_flight_mean": mean_in_flight(scraper.samples),
        "server_running_max": max(s.running for s in scraper.samples),
        "server_waiting_max": max(s.waiting for s in scraper.samples),
        "server_median_ttft_ms": window.median_ttft_ms,
        "server_median_e2el_ms": window.median_e2el_ms,
        "server": window.to_json(),
        "holding": holding(intervals, args.concurrency),
        "server_core": scraper.core_use_while_busy(),
        "scrapes_missed": scraper.missed,
        "samples": [[round(s.at - scraper.samples[0].at, 3), s.generation_tokens, s.running, s.waiting]
                    for s in scraper.samples],
    }


def fmt(value) -> str:
    return "—" if value is None else f"{value:.1f}"


def print_run(label: str, tool: str, run: dict) -> None:
    h = run["holding"]
    print(f"{label:9s} {tool:10s} client {run['client_output_throughput']:7.1f} tok/s in {run['client_duration_s']:6.2f} s"
          f" TTFT p50 {run['client_median_ttft_ms']:7.1f} | server {run['server_throughput_client_window']:7.1f} "
          f"(client window) {fmt(run['server_throughput_busy'])} (busy {fmt(run['server_busy_s'])} "
          f"± {fmt(run['server_busy_error_s'])} s) "
          f"{fmt(run['server_throughput_queued'])} (queued) TTFT p50 {fmt(run['server_median_ttft_ms'])} "
          f"E2E p50 {fmt(run['server_median_e2el_ms'])} | in flight {h['in_flight_mean']:.1f} client / "
          f"{fmt(run['server_in_flight_mean'])} server, drain {h['drain_s']:.2f} s, refill "
          f"{fmt(h['refill_gap_median_ms'])} ms" + (f" | other processes on the server's core "
                                                    f"{run['server_core']['other_share']:.0%}" if run["server_core"] else ""),
          flush=True)


def summarize(runs: list[dict]) -> dict:
    """Medians per tool over the measured rounds, and load test ÷ bench for each compared figure."""
    medians = {tool: {key: statistics.median(values) if (values := [r[key] for r in runs
                                                                    if r["tool"] == tool and r[key] is not None])
                      else None for key in COMPARED} for tool in TOOLS}
    ratios = {key: medians["tpserve"][key] / medians["vllm_bench"][key]
              if medians["tpserve"][key] and medians["vllm_bench"][key] else None for key in COMPARED}
    # How far each client's own figure is from the server's, run by run: the instrument's error, apart from
    # how fast the server happened to be in that run.
    agreement = {tool: sorted(r["client_over_server_busy"] for r in runs if r["tool"] == tool
                              and r["client_over_server_busy"]) for tool in TOOLS}
    return {"medians": medians, "ratios": ratios, "client_over_server_busy": agreement}


def machine_name(machine: dict) -> str:
    """A short name of what served, for file names: "2x NVIDIA H200", "2core Intel Xeon"."""
    if machine["gpus"]:
        return f"{len(machine['gpus'])}x {device_kind(machine)}"
    return f"{machine['cores']}core " + re.sub(r"\(R\)|\bProcessor\b|\bCPU\b", "", machine["cpu"])


def local_server(args, stack: ExitStack, scratch: Path) -> dict:
    """Start the CPU server for this benchmark; returns the clients' environment."""
    cache = REPO / ".cache"
    model_dir = write_model_folder(TINY_LLAMA, cache / "models" / TINY_LLAMA.name)
    env = cpu_env(cache)
    extra = ["--max-num-seqs", str(args.max_num_seqs)] if args.max_num_seqs else []
    argv = ["taskset", "-c", SERVER_CORE, *serve_command(
        model_dir, served_model_name=TINY_LLAMA.name, host="127.0.0.1", port=args.port, max_model_len=2048,
        vllm_args=["--load-format", "dummy", "--no-enable-prefix-caching", *extra])]
    server = stack.enter_context(LocalServer(argv, port=args.port, log_path=scratch / "server.log",
                                             env={**env, "VLLM_CPU_OMP_THREADS_BIND": SERVER_CORE}))
    server.wait_healthy(600)
    args.url, args.model, args.tokenizer = server.url, TINY_LLAMA.name, model_dir
    args.check_alive = server.check_alive
    args.core_use = CoreUse(server.process.pid, int(SERVER_CORE))
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="measured rounds (each runs both tools)")
    parser.add_argument("--prompts", choices=("builtin", "random"), default="random")
    parser.add_argument("--num-prompts", type=int, default=768)
    parser.add_argument("--input-len", type=int, default=128)
    parser.add_argument("--output-len", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--max-num-seqs", type=int, default=0,
                        help="the CPU server's batch size (0: vLLM's default, 128 on CPU)")
    parser.add_argument("--sample-s", type=float, default=0.25, help="seconds between scrapes during a run")
    parser.add_argument("--port", type=int, default=8031)
    parser.add_argument("--url", help="measure this running server instead of starting one on CPU")
    parser.add_argument("--model", default="", help="with --url: the served model's name")
    parser.add_argument("--tokenizer", default="", help="with --url: the model's folder, for vllm bench serve")
    parser.add_argument("--machine", default="", help="what serves, for the results file's name (default: "
                        "measured, e.g. 2core-intel-xeon or 2x-nvidia-h200)")
    parser.add_argument("--out", type=Path, default=REPO / "results")
    args = parser.parse_args()
    if args.url and not (args.model and args.tokenizer):
        parser.error("--url needs --model and --tokenizer")
    args.pin = not args.url
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        scratch = Path(scratch)
        env = local_server(args, stack, scratch) if not args.url else None
        prompt_file = scratch / "prompts.jsonl"
        prompt_file.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in BUILTIN_PROMPTS))
        # Round 0 is each tool's first run on this server: measured, kept, left out of the medians.
        for round_ in range(args.repeats + 1):
            order = TOOLS if round_ % 2 == 0 else TOOLS[::-1]
            for position, tool in enumerate(order):
                # A fresh seed each run: no prompt repeats, so no cache favours either tool.
                seed = 2 * round_ + (tool == "tpserve") + 1
                run = measure(tool, args, env, scratch / f"{tool}-{round_}.json", seed, prompt_file)
                runs.append({"tool": tool, "round": round_, "position": position, "warm_up": round_ == 0, **run})
                print_run("warm-up" if round_ == 0 else f"round {round_}", tool, run)
        if hasattr(args, "check_alive"):
            args.check_alive()
    machine = describe_machine()
    measured = [r for r in runs if not r["warm_up"]]
    summary = summarize(measured)
    for tool, values in summary["client_over_server_busy"].items():
        print(f"{tool}: client tok/s ÷ server tok/s while busy, per run: " + ", ".join(f"{v:.3f}" for v in values))
    for key in COMPARED:
        m = summary["medians"]
        print(f"{key:34s} tpserve {fmt(m['tpserve'][key]):>9s}  vllm bench {fmt(m['vllm_bench'][key]):>9s}  "
              f"ratio {summary['ratios'][key]:.3f}" if summary["ratios"][key] else f"{key:34s} —")
    document = {
        "benchmark": "vs_vllm_bench",
        "workload": {k: getattr(args, k) for k in ("prompts", "num_prompts", "input_len", "output_len", "concurrency",
                                                   "sample_s")},
        "server": (f"{args.url} ({args.model})" if not args.pin else
                   "vllm-cpu via tpserve serve, tiny-llama dummy weights, prefix caching off, max-num-seqs "
                   f"{args.max_num_seqs or 'default (128)'}, pinned to core 0; clients pinned to core 1"),
        "runs": runs, **summary, "goal": [0.97, 1.03],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^a-z0-9]+", "-", (args.machine or machine_name(machine)).lower()).strip("-")
    path = args.out / f"{datetime.now(UTC):%Y%m%d}-vs-vllm-bench-{args.prompts}-c{args.concurrency}-{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
