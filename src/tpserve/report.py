"""``tpserve report``: the reference note's table from measured runs, with spread, latency and cost.

Reads run records of every schema version (single runs, ``tpserve sweep`` runs, GPU test runs),
refuses to compare runs of different workloads, groups repeats of one layout, and answers which
layout serves the most tokens per GPU — overall, within a latency budget, and per dollar when GPU
prices are given; then how far each layout is from its card's roofline (:mod:`tpserve.roofline`).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tpserve import roofline
from tpserve.fetch.errors import ConfigError
from tpserve.workload import runrecord
from tpserve.workload.runrecord import RunRecord

# What makes two runs the same experiment; any difference here and their tok/s are not comparable.
WORKLOAD_FIELDS = ("prompt_set", "max_tokens", "num_requests", "concurrency", "request_rate",
                   "temperature")


@dataclass(frozen=True)
class Row:
    """One layout of one model on one kind of device, over its repeats."""

    model: str
    device: str
    tensor: int
    replicas: int
    runs: int
    mean_tok_s: float
    stdev_tok_s: float
    median_ttft_ms: float
    median_tpot_ms: float
    pipeline: int = 1
    flags: tuple[tuple[str, str | bool], ...] = ()  # the layout's vllm_flags, sorted

    @property
    def devices(self) -> int:
        return self.tensor * self.pipeline * self.replicas

    @property
    def key(self) -> tuple:
        """The :func:`layout_key` of the runs in this row."""
        return (self.model, self.device, self.tensor, self.replicas, self.pipeline, self.flags)

    @property
    def split(self) -> str:
        """How the devices are used: TP × replicas, or TP × PP × replicas with pipeline stages."""
        parts = (self.tensor, self.pipeline, self.replicas) if self.pipeline > 1 else (self.tensor, self.replicas)
        return " × ".join(str(part) for part in parts)

    @property
    def tok_s_per_device(self) -> float:
        return self.mean_tok_s / self.devices

    def cost_per_million(self, price_per_device_hour: float) -> float:
        return price_per_device_hour * self.devices / (self.mean_tok_s * 3600) * 1e6

    def settings_beside(self, first: Row) -> str:
        """The vLLM flags in which this row differs from FIRST: ``--max-num-seqs=512``, ``--enforce-eager``,
        ``--kv-cache-dtype (vLLM's default)`` for one FIRST sets and this row leaves out; "—" for none."""
        mine, theirs = dict(self.flags), dict(first.flags)
        parts = []
        for flag in sorted(set(mine) | set(theirs)):
            if flag not in mine:
                parts.append(f"{flag} (vLLM's default)")
            elif mine[flag] != theirs.get(flag):
                parts.append(flag if mine[flag] is True else f"{flag}={mine[flag]}")
        return " ".join(parts) or "—"


def load_runs(paths: Iterable[Path]) -> list[tuple[Path, RunRecord]]:
    """Every run record in PATHS: files, or the JSON files anywhere under folders.

    Inside folders, files that are not run records (benchmarks, failures.json) are skipped, and so
    are records that do not say what served them: a sweep's per-replica parts, bare load tests.
    """
    runs, skipped = [], 0
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path} does not exist")
        if not path.is_dir():
            record = runrecord.load(path)
            if record.layout is None:
                raise ConfigError(f"{path} does not say what served it (a load test alone cannot know the "
                                  "layout): measure with tpserve sweep or tpserve demo, which record it")
            runs.append((path, record))
            continue
        for file in sorted(path.rglob("*.json")):
            try:
                document = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            if runrecord.is_run_document(document):
                record = runrecord.from_document(document, file)
                if record.layout is None:
                    skipped += 1
                else:
                    runs.append((file, record))
    if not runs:
        without = f" ({skipped} found do not say what served them)" if skipped else ""
        raise ConfigError(f"no run records found{without}: pass results files or folders written by tpserve "
                          "demo, tpserve sweep or the GPU tests")
    return runs


def workload(record: RunRecord) -> dict:
    plan = record.workload
    return {"endpoint": plan.endpoint_path} | {name: getattr(plan, name) for name in WORKLOAD_FIELDS}


def check_same_workload(runs: Sequence[tuple[Path, RunRecord]]) -> dict:
    """The one workload all RUNS share; otherwise an error naming the difference and the files."""
    first_path, first = runs[0]
    reference = workload(first)
    for path, record in runs[1:]:
        other = workload(record)
        differences = [f"{name} {reference[name]!r} vs {other[name]!r}" for name in reference
                       if reference[name] != other[name]]
        if differences:
            raise ConfigError(f"{first_path.name} and {path.name} measured different workloads "
                              f"({'; '.join(differences)}): their tok/s cannot be compared; report them separately")
    return reference


