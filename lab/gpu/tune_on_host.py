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
(``lab/benchmarks/profile_summary.py`` reads them). And it can run other named workloads once with the load
test (mode ``workload``, e.g. ``chat``). A phase with ``tune_cli`` arguments runs no servers of its own: it runs
``tpserve tune`` on the session's workload, as a user would, into ``OUT_DIR/tune-cli/PHASE``.

    python3 lab/gpu/tune_on_host.py OUT_DIR [--deadline-s 1400] [--cpu] [--only PHASE,...]

OUT_DIR gets ``tune.json`` (every run's client and server figures, updated after each run), the load
test's run records, bench's result files, the /metrics scrapes and every server log. ``--cpu`` rehearses
the whole flow on this machine's CPU vLLM with the tiny Llama and a small workload.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import requests

from lab.benchmarks import profile_summary
from lab.benchmarks.vllm_cli import bench_serve_command, random_dataset
from lab.gpu.tune_phases import BEST, THROUGHPUT, Phase, kv_bytes_per_token, phases
from tpserve.commandlines import serve_command
from tpserve.measure.runner import Load, measure
from tpserve.presets import workload_preset
from tpserve.server import LocalServer, cpu_env
from tpserve.shapes import TINY_LLAMA, find_shape, write_model_folder
from tpserve.workload import runrecord
from tpserve.workload.distributed import share
from tpserve.workload.servermetrics import server_window


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
        (folder / "summary.txt").write_text(profile_summary.report(profile_summary.summary(
            profile_summary.read_trace(folder), kv_bytes_per_token(phase))))
    except Exception as exc:  # noqa: BLE001 — the trace stays for reading elsewhere
        (folder / "summary.txt").write_text(f"not read: {type(exc).__name__}: {exc}\n")
    files = sorted(str(p.relative_to(session.out)) for p in folder.rglob("*") if p.is_file())
    session.phases[-1]["profile_files"] = files
    print(f"{phase.name}: profile files {files}", flush=True)


def tune_cli_command(session: Session, phase: Phase, model: Path) -> list[str]:
    """``tpserve tune`` on the session's workload with PHASE's own arguments; its folder is under OUT_DIR."""
    load = session.load
    return [sys.executable, "-m", "tpserve", "tune", str(model), "--served-model-name", phase.shape,
            "--tensor", str(phase.tensor), "--dummy-weights", "--prompt-set", load.prompt_set,
            "--num-requests", str(load.num_requests), "--concurrency", str(load.concurrency),
            "--random-input-len", str(load.random_input_len), "--max-tokens", str(load.max_tokens),
            "--base-port", "8300", "--out", str(session.out / "tune-cli" / phase.name), *phase.tune_cli]


def run_tune_cli(session: Session, phase: Phase, model: Path, reserve_s: float) -> None:
    """PHASE's ``tpserve tune`` search, as a user runs it. Past the time the later phases leave it, it gets SIGTERM
    (tpserve then stops its server), and SIGKILL if that takes over 90 s; its run records stay either way."""
    argv = tune_cli_command(session, phase, model)
    record: dict = {"phase": asdict(phase), "started_left_s": round(session.left()), "argv": argv}
    session.phases.append(record)
    session.save()
    log = session.out / "logs" / f"{phase.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(argv, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            record["exit_status"] = process.wait(timeout=max(60.0, session.left() - reserve_s - 30))
        except subprocess.TimeoutExpired:
            record["stopped"] = "out of time"
            process.terminate()
            try:
                record["exit_status"] = process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                record["exit_status"] = process.wait()
    record["wall_s"] = round(time.monotonic() - started, 1)
    summary = session.out / "tune-cli" / phase.name / "tune.json"
    if summary.is_file():
        document = json.loads(summary.read_text())
        record |= {key: document[key] for key in ("winner", "defaults", "ratio_to_defaults", "server_starts", "runs")}
    record["stopped_left_s"] = round(session.left())
    session.save()
    tail = log.read_text(errors="replace").strip().splitlines()[-4:]
    print(f"{phase.name}: tpserve tune exited {record['exit_status']} after {record['wall_s']} s, "
          f"{session.left():.0f} s left", *(f"  {line}" for line in tail), sep="\n", flush=True)


def run_phase(session: Session, phase: Phase, model_dirs: dict[str, Path], devices: list[str],
              reserve_s: float) -> None:
    """Start PHASE's servers, run its rounds, stop them; RESERVE_S is held back for the phases after it."""
    if phase.tune_cli:
        run_tune_cli(session, phase, model_dirs[phase.shape], reserve_s)
        return
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
                       load=workload_preset(name, run_timeout_s=session.load.run_timeout_s, **small), workload_name=name)
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
