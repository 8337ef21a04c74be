"""``tpserve tune``: search vLLM's settings for the most output tok/s per GPU within a latency budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tpserve.commands import console
from tpserve.commands._measuring import (
    Chart,
    Concurrency,
    LoadInCluster,
    MaxTokens,
    MeasureOptions,
    Namespace,
    NumRequests,
    On,
    PromptFile,
    PromptSet,
    RandomInputLen,
    Release,
    Resume,
    ServeArg,
    Sets,
    Values,
    VllmAxis,
    WorkloadPreset,
    campaign_for,
    progress_bar,
)
from tpserve.data import OUTPUT_DIR
from tpserve.fetch.errors import ConfigError, TpserveError


def tune(
    model: Annotated[str, typer.Argument(help="What to serve: a local model folder or a cached repo id.")],
    vllm: VllmAxis = None,
    max_ttft_ms: Annotated[float | None, typer.Option(
        help="Budget: the winner's median TTFT at most this (ms).", show_default=False)] = None,
    max_tpot_ms: Annotated[float | None, typer.Option(
        help="Budget: the winner's median TPOT at most this (ms).", show_default=False)] = None,
    budget_runs: Annotated[int | None, typer.Option(
        help="Stop before the run that would pass this many runs (each candidate takes --repeats runs and one "
             "server start). Default: the whole search.", show_default=False)] = None,
    tensor: Annotated[str, typer.Option(help="Tensor-parallel sizes to try, comma-separated.")] = "1",
    replicas: Annotated[str, typer.Option(help="Replica counts to try, comma-separated.")] = "1",
    repeats: Annotated[int, typer.Option(help="Runs of the load per candidate (their median counts).")] = 1,
    workload: WorkloadPreset = None,
    num_requests: NumRequests = None,
    max_tokens: MaxTokens = None,
    concurrency: Concurrency = None,
    prompt_set: PromptSet = None,
    random_input_len: RandomInputLen = None,
    prompt_file: PromptFile = None,
    served_model_name: Annotated[str, typer.Option(help="Name the servers serve it under.")] = "",
    out: Annotated[Path | None, typer.Option(help=f"Results folder (default: {OUTPUT_DIR}/<time>-tune).")] = None,
    resume: Resume = False,
    base_port: Annotated[int, typer.Option(help="First local port (replica i listens on base + i).")] = 8100,
    health_timeout: Annotated[float, typer.Option(help="Seconds to wait for each candidate to be ready.")] = 900.0,
    serve_arg: ServeArg = None,
    dummy_weights: Annotated[bool, typer.Option(help="Local: serve with --load-format dummy.")] = False,
    on: On = "local",
    release: Release = "tpserve-tune",
    namespace: Namespace = "default",
    chart: Chart = Path("charts/vllm"),
    values: Values = None,
    set_: Sets = None,
    load_in_cluster: LoadInCluster = 0,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the search as JSON on stdout instead of its last lines (progress stays on stderr): "
                       "out (the results folder), file (its tune.json) and what tune.json holds — winner (with "
                       "its serve or deploy command), defaults, ratio_to_defaults, candidates, server_starts, "
                       "runs, stopped (docs/tuning.md).")] = False,
) -> None:
    """Find the vLLM settings with the most output tok/s per GPU whose median TTFT and TPOT are within budget.

    Coordinate search (docs/tuning.md): the layouts with vLLM's defaults first, then one --vllm axis at a time
    from the best so far; each candidate is one server start, measured --repeats times. Every run is a run
    record in OUT, the search is in OUT/tune.json, and the last line names the winner and its ratio to vLLM's
    defaults, measured in the same session, then how to serve it (with --json, stdout holds the search as one
    JSON document instead). Runs locally (GPUs, else CPU cores), or with --on kubernetes as one Helm release
    of the chart per candidate (as tpserve sweep does; docs/tuning.md).

    Example (2 GPUs, the throughput preset):

        tpserve tune /models/llama-2-7b --workload throughput --tensor 1,2 --replicas 1 \\
            --vllm max-num-seqs=256,512,1024 --vllm max-num-batched-tokens=8192,16384 \\
            --vllm kv-cache-dtype=auto,fp8 --max-ttft-ms 2000 --max-tpot-ms 50 --budget-runs 12 \\
            --serve-arg=--no-allreduce-fusion
    """
    from dataclasses import replace

    from tpserve.tune import Budget, final_line, search_size, summary, write_summary
    from tpserve.tune import tune as search

    if budget_runs is not None and budget_runs < 1:
        raise ConfigError(f"--budget-runs must be at least 1, got {budget_runs}")
    budget = Budget(max_ttft_ms, max_tpot_ms)
    if not vllm:
        raise ConfigError("tune needs at least one setting to try: add --vllm KEY=V1,V2 (e.g. max-num-seqs=256,512)")
    options = MeasureOptions(
        "tune", model, served_model_name=served_model_name, tensor=tensor, replicas=replicas, repeats=repeats,
        vllm=tuple(vllm), workload=workload, num_requests=num_requests, max_tokens=max_tokens,
        concurrency=concurrency, prompt_set=prompt_set, random_input_len=random_input_len, prompt_file=prompt_file,
        out=out, resume=resume, on=on, base_port=base_port, health_timeout=health_timeout,
        serve_args=tuple(serve_arg or ()), dummy_weights=dummy_weights, release=release, namespace=namespace,
        chart=chart, values=tuple(values or ()), sets=tuple(set_ or ()), load_in_cluster=load_in_cluster)
    campaign = campaign_for(options)
    total = search_size(campaign) * campaign.repeats
    total = min(total, budget_runs) if budget_runs else total
    with progress_bar("tune", total, "runs at most") as progress:
        result = search(replace(campaign, progress=progress), budget, max_runs=budget_runs)
    document = summary(campaign, result, budget, budget_runs)
    path = write_summary(campaign, document)
    line = final_line(result, budget)
    if as_json:
        typer.echo(json.dumps({"out": str(campaign.out), "file": str(path), **document}, indent=2,
                              ensure_ascii=False))
    else:
        console.print(f"{result.runs} runs in {campaign.out}; the search is in {path}"
                      + (f"; stopped early: {result.stopped}" if result.stopped else ""))
    if result.interrupted is not None:
        if not as_json:
            console.print(f"{line} (so far)", markup=False, highlight=False)
        raise result.interrupted
    if result.winner is None:
        raise TpserveError(line)
    if not as_json:
        verb, command = campaign.serving(result.winner.point)
        console.print(f"{verb} it: {command}", markup=False, highlight=False)
        console.print(line, markup=False, highlight=False)