def layout_key(record: RunRecord) -> tuple:
    """What makes runs repeats of one row: model, device, TP, replicas, PP and vLLM flags."""
    layout = record.layout
    return (record.model_id, layout.device_kind, layout.tensor_parallel_size, layout.replicas,
            layout.pipeline_parallel_size, tuple(sorted(layout.vllm_flags.items())))


def rows(runs: Sequence[tuple[Path, RunRecord]]) -> list[Row]:
    """One row per layout and vLLM settings (the layout's ``vllm_flags``), over its repeats.

    Within a layout the row with the fewest flags comes first, so the settings column reads against vLLM's defaults.
    """
    groups: dict[tuple, list[RunRecord]] = {}
    for _, record in runs:
        groups.setdefault(layout_key(record), []).append(record)
    table = []
    for (model, device, tensor, replicas, pipeline, flags), records in groups.items():
        tok_s = [r.metrics.output_throughput for r in records]
        table.append(Row(model, device, tensor, replicas, len(records), statistics.fmean(tok_s),
                         statistics.stdev(tok_s) if len(tok_s) > 1 else 0.0,
                         statistics.median(r.metrics.median_ttft_ms for r in records),
                         statistics.median(r.metrics.median_tpot_ms for r in records), pipeline, flags))
    # Within a layout, the fewest vLLM flags first: vLLM's defaults lead, the other settings are shown beside them.
    return sorted(table, key=lambda row: (row.model, row.device, row.devices, row.replicas, len(row.flags),
                                          str(row.flags)))


def parse_prices(items: Sequence[str]) -> dict[str, float]:
    prices = {}
    for item in items:
        kind, _, value = item.partition("=")
        try:
            prices[kind.strip().lower()] = float(value)
        except ValueError:
            raise ConfigError(f"--price takes KIND=USD_PER_GPU_HOUR (e.g. h200=3.5), got {item!r}") from None
        if not kind.strip() or prices[kind.strip().lower()] <= 0:
            raise ConfigError(f"--price takes KIND=USD_PER_GPU_HOUR with a price above 0, got {item!r}")
    return prices


def price_for(row: Row, prices: dict[str, float]) -> float | None:
    matches = [price for kind, price in prices.items() if kind in row.device.lower()]
    return matches[0] if len(matches) == 1 else None


def markdown(table: Sequence[Row], work: dict, prices: dict[str, float], ttft_budget_ms: float | None = None,
             tpot_budget_ms: float | None = None) -> str:
    """The table and the one-line answers, as markdown."""
    priced = bool(prices)
    head = "| model | device | GPUs (TP × replicas) | avg output tok/s | ± stdev (runs) | tok/s per GPU | TTFT p50 ms | TPOT p50 ms |"
    rule = "|---|---|---|---|---|---|---|---|"
    if priced:
        head, rule = head + " $ per 1M output tokens |", rule + "---|"
    # Runs with different vLLM settings: a column with each row's settings beside the first row's.
    settings = len({row.flags for row in table}) > 1
    if settings:
        head, rule = head.replace("| avg output", "| vLLM settings (vs first row) | avg output", 1), rule + "---|"
    lines = [f"Workload: {', '.join(f'{k} {v}' for k, v in work.items())}", "", head, rule]
    for row in table:
        line = (f"| {row.model} | {row.device} | {row.devices} ({row.split}) | "
                + (f"{row.settings_beside(table[0])} | " if settings else "") +
                f"{row.mean_tok_s:,.1f} | {row.stdev_tok_s:,.1f} ({row.runs}) | {row.tok_s_per_device:,.1f} | "
                f"{row.median_ttft_ms:,.1f} | {row.median_tpot_ms:,.2f} |")
        if priced:
            price = price_for(row, prices)
            line += f" {row.cost_per_million(price):,.3f} |" if price else " — |"
        lines.append(line)
    lines += ["", *answers(table, prices, ttft_budget_ms, tpot_budget_ms)]
    return "\n".join(lines) + "\n"


