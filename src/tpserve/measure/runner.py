"""Measuring one point: its load, its servers (a backend starts them), and the runs, each a run record.

The load is the same Locust file users run, one process per replica, and a run's figures come from the
replicas' merged raw records. A point that fails is returned as a failure with its reason, never raised,
so that a sweep or a search goes on.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from tpserve.commandlines import DEFAULT_LOCUSTFILE, loadtest_command
from tpserve.fetch.errors import ConfigError, LoadTestError, TpserveError
from tpserve.measure.points import Point
from tpserve.workload import runrecord
from tpserve.workload.distributed import share
from tpserve.workload.requesttypes import RequestResult
from tpserve.workload.runrecord import Layout, RunRecord


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


@dataclass(frozen=True)
class Servers:
    """A point's servers, ready: where to send the load, and what serves it."""

    urls: list[str]
    layout: Layout
    # How a run is measured: the Locust file on this host, or (tpserve.measure.kubernetes, --load-in-cluster) Jobs.
    measure: Callable[[Sequence[str], str, Load, Path, int], RunRecord] = measure


Backend = Callable[[Point], AbstractContextManager[Servers]]
# How a measured point is served for good, beside its backend: ("serve", its tpserve serve line) locally
# (tpserve.measure.local.serving), ("deploy", its helm line) on Kubernetes (tpserve.measure.kubernetes.deploying).
Serving = Callable[[Point], tuple[str, str]]


def check_repeats(repeats: int) -> None:
    if repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {repeats}")


@dataclass
class PointResult:
    """One point's runs (files and records, in order), or why it failed — after some runs, or before any."""

    runs: list[Path] = field(default_factory=list)
    records: list[RunRecord] = field(default_factory=list)
    failure: dict | None = None
    resumed: bool = False  # read from the records an earlier run wrote; no server was started


def file_stem(name: str) -> str:
    """NAME as one file name: a served name such as org/model holds a slash (the hub cache's -- for it)."""
    return name.replace("/", "--")


def run_path(out: Path, name: str, point: Point, repeat: int) -> Path:
    """Where run REPEAT (from 1) of POINT is recorded: ``OUT/NAME-LABEL-runN.json``."""
    return out / f"{file_stem(name)}-{point.label}-run{repeat}.json"


def recorded_runs(point: Point, *, name: str, repeats: int, out: Path) -> PointResult | None:
    """POINT's REPEATS runs as an earlier sweep or search recorded them in OUT; None unless every one of them
    is there and loads (run records are written whole, so a run cut short left no file)."""
    result = PointResult(resumed=True)
    for repeat in range(1, repeats + 1):
        path = run_path(out, name, point, repeat)
        try:
            record = runrecord.load(path)
        except (ConfigError, KeyError, TypeError, ValueError):
            return None
        if record.context.get("repeat") != repeat:
            return None
        result.runs.append(path)
        result.records.append(record)
    return result


def measure_point(point: Point, backend: Backend, *, name: str, model: str, load: Load, repeats: int, out: Path,
                  machine: dict, progress: Callable[[str, int], None], context: dict | None = None,
                  resume: bool = False) -> PointResult:
    """Start POINT's servers once and measure them REPEATS times; each run is written as
    ``NAME-LABEL-runN.json``, a slash in NAME written as ``--`` (CONTEXT adds to its context). A failure is
    returned, never raised. With RESUME, a point whose runs are all recorded in OUT already
    (:func:`recorded_runs`) is returned as recorded, and no server is started."""
    if resume and (recorded := recorded_runs(point, name=name, repeats=repeats, out=out)):
        progress(f"{point.label}: its {repeats} run(s) are recorded in {out} already; not measured again", repeats)
        return recorded
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
                result.runs.append(runrecord.write(run_path(out, name, point, repeat + 1), record))
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
