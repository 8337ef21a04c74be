"""The tuning session on the GPU host: vLLM's defaults against tuned settings, and the two instruments.

Runs a fixed list of phases in order, each a layout of ``tpserve serve`` with some vLLM settings, under
one deadline; a phase starts only when its servers' start and its minimum runs still fit, so a slow host
drops the last phases, never the first ones. In every phase each *round* runs the load test
(``loadtest/prompts.py``) and ``vllm bench serve`` once on the same servers, alternating which goes first,
and the server's own ``/metrics`` is scraped before and after every client run (the arbiter,
:func:`tpserve.workload.servermetrics.server_window`). With more
than one replica each client runs one process per replica, each with its share of the workload, exactly
as ``tpserve sweep`` loads replicas. A *pair* phase serves two different settings on GPU 0 and GPU 1 and
loads both at once: two settings measured side by side for one start. A phase can run its servers in more than one *mode* per round: ``shared`` (the layout: one load shared by
its replicas), ``each-share`` (each replica alone, its own client with its share, all at once) and
``each-full`` (each replica alone with the whole workload, all at once: a one-GPU layout measured once
per replica, side by side). A host with one GPU runs its own list: one setting per phase, one after another
on the same GPU.

A phase can also *profile* its server once after its rounds: one more load-test run (mode ``profile``, its
figures not comparable, the profiler slows the server) during which vLLM's torch profiler records a window
of engine steps; the trace and vLLM's kernel table land in ``OUT_DIR/profile/PHASE``
(``benchmarks/profile_summary.py`` reads them). And it can run other named workloads once with the load
test (mode ``workload``, e.g. ``chat``).

    python3 tests/gpu/tune_on_host.py OUT_DIR [--deadline-s 1400] [--cpu] [--only PHASE,...]

OUT_DIR gets ``tune.json`` (every run's client and server figures, updated after each run), the load
test's run records, bench's result files, the /metrics scrapes and every server log. ``--cpu`` rehearses
the whole flow on this machine's CPU vLLM with the tiny Llama and a small workload.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import requests

from benchmarks import profile_summary
from benchmarks.vllm_cli import bench_serve_command, random_dataset
from tpserve.commandlines import serve_command
from tpserve.presets import workload
from tpserve.server import LocalServer, cpu_env
from tpserve.shapes import TINY_LLAMA, find_shape, write_model_folder
from tpserve.sweep import Load, measure
from tpserve.workload import runrecord
from tpserve.workload.distributed import share
from tpserve.workload.servermetrics import server_window

# The throughput-bound workload: 1,000 random prompts of 512 tokens, 256 out, 256 in flight.
THROUGHPUT = Load(num_requests=1000, max_tokens=256, concurrency=256, prompt_set="random", random_input_len=512,
                  run_timeout_s=900)
# FlashAttention 3 reads an fp8 KV cache only for bfloat16 models (Llama-2's config says float16).
FP8 = ["--dtype", "bfloat16", "--kv-cache-dtype", "fp8", "--quantization", "fp8"]
BIG_BATCH = ["--max-num-batched-tokens", "16384"]
KV_FP8 = ["--dtype", "bfloat16", "--kv-cache-dtype", "fp8"]
W_FP8 = ["--dtype", "bfloat16", "--quantization", "fp8"]
STREAM_10 = ["--stream-interval", "10"]
BLOCK_128 = ["--block-size", "128"]  # vLLM's KV cache pages hold 16 tokens by default on CUDA
BATCH_32K = ["--max-num-batched-tokens", "32768"]
# Attention kernels other than vLLM's pick on Hopper (FlashAttention 3); both were slower for Llama-2-7b in the
# third session (results/20261130c-h200x2-tune).
TRITON = ["--attention-backend", "TRITON_ATTN"]
FLASHINFER = ["--attention-backend", "FLASHINFER", "--attention-config", '{"disable_flashinfer_q_quantization": true}']
# FlashAttention 3 splits a decoding sequence's context over up to 32 thread blocks under CUDA graphs (vLLM's
# bound); one split leaves 256 sequences × 32 heads = 8,192 blocks, plenty for 132 SMs, and no combine kernel.
SPLITS_1 = ["--attention-config", '{"flash_attn_max_num_splits_for_cuda_graph": 1}']
# A replica's settings resolved when its phase starts: the one-GPU settings of the same shape that gave the most
# output per GPU so far in this session (each-full runs, median over runs and clients).
BEST = ("@best-one-gpu",)
MODES = ("shared", "each-share", "each-full")
# A profile's window: engine steps after /start_profile before the profiler starts (past the first prompts'
# prefill), then the steps it records.
PROFILE_STEPS = (200, 120)


@dataclass(frozen=True)
class Phase:
    name: str
    shape: str
    tensor: int
    settings: tuple[tuple[str, ...], ...]  # vLLM flags per replica (one entry per replica)
    min_rounds: int = 1
    max_rounds: int = 1
    start_s: float = 300  # what a cold start is expected to take, to decide whether the phase still fits
    round_s: float = 90
    modes: tuple[str, ...] = ("shared",)  # how each round loads the servers (MODES, module docstring)
    clients: tuple[str, ...] = ("loadtest", "bench")
    optional: bool = False  # no time is held back for it
    # Tried once with the same layout when the servers fail to start with SETTINGS (e.g. a kernel the host lacks).
    fallback: tuple[tuple[str, ...], ...] = ()
    # (steps skipped, steps recorded) of one profiled load-test run after the rounds; () for none
    profile: tuple[int, int] = ()
    workloads: tuple[str, ...] = ()  # named workloads (tpserve.presets) run once each with the load test
    extra_s: float = 0  # what the profile and the named workloads are expected to take

    @property
    def needed_s(self) -> float:
        return self.start_s + self.min_rounds * self.round_s + self.extra_s

    @property
    def replicas(self) -> int:
        return len(self.settings)

    def __post_init__(self) -> None:
        unknown = set(self.modes) - set(MODES)
        if unknown or ("shared" in self.modes and len(set(self.settings)) > 1):
            raise ValueError(f"{self.name}: modes {self.modes} (known: {MODES}; 'shared' needs one setting)")
        if (self.profile or self.workloads) and self.replicas > 1:
            raise ValueError(f"{self.name}: a profile or a named workload runs on a one-server phase")


def phases(cpu: bool, gpus: int = 2) -> list[Phase]:
    """The session's phases: the CPU rehearsal's, a one-GPU host's, or those of a host with two or more GPUs."""
    if cpu:
        return [Phase("tiny-tp1-vllm-defaults", TINY_LLAMA.name, 1, ((),), 1, 3, 120, 60, profile=(2, 5),
                      workloads=("chat",)),
                Phase("tiny-tp1-pair", TINY_LLAMA.name, 1, ((), tuple(BIG_BATCH)), 1, 1, 120, 60,
                      modes=("each-full",)),
                Phase("tiny-tp1x2-best", TINY_LLAMA.name, 1, (BEST, BEST), 1, 1, 120, 60,
                      modes=("shared", "each-share")),
                Phase("tiny-tp1-fallback", TINY_LLAMA.name, 1, (("--no-such-flag",),), 1, 1, 120, 60,
                      clients=("loadtest",), fallback=((),))]
    if gpus == 1:
        return one_gpu_phases()
    # Extra rounds of a phase are run only while the later phases' minimum still fits. The first phases are the
    # next session's (predictions in docs/performance.md); the earlier sessions' follow, all optional.
    fp8 = tuple(FP8 + BIG_BATCH)  # tpserve's fp8 profile, as tpserve serve --settings fp8 resolves it
    return [
        # The issue's baseline, profiled once: where TP 2's step time goes, its all-reduces included.
        Phase("7b-tp2-vllm-defaults", "llama-2-7b", 2, ((),), 1, 2, 270, 80, profile=PROFILE_STEPS, extra_s=60),
        # FlashAttention 3 with one split per sequence against vLLM's bound of 32, and vLLM's 8,192 batched tokens
        # against the profile's 16,384 (the one-GPU session: the same output, TTFT 556 against 931 ms), each on
        # one GPU with the whole load, side by side.
        Phase("7b-tp1-pair-fp8-vs-fp8-splits1", "llama-2-7b", 1, (fp8, fp8 + tuple(SPLITS_1)), 1, 2, 170, 100,
              modes=("each-full",)),
        Phase("7b-tp1-pair-fp8-vs-fp8-batch8k", "llama-2-7b", 1, (fp8, tuple(FP8)), 1, 2, 170, 100,
              modes=("each-full",)),
        Phase("7b-tp1x2-best", "llama-2-7b", 1, (BEST, BEST), 1, 2, 170, 170, modes=("shared", "each-full"),
              optional=True),
        # 70b with defaults, then with the fp8 profile, in one session: its only comparison so far spans two.
        Phase("70b-tp2-vllm-defaults", "llama-2-70b", 2, ((),), 1, 1, 330, 120, clients=("loadtest",),
              optional=True),
        Phase("70b-tp2-fp8-batch16k", "llama-2-70b", 2, (fp8,), 1, 1, 330, 100, clients=("loadtest",),
              fallback=(tuple(KV_FP8 + BIG_BATCH),), optional=True),
        Phase("7b-tp1-pair-kvfp8-vs-wfp8", "llama-2-7b", 1, (tuple(KV_FP8), tuple(W_FP8)), 1, 1, 150, 100,
              modes=("each-full",), optional=True),
        # The one-GPU session measured these alone (results/20261201-h200x1-tune): no change from either.
        Phase("7b-tp1-pair-fp8-vs-fp8-block128", "llama-2-7b", 1, (fp8, fp8 + tuple(BLOCK_128)), 1, 1, 170, 100,
              modes=("each-full",), optional=True),
        Phase("7b-tp1-pair-fp8-batch8k-vs-batch32k", "llama-2-7b", 1, (tuple(FP8), tuple(FP8 + BATCH_32K)), 1, 1,
              170, 100, modes=("each-full",), optional=True),
        # The third session's (results/20261130c-h200x2-tune): Triton's and FlashInfer's attention were both
        # slower than vLLM's FlashAttention 3.
        Phase("7b-tp1-pair-fp8-vs-fp8-triton", "llama-2-7b", 1, (fp8, fp8 + tuple(TRITON)), 1, 2, 170, 100,
              modes=("each-full",), optional=True),
        Phase("7b-tp1-pair-defaults-vs-triton", "llama-2-7b", 1, ((), tuple(TRITON)), 1, 1, 170, 100,
              modes=("each-full",), optional=True),
        Phase("7b-tp2-triton", "llama-2-7b", 2, (tuple(TRITON),), 1, 1, 270, 80, optional=True),
        # Run on its own (--only) after the phases above: "best" is the fp8 profile, the best one-GPU settings they
        # measured, fixed here because a run of its own has no earlier runs to take the best of. Its start took
        # 118 s with FlashInfer's kernels compiled on the host (results/20261130c-h200x2-tune/call2).
        Phase("7b-tp1-pair-fp8-flashinfer-vs-best", "llama-2-7b", 1, (fp8 + tuple(FLASHINFER), fp8), 1, 1, 150, 100,
              modes=("each-full",), optional=True),
        # Earlier sessions' phases (results/20261130b-h200x2-tune).
        Phase("7b-tp1x2-fp8-batch16k", "llama-2-7b", 1, (fp8,) * 2, 1, 3, 150, 170,
              modes=("shared", "each-full"), optional=True),
        Phase("7b-tp1-pair-defaults-vs-fp8", "llama-2-7b", 1, ((), fp8), 1, 2, 150, 100, modes=("each-full",),
              optional=True),
        Phase("7b-tp1-pair-fp8-vs-fp8-stream10", "llama-2-7b", 1, (fp8, fp8 + tuple(STREAM_10)), 1, 1, 150, 100,
              modes=("each-full",), optional=True),
    ]