def answers(table: Sequence[Row], prices: dict[str, float], ttft_budget_ms: float | None,
            tpot_budget_ms: float | None) -> list[str]:
    settings = len({row.flags for row in table}) > 1

    def name(row: Row) -> str:
        beside = row.settings_beside(table[0]) if settings else "—"
        return f"{row.model} on {row.devices} × {row.device} (TP {row.split})" + (
            f" with {beside}" if beside != "—" else "")

    out = []
    for model in sorted({row.model for row in table}):
        mine = [row for row in table if row.model == model]
        best = max(mine, key=lambda r: r.tok_s_per_device)
        out.append(f"- Most tok/s per GPU: {name(best)}, {best.tok_s_per_device:,.1f} tok/s per GPU.")
        if ttft_budget_ms is not None or tpot_budget_ms is not None:
            within = [r for r in mine if (ttft_budget_ms is None or r.median_ttft_ms <= ttft_budget_ms)
                      and (tpot_budget_ms is None or r.median_tpot_ms <= tpot_budget_ms)]
            budget = " and ".join(f"{label} p50 ≤ {value:g} ms" for label, value in
                                  (("TTFT", ttft_budget_ms), ("TPOT", tpot_budget_ms)) if value is not None)
            if within:
                pick = max(within, key=lambda r: r.tok_s_per_device)
                out.append(f"- Most tok/s per GPU within {budget}: {name(pick)}, {pick.tok_s_per_device:,.1f}.")
            else:
                out.append(f"- No layout of {model} met {budget}.")
        costed = [(row.cost_per_million(p), row) for row in mine if (p := price_for(row, prices))]
        if costed:
            cost, cheapest = min(costed, key=lambda item: item[0])
            out.append(f"- Cheapest per output token: {name(cheapest)}, ${cost:,.3f} per million.")
    return out


def limits_files(paths: Iterable[Path]) -> list[Path]:
    """The ``lab/benchmarks/gpu_limits.py`` results (``gpu-limits.json``) anywhere under the folders among PATHS."""
    return [file for path in map(Path, paths) if path.is_dir() for file in sorted(path.rglob(roofline.LIMITS_FILE))]


ROOFLINE_INTRO = (
    "Roofline: output tok/s against the decode bound (the bytes a step reads at the card's memory bandwidth, or "
    "its FLOPs, whichever takes longer, at the run's measured batch and mean context) and input tok/s against the "
    "prefill bound (the card's dense tensor throughput), as a share of the datasheet limits and of the limits "
    "lab/benchmarks/gpu_limits.py measured on the card (docs/performance.md, \"Roofline\").")


def _mean(values: Iterable[float | None]) -> float | None:
    values = list(values)
    return None if None in values else statistics.fmean(values)


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction:.1%}"


def _rooflines(runs: Sequence[tuple[Path, RunRecord]], measured: dict[str, roofline.Limits]) -> dict[tuple, list]:
    """Each run's roofline (or why it has none), grouped by the :func:`layout_key` of its row."""
    found: dict[tuple, list] = {}
    for _, record in runs:
        found.setdefault(layout_key(record), []).append(roofline.roofline(record, measured))
    return found


def _averaged(results: Sequence[roofline.Roofline]) -> dict:
    """A row's runs against their card, averaged over its repeats: what both the table and the JSON show."""
    return {
        "dtypes": results[0].served.dtypes,
        "decode_batch": _mean(r.decode_batch for r in results),
        "mean_context": _mean(r.mean_context for r in results),
        "decode_bound_tok_s": _mean(r.datasheet.decode_tok_s for r in results),
        "decode_limit": results[0].datasheet.decode_limit,
        "decode_fraction_of_datasheet": _mean(r.decode_fraction(r.datasheet) for r in results),
        "decode_fraction_of_measured": _mean(r.decode_fraction(r.measured) for r in results),
        "prefill_bound_tok_s": _mean(r.datasheet.prefill_tok_s for r in results),
        "prefill_fraction_of_datasheet": _mean(r.prefill_fraction(r.datasheet) for r in results),
        "prefill_fraction_of_measured": _mean(r.prefill_fraction(r.measured) for r in results),
    }


def document(runs: Sequence[tuple[Path, RunRecord]], table: Sequence[Row], work: dict, prices: dict[str, float],
             measured: dict[str, roofline.Limits]) -> dict:
    """The report for scripts (``tpserve report --json``): the workload and, per row, the facts of both tables
    under the run record's names and units; ``roofline`` is null where ``no_roofline`` says why."""
    found = _rooflines(runs, measured)
    out = []
    for row in table:
        price = price_for(row, prices)
        reasons = [r.reason for r in found[row.key] if isinstance(r, roofline.NoRoofline)]
        out.append({
            "model": row.model, "device": row.device, "tensor_parallel_size": row.tensor,
            "pipeline_parallel_size": row.pipeline, "replicas": row.replicas, "gpus": row.devices,
            "vllm_flags": dict(row.flags), "runs": row.runs, "mean_output_tok_s": row.mean_tok_s,
            "stdev_output_tok_s": row.stdev_tok_s, "output_tok_s_per_gpu": row.tok_s_per_device,
            "median_ttft_ms": row.median_ttft_ms, "median_tpot_ms": row.median_tpot_ms,
            "usd_per_million_output_tokens": row.cost_per_million(price) if price else None,
            "roofline": None if reasons else _averaged(found[row.key]), "no_roofline": reasons[0] if reasons else None,
        })
    return {"workload": work, "rows": out}


