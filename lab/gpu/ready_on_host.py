"""Time to ready on the GPU host (issue 27): where a server's start goes, what cuts it, and 70b fp8 on one GPU.

Two parts, both run in the background on the host by lab/gpu/ready_on_host.sh:

``--prep`` needs only the host's own torch, so it runs while the vLLM bundle is still being carried over:
the card's copy bandwidth and matmul rate (lab/benchmarks/gpu_limits.py, on an idle GPU), then safetensors files
of Llama-2-7b's real shape (random values) written to the host's local disk, and that disk's read rate beside
them (``dd iflag=direct``; then a buffered read after dropping the page cache, and one more from the cache).

The session then starts servers one after another through ``tpserve serve``, each line of their logs stamped on
arrival as ``kubectl logs --timestamps`` does, and splits every start into phases with :mod:`tpserve.startup`:

- the chart's restarts of 7b: a cold start on an empty claim, then new pods on that claim, as ``tpserve serve``
  starts vLLM (the engine forked on one GPU) and with the engine spawned (as ``vllm serve`` starts it), one of
  them under py-spy.
- 7b, vLLM's defaults, dummy weights: cold (empty ``VLLM_CACHE_ROOT``, fresh HOME and TMPDIR, as a new pod
  whose claim is empty), warm (the cache kept, HOME and TMPDIR fresh: a new pod on the chart's claim, whose HOME
  is an emptyDir), and warm with the last pod's HOME kept too (the JIT caches Triton, FlashInfer and CUDA keep
  there, as if HOME were on the claim); when the warm start's warm-up after capture is long, once more with
  FlashInfer's sampler off (the kernel it JIT-compiles at warm-up). The warm server also runs the throughput
  workload once (vLLM's defaults, for the roofline).
- the real weight files with vLLM's default loader, fastsafetensors and the Run:ai streamer, the page cache
  dropped before each (the bytes come off the disk), and the default loader once more from the page cache.
- Llama-2-70b's shape at TP 1 with the fp8 profile's flags (``--quantization fp8 --kv-cache-dtype fp8``): its
  start, its KV cache, and the ``note`` and ``throughput`` workloads.
- 7b with the fp8 profile's flags on the throughput workload.
- 7b, vLLM's defaults, on the throughput workload with the engine forked and then spawned (``7b-fork-vs-spawn``).

Every step is skipped, and says so, when the deadline leaves it too little time; the order is the issue's
priority. OUT_DIR gets ``ready.json`` (every start's phases, every run's figures), ``summary.txt``, the server
logs and the load tests' records.

    python3 lab/gpu/ready_on_host.py OUT_DIR --prep            # torch only
    python3 lab/gpu/ready_on_host.py OUT_DIR [--deadline-s 1300] [--cpu] [--only STEP,...]

``--cpu`` rehearses both parts on this machine's CPU vLLM with the tiny Llama and small workloads.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path


def on_disk_root() -> Path:
    """/tmp where it is a disk, else /var/tmp: the weight files must be read off the disk, not out of RAM."""
    try:
        done = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "-T", "/tmp"], capture_output=True, text=True,
                              check=False)
    except FileNotFoundError:
        return Path("/tmp")
    return Path("/var/tmp") if done.stdout.strip() in ("tmpfs", "ramfs") else Path("/tmp")


REPO = Path(__file__).resolve().parents[2]
WORK = on_disk_root() / "tpserve-ready"
MODELS = WORK / "models"
# The fp8 profile's flags (docs/settings.md): bfloat16 through tpserve serve's own --dtype, the rest to vLLM.
FP8_SERVE = ("--settings", "vllm", "--dtype", "bfloat16")
FP8_VLLM = ("--quantization", "fp8", "--kv-cache-dtype", "fp8")
PROFILE_HZ = 50


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def say(text: str) -> None:
    print(f"{stamp()} {text}", flush=True)


# ---------------------------------------------------------------- prep: torch and the disk only


def weight_tensors(config: dict) -> list[tuple[str, tuple[int, ...]]]:
    """The names and shapes of a Hugging Face Llama checkpoint of CONFIG."""
    hidden, inter, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    head = hidden // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head
    names = [("model.embed_tokens.weight", (vocab, hidden))]
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        names += [(p + "input_layernorm.weight", (hidden,)), (p + "post_attention_layernorm.weight", (hidden,)),
                  (p + "self_attn.q_proj.weight", (hidden, hidden)), (p + "self_attn.k_proj.weight", (kv, hidden)),
                  (p + "self_attn.v_proj.weight", (kv, hidden)), (p + "self_attn.o_proj.weight", (hidden, hidden)),
                  (p + "mlp.gate_proj.weight", (inter, hidden)), (p + "mlp.up_proj.weight", (inter, hidden)),
                  (p + "mlp.down_proj.weight", (hidden, inter))]
    names.append(("model.norm.weight", (hidden,)))
    if not config.get("tie_word_embeddings"):
        names.append(("lm_head.weight", (vocab, hidden)))
    return names


def write_weights(config: dict, folder: Path, shard_bytes: int, device: str) -> dict:
    """Random fp16 weights of CONFIG's shape as safetensors shards of about SHARD_BYTES, fsynced, and their index."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors = weight_tensors(config)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in tensors:
        nbytes = 2 * int(torch.Size(shape).numel())
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    weight_map, total = {}, 0
    started = time.monotonic()
    generator = torch.Generator(device=device).manual_seed(0)
    for index, shard in enumerate(shards, 1):
        name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        data = {t: (torch.randn(s, generator=generator, device=device, dtype=torch.float16) * 0.02).cpu()
                for t, s in shard}
        save_file(data, str(folder / name), metadata={"format": "pt"})
        with (folder / name).open("rb") as f:
            os.fsync(f.fileno())
        total += sum(v.numel() * 2 for v in data.values())
        weight_map |= dict.fromkeys(data, name)
    (folder / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    files = sorted(folder.glob("*.safetensors"))
    return {"files": len(files), "bytes": sum(f.stat().st_size for f in files), "tensor_bytes": total,
            "write_s": round(time.monotonic() - started, 2)}


def evict(files: list[Path]) -> None:
    """Drop FILES' pages from the page cache (and only theirs: the bundle's own files stay cached), so the next
    read comes off the disk."""
    subprocess.run(["sync"], check=False)
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_rate(files: list[Path], direct: bool) -> dict:
    """Read FILES once with dd (O_DIRECT with DIRECT: no page cache either way), in GB/s."""
    total = sum(f.stat().st_size for f in files)
    started = time.monotonic()
    for f in files:
        argv = ["dd", f"if={f}", "of=/dev/null", "bs=64M", *(["iflag=direct"] if direct else [])]
        subprocess.run(argv, check=True, capture_output=True)
    seconds = time.monotonic() - started
    return {"bytes": total, "seconds": round(seconds, 3), "GB_per_s": round(total / seconds / 1e9, 3)}


def disk_facts(folder: Path) -> dict:
    shown = {}
    for argv in (["df", "-hT", str(folder)], ["findmnt", "-T", str(folder)], ["lsblk", "-o", "NAME,SIZE,ROTA,MODEL"]):
        try:
            shown[argv[0]] = subprocess.run(argv, capture_output=True, text=True, check=False).stdout
        except FileNotFoundError:
            shown[argv[0]] = "not on this host"
    return {**shown,
            "meminfo": "".join(line for line in Path("/proc/meminfo").read_text().splitlines(keepends=True)[:5])}


def prep(out: Path, cpu: bool, weights_too: bool = True) -> int:
    """gpu_limits.py on the idle card, the 7b weight files, and the disk's read rates, into OUT/prep."""
    folder = out / "prep"
    folder.mkdir(parents=True, exist_ok=True)
    record: dict = {"started": stamp()}

    def save() -> None:
        (folder / "prep.json").write_text(json.dumps(record, indent=2) + "\n")

    limits = REPO / "lab" / "benchmarks" / "gpu_limits.py"
    if limits.is_file():
        say("gpu_limits.py")
        argv = [sys.executable, str(limits), "--out", str(folder / "gpu-limits.json"), *(["--cpu"] if cpu else [])]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
        (folder / "gpu-limits.log").write_text(done.stdout + done.stderr)
        record["gpu_limits_status"] = done.returncode
    else:
        record["gpu_limits_status"] = "lab/benchmarks/gpu_limits.py does not exist at this commit"
    save()
    sys.path[:0] = [str(REPO / "src")]
    from tpserve.shapes import TINY_LLAMA, find_shape

    if not weights_too:
        record["finished"] = stamp()
        save()
        print("prep done", flush=True)
        return 0
    shape = TINY_LLAMA if cpu else find_shape("llama-2-7b")
    weights = WORK / f"weights-{shape.name}"
    shutil.rmtree(weights, ignore_errors=True)
    say(f"writing {shape.name} weights to {weights}")
    record["weights"] = {"shape": shape.name, "folder": str(weights),
                         **write_weights(shape.config(), weights, 5 * 10**9, "cpu" if cpu else "cuda")}
    record["disk"] = disk_facts(weights)
    save()
    files = sorted(weights.glob("*.safetensors"))
    if cpu:
        evict(files)
        record["reads"] = {"buffered_cold": read_rate(files, direct=False),
                           "buffered_page_cache": read_rate(files, direct=False),
                           "note": "--cpu: no O_DIRECT read (the rehearsal's files are too small to matter)"}
    else:
        say("reading them back")
        record["reads"] = {"direct": read_rate(files, direct=True)}
        evict(files)
        record["reads"]["buffered_cold"] = read_rate(files, direct=False)
        record["reads"]["buffered_page_cache"] = read_rate(files, direct=False)
        record["reads"]["direct_again"] = read_rate(files, direct=True)
    record["finished"] = stamp()
    save()
    say(f"prep done: {json.dumps(record['reads'])}")
    print("prep done", flush=True)
    return 0


# ---------------------------------------------------------------- the session: servers and their starts


@dataclass
class Session:
    out: Path
    deadline: float
    cpu: bool
    starts: list[dict] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)
    port: int = 8400
    pod: str = ""  # the pod whose HOME and TMPDIR are in place now

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        document = {"cpu": self.cpu, "steps": self.steps, "starts": self.starts, "runs": self.runs}
        tmp = self.out / "ready.json.tmp"
        tmp.write_text(json.dumps(document, indent=2) + "\n")
        tmp.replace(self.out / "ready.json")


