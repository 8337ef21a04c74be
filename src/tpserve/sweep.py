"""``tpserve sweep``: the load test over a grid of layouts, each point measured R times.

A layout is a tensor-parallel size and a number of replicas (independent servers, each on its own
GPUs). Locally each replica is ``tpserve serve`` on its own devices — ``CUDA_VISIBLE_DEVICES`` on a GPU
host, pinned CPU cores (``VLLM_CPU_OMP_THREADS_BIND``) without GPUs —; on Kubernetes it is the chart
(:mod:`tpserve.kube`). The load is the same Locust file users run, one process per replica, and the
point's figures come from the merged raw records. A point that fails is recorded with its reason and
the sweep goes on.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from tpserve import axes
from tpserve.axes import Settings
from tpserve.commandlines import DEFAULT_LOCUSTFILE, loadtest_command, serve_command_of, served_layout
from tpserve.fetch.errors import ConfigError, LoadTestError, TpserveError
from tpserve.fetch.preflight import visible_gpus
from tpserve.launch import ServeConfig
from tpserve.machine import describe_machine, device_kind
from tpserve.server import LocalServer, cpu_env
from tpserve.workload import runrecord
from tpserve.workload.distributed import share
from tpserve.workload.records import RequestResult
from tpserve.workload.runrecord import Layout, RunRecord


@dataclass(frozen=True)
class Point:
    """One layout — TENSOR GPUs per replica, REPLICAS independent servers — with its vLLM SETTINGS
    (:mod:`tpserve.axes`: ``(("max-num-seqs", "512"),)``; ``default`` leaves a flag to vLLM)."""

    tensor: int
    replicas: int = 1
    settings: Settings = ()

    @property
    def devices(self) -> int:
        return self.tensor * self.replicas

    @property
    def label(self) -> str:
        """``tp2x1``, then the settings that are not vLLM's default: ``tp2x1-max-num-seqs=512-kv-cache-dtype=fp8``."""
        return "-".join(part for part in (f"tp{self.tensor}x{self.replicas}", axes.label(self.settings)) if part)

    def describe(self) -> dict:
        """The point as failures.json and tune.json write it."""
        return {"label": self.label, "tensor": self.tensor, "replicas": self.replicas,
                "settings": dict(self.settings)}


def parse_grid(tensors: str, replicas: str = "1") -> list[Point]:
    """``"1,2,4"`` × ``"1"`` → points, in the order given."""
    def numbers(text: str, name: str) -> list[int]:
        try:
            values = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise ConfigError(f"{name} must be comma-separated whole numbers, got {text!r}") from None
        if not values or any(v < 1 for v in values):
            raise ConfigError(f"{name} must list numbers of at least 1, got {text!r}")
        return values
    return [Point(t, r) for t in numbers(tensors, "--tensor") for r in numbers(replicas, "--replicas")]


def with_settings(layouts: Sequence[Point], settings_axes: Sequence[axes.Axis]) -> list[Point]:
    """The grid: every layout × every combination of the settings axes, layouts slowest."""
    return [replace(layout, settings=combo) for layout in layouts for combo in axes.grid(settings_axes)]


@dataclass(frozen=True)
class Load:
    """The workload every point gets: the load test's options, shared out over the replicas.

    Named ones are in :mod:`tpserve.presets`. With a PROMPT_FILE (``prompt_set`` "file") each replica's
    load test reads the file and sends its share of the requests.
    """

    num_requests: int = 59
    max_tokens: int = 256
    concurrency: int = 59
    prompt_set: str = "builtin"
    random_input_len: int = 128
    endpoint: str = "completions"
    prompt_file: Path | None = None
    warmup_requests: int = 0
    locustfile: Path = DEFAULT_LOCUSTFILE
    run_timeout_s: int = 1200

    def locust_argv(self, url: str, model: str, index: int, replicas: int, out: Path, seed: int) -> list[str]:
        """Replica INDEX's share of the load, against URL."""
        return loadtest_command(
            url, users=max(1, share(self.concurrency, replicas, index)), locustfile=self.locustfile, model=model,
            num_requests=share(self.num_requests, replicas, index), max_tokens=self.max_tokens,
            prompt_set=self.prompt_set, prompt_file=self.prompt_file,
            random_input_len=None if self.prompt_set == "file" else self.random_input_len, endpoint=self.endpoint,
            warmup_requests=share(self.warmup_requests, replicas, index), seed=seed, run_time_s=self.run_timeout_s,
            only_summary=True, results_json=out / f"replica{index}.json",
            records_jsonl=out / f"replica{index}.jsonl")