def roofline_markdown(runs: Sequence[tuple[Path, RunRecord]], table: Sequence[Row],
                      measured: dict[str, roofline.Limits]) -> str:
    """Each row's runs against their card's limits (:mod:`tpserve.roofline`), averaged over its repeats; a
    line saying why for rows without one (a CPU, a card without datasheet figures)."""
    found = _rooflines(runs, measured)
    settings = len({row.flags for row in table}) > 1
    lines, missing, cards = [], [], {}
    for row in table:
        results = [r for r in found[row.key] if isinstance(r, roofline.Roofline)]
        name = f"{row.model} on {row.devices} × {row.device} (TP {row.split})" + (
            f" with {row.settings_beside(table[0])}" if settings and row.settings_beside(table[0]) != "—" else "")
        if len(results) < len(found[row.key]):
            reason = next(r.reason for r in found[row.key] if isinstance(r, roofline.NoRoofline))
            missing.append(f"- No roofline for {name}: {reason}.")
            continue
        first, mean = results[0], _averaged(results)
        cards[first.spec.label] = (row.device, first.spec, measured.get(row.device.lower()))
        lines.append(
            f"| {row.model} | {row.device} | {row.devices} ({row.split}) | "
            + (f"{row.settings_beside(table[0])} | " if settings else "")
            + f"{mean['dtypes']} | {mean['decode_batch']:,.1f} | {mean['mean_context']:,.0f} | "
            f"{mean['decode_bound_tok_s']:,.0f} ({mean['decode_limit']}) | "
            f"{_percent(mean['decode_fraction_of_datasheet'])} | {_percent(mean['decode_fraction_of_measured'])} | "
            f"{mean['prefill_bound_tok_s']:,.0f} | {_percent(mean['prefill_fraction_of_datasheet'])} | "
            f"{_percent(mean['prefill_fraction_of_measured'])} |")
    out = [ROOFLINE_INTRO if lines else "Roofline: none of these runs has one.", ""]
    if lines:
        head = ("| model | device | GPUs (TP × replicas) | " + ("vLLM settings (vs first row) | " if settings else "")
                + "weights / KV / matmul | decode batch | mean context | decode bound tok/s (datasheet) | "
                "decode % of datasheet | decode % of measured | prefill bound tok/s (datasheet) | "
                "prefill % of datasheet | prefill % of measured |")
        out += [head, "|" + "---|" * head.count(" | ") + "---|", *lines, ""]
    for label, (device, spec, limits) in cards.items():
        fp8 = f", {spec.fp8_tflops:,g} fp8" if spec.fp8_tflops is not None else ", no fp8 tensor cores"
        line = (f"- {label} ({device}): datasheet {spec.memory_gb_s:,g} GB/s, {spec.bf16_tflops:,g} TFLOPS bf16{fp8} "
                f"({spec.source})")
        if limits:
            tflops = ", ".join(f"{value:,.1f} {dtype}" for dtype, value in sorted(limits.tflops.items()))
            line += f"; measured {limits.memory_gb_s:,.0f} GB/s, TFLOPS {tflops or 'none'} ({limits.source})"
        else:
            line += f"; not measured (no {roofline.LIMITS_FILE} for it among the reported paths)"
        out.append(line + ".")
    return "\n".join(out + missing) + "\n"


def plot(table: Sequence[Row], path: Path) -> Path:
    """tok/s against GPUs per model and device, and tok/s per GPU, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (total, per_gpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    # One line per model, device and replica count: tensor parallelism alone, or N replicas of it.
    # With vLLM settings, one line per settings too.
    for key in sorted({(row.model, row.device, row.replicas, row.flags) for row in table}, key=str):
        series = sorted((r for r in table if (r.model, r.device, r.replicas, r.flags) == key), key=lambda r: r.devices)
        gpus = [r.devices for r in series]
        label = f"{key[0]} ({key[1]})" + (f", {key[2]} replicas" if key[2] > 1 else ", tensor parallel")
        label += f", {series[0].settings_beside(table[0])}" if len({r.flags for r in table}) > 1 else ""
        total.errorbar(gpus, [r.mean_tok_s for r in series], yerr=[r.stdev_tok_s for r in series], marker="o",
                       capsize=3, label=label)
        per_gpu.plot(gpus, [r.tok_s_per_device for r in series], marker="o", label=label)
    for axes, title in ((total, "output tok/s"), (per_gpu, "output tok/s per GPU")):
        axes.set_xlabel("GPUs")
        axes.set_title(title)
        axes.set_xticks(sorted({r.devices for r in table}))
        axes.grid(alpha=0.3)
    total.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