def stamped_server(argv: list[str], port: int, log_path: Path, env: dict):
    """A LocalServer whose log lines each carry the time they arrived, as ``kubectl logs --timestamps`` writes."""
    from tpserve.server import LocalServer, check_port_free

    class StampedServer(LocalServer):
        def start(self) -> None:
            check_port_free(self.host, self.port)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_path.open("w", encoding="utf-8")
            log.write(f"{stamp()} $ {shlex.join(self.argv)}\n")
            log.flush()
            self.process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)

            def pump(stream=self.process.stdout) -> None:
                for raw in stream:
                    log.write(f"{stamp()} {raw.decode(errors='replace')}")
                    log.flush()
                log.close()

            threading.Thread(target=pump, daemon=True).start()

    return StampedServer(argv, port=port, log_path=log_path, env=env)


def pod_env(session: Session, pod: str, cache_root: Path, extra: dict | None = None) -> dict:
    """The environment of a server in POD: HOME and TMPDIR at the same paths in every pod, as the chart mounts
    its emptyDirs, emptied when POD is not the pod before (the same name is the same pod's restart); vLLM's
    compile cache and the kernels compiled at warm-up in CACHE_ROOT (the claim), at the paths the chart gives them;
    EXTRA over it. The paths stay put because vLLM 0.26 hashes VLLM_CONFIG_ROOT, which defaults under HOME, into its
    compile cache's key."""
    from tpserve.server import cpu_env

    home = WORK / "pod"
    if pod != session.pod:
        shutil.rmtree(home, ignore_errors=True)
        session.pod = pod
    for sub in ("home", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    cache_root.mkdir(parents=True, exist_ok=True)
    base = cpu_env() if session.cpu else dict(os.environ)
    jit = cache_root / "jit"  # where the chart keeps the kernels compiled at warm-up (charts/vllm/templates/_env.tpl)
    return {**base, "HOME": str(home / "home"), "TMPDIR": str(home / "tmp"), "VLLM_CACHE_ROOT": str(cache_root),
            "TRITON_CACHE_DIR": str(jit / "triton"), "FLASHINFER_WORKSPACE_BASE": str(jit / "flashinfer"),
            "CUDA_CACHE_PATH": str(jit / "cuda"), **(extra or {})}


def home_caches() -> dict:
    """What the JIT caches under the pod's HOME and TMPDIR hold, in MB, one entry per folder of 1 MB or more."""
    sizes = {}
    pod = WORK / "pod"
    for folder in [*pod.glob("*/*"), *(pod / "home").glob(".*/*"), *WORK.glob("cache/*/jit/*")]:
        done = subprocess.run(["du", "-sm", str(folder)], capture_output=True, text=True, check=False)
        if done.stdout and int(done.stdout.split()[0]) > 0:
            sizes[str(folder.relative_to(WORK))] = int(done.stdout.split()[0])
    return sizes


def gpu_memory_used_mib() -> list[int]:
    done = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                          capture_output=True, text=True, check=False)
    return [int(v) for v in done.stdout.split()] if done.returncode == 0 else []