def one_gpu_phases() -> list[Phase]:
    """A host with one GPU: each setting alone on it, one after another, all with the whole throughput load.

    The first phase is the reference (tpserve's fp8 profile, the best one-GPU settings measured so far) and is
    profiled once; each later one changes one thing in it, or takes one of its parts alone. Predictions in
    docs/performance.md. The TP 2 baseline needs two GPUs, so a one-GPU session compares with the reference
    and with vLLM's defaults on the same GPU. The first one-GPU session ran an earlier version of this list
    (results/20261201-h200x1-tune/call3/tune.json holds every phase as it ran).
    """
    fp8 = tuple(FP8 + BIG_BATCH)
    one = {"min_rounds": 1, "max_rounds": 1, "start_s": 130, "round_s": 100}
    profiled = {"profile": PROFILE_STEPS, "extra_s": 60}
    return [
        Phase("7b-tp1-fp8", "llama-2-7b", 1, (fp8,), 1, 1, 230, 100, profile=PROFILE_STEPS, workloads=("chat",),
              extra_s=120),
        # The first one-GPU session (results/20261201-h200x1-tune) found attention 82 % of a decoding step; these
        # two ask whether FlashAttention 3's splits cost it, and what a bfloat16 KV cache's steps look like.
        Phase("7b-tp1-fp8-splits1", "llama-2-7b", 1, (fp8 + tuple(SPLITS_1),), **one, **profiled),
        Phase("7b-tp1-vllm-defaults", "llama-2-7b", 1, ((),), 1, 1, 130, 100, profile=PROFILE_STEPS,
              workloads=("chat",), extra_s=120),
        # vLLM's 8,192 batched tokens gave the profile's output with TTFT 556 against 931 ms: a second round each.
        Phase("7b-tp1-fp8-batch8k", "llama-2-7b", 1, (tuple(FP8),), **one),
        Phase("7b-tp1-fp8-batch32k", "llama-2-7b", 1, (tuple(FP8 + BATCH_32K),), **one, optional=True),
        Phase("7b-tp1-kvfp8-batch16k", "llama-2-7b", 1, (tuple(KV_FP8 + BIG_BATCH),), **one, optional=True),
        Phase("7b-tp1-wfp8-batch16k", "llama-2-7b", 1, (tuple(W_FP8 + BIG_BATCH),), **one, optional=True),
        Phase("7b-tp1-fp8-block128", "llama-2-7b", 1, (fp8 + tuple(BLOCK_128),), **one, optional=True),
        Phase("7b-tp1-fp8-again", "llama-2-7b", 1, (fp8,), **one, optional=True),
    ]


