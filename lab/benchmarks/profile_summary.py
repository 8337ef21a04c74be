"""Where a vLLM server's GPU time goes, from a torch profiler trace of its engine steps.

``lab/gpu/tune_on_host.py`` profiles a window of engine steps under load (vLLM's ``--profiler-config`` with
``detailed_trace_annotation``): each step is a CPU range named by what it scheduled, e.g.
``execute_16640_context_32(sq16384sk16384...)_generation_256(sq256sk163840...)``. Every GPU kernel is tied to
the CPU call that launched it (the trace's correlation ids; the kernels of one CUDA-graph replay share the
replay's), and so to its step. Printed:

- the window: its steps, the GPU's busy time (the union of its kernels) against the window's length;
- per kind of step (decode only, or with prompt tokens): steps, GPU time per step, and how it splits
  between attention, matrix multiplications, communication and the rest;
- for decode-only steps, the rate at which attention read the KV cache: the tokens of context it attended
  to (``sk``) × bytes per token ÷ attention time (``--kv-bytes-per-token``; the model's layers × 2 × KV
  heads × head size × the cache's bytes per value); and attention's time fitted against the context, a
  straight line: what a step costs whatever its context, and what each further token of context costs;
- the kernels that took the most time.

    python lab/benchmarks/profile_summary.py results/.../profile/7b-tp1-fp8 [--kv-bytes-per-token 262144]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

# Kernel families by name, first match wins. torch.compile's generated pointwise and reduction kernels (norms,
# activations, the fp8 quantization of a matmul's input) come first: their names list the operations they fuse,
# "scaled_mm" among them. Attention includes the kernel that writes new keys and values into the cache; matrix
# multiplications include fp8 ones (cutlass, cuBLAS's nvjet).
CATEGORIES = (
    ("fused elementwise", re.compile(r"^triton_(poi|red|per)_")),
    ("attention", re.compile(r"flash|fmha|attn|attention|paged|reshape_and_cache|concat_and_cache", re.IGNORECASE)),
    ("matmul", re.compile(r"gemm|cutlass|xmma|nvjet|scaled_mm|matmul|cublas|sm90_|wgmma", re.IGNORECASE)),
    ("communication", re.compile(r"nccl|all_?reduce|cross_device|allgather", re.IGNORECASE)),
)
STEP = re.compile(r"^execute_(?:(\d+)_)?context_(\d+)\(([^)]*)\)_generation_(\d+)\(([^)]*)\)$")
DETAIL = re.compile(r"sq(\d+)sk(\d+)")


@dataclass
class Step:
    name: str
    start: float  # CPU range, µs
    end: float
    context_requests: int
    context_tokens: int
    generation_requests: int
    generation_tokens: int
    generation_kv_tokens: int | None  # sk: tokens of context the decoding requests attend to; None without detail
    kernels: list[dict] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "decode only" if self.context_requests == 0 else "with prompt tokens"

    def gpu_span(self) -> float:
        return max(k["ts"] + k["dur"] for k in self.kernels) - min(k["ts"] for k in self.kernels)


def category(name: str) -> str:
    for label, pattern in CATEGORIES:
        if pattern.search(name):
            return label
    return "other"


def parse_step(name: str, start: float, end: float) -> Step | None:
    match = STEP.match(name)
    if not match:
        return None
    _, ctx_n, ctx, gen_n, gen = match.groups()
    ctx_detail, gen_detail = DETAIL.match(ctx), DETAIL.match(gen)
    return Step(name, start, end, int(ctx_n), int(ctx_detail.group(1) if ctx_detail else ctx or 0), int(gen_n),
                int(gen_detail.group(1) if gen_detail else gen or 0),
                int(gen_detail.group(2)) if gen_detail else None)


def read_trace(folder: Path) -> dict:
    paths = sorted(folder.glob("*.pt.trace.json.gz")) + sorted(folder.glob("*.pt.trace.json"))
    if not paths:
        raise SystemExit(f"no torch profiler trace (*.pt.trace.json[.gz]) in {folder}")
    path = paths[0]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        return json.load(handle)


def steps_of(trace: dict) -> tuple[list[Step], list[dict], list[dict]]:
    """The engine steps with their kernels, the kernels no step launched, and every kernel."""
    events = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    steps = sorted((s for e in events if e.get("cat") == "user_annotation"
                    if (s := parse_step(e["name"], e["ts"], e["ts"] + e["dur"]))), key=lambda s: s.start)
    launches = {e["args"]["correlation"]: e["ts"] for e in events
                if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {})}
    kernels = [e for e in events if e.get("cat") == "kernel"]
    starts = [s.start for s in steps]
    outside = []
    for kernel in kernels:
        launched = launches.get(kernel.get("args", {}).get("correlation"))
        index = bisect_right(starts, launched) - 1 if launched is not None else -1
        if index >= 0 and launched <= steps[index].end:
            steps[index].kernels.append(kernel)
        else:
            outside.append(kernel)
    return [s for s in steps if s.kernels], outside, kernels


def busy(kernels: list[dict]) -> float:
    """The time at least one kernel ran (the union of their intervals), µs."""
    total, end = 0.0, float("-inf")
    for kernel in sorted(kernels, key=lambda k: k["ts"]):
        start, stop = kernel["ts"], kernel["ts"] + kernel["dur"]
        if start > end:
            total += stop - start
            end = stop
        elif stop > end:
            total += stop - end
            end = stop
    return total


def split(kernels: list[dict]) -> dict[str, float]:
    times: dict[str, float] = defaultdict(float)
    for kernel in kernels:
        times[category(kernel["name"])] += kernel["dur"]
    return times


def attention_fit(steps: list[Step], kv_bytes_per_token: int | None) -> dict:
    """Attention's time a decode step against the context it attends to, fitted by least squares: a cost per
    step that no context explains, and one per token of context (its reciprocal × bytes per token: the rate at
    which each further token's KV cache is read). Empty without the steps' context sizes or their spread."""
    points = [(s.generation_kv_tokens, split(s.kernels).get("attention", 0.0)) for s in steps
              if s.generation_kv_tokens is not None]
    xs = [x for x, _ in points]
    if len(points) < 3 or max(xs) < 1.1 * min(xs):
        return {}
    mean_x, mean_y = sum(xs) / len(xs), sum(y for _, y in points) / len(points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x in xs)
    fit = {"attention_fit_us_per_step": mean_y - slope * mean_x, "attention_fit_us_per_kv_token": slope,
           "attention_fit_kv_tokens": (min(xs), max(xs))}
    if kv_bytes_per_token and slope > 0:
        fit["attention_fit_bytes_per_s"] = kv_bytes_per_token / (slope * 1e-6)
    return fit


def summary(trace: dict, kv_bytes_per_token: int | None) -> dict:
    steps, outside, kernels = steps_of(trace)
    if not kernels:
        return {"kernels": 0}
    window = max(k["ts"] + k["dur"] for k in kernels) - min(k["ts"] for k in kernels)
    kinds: dict[str, list[Step]] = defaultdict(list)
    for step in steps:
        kinds[step.kind].append(step)
    result = {"kernels": len(kernels), "steps": len(steps), "window_us": window, "busy_us": busy(kernels),
              "outside_steps_us": sum(k["dur"] for k in outside), "kinds": {}}
    for kind, mine in kinds.items():
        mine_kernels = [k for s in mine for k in s.kernels]
        entry = {"steps": len(mine), "gpu_span_us_per_step": sum(s.gpu_span() for s in mine) / len(mine),
                 "kernel_us_per_step": sum(k["dur"] for k in mine_kernels) / len(mine),
                 "split_us_per_step": {c: t / len(mine) for c, t in split(mine_kernels).items()},
                 "context_tokens_per_step": sum(s.context_tokens for s in mine) / len(mine),
                 "generation_tokens_per_step": sum(s.generation_tokens for s in mine) / len(mine)}
        if all(s.generation_kv_tokens is not None for s in mine):
            entry["generation_kv_tokens_per_step"] = sum(s.generation_kv_tokens for s in mine) / len(mine)
            attention = entry["split_us_per_step"].get("attention")
            if kv_bytes_per_token and attention and kind == "decode only":
                entry["kv_read_bytes_per_s"] = entry["generation_kv_tokens_per_step"] * kv_bytes_per_token / (
                    attention * 1e-6)
        if kind == "decode only":
            entry |= attention_fit(mine, kv_bytes_per_token)
        result["kinds"][kind] = entry
    top: dict[str, list[float]] = defaultdict(list)
    for kernel in kernels:
        top[kernel["name"]].append(kernel["dur"])
    result["top"] = sorted(((sum(d), len(d), name) for name, d in top.items()), reverse=True)[:15]
    return result


def report(result: dict) -> str:
    """What :func:`summary` found, as the lines the script prints."""
    lines: list[str] = []
    out = lines.append
    if not result["kernels"]:
        return "no GPU kernels in the trace (a CPU server's trace holds CPU operators only)\n"
    out(f"window: {result['steps']} engine steps, {result['window_us'] / 1e3:,.1f} ms from the first kernel to "
        f"the last; GPU busy {result['busy_us'] / 1e3:,.1f} ms ({result['busy_us'] / result['window_us']:.1%}); "
        f"kernels launched outside a step: {result['outside_steps_us'] / 1e3:,.1f} ms")
    for kind, entry in result["kinds"].items():
        kernel_time = entry["kernel_us_per_step"]
        parts = ", ".join(f"{c} {t / 1e3:.2f} ms ({t / kernel_time:.0%})"
                          for c, t in sorted(entry["split_us_per_step"].items(), key=lambda item: -item[1]))
        out(f"\n{kind}: {entry['steps']} steps, {entry['context_tokens_per_step']:,.0f} prompt + "
            f"{entry['generation_tokens_per_step']:,.0f} decode tokens a step")
        out(f"  GPU time a step: {entry['gpu_span_us_per_step'] / 1e3:.2f} ms from its first kernel to its last, "
            f"kernels {kernel_time / 1e3:.2f} ms: {parts}")
        if "generation_kv_tokens_per_step" in entry:
            out(f"  decoding requests attend to {entry['generation_kv_tokens_per_step']:,.0f} tokens of context a step")
        if "kv_read_bytes_per_s" in entry:
            out(f"  KV cache read by attention: {entry['kv_read_bytes_per_s'] / 1e12:.2f} TB/s "
                "(its bytes ÷ attention's whole time)")
        if "attention_fit_us_per_step" in entry:
            low, high = entry["attention_fit_kv_tokens"]
            rate = entry.get("attention_fit_bytes_per_s")
            out(f"  attention a step ≈ {entry['attention_fit_us_per_step'] / 1e3:.2f} ms + "
                f"{entry['attention_fit_us_per_kv_token'] * 100:.2f} ms per 100,000 tokens of context "
                f"(least squares over {low:,}–{high:,} tokens)"
                + (f": each further token's KV cache read at {rate / 1e12:.2f} TB/s" if rate else ""))
    out("\nkernels with the most time:")
    for total, count, name in result["top"]:
        out(f"  {total / 1e3:9.1f} ms  {count:6d} ×  {category(name):<13} {name[:110]}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="the profile's folder (OUT_DIR/profile/PHASE)")
    parser.add_argument("--kv-bytes-per-token", type=int,
                        help="KV cache bytes per token of context over all layers (7b, fp8 cache: 262144)")
    args = parser.parse_args()
    print(report(summary(read_trace(args.folder), args.kv_bytes_per_token)), end="")


if __name__ == "__main__":
    main()