def wait_gpu_free(session: Session, limit_s: float = 60) -> None:
    """Wait until the last server's processes have let go of the GPU (a start fails if they have not)."""
    if session.cpu:
        return
    until = time.monotonic() + limit_s
    while time.monotonic() < until and any(used > 2000 for used in gpu_memory_used_mib()):
        time.sleep(1)


@dataclass(frozen=True)
class Start:
    """One server start: NAME, the model folder, tpserve serve's options, vLLM's flags, the pod it runs in."""

    name: str
    model: str  # shape name: its folder under MODELS
    serve_args: tuple[str, ...] = ("--settings", "vllm")
    vllm_args: tuple[str, ...] = ("--load-format", "dummy")
    pod: str = ""  # "" = a fresh pod named after the start
    cache: str = "7b"  # the claim's compile cache, by name
    env: tuple[tuple[str, str], ...] = ()
    evict_weights: bool = False  # their pages out of the page cache first: the load reads the disk
    timeout_s: float = 600
    profile: bool = False  # under ``py-spy record --subprocesses --idle`` (PYSPY names the binary): where the time goes


def wait_for_line(log: Path, text: str, limit_s: float = 30) -> None:
    """Wait until TEXT is in LOG: the line that says /health answered reaches the log a moment after the answer."""
    until = time.monotonic() + limit_s
    while time.monotonic() < until and text not in log.read_text(errors="replace"):
        time.sleep(0.2)