@dataclass
class Session:
    out: Path
    deadline: float
    cpu: bool
    load: Load
    runs: list[dict] = field(default_factory=list)
    phases: list[dict] = field(default_factory=list)
    # each-share and each-full runs finish on their own threads: one writer at a time
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def save(self) -> None:
        with self.lock:
            document = {"workload": asdict(self.load) | {"locustfile": str(self.load.locustfile)},
                        "phases": self.phases, "runs": self.runs}
            tmp = self.out / "tune.json.tmp"
            tmp.write_text(json.dumps(document, indent=2) + "\n")
            tmp.replace(self.out / "tune.json")

    def add_run(self, run: dict) -> None:
        with self.lock:
            self.runs.append(run)
        self.save()

    def left(self) -> float:
        return self.deadline - time.monotonic()


def best_settings(session: Session, shape: str) -> tuple[str, ...] | None:
    """The one-GPU settings of SHAPE with the highest median output per GPU over this session's each-full runs."""
    by_settings: dict[tuple[str, ...], list[float]] = {}
    for run in session.runs:
        if (run.get("shape") == shape and run["mode"] == "each-full" and run["gpus"] == 1
                and "error" not in run["figures"]):
            by_settings.setdefault(tuple(run["settings"]), []).append(run["figures"]["output_throughput"])
    if not by_settings:
        return None
    return max(by_settings, key=lambda flags: statistics.median(by_settings[flags]))


