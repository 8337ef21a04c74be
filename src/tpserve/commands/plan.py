"""``tpserve plan``: size a model on GPUs of one kind before renting them, and print the plan."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from tpserve.commands import CacheDir, Revision, default_cache_dir
from tpserve.fetch.errors import TpserveError

if TYPE_CHECKING:
    from tpserve.plan import Plan
    from tpserve.recommend import Recommendation
    from tpserve.settings import Choice


def plan(
    model: Annotated[str, typer.Argument(
        help="Catalog name (e.g. llama-2-70b), model folder, config.json, or a repo id fetched before.")],
    gpu: Annotated[str, typer.Option(
        help="GPU kind: a10, l4, a100-40gb, a100-80gb, h100, h200, b200 or mi300x.")],
    gpus_per_node: Annotated[int, typer.Option(help="GPUs in a node; tensor parallel stays in one.")] = 8,
    context: Annotated[int | None, typer.Option(
        help="Tokens per sequence, vLLM's --max-model-len (default: the model's maximum, as vLLM).")] = None,
    dtype: Annotated[str, typer.Option(
        help="Weights: auto (the settings profile's: fp8 under --settings fp8; else the config's), fp16, bf16, "
             "fp8, int8.")] = "auto",
    kv_dtype: Annotated[str, typer.Option(
        help="KV cache: auto (the profile's: fp8 under --settings fp8; else 16-bit, vLLM's), fp16, bf16, "
             "fp8.")] = "auto",
    gpu_memory_utilization: Annotated[float | None, typer.Option(
        help="Fraction of each GPU vLLM may use (default: 0.92, vLLM 0.26's).")] = None,
    revision: Revision = "main",
    cache_dir: CacheDir = None,
    settings: Annotated[str, typer.Option(
        help="Settings profile to recommend: tuned, fp8 (changes outputs) or vllm (docs/settings.md).")] = "tuned",
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Size MODEL on GPUs of one kind before renting them: how many it needs, and what each layout holds.

    Shows the weights, the KV cache per token, the tensor-parallel sizes that split the heads, the
    fewest GPUs that fit (pipeline stages across nodes when one node is not enough), and per layout
    the KV-cache tokens and concurrent sequences at the context length; for each layout that fits, the
    settings profile's flags and the `tpserve serve` command and chart values that serve it. The profile's
    flags size the plan too: --settings fp8 counts fp8 weights (and their peak while vLLM quantizes them at
    load) and an fp8 KV cache. docs/plan.md has the memory model. Example:

        tpserve plan llama-2-70b --gpu h200 --settings fp8
    """
    from tpserve.catalog import gpu_kind
    from tpserve.fetch.modelconfig import parameter_count
    from tpserve.plan import GPU_MEMORY_UTILIZATION, find_model_config, make_plan
    from tpserve.recommend import recommend
    from tpserve.settings import choose, measured_best, sized_dtypes

    source, kind = find_model_config(model, cache_dir or default_cache_dir(), revision), gpu_kind(gpu)
    choice = choose(settings, parameter_count(dict(source.config)), kind.memory_bytes)
    profile_dtype, profile_kv_dtype = sized_dtypes(choice.flags)
    result = make_plan(source, kind, gpus_per_node=gpus_per_node, context=context,
                       dtype=profile_dtype if dtype == "auto" else dtype,
                       kv_dtype=profile_kv_dtype if kv_dtype == "auto" else kv_dtype,
                       utilization=GPU_MEMORY_UTILIZATION if gpu_memory_utilization is None else gpu_memory_utilization)

    recommendations = recommend(result, source.serve_model or source.name, settings)
    measured = measured_best(result.size.parameters, result.gpu.memory_bytes)
    if as_json:
        from tpserve.startup import READY_BASIS

        ready = {item.name: asdict(ready_estimate(result, item)) for item in result.layouts if item.fits}
        document = result.to_dict() | {
            "time_to_ready": {"basis": READY_BASIS, "layouts": ready},
            "settings": {"profile": choice.profile, "flags": dict(choice.flags), "reason": choice.reason},
            "recommendations": [asdict(item) for item in recommendations], "measured": measured}
        typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        console = Console(soft_wrap=True)
        print_plan(result, console)
        if (profile_dtype, profile_kv_dtype) != ("auto", "auto"):
            console.print(f"sized for --settings {settings}: --dtype {profile_dtype} --kv-dtype {profile_kv_dtype}"
                          " (a --dtype or --kv-dtype given here wins)", highlight=False)
        print_recommendations(choice, recommendations, console)
        for line in measured:
            console.print(line, highlight=False, markup=False)
    if result.minimum is None:
        last = result.layouts[-1]
        raise TpserveError(f"{result.model} fits on no layout of {result.gpu.label}: at {last.name}, "
                           f"{last.reason}")