def stop_profiler(profiler: subprocess.Popen, path: Path, limit_s: float = 120) -> dict:
    """SIGINT py-spy alone (the server it started goes on): it stops sampling and writes PATH."""
    began = time.monotonic()
    profiler.send_signal(signal.SIGINT)
    try:
        profiler.wait(limit_s)
    except subprocess.TimeoutExpired:
        return {"error": f"py-spy did not exit within {limit_s:.0f} s of SIGINT"}
    written = path.is_file()
    return {"file": path.name if written else None, "bytes": path.stat().st_size if written else 0,
            "write_s": round(time.monotonic() - began, 2), "status": profiler.returncode}


def start_server(session: Session, start: Start):
    """Start START's server and wait for /health; its record (phases included) is added either way. Returns the
    server, still running, or None when it did not come up (stopped, its log tail recorded)."""
    from tpserve.commandlines import serve_command
    from tpserve.startup import read_startup

    wait_gpu_free(session)
    record: dict = {"start": asdict(start), "started_left_s": round(session.left())}
    session.starts.append(record)
    if start.evict_weights:
        evict(sorted((MODELS / start.model).glob("*.safetensors")))
    pod = start.pod or start.name
    env = pod_env(session, pod, WORK / "cache" / start.cache, dict(start.env))
    session.port += 1
    def command(dry_run: bool = False) -> list[str]:
        return serve_command(MODELS / start.model, served_model_name=start.model, host="127.0.0.1",
                             port=session.port, serve_args=(*start.serve_args, *(["--json"] if dry_run else [])),
                             vllm_args=start.vllm_args, dry_run=dry_run, python=sys.executable)

    argv = command()
    log = session.out / "logs" / f"{start.name}.log"
    if start.profile:
        # py-spy loses a process that execs, so it starts vLLM's own command line (tpserve serve --dry-run prints
        # it) with the environment tpserve serve gives it. speedscope keeps each thread's samples in order.
        dry = json.loads(subprocess.run(command(dry_run=True), capture_output=True, text=True, env=env,
                                        check=True).stdout)
        argv, env = dry["argv"], {**env, **dry["env"]}
        argv = [os.environ.get("PYSPY", "py-spy"), "record", "--subprocesses", "--idle", "--rate", str(PROFILE_HZ),
                "--format", "speedscope", "-o", str(session.out / "profiles" / f"{start.name}.speedscope.json"),
                "--", *argv]
        (session.out / "profiles").mkdir(parents=True, exist_ok=True)
    server = stamped_server(argv, session.port, log, env)
    began = time.monotonic()
    try:
        server.start()
        server.wait_healthy(min(start.timeout_s, max(30.0, session.left())))
        record["health_s"] = round(time.monotonic() - began, 2)
        wait_for_line(log, '"GET /health HTTP/1.1" 200')
        if start.profile:
            record["profile"] = stop_profiler(server.process, session.out / "profiles" / f"{start.name}.speedscope.json")
    except Exception as exc:  # noqa: BLE001 — a failed start is recorded, the session goes on
        record["error"] = f"{type(exc).__name__}: {exc}"[-1500:]
        record["log_tail"] = server.log_tail(40)
        server.stop(grace_s=10)
        server = None
    try:
        result = read_startup(log)
        record["startup"] = result.to_json()
    except Exception as exc:  # noqa: BLE001
        record["startup_error"] = f"{type(exc).__name__}: {exc}"
    record["home_caches_mb"] = home_caches()
    session.save()
    say(f"{start.name}: " + (f"healthy after {record['health_s']} s" if server else f"failed: {record['error'][:300]}")
        + f", {session.left():.0f} s left")
    return server