def scrape(url: str) -> str:
    return requests.get(url + "/metrics", timeout=30).text


def bench(urls: list[str], model: str, tokenizer: Path, load: Load, work: Path, seed: int) -> dict:
    """``vllm bench serve`` against every replica at once (one process each, its share), summed."""
    work.mkdir(parents=True, exist_ok=True)
    processes = []
    for i, url in enumerate(urls):
        argv = bench_serve_command(url, model, tokenizer, random_dataset(load.random_input_len, load.max_tokens),
                                   num_prompts=share(load.num_requests, len(urls), i),
                                   concurrency=share(load.concurrency, len(urls), i), seed=seed + i,
                                   result=work / f"bench{i}.json")
        log = (work / f"bench{i}.log").open("wb")
        processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
    statuses = [p.wait(timeout=load.run_timeout_s + 300) for p in processes]
    parts = []
    for i, status in enumerate(statuses):
        path = work / f"bench{i}.json"
        if status != 0 or not path.is_file():
            tail = (work / f"bench{i}.log").read_text(errors="replace")[-1500:]
            raise RuntimeError(f"vllm bench serve on replica {i} exited {status}: {tail}")
        parts.append(json.loads(path.read_text()))
    duration = max(p["duration"] for p in parts)
    output = sum(p["total_output_tokens"] for p in parts)
    prompt = sum(p["total_input_tokens"] for p in parts)
    return {"output_throughput": output / duration, "total_token_throughput": (output + prompt) / duration,
            "duration": duration, "completed": sum(p["completed"] for p in parts), "output_tokens": output,
            "prompt_tokens": prompt, "median_ttft_ms": _median_of(parts, "median_ttft_ms"),
            "median_tpot_ms": _median_of(parts, "median_tpot_ms"), "median_e2el_ms": _median_of(parts, "median_e2el_ms"),
            "mean_ttft_ms": sum(p["mean_ttft_ms"] * p["completed"] for p in parts) / max(1, sum(p["completed"] for p in parts))}


