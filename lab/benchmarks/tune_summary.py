"""The figures of a GPU tuning session (``lab/gpu/tune_on_host.py``'s ``tune.json`` files), printed and plotted.

For every phase that ran: its layout and settings, the load test's and ``vllm bench serve``'s output
tok/s per round, per GPU, the latency medians, the server's own token count over the same window, MFU,
and the ratio of each phase's per-GPU output to vLLM's defaults for the same model. For every round
where both clients ran: load test ÷ bench, the median over the rounds (the instrument's agreement).

    python lab/benchmarks/tune_summary.py results/20261130-h200x2-tune/call*/tune.json [--plot docs/tune.png]

MFU = (prompt + output) tok/s × 2 × parameters ÷ (GPUs × the card's peak dense bf16 FLOP/s).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from tpserve.fetch.modelconfig import parameter_count
from tpserve.shapes import find_shape

# NVIDIA H200 SXM: 989.4 TFLOP/s dense bf16 (1,979 with 2:4 sparsity), the same tensor cores as the H100 SXM.
PEAK_BF16 = {"NVIDIA H200": 989.4e12}


def parameters(shape: str) -> int:
    return parameter_count(find_shape(shape).config())


def load_runs(paths: list[Path]) -> tuple[dict[str, dict], list[dict]]:
    """The phases that started (by name; a later start of the same name wins) and every run, in order."""
    phases, runs = {}, []
    for path in paths:
        document = json.loads(path.read_text())
        for phase in document["phases"]:
            if phase.get("startup_s") is not None:
                phases[phase["phase"]["name"]] = phase | {"source": str(path)}
        # A run from before per-run loads were recorded carried the session's whole workload.
        whole = {"num_requests": document["workload"]["num_requests"], "concurrency": document["workload"]["concurrency"]}
        runs += [{"load": whole} | run | {"source": str(path)} for run in document["runs"] if "error" not in run["figures"]]
    return phases, runs


def point_of(spec: dict, run: dict) -> tuple[str, int, str, int]:
    """The layout, GPUs, settings and requests in flight a run measured.

    A ``shared`` run (and every run of a session before modes existed) loads the phase's whole layout; an
    ``each-full`` or ``each-share`` run loads one replica alone (``lab/gpu/tune_on_host.py``).
    """
    tensor, replicas = spec["tensor"], len(spec["settings"])
    mode = run.get("mode", "shared")
    if mode == "shared":
        layout, gpus, flags = (f"TP {tensor}" if replicas == 1 else f"{replicas} × TP {tensor}"), tensor * replicas, spec["settings"][0]
    else:
        layout, gpus, flags = f"TP {tensor}", tensor, spec["settings"][run["replica"]]
    return layout, gpus, " ".join(flags) or "vLLM defaults", run["load"]["concurrency"]


# Runs that measure something other than the session's workload on an unhindered server: a profiled run
# (the profiler slows the server) and a named workload's run (e.g. chat), listed apart.
APART = ("profile", "workload")


def summarize(phases: dict[str, dict], runs: list[dict], card: str = "NVIDIA H200") -> list[dict]:
    rows = []
    for name, phase in phases.items():
        spec = phase["phase"]
        for run in (r for r in runs if r["phase"] == name and r.get("mode") not in APART):
            figures, server = run["figures"], run["server"]
            layout, gpus, settings, in_flight = point_of(spec, run)
            total = figures["total_token_throughput"]
            rows.append({
                "phase": name, "shape": spec["shape"], "gpus": gpus, "tensor": spec["tensor"], "layout": layout,
                "settings": settings, "in_flight": in_flight, "mode": run.get("mode", "shared"),
                "replica": run.get("replica"), "point": f"{spec['shape']} {layout}, {in_flight} in flight, {settings}",
                "client": run["client"], "round": run["round"], "source": run["source"],
                "output_tok_s": figures["output_throughput"], "output_tok_s_per_gpu": figures["output_throughput"] / gpus,
                "total_tok_s": total, "median_ttft_ms": figures["median_ttft_ms"],
                "median_tpot_ms": figures["median_tpot_ms"], "server_generation_tokens": server["generation_tokens"],
                "client_output_tokens": figures["output_tokens"],
                "mfu": total * 2 * parameters(spec["shape"]) / (gpus * PEAK_BF16[card]),
                "startup_s": phase["startup_s"]})
    return rows


def points(rows: list[dict]) -> dict[str, dict]:
    """Per measured point: its runs' medians (both clients, every round and replica)."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        grouped[row["point"]].append(row)
    result = {}
    for point, mine in grouped.items():
        first = mine[0]
        result[point] = {key: first[key] for key in ("shape", "layout", "gpus", "settings", "in_flight")} | {
            "runs": len(mine), **{key: statistics.median(r[key] for r in mine)
                                  for key in ("output_tok_s_per_gpu", "median_ttft_ms", "median_tpot_ms", "mfu")}}
    return result


