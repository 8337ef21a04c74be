"""``tpserve sweep``: the load test over a grid of layouts, each measured several times."""

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
from tpserve.fetch.errors import TpserveError


def sweep(
    model: Annotated[str, typer.Argument(help="What to serve: a local model folder or a cached repo id.")],
    served_model_name: Annotated[str, typer.Option(help="Name the servers serve it under.")] = "",
    tensor: Annotated[str, typer.Option(help="Tensor-parallel sizes to measure, comma-separated.")] = "1,2,4",
    replicas: Annotated[str, typer.Option(help="Replica counts to measure, comma-separated.")] = "1",
    repeats: Annotated[int, typer.Option(help="Runs of the load per layout (the reference note used 5).")] = 5,
    vllm: VllmAxis = None,
    workload: WorkloadPreset = None,
    num_requests: NumRequests = None,
    max_tokens: MaxTokens = None,
    concurrency: Concurrency = None,
    prompt_set: PromptSet = None,
    random_input_len: RandomInputLen = None,
    prompt_file: PromptFile = None,
    on: On = "local",
    out: Annotated[Path | None, typer.Option(help=f"Results folder (default: {OUTPUT_DIR}/<time>-sweep).")] = None,
    resume: Resume = False,
    base_port: Annotated[int, typer.Option(help="First local port (replica i listens on base + i).")] = 8100,
    health_timeout: Annotated[float, typer.Option(help="Seconds to wait for each layout to be ready.")] = 900.0,
    serve_arg: ServeArg = None,
    dummy_weights: Annotated[bool, typer.Option(help="Local: serve with --load-format dummy.")] = False,
    release: Release = "tpserve-sweep",
    namespace: Namespace = "default",
    chart: Chart = Path("charts/vllm"),
    values: Values = None,
    set_: Sets = None,
    load_in_cluster: LoadInCluster = 0,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the outcome as JSON on stdout (progress stays on stderr): out (the results folder), "
                       "runs (every run record's file), failures_file and failures (the failed points, as "
                       "failures.json holds them).")] = False,
) -> None:
    """Measure the load test over a grid of layouts × vLLM settings, each REPEATS times; a failed point is recorded.

    Example (a 4-GPU host, the reference note's 7b experiment):

        tpserve sweep /models/llama-2-7b --tensor 1,2,4 --repeats 5 --dummy-weights \\
            --serve-arg=--no-allreduce-fusion

    Settings axes (2 layouts × 3 × 2 = 12 points, each a server start), the throughput preset:

        tpserve sweep /models/llama-2-7b --tensor 1,2 --workload throughput --repeats 3 \\
            --vllm max-num-seqs=default,512,1024 --vllm kv-cache-dtype=auto,fp8

    On Kubernetes, with the load in the cluster (4 Locust workers); a point's settings go to the release as
    chart values (vllm.extraArgs and the chart's own options), on top of vllm.settings=vllm unless -f or --set
    choose a profile:

        tpserve sweep meta-llama/Llama-2-7b-chat-hf --on kubernetes -f 7b-values.yaml --tensor 1,2 \\
            --load-in-cluster 4 --vllm kv-cache-dtype=auto,fp8
    """
    from dataclasses import replace

    from tpserve.sweep import run_sweep, summary, sweep_points

    options = MeasureOptions(
        "sweep", model, served_model_name=served_model_name, tensor=tensor, replicas=replicas, repeats=repeats,
        vllm=tuple(vllm or ()), workload=workload, num_requests=num_requests, max_tokens=max_tokens,
        concurrency=concurrency, prompt_set=prompt_set, random_input_len=random_input_len, prompt_file=prompt_file,
        out=out, resume=resume, on=on, base_port=base_port, health_timeout=health_timeout,
        serve_args=tuple(serve_arg or ()), dummy_weights=dummy_weights, release=release, namespace=namespace,
        chart=chart, values=tuple(values or ()), sets=tuple(set_ or ()), load_in_cluster=load_in_cluster)
    campaign = campaign_for(options)
    points = sweep_points(campaign)
    with progress_bar("sweep", len(points) * campaign.repeats, "runs") as progress:
        result = run_sweep(replace(campaign, progress=progress))
    out = campaign.out
    if as_json:
        typer.echo(json.dumps(summary(campaign, result), indent=2, ensure_ascii=False))
    else:
        console.print(f"{len(result.runs)} runs in {out}; {len(result.failures)} failed points "
                      f"(see {out / 'failures.json'}); tpserve report {out}")
    if not result.runs:
        raise TpserveError("no point could be measured: " + "; ".join(f["error"] for f in result.failures))
