"""The figures of a GPU tuning session (``tests/gpu/tune_on_host.py``'s ``tune.json`` files), printed and plotted.

For every phase that ran: its layout and settings, the load test's and ``vllm bench serve``'s output
tok/s per round, per GPU, the latency medians, the server's own token count over the same window, MFU,
and the ratio of each phase's per-GPU output to vLLM's defaults for the same model. For every round
where both clients ran: load test ÷ bench, the median over the rounds (the instrument's agreement).

    python benchmarks/tune_summary.py results/20261130-h200x2-tune/call*/tune.json [--plot docs/tune.png]

MFU = (prompt + output) tok/s × 2 × parameters ÷ (GPUs × the card's peak dense bf16 FLOP/s).
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from tpserve.modelconfig import parameter_count
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
        runs += [run | {"source": str(path)} for run in document["runs"] if "error" not in run["figures"]]
    return phases, runs


def summarize(phases: dict[str, dict], runs: list[dict], card: str = "NVIDIA H200") -> list[dict]:
    rows = []
    for name, phase in phases.items():
        spec = phase["phase"]
        gpus = spec["tensor"] * len(spec["settings"])
        mine = [r for r in runs if r["phase"] == name]
        for run in mine:
            figures, server = run["figures"], run["server"]
            total = figures["total_token_throughput"]
            rows.append({
                "phase": name, "shape": spec["shape"], "gpus": gpus, "tensor": spec["tensor"],
                "replicas": len(spec["settings"]), "settings": " ".join(spec["settings"][0]) or "vLLM defaults",
                "client": run["client"], "round": run["round"], "source": run["source"],
                "output_tok_s": figures["output_throughput"], "output_tok_s_per_gpu": figures["output_throughput"] / gpus,
                "total_tok_s": total, "median_ttft_ms": figures["median_ttft_ms"],
                "median_tpot_ms": figures["median_tpot_ms"], "server_generation_tokens": server["generation_tokens"],
                "client_output_tokens": figures["output_tokens"],
                "mfu": total * 2 * parameters(spec["shape"]) / (gpus * PEAK_BF16[card]),
                "startup_s": phase["startup_s"]})
    return rows


def instrument(rows: list[dict]) -> dict[str, dict]:
    """Per phase: load test ÷ bench for each round where both ran, and their median."""
    pairs: dict[str, dict] = defaultdict(dict)
    for row in rows:
        pairs[(row["phase"], row["source"], row["round"])][row["client"]] = row["output_tok_s"]
    ratios: dict[str, list] = defaultdict(list)
    for (phase, _source, _round), both in pairs.items():
        if {"loadtest", "bench"} <= set(both):
            ratios[phase].append(both["loadtest"] / both["bench"])
    return {phase: {"rounds": len(r), "ratios": r, "median": statistics.median(r)} for phase, r in ratios.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tune_json", nargs="+", type=Path)
    parser.add_argument("--plot", type=Path, help="write a bar chart of per-GPU output tok/s here")
    args = parser.parse_args()
    phases, runs = load_runs(args.tune_json)
    rows = summarize(phases, runs)
    print(f"{'phase':<28} {'from':<6} {'client':<8} {'rnd':>3} {'out tok/s':>9} {'/GPU':>7} {'TTFT ms':>8} {'TPOT ms':>8} "
          f"{'MFU':>6} {'server=client':>13}")
    for row in rows:
        same = row["server_generation_tokens"] == row["client_output_tokens"]
        print(f"{row['phase']:<28} {Path(row['source']).parent.name:<6} {row['client']:<8} {row['round']:>3} {row['output_tok_s']:>9.0f} "
              f"{row['output_tok_s_per_gpu']:>7.0f} {row['median_ttft_ms']:>8.0f} {row['median_tpot_ms']:>8.2f} "
              f"{row['mfu']:>6.1%} {same!s:>13}")
    print("\nper GPU, median over every run of the phase, against vLLM's defaults of the same model:")
    medians = {name: statistics.median(r["output_tok_s_per_gpu"] for r in rows if r["phase"] == name)
               for name in phases}
    for name, value in medians.items():
        shape = phases[name]["phase"]["shape"]
        base = next((v for n, v in medians.items() if phases[n]["phase"]["shape"] == shape and
                     not any(phases[n]["phase"]["settings"][0]) and phases[n]["phase"]["tensor"] > 1), None)
        ratio = f"{value / base:.2f} ×" if base else "no defaults run"
        print(f"  {name:<28} {value:>7.0f} output tok/s per GPU  {ratio}")
    print("\nthe instrument: load test ÷ vllm bench serve, output tok/s, same server, alternating order:")
    for phase, result in instrument(rows).items():
        print(f"  {phase:<28} {result['rounds']} rounds: " + ", ".join(f"{r:.3f}" for r in result["ratios"])
              + f"; median {result['median']:.3f}")
    if args.plot:
        plot(medians, phases, args.plot)
        print(f"\nplot: {args.plot}")


def plot(medians: dict[str, float], phases: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(medians)
    labels = [f"{phases[n]['phase']['shape']}\nTP {phases[n]['phase']['tensor']} × "
              f"{len(phases[n]['phase']['settings'])}\n" + ("fp8" if "fp8" in n else "vLLM defaults") for n in names]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(labels, [medians[n] for n in names], color=["#888" if "defaults" in n else "#2a7" for n in names])
    ax.bar_label(bars, fmt="%.0f")
    ax.set_ylabel("output tok/s per GPU")
    ax.margins(y=0.12)
    ax.set_title("2 × H200, vLLM 0.26.0: 1,000 prompts, 512 in / 256 out, 256 in flight")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