def _median_of(parts: list[dict], key: str) -> float | None:
    """One replica: its median; several: the mean of their medians (each replica's share is the same size)."""
    values = [p[key] for p in parts if p.get(key) is not None]
    return sum(values) / len(values) if values else None


def loadtest(urls: list[str], model: str, load: Load, work: Path, seed: int) -> dict:
    record = measure(urls, model, load, work, seed)
    runrecord.write(work / "record.json", record)
    m = record.metrics
    return {"output_throughput": m.output_throughput, "total_token_throughput": m.total_token_throughput,
            "duration": m.duration, "completed": m.completed, "output_tokens": m.total_output_tokens,
            "prompt_tokens": m.total_input_tokens, "median_ttft_ms": m.median_ttft_ms, "median_tpot_ms": m.median_tpot_ms,
            "median_e2el_ms": m.median_e2el_ms, "mean_ttft_ms": m.mean_ttft_ms,
            "token_check": record.token_check.status, "problems": list(record.problems)}


def client_run(session: Session, phase: Phase, urls: list[str], tokenizer: Path, client: str, round_: int,
               order: int, mode: str = "shared", replica: int | None = None, load: Load | None = None,
               workload_name: str | None = None) -> dict:
    label = f"{phase.name}-r{round_}-{mode}-{client}" + ("" if replica is None else f"-replica{replica}") + (
        f"-{workload_name}" if workload_name else "")
    work = session.out / "runs" / label
    if load is None:
        load = session.load if mode != "each-share" else replace(session.load, num_requests=share(
            session.load.num_requests, phase.replicas, replica), concurrency=share(session.load.concurrency, phase.replicas, replica))
    before = [scrape(url) for url in urls]
    started = time.time()
    try:
        seed = 1000 * round_ + (replica or 0)
        figures = (loadtest(urls, phase.shape, load, work, seed) if client == "loadtest"
                   else bench(urls, phase.shape, tokenizer, load, work, seed))
    except Exception as exc:  # noqa: BLE001 — a failed run is recorded, the session goes on
        figures = {"error": f"{type(exc).__name__}: {exc}"[-2000:]}
    wall = time.time() - started
    after = [scrape(url) for url in urls]
    (work / "metrics").mkdir(parents=True, exist_ok=True)
    for i, (a, b) in enumerate(zip(before, after, strict=True)):
        (work / "metrics" / f"before{i}.txt").write_text(a)
        (work / "metrics" / f"after{i}.txt").write_text(b)
    windows = [server_window(a, b) for a, b in zip(before, after, strict=True)]
    server = {"generation_tokens": sum(w.generation_tokens for w in windows),
              "prompt_tokens": sum(w.prompt_tokens for w in windows),
              "requests": sum(w.requests_finished for w in windows), "per_replica": [w.to_json() for w in windows],
              "client_wall_s": wall}
    if figures.get("duration"):
        server["output_throughput_over_client_duration"] = server["generation_tokens"] / figures["duration"]
    run = {"phase": phase.name, "shape": phase.shape, "client": client, "round": round_, "order": order, "mode": mode,
           "replica": replica,
           "gpus": phase.tensor * len(urls), "settings": list(phase.settings[replica or 0]),
           "load": {"num_requests": load.num_requests, "concurrency": load.concurrency},
           **({"workload": workload_name} if workload_name else {}), "started_at": started, "figures": figures, "server": server}
    session.add_run(run)
    print(f"  {label}: {figures.get('output_throughput', 0):.0f} output tok/s "
          f"(server counted {server['generation_tokens']:.0f} tokens) {figures.get('error', '')}", flush=True)
    return run


def profile_dir(session: Session, phase: Phase) -> Path:
    return session.out / "profile" / phase.name