def measure(urls: Sequence[str], model: str, load: Load, work: Path, seed: int) -> RunRecord:
    """Run the load against every replica at once and merge their raw records into one run."""
    work.mkdir(parents=True, exist_ok=True)
    with ExitStack() as logs:
        processes = [subprocess.Popen(load.locust_argv(url, model, i, len(urls), work, seed + i),
                                      stdout=subprocess.DEVNULL,
                                      stderr=logs.enter_context((work / f"replica{i}.log").open("wb")))
                     for i, url in enumerate(urls)]
        statuses = [p.wait() for p in processes]
    parts, records = [], []
    for i, status in enumerate(statuses):
        path = work / f"replica{i}.json"
        if not path.is_file():
            tail = (work / f"replica{i}.log").read_text(errors="replace")[-600:]
            raise LoadTestError(f"the load test of replica {i} exited with status {status} and wrote no "
                                f"results: {tail.strip().splitlines()[-1] if tail.strip() else 'no output'}")
        parts.append(runrecord.load(path))
        records += [RequestResult.from_json(json.loads(line))
                    for line in (work / f"replica{i}.jsonl").read_text().splitlines()]
    return runrecord.merge(parts, records, part_name="replica")


@dataclass
class SweepResult:
    runs: list[Path] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Servers:
    """A point's servers, ready: where to send the load, and what serves it."""

    urls: list[str]
    layout: Layout
    # How a run is measured: the Locust file on this host, or (tpserve.kube, --load-in-cluster) Jobs.
    measure: Callable[[Sequence[str], str, Load, Path, int], RunRecord] = measure


Backend = Callable[[Point], AbstractContextManager[Servers]]


def run_sweep(points: Sequence[Point], backend: Backend, *, name: str, model: str, load: Load, repeats: int,
              out: Path, progress: Callable[[str, int], None] = lambda text, done: print(text)) -> SweepResult:
    """Measure every point REPEATS times; write one JSON per run, and failures.json for the points that failed.

    PROGRESS gets a line to show and how many of the len(points) × repeats runs it completes.
    """
    check_repeats(repeats)
    out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    result = SweepResult()
    for point in points:
        measured = measure_point(point, backend, name=name, model=model, load=load, repeats=repeats, out=out,
                                 machine=machine, progress=progress)
        result.runs += measured.runs
        if measured.failure:
            result.failures.append(measured.failure)
    (out / "failures.json").write_text(json.dumps(result.failures, indent=2) + "\n")
    return result


def check_repeats(repeats: int) -> None:
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {repeats}")


@dataclass
class PointResult:
    """One point's runs (files and records, in order), or why it failed — after some runs, or before any."""

    runs: list[Path] = field(default_factory=list)
    records: list[RunRecord] = field(default_factory=list)
    failure: dict | None = None


def file_stem(name: str) -> str:
    """NAME as one file name: a served name such as org/model holds a slash (the hub cache's -- for it)."""
    return name.replace("/", "--")


def measure_point(point: Point, backend: Backend, *, name: str, model: str, load: Load, repeats: int, out: Path,
                  machine: dict, progress: Callable[[str, int], None], context: dict | None = None) -> PointResult:
    """Start POINT's servers once and measure them REPEATS times; each run is written as
    ``NAME-LABEL-runN.json``, a slash in NAME written as ``--`` (CONTEXT adds to its context). A failure is
    returned, never raised."""
    result = PointResult()
    started = time.monotonic()
    try:
        with backend(point) as servers:
            progress(f"{point.label}: {len(servers.urls)} server(s) up after {time.monotonic() - started:.0f} s", 0)
            for repeat in range(repeats):
                record = servers.measure(servers.urls, model, load,
                                         out / "work" / f"{point.label}-run{repeat + 1}", 1000 * repeat)
                record = replace(record, layout=servers.layout,
                                 provenance=replace(record.provenance, command="sweep", machine=machine),
                                 context={"name": name, "repeat": repeat + 1, "repeats": repeats, **(context or {})})
                result.runs.append(runrecord.write(out / f"{file_stem(name)}-{point.label}-run{repeat + 1}.json",
                                                   record))
                result.records.append(record)
                progress(f"{point.label} run {repeat + 1}/{repeats}: {record.metrics.output_throughput:.1f} "
                         f"output tok/s, {record.metrics.completed}/{record.metrics.num_prompts} ok", 1)
    except TpserveError as exc:
        log_tail = getattr(exc, "log_tail", "")
        last = log_tail.strip().splitlines()[-1] if log_tail.strip() else ""
        result.failure = {"name": name, **point.describe(), "error": f"{exc}" + (f" — {last}" if last else ""),
                          "log_tail": log_tail[-2000:]}
        progress(f"{point.label}: failed — {result.failure['error']}", repeats - len(result.runs))
    return result