def layout_of(start: Start):
    """What START serves, as a sweep records it (commandlines.served_layout), named by its shape; the records of
    its runs carry it, so ``tpserve report`` reads them."""
    from tpserve.commandlines import serve_command, served_layout
    from tpserve.commands.serve import serve_config
    from tpserve.machine import describe_machine, device_kind

    argv = serve_command(MODELS / start.model, served_model_name=start.model, serve_args=start.serve_args,
                         vllm_args=start.vllm_args)
    config, cache_dir = serve_config(argv[4:])
    return replace(served_layout(config, cache_dir, device_kind(describe_machine())), model=start.model)


def load_run(session: Session, name: str, server, start: Start, workload: str) -> None:
    """One load-test run of the named WORKLOAD (tpserve.presets; small on CPU) against START's SERVER. The record
    says what served it and, in its context, the environment the start added (the engine's start method)."""
    from tpserve.measure.runner import measure
    from tpserve.presets import workload_preset as preset
    from tpserve.workload import runrecord

    model = start.model

    small = {"num_requests": 8, "concurrency": 4, "max_tokens": 16, "random_input_len": 64} if session.cpu else {}
    if session.cpu and workload == "note":
        small.pop("random_input_len")
    load = preset(workload, run_timeout_s=900, **small)
    work = session.out / "runs" / name
    run: dict = {"name": name, "model": model, "workload": workload, "load": asdict(load) | {
        "locustfile": str(load.locustfile), "prompt_file": None}, "started_left_s": round(session.left())}
    try:
        record = replace(measure([server.url], model, load, work, 1), layout=layout_of(start),
                         context={"environment": dict(start.env)})
        runrecord.write(work / "record.json", record)
        m = record.metrics
        run["figures"] = {"output_throughput": m.output_throughput, "total_token_throughput": m.total_token_throughput,
                          "duration": m.duration, "completed": m.completed, "output_tokens": m.total_output_tokens,
                          "median_ttft_ms": m.median_ttft_ms, "median_tpot_ms": m.median_tpot_ms,
                          "mean_ttft_ms": m.mean_ttft_ms, "token_check": record.token_check.status}
    except Exception as exc:  # noqa: BLE001
        run["error"] = f"{type(exc).__name__}: {exc}"[-1500:]
    session.runs.append(run)
    session.save()
    figures = run.get("figures", {})
    say(f"{name}: {figures.get('output_throughput', 0):.1f} output tok/s {run.get('error', '')}")


def serve_and_stop(session: Session, start: Start, workloads: tuple[str, ...] = ()) -> dict:
    server = start_server(session, start)
    if server is not None:
        try:
            for workload in workloads:
                load_run(session, f"{start.name}-{workload}", server, start, workload)
        finally:
            server.stop(grace_s=20)
    return session.starts[-1] if session.starts and session.starts[-1]["start"]["name"] == start.name else {}


def phase_seconds(record: dict, name: str) -> float:
    return sum(p["seconds"] for p in record.get("startup", {}).get("phases", []) if p["name"] == name)