def baseline(table: dict[str, dict], point: dict, same_layout: bool) -> dict | None:
    """vLLM's defaults for POINT's model: at the same layout and load (SAME_LAYOUT), or else the issue's
    baseline, the model's tensor-parallel layout over more than one GPU with the whole load."""
    for other in table.values():
        if other["shape"] != point["shape"] or other["settings"] != "vLLM defaults":
            continue
        if same_layout and (other["layout"], other["in_flight"]) == (point["layout"], point["in_flight"]):
            return other
        if not same_layout and other["gpus"] > 1 and other["layout"].startswith("TP "):
            return other
    return None


def instrument(rows: list[dict]) -> dict[str, dict]:
    """Per point: load test ÷ bench for each round where both ran on the same servers, and their median."""
    pairs: dict[tuple, dict] = defaultdict(dict)
    for row in rows:
        pairs[(row["point"], row["phase"], row["source"], row["round"], row["replica"])][row["client"]] = row["output_tok_s"]
    ratios: dict[str, list] = defaultdict(list)
    for (point, *_), both in pairs.items():
        if {"loadtest", "bench"} <= set(both):
            ratios[point].append(both["loadtest"] / both["bench"])
    return {point: {"rounds": len(r), "ratios": r, "median": statistics.median(r)} for point, r in ratios.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tune_json", nargs="+", type=Path)
    parser.add_argument("--plot", type=Path, help="write a bar chart of per-GPU output tok/s here")
    args = parser.parse_args()
    phases, runs = load_runs(args.tune_json)
    rows = summarize(phases, runs)
    print(f"{'phase':<34} {'from':<6} {'mode':<10} {'client':<8} {'rnd':>3} {'rep':>3} {'out tok/s':>9} {'/GPU':>7} "
          f"{'TTFT ms':>8} {'TPOT ms':>8} {'MFU':>6} {'server=client':>13}")
    for row in rows:
        same = row["server_generation_tokens"] == row["client_output_tokens"]
        replica = "" if row["replica"] is None else row["replica"]
        print(f"{row['phase']:<34} {Path(row['source']).parent.name:<6} {row['mode']:<10} {row['client']:<8} "
              f"{row['round']:>3} {replica!s:>3} {row['output_tok_s']:>9.0f} {row['output_tok_s_per_gpu']:>7.0f} "
              f"{row['median_ttft_ms']:>8.0f} {row['median_tpot_ms']:>8.2f} {row['mfu']:>6.1%} {same!s:>13}")
    table = points(rows)
    print("\nper point, medians over its runs; against vLLM's defaults at the model's TP layout (the issue's "
          "baseline) and at the same layout and load:")
    for point, figures in table.items():
        ratios = []
        for same_layout, what in ((False, "vs defaults at TP"), (True, "vs defaults, same layout")):
            base = baseline(table, figures, same_layout)
            if base and base is not figures:
                ratios.append(f"{figures['output_tok_s_per_gpu'] / base['output_tok_s_per_gpu']:.2f} × {what}")
        print(f"  {point}\n      {figures['runs']} runs: {figures['output_tok_s_per_gpu']:,.0f} output tok/s per GPU, "
              f"TTFT {figures['median_ttft_ms']:,.0f} ms, TPOT {figures['median_tpot_ms']:.1f} ms, MFU "
              f"{figures['mfu']:.1%}" + "".join(f"; {r}" for r in ratios))
    print("\nthe instrument: load test ÷ vllm bench serve, output tok/s, same server, alternating order:")
    for point, result in instrument(rows).items():
        print(f"  {point}\n      {result['rounds']} rounds: " + ", ".join(f"{r:.3f}" for r in result["ratios"])
              + f"; median {result['median']:.3f}")
    apart = [r for r in runs if r.get("mode") in APART and r["phase"] in phases]
    if apart:
        print("\nruns apart from the points above (a profiled run; a named workload):")
    for run in apart:
        figures = run["figures"]
        print(f"  {run['phase']} {run['mode']} {run.get('workload', '')}: {run['load']['num_requests']} requests, "
              f"{run['load']['concurrency']} in flight, {figures['output_throughput']:,.0f} output tok/s, TTFT "
              f"{figures['median_ttft_ms']:,.0f} ms, TPOT {figures['median_tpot_ms']:.1f} ms, tokens client "
              f"{figures['output_tokens']:,} server {run['server']['generation_tokens']:,.0f}")
    for line in tune_cli_lines(args.tune_json):
        print(line)
    if args.plot:
        plot(table, args.plot)
        print(f"\nplot: {args.plot}")


# tpserve's fp8 profile as tpserve serve --settings fp8 resolves it for a float16 model (lab/gpu/tune_on_host.py);
# until the second one-GPU session (results/20261201b-h200x1-tune) it added --max-num-batched-tokens 16384 too.
FP8_PROFILE = "--dtype bfloat16 --kv-cache-dtype fp8 --quantization fp8"


def tune_cli_lines(paths: list[Path]) -> list[str]:
    """The ``tpserve tune`` searches the sessions ran (phases with ``tune_cli``): each candidate, then the winner."""
    lines = []
    for path in paths:
        for phase in json.loads(path.read_text())["phases"]:
            if not phase["phase"].get("tune_cli"):
                continue
            name = phase["phase"]["name"]
            search = path.parent / "tune-cli" / name / "tune.json"
            lines.append(f"\ntpserve tune ({name}, exit status {phase.get('exit_status')}, {phase.get('wall_s')} s): "
                         + " ".join(phase["phase"]["tune_cli"]))
            if not search.is_file():
                lines.append(f"  no {search.name}: {phase.get('stopped') or 'the search wrote none'}")
                continue
            document = json.loads(search.read_text())
            for candidate in document["candidates"]:
                figures = (f"{candidate['output_tok_s_per_gpu']:,.0f} output tok/s per GPU, TTFT "
                           f"{candidate['median_ttft_ms']:,.0f} ms, TPOT {candidate['median_tpot_ms']:.1f} ms"
                           if candidate.get("output_tok_s_per_gpu") is not None else "not measured")
                lines.append(f"  {candidate['label']} ({candidate['phase']}): {figures}; {candidate['status']}")
            ratio = document["ratio_to_defaults"]
            lines.append(f"  winner: {document['winner']['label'] if document['winner'] else 'none'}"
                         + (f", {ratio:.2f} × vLLM's defaults" if ratio is not None else "")
                         + f"; {document['server_starts']} server starts, {document['runs']} runs"
                         + (f"; stopped: {document['stopped']}" if document["stopped"] else ""))
    return lines


# Flags in a bar's label by what they do, where their own spelling would not fit under a bar.
SHORT_FLAGS = {"--attention-backend TRITON_ATTN": "Triton attention", "--attention-backend FLASHINFER": "FlashInfer attention",
               '--attention-config {"disable_flashinfer_q_quantization": true}': "bf16 queries",
               '--attention-config {"flash_attn_max_num_splits_for_cuda_graph": 1}': "one attention split"}


def short(settings: str) -> str:
    """A bar's settings in a few words: defaults, fp8 (the profile), fp8 + what else, or the flags, one per line."""
    if settings == "vLLM defaults":
        return "defaults"
    head, rest = ("fp8", settings.removeprefix(FP8_PROFILE)) if settings.startswith(FP8_PROFILE) else ("", settings)
    for flags, words in SHORT_FLAGS.items():
        rest = rest.replace(flags, f"--{words}")
    parts = [part.strip() for part in rest.split("--") if part.strip()]
    if not head:
        return "\n".join(parts)
    return "\n".join([head, *(f"+ {part}" for part in parts)])


def plot(table: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = list(table.values())
    labels = [f"{f['shape'].removeprefix('llama-2-')} {f['layout']}\n{f['in_flight']} in flight\n{short(f['settings'])}"
              for f in figures]
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(figures)), 4.5))
    bars = ax.bar(labels, [f["output_tok_s_per_gpu"] for f in figures],
                  color=["#888" if f["settings"] == "vLLM defaults" else "#2a7" for f in figures])
    ax.bar_label(bars, fmt="%.0f")
    ax.set_ylabel("output tok/s per GPU")
    ax.tick_params(axis="x", labelsize=8)
    ax.margins(y=0.12)
    ax.set_title("H200, vLLM 0.26.0: 1,000 prompts, 512 in / 256 out (medians)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