def print_plan(plan: Plan, console: Console) -> None:
    """The plan as people read it: the model's numbers, a table of layouts, the minimum and why less fails."""
    from rich.markup import escape
    from rich.table import Table

    from tpserve.catalog import GiB
    from tpserve.plan import gib

    size, gpu, context = plan.size, plan.gpu, plan.context_tokens
    kv_dtype = "16-bit (auto)" if size.kv_cache_dtype == "auto" else size.kv_cache_dtype
    valid = ", ".join(map(str, plan.valid_tensor_parallel_sizes))
    invalid = ", ".join(map(str, plan.invalid_tensor_parallel_sizes))
    console.print(f"[bold]{escape(plan.model)}[/bold] ({escape(plan.model_origin)}) on {gpu.label}, "
                  f"{plan.gpus_per_node} per node, context {context:,} tokens")
    heads = (f"{size.attention_heads} attention heads and {size.kv_heads} KV heads: tensor parallel {valid} "
             + (f"split them evenly, {invalid} cannot" if invalid else "split them evenly"))
    weights = (f"{size.parameters:,} parameters: {gib(size.weight_bytes)} of {size.weight_dtype} weights "
               f"({size.weight_bytes:,} bytes)")
    if size.quantized_at_load:
        first = plan.layouts[0]
        weights += (f", quantized from 16 bits as vLLM loads them: loading peaks "
                    f"{gib(first.load_peak_bytes_per_gpu - first.weight_bytes_per_gpu)} above them per GPU at "
                    f"{first.name}")
    lines = [
        weights,
        (f"KV cache: {size.kv_cache_bytes_per_token:,} bytes per token in {kv_dtype}, "
         f"{gib(size.kv_cache_bytes_per_token * context)} per {context:,}-token sequence"),
        heads,
        (f"each {gpu.label}: vLLM may use {gib(plan.usable_bytes_per_gpu)} "
         f"({plan.gpu_memory_utilization:g} × {gib(gpu.memory_bytes)}), "
         f"{gib(plan.activation_reserve_bytes)} of it kept for activations"),
    ]
    for line in lines:
        console.print(f"  {line}", highlight=False)
    caption = f"weights and KV cache in GiB per GPU; seqs: sequences of {context:,} tokens at once"
    peak = ("load peak",) if size.quantized_at_load else ()
    if peak:
        caption = caption.replace("per GPU;", "per GPU (load peak: while vLLM quantizes to fp8);")
    caption += "; ready: seconds to a first /health 200, cold / warm (the note below says from what)"
    table = Table(caption=caption)
    for title in ("layout", "GPUs", "nodes", "weights", *peak, "KV cache", "KV tokens", "seqs", "fits", "ready"):
        table.add_column(title, justify="left" if title in ("layout", "fits") else "right")
    for item in plan.layouts:
        loading = (f"{item.load_peak_bytes_per_gpu / GiB:.2f}",) if peak else ()
        ready = ready_estimate(plan, item)
        table.add_row(item.name, str(item.gpus), str(item.nodes), f"{item.weight_bytes_per_gpu / GiB:.2f}",
                      *loading, f"{item.kv_cache_bytes_per_gpu / GiB:.2f}", f"{item.kv_cache_tokens:,}",
                      f"{item.max_sequences:,}", "yes" if item.fits else "[red]no[/red]",
                      f"{ready.cold_s:.0f}/{ready.warm_s:.0f}" if item.fits else "—")
    console.print(table)
    minimum = plan.minimum
    if minimum is not None:
        nodes = f"{minimum.nodes} node{'s' if minimum.nodes > 1 else ''}"
        console.print(f"minimum: {minimum.gpus} × {gpu.label} at {minimum.name} ({nodes}): "
                      f"{minimum.kv_cache_tokens:,} tokens of KV cache, {minimum.max_sequences:,} sequences "
                      f"of {context:,} tokens at once", highlight=False)
    for item in plan.layouts:
        if not item.fits:
            console.print(f"{item.name} does not fit: {escape(item.reason)}", highlight=False)
    for note in plan.notes:
        console.print(f"note: {escape(note)}", highlight=False)
    from tpserve.startup import READY_BASIS

    console.print(f"note: ready is {escape(READY_BASIS)}", highlight=False)


def ready_estimate(plan: Plan, layout):
    """LAYOUT's expected time to ready: its GPUs read their share of the checkpoint as the server loads it (the
    16-bit checkpoint where vLLM quantizes at load, whatever the weights become)."""
    from tpserve.startup import expected_ready

    share = layout.weight_bytes_per_gpu / plan.size.weight_bytes
    checkpoint = plan.size.parameters * 2 if plan.size.quantized_at_load else plan.size.weight_bytes
    return expected_ready(round(checkpoint * share))


def print_recommendations(choice: Choice, recommendations: tuple[Recommendation, ...], console: Console) -> None:
    """The settings profile's flags, then per layout that fits the `tpserve serve` command and the chart values."""
    from rich.markup import escape

    added = " ".join(f"{name} {value}" for name, value in choice.flags.items()) or "no flag"
    console.print(f"{escape(choice.reason)}: adds {escape(added)}", highlight=False)
    for item in recommendations:
        serve = item.serve_command or "several nodes: the chart's multiNode only"
        console.print(f"  {item.layout}: {escape(serve)}", highlight=False)
        console.print(f"  {' ' * len(item.layout)}  chart: {escape(item.chart_set)}", highlight=False)