def move_weights_in(session: Session, shape: str) -> dict:
    """Put the prep's weight files into SHAPE's model folder (the same folder as the dummy-weight starts, so the
    compile cache, keyed by the model, is the same)."""
    weights = WORK / f"weights-{shape}"
    files = sorted(weights.glob("*.safetensors")) + sorted(weights.glob("*.index.json"))
    for f in files:
        f.rename(MODELS / shape / f.name)
    present = sorted((MODELS / shape).glob("*.safetensors"))
    return {"files": len(present), "bytes": sum(f.stat().st_size for f in present)}


@dataclass(frozen=True)
class Step:
    name: str
    needed_s: float
    run: object  # Callable[[Session], None]


def steps(cpu: bool) -> list[Step]:
    from tpserve.launch import ENGINE_START

    big = "tiny-llama" if cpu else "llama-2-70b"
    small = "tiny-llama" if cpu else "llama-2-7b"
    real = ("--load-format", "auto")
    # On the GPU the 70b answer is worth more than the last loaders: they run only while 70b's time stays free.
    keep_for_70b = 0 if cpu else 450
    # vLLM's own engine start, which tpserve serve leaves alone when the environment names one.
    spawn = ((ENGINE_START, "spawn"),)

    def cold_and_warm(session: Session) -> None:
        serve_and_stop(session, Start("7b-cold", small, pod="cold"))
        warm = serve_and_stop(session, Start("7b-warm", small, pod="warm"), workloads=("throughput",))
        serve_and_stop(session, Start("7b-warm-home-kept", small, pod="warm"))
        warmup = phase_seconds(warm, "engine warm-up after capture")
        if warmup > 20 or cpu:
            serve_and_stop(session, Start("7b-warm-no-flashinfer-sampler", small,
                                          env=(("VLLM_USE_FLASHINFER_SAMPLER", "0"),)))
        else:
            session.steps[-1]["skipped_no_flashinfer_sampler"] = f"warm-up after capture took {warmup} s"

    def loaders(session: Session) -> None:
        session.steps[-1]["weights"] = move_weights_in(session, small)
        for name, flags in (("safetensors", real), ("fastsafetensors", ("--load-format", "fastsafetensors")),
                            ("runai-streamer", ("--load-format", "runai_streamer"))):
            if name != "safetensors" and session.left() < 90 + keep_for_70b:
                session.steps[-1].setdefault("skipped", []).append(name)
                continue
            serve_and_stop(session, Start(f"7b-load-{name}", small, vllm_args=flags, pod="warm",
                                          evict_weights=True))
        if session.left() > 70 + keep_for_70b:
            serve_and_stop(session, Start("7b-load-safetensors-page-cache", small, vllm_args=real, pod="warm"))

    def fp8_70b(session: Session) -> None:
        serve_and_stop(session, Start("70b-fp8-tp1", big, serve_args=FP8_SERVE,
                                      vllm_args=("--load-format", "dummy", *FP8_VLLM), pod="warm", cache="70b",
                                      timeout_s=900), workloads=("note", "throughput"))

    def fp8_7b(session: Session) -> None:
        serve_and_stop(session, Start("7b-fp8", small, serve_args=FP8_SERVE,
                                      vllm_args=("--load-format", "dummy", *FP8_VLLM), pod="warm"),
                       workloads=("throughput",))

    def restarts(session: Session) -> None:
        """The chart's own restarts: a cold start on an empty claim, then new pods on the same claim (fresh HOME
        and TMPDIR at the same paths; the compile cache and the warm-up kernels kept on the claim), twice as
        tpserve serve starts vLLM (its engine forked on one GPU) and twice with the engine spawned (as `vllm serve`
        starts it), and once under py-spy."""
        plan = [Start("7b-cold", small, pod="cold", cache="7b-claim"),
                Start("7b-new-pod", small, pod="a", cache="7b-claim"),
                Start("7b-new-pod-spawn", small, pod="b", cache="7b-claim", env=spawn),
                Start("7b-new-pod-profiled", small, pod="c", cache="7b-claim", profile=True),
                Start("7b-new-pod-again", small, pod="d", cache="7b-claim"),
                Start("7b-new-pod-spawn-again", small, pod="e", cache="7b-claim", env=spawn)]
        for start in plan:
            if session.left() < 100:
                session.steps[-1].setdefault("skipped", []).append(start.name)
                continue
            serve_and_stop(session, start)

    def engine_start(session: Session) -> None:
        """Serving with the engine forked (tpserve serve's choice on one GPU) against spawned, side by side on
        the throughput workload: the start method must not cost tokens."""
        for name, env in (("7b-fork-throughput", ()), ("7b-spawn-throughput", spawn)):
            if session.left() < 120:
                session.steps[-1].setdefault("skipped", []).append(name)
                continue
            serve_and_stop(session, Start(name, small, cache="7b-claim", env=env), workloads=("throughput",))

    return [Step("7b-restarts", 350, restarts), Step("7b-fork-vs-spawn", 240, engine_start), Step("7b-cold-warm", 400, cold_and_warm),
            Step("loaders", 100, loaders), Step("70b-fp8", 300, fp8_70b), Step("7b-fp8", 150, fp8_7b)]