def profiler_flags(session: Session, phase: Phase) -> list[str]:
    """vLLM's torch profiler, idle until /start_profile; then it skips, records and stops on its own."""
    if not phase.profile:
        return []
    skip, record = phase.profile
    config = {"profiler": "torch", "torch_profiler_dir": str(profile_dir(session, phase).resolve()),
              "delay_iterations": skip, "max_iterations": record, "ignore_frontend": True,
              "torch_profiler_with_stack": False, "detailed_trace_annotation": True}
    return ["--profiler-config", json.dumps(config)]


def profile_run(session: Session, phase: Phase, url: str, tokenizer: Path) -> None:
    """One load-test run with the profiler on for PHASE's window of engine steps (mode ``profile``)."""
    requests.post(url + "/start_profile", timeout=60).raise_for_status()
    try:
        client_run(session, phase, [url], tokenizer, "loadtest", 0, 0, mode="profile")
    finally:
        # Writes the trace if the run ended before the window did; the profiler already stopped otherwise.
        requests.post(url + "/stop_profile", timeout=600).raise_for_status()
    folder = profile_dir(session, phase)
    try:  # read on the host too: its figures come back even if the trace were too large to
        with contextlib.redirect_stdout(io.StringIO()) as text:
            profile_summary.print_summary(profile_summary.summary(profile_summary.read_trace(folder),
                                                                  kv_bytes_per_token(phase)))
        (folder / "summary.txt").write_text(text.getvalue())
    except Exception as exc:  # noqa: BLE001 — the trace stays for reading elsewhere
        (folder / "summary.txt").write_text(f"not read: {type(exc).__name__}: {exc}\n")
    files = sorted(str(p.relative_to(session.out)) for p in folder.rglob("*") if p.is_file())
    session.phases[-1]["profile_files"] = files
    print(f"{phase.name}: profile files {files}", flush=True)


def kv_bytes_per_token(phase: Phase) -> int:
    """KV cache bytes per token of context over all of PHASE's model's layers, with its cache's data type."""
    config = (TINY_LLAMA if phase.shape == TINY_LLAMA.name else find_shape(phase.shape)).config()
    heads = config["num_attention_heads"]
    head_size = config.get("head_dim") or config["hidden_size"] // heads
    flags = phase.settings[0]
    fp8 = "--kv-cache-dtype" in flags and flags[flags.index("--kv-cache-dtype") + 1].startswith("fp8")
    return config["num_hidden_layers"] * 2 * config.get("num_key_value_heads", heads) * head_size * (1 if fp8 else 2)