def device_groups(point: Point, devices: Sequence[str]) -> list[list[str]]:
    """Disjoint device lists, one per replica, each TENSOR long; refused when there are too few."""
    if point.devices > len(devices):
        raise ConfigError(f"{point.label} needs {point.devices} devices but {len(devices)} are available "
                          f"({','.join(devices) or 'none'})")
    return [list(devices[i * point.tensor:(i + 1) * point.tensor]) for i in range(point.replicas)]


def available_devices() -> tuple[str, list[str]]:
    """("gpu", ids) when NVIDIA GPUs are visible, else ("cpu", core ids) to pin vLLM's CPU threads."""
    gpus = visible_gpus()
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        return "gpu", ids
    return "cpu", [str(core) for core in sorted(os.sched_getaffinity(0))]


def exact_settings(serve_args: Sequence[str]) -> list[str]:
    """SERVE_ARGS with ``--settings vllm`` first unless they choose a settings profile themselves."""
    if any(arg == "--settings" or arg.startswith("--settings=") for arg in serve_args):
        return list(serve_args)
    return ["--settings", "vllm", *serve_args]


# Point settings that are options of tpserve serve (tpserve.axes.SERVE_OPTIONS): their ServeConfig field and type.
SERVE_FIELDS = {"gpu-memory-utilization": ("gpu_memory_utilization", float), "max-model-len": ("max_model_len", int),
                "dtype": ("dtype", str)}


def replica_config(base: ServeConfig, point: Point, port: int, vllm_args: Sequence[str] = ()) -> ServeConfig:
    """The :class:`tpserve.launch.ServeConfig` of one replica of POINT: BASE (the sweep's own ``tpserve serve``
    options, :func:`exact_settings` applied) with the point's tensor-parallel size and settings, on PORT here.

    The replica's command line (:func:`tpserve.commandlines.serve_command_of`) and its run records' layout
    (:func:`tpserve.commandlines.served_layout`) are both made from it. VLLM_ARGS go to vLLM verbatim, before
    the point's own vLLM flags (:func:`tpserve.axes.command_args`).
    """
    serve_args, point_vllm_args = axes.command_args(point.settings, [] if base.allreduce_fusion
                                                    else ["--no-allreduce-fusion"])
    options = {}
    for arg in serve_args:
        if arg == "--no-allreduce-fusion":
            continue
        key, _, value = arg.removeprefix("--").partition("=")
        name, kind = SERVE_FIELDS[key]
        try:
            options[name] = kind(value)
        except ValueError:
            raise ConfigError(f"--vllm {key}={value}: {key} takes a {kind.__name__}, got {value!r}") from None
    return replace(base, tensor_parallel_size=point.tensor, host="127.0.0.1",
                   port=port, allreduce_fusion=base.allreduce_fusion or "--no-allreduce-fusion" not in serve_args,
                   extra_args=(*base.extra_args, *vllm_args, *point_vllm_args), **options)


def local_backend(base: ServeConfig, cache_dir: Path, *, base_port: int, logs: Path, vllm_args: Sequence[str] = (),
                  env: dict | None = None, health_timeout_s: float = 900) -> Backend:
    """Replicas of ``tpserve serve`` on this host, each on its own GPUs (or CPU cores).

    BASE is the sweep's ``tpserve serve`` configuration (model, served name, ``--serve-arg`` options) and
    CACHE_DIR its model cache; VLLM_ARGS go to vLLM verbatim. Each replica runs :func:`replica_config`.
    """
    kind, devices = available_devices()
    device = device_kind(describe_machine())

    @contextmanager
    def start(point: Point) -> Iterator[Servers]:
        groups = device_groups(point, devices)
        with ExitStack() as stack:
            servers = []
            for i, group in enumerate(groups):
                replica_env = {**(env or os.environ)}
                if kind == "gpu":
                    replica_env["CUDA_VISIBLE_DEVICES"] = ",".join(group)
                else:
                    replica_env = cpu_env(env=replica_env) | {"VLLM_CPU_OMP_THREADS_BIND": ",".join(group)}
                port = base_port + i
                config = replica_config(base, point, port, vllm_args)
                server = LocalServer(serve_command_of(config, cache_dir=cache_dir), port=port,
                                     log_path=logs / f"{point.label}-replica{i}.log", env=replica_env)
                stack.enter_context(server)
                servers.append(server)
            for server in servers:
                server.wait_healthy(health_timeout_s)
            yield Servers([server.url for server in servers],
                          served_layout(config, cache_dir, device, replicas=point.replicas))
            for server in servers:
                server.check_alive()

    return start


def stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