def summary(session: Session) -> str:
    from tpserve.startup import Phase, Startup, table

    parts = []
    for record in session.starts:
        head = f"== {record['start']['name']}: " + (f"healthy after {record['health_s']} s (client)"
                                                    if "health_s" in record else f"FAILED {record.get('error', '')[:400]}")
        parts.append(head)
        if "startup" in record:
            s = record["startup"]
            parts.append(table(Startup(tuple(Phase(**p) for p in s["phases"]), s["total_s"], s["ready"], s["facts"],
                                       tuple(s["notes"]))))
        parts.append(f"home caches (MB): {record.get('home_caches_mb')}\n")
    for run in session.runs:
        f = run.get("figures", {})
        parts.append(f"run {run['name']}: " + (f"{f['output_throughput']:.1f} output tok/s, {f['completed']} done, "
                                                f"TTFT p50 {f['median_ttft_ms']:.0f} ms, TPOT p50 {f['median_tpot_ms']:.1f} ms,"
                                                f" tokens {f['token_check']}" if f else f"FAILED {run.get('error')}"))
    parts += [f"step {s['name']}: {json.dumps({k: v for k, v in s.items() if k != 'name'})}" for s in session.steps]
    return "\n".join(parts) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--prep", action="store_true", help="only the torch-only part: GPU limits, weights, disk")
    parser.add_argument("--deadline-s", type=float, default=1300)
    parser.add_argument("--cpu", action="store_true", help="rehearse on this machine's CPU vLLM, tiny Llama")
    parser.add_argument("--only", default="", help="comma-separated step names, run in that order (default: all "
                        "but 7b-restarts and 7b-fork-vs-spawn, in the order of the first H100 session)")
    parser.add_argument("--no-weights", action="store_true", help="--prep: only the GPU's limits, no weight files")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.prep:
        return prep(args.out, args.cpu, weights_too=not args.no_weights)
    sys.path[:0] = [str(REPO / "src"), str(REPO)]
    from tpserve.shapes import TINY_LLAMA, find_shape, write_model_folder

    session = Session(args.out, time.monotonic() + args.deadline_s, args.cpu)
    known = {s.name: s for s in steps(args.cpu)}
    later = ("7b-restarts", "7b-fork-vs-spawn")  # written after the H100 session: asked for by --only
    wanted = args.only.split(",") if args.only else [name for name in known if name not in later]
    if unknown := [name for name in wanted if name not in known]:
        parser.error(f"--only: no step {', '.join(unknown)}; the steps are {', '.join(known)}")
    todo = [known[name] for name in wanted]
    for shape in {"tiny-llama"} if args.cpu else {"llama-2-7b", "llama-2-70b"}:
        write_model_folder(TINY_LLAMA if shape == "tiny-llama" else find_shape(shape), MODELS / shape)
    for step in todo:
        record = {"name": step.name, "started_left_s": round(session.left())}
        session.steps.append(record)
        if session.left() < step.needed_s:
            record["skipped"] = f"{session.left():.0f} s left, needs about {step.needed_s:.0f} s"
            say(f"{step.name}: skipped, {record['skipped']}")
        else:
            say(f"{step.name}: begins")
            try:
                step.run(session)
            except Exception as exc:  # noqa: BLE001 — a step that breaks is recorded, the next one runs
                record["error"] = f"{type(exc).__name__}: {exc}"[-1500:]
                say(f"{step.name}: error {record['error']}")
        record["stopped_left_s"] = round(session.left())
        session.save()
        (args.out / "summary.txt").write_text(summary(session))
    print(summary(session))
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