def run_phase(session: Session, phase: Phase, model_dirs: dict[str, Path], devices: list[str],
              reserve_s: float) -> None:
    """Start PHASE's servers, run its rounds, stop them; RESERVE_S is held back for the phases after it."""
    if BEST in phase.settings:
        best = best_settings(session, phase.shape)
        if best is None:
            session.phases.append({"phase": asdict(phase), "skipped": "no one-GPU run of its shape to take the best of"})
            print(f"{phase.name}: skipped, nothing measured to take the best of", flush=True)
            return
        phase = replace(phase, settings=tuple(best if flags == BEST else flags for flags in phase.settings))
        print(f"{phase.name}: the best so far is {' '.join(best) or 'vLLM defaults'}", flush=True)
    record: dict = {"phase": asdict(phase), "started_left_s": round(session.left())}
    session.phases.append(record)
    env = cpu_env() if session.cpu else {**os.environ}
    per = phase.tensor
    servers = []
    for i, flags in enumerate(phase.settings):
        replica_env = dict(env)
        if session.cpu:
            replica_env["VLLM_CPU_OMP_THREADS_BIND"] = devices[i % len(devices)]
        else:
            replica_env["CUDA_VISIBLE_DEVICES"] = ",".join(devices[i * per:(i + 1) * per])
        # tpserve serve's own --dtype; --settings vllm: exactly the phase's flags, no tpserve profile on top.
        dtype = list(flags[flags.index("--dtype"):flags.index("--dtype") + 2]) if "--dtype" in flags else []
        flags = [f for f in flags if f not in dtype]
        serve_args = ["--settings", "vllm", *dtype]
        argv = serve_command(model_dirs[phase.shape], served_model_name=phase.shape, tensor_parallel_size=per,
                             allreduce_fusion=per == 1, host="127.0.0.1", port=8200 + i, serve_args=serve_args,
                             vllm_args=["--load-format", "dummy", *flags, *profiler_flags(session, phase)])
        servers.append(LocalServer(argv, port=8200 + i, log_path=session.out / "logs" / f"{phase.name}-{i}.log",
                                   env=replica_env))
    started = time.monotonic()
    try:
        for server in servers:
            server.start()
        for server in servers:
            # A start that takes twice what the phase expects is a failed start: the later phases keep their time.
            server.wait_healthy(max(60.0, min(session.left(), 2 * phase.start_s)))
        record["startup_s"] = round(time.monotonic() - started, 1)
        record["server_argv"] = [s.argv for s in servers]
        session.save()
        print(f"{phase.name}: up after {record['startup_s']} s, {session.left():.0f} s left", flush=True)
        urls = [s.url for s in servers]
        tokenizer = model_dirs[phase.shape]
        for round_ in range(1, phase.max_rounds + 1):
            if round_ > phase.min_rounds and session.left() - reserve_s < phase.round_s + 60:
                break
            clients = phase.clients if round_ % 2 else phase.clients[::-1]
            for mode in phase.modes:
                for order, client in enumerate(clients):
                    if mode == "shared":
                        client_run(session, phase, urls, tokenizer, client, round_, order)
                        continue
                    # each replica alone, loaded at once, figures kept apart
                    threads = [threading.Thread(target=client_run, args=(session, phase, [url], tokenizer, client,
                                                                         round_, order, mode, i))
                               for i, url in enumerate(urls)]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
            record["rounds"] = round_
            session.save()
        if phase.profile:
            profile_run(session, phase, urls[0], tokenizer)
        for name in phase.workloads:
            small = {"num_requests": 6, "concurrency": 3, "max_tokens": 16} if session.cpu else {}
            client_run(session, phase, urls, tokenizer, "loadtest", 0, 0, mode="workload",
                       load=workload(name, run_timeout_s=session.load.run_timeout_s, **small), workload_name=name)
    except Exception as exc:  # noqa: BLE001 — a phase that fails is recorded, the next one runs
        record["error"] = f"{type(exc).__name__}: {exc}"[-3000:]
        record["log_tails"] = [s.log_tail(40) for s in servers]
        print(f"{phase.name}: failed: {record['error']}", flush=True)
    finally:
        for server in servers:
            server.stop(grace_s=20)
        record["stopped_left_s"] = round(session.left())
        session.save()
    if "startup_s" not in record and phase.fallback and session.left() - reserve_s > phase.needed_s:
        print(f"{phase.name}: trying its fallback settings", flush=True)
        run_phase(session, replace(phase, name=phase.name + "-fallback", settings=phase.fallback, fallback=()),
                  model_dirs, devices, reserve_s)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--deadline-s", type=float, default=1400)
    parser.add_argument("--cpu", action="store_true", help="rehearse on this machine's CPU vLLM, tiny Llama")
    parser.add_argument("--only", default="", help="comma-separated phase names to run (default: all)")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    load = replace(THROUGHPUT, num_requests=24, concurrency=8, random_input_len=64, max_tokens=16,
                   run_timeout_s=300) if args.cpu else THROUGHPUT
    session = Session(out, time.monotonic() + args.deadline_s, args.cpu, load)
    if args.cpu:
        devices = [str(c) for c in sorted(os.sched_getaffinity(0))]
    else:
        devices = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"], capture_output=True,
                                 text=True, check=True).stdout.split()
    todo = [p for p in phases(args.cpu, len(devices)) if not args.only or p.name in args.only.split(",")]
    model_dirs = {}
    for shape in {p.shape for p in todo}:
        model_dirs[shape] = Path("/tmp/tpserve-models") / shape
        write_model_folder(TINY_LLAMA if shape == TINY_LLAMA.name else find_shape(shape), model_dirs[shape])
    for index, phase in enumerate(todo):
        needed = phase.needed_s
        reserve = sum(p.needed_s for p in todo[index + 1:] if not p.optional)
        if phase.tensor * phase.replicas > len(devices) and not args.cpu:
            session.phases.append({"phase": asdict(phase), "skipped": f"needs {phase.tensor * phase.replicas} GPUs"})
        elif session.left() < needed:
            session.phases.append({"phase": asdict(phase),
                                   "skipped": f"{session.left():.0f} s left, needs about {needed:.0f} s"})
            print(f"{phase.name}: skipped, {session.left():.0f} s left", flush=True)
        else:
            run_phase(session, phase, model_dirs, devices, reserve)
        session.save()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
