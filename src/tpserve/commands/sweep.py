"""``tpserve sweep``: the load test over a grid of layouts, each measured several times."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpserve.commands import at_least_one, console
from tpserve.errors import TpserveError


def sweep(
    model: Annotated[str, typer.Argument(help="What to serve: a local model folder or a cached repo id.")],
    served_model_name: Annotated[str, typer.Option(help="Name the servers serve it under.")] = "",
    tensor: Annotated[str, typer.Option(help="Tensor-parallel sizes to measure, comma-separated.")] = "1,2,4",
    replicas: Annotated[str, typer.Option(help="Replica counts to measure, comma-separated.")] = "1",
    repeats: Annotated[int, typer.Option(help="Runs of the load per layout (the reference note used 5).")] = 5,
    num_requests: Annotated[int, typer.Option(help="Requests per run.")] = 59,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per request.")] = 256,
    concurrency: Annotated[int, typer.Option(help="Requests in flight per run, over all replicas.")] = 59,
    prompt_set: Annotated[str, typer.Option(help="builtin or random.")] = "builtin",
    random_input_len: Annotated[int, typer.Option(help="Prompt tokens of random prompts.")] = 128,
    on: Annotated[str, typer.Option(help="local (tpserve serve on this host) or kubernetes (the Helm chart).")] = "local",
    out: Annotated[Path | None, typer.Option(help="Results folder (default: results/<time>-sweep).")] = None,
    base_port: Annotated[int, typer.Option(help="First local port (replica i listens on base + i).")] = 8100,
    health_timeout: Annotated[float, typer.Option(help="Seconds to wait for each layout to be ready.")] = 900.0,
    serve_arg: Annotated[list[str] | None, typer.Option(
        help="Local: a tpserve serve argument, repeatable (e.g. --serve-arg=--no-allreduce-fusion).")] = None,
    dummy_weights: Annotated[bool, typer.Option(help="Local: serve with --load-format dummy.")] = False,
    release: Annotated[str, typer.Option(help="Kubernetes: the Helm release.")] = "tpserve-sweep",
    namespace: Annotated[str, typer.Option(help="Kubernetes: the namespace.")] = "default",
    chart: Annotated[Path, typer.Option(help="Kubernetes: the chart.")] = Path("charts/vllm"),
    values: Annotated[list[Path] | None, typer.Option("--values", "-f", help="Kubernetes: values file.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Kubernetes: KEY=VALUE for the chart.")] = None,
    load_in_cluster: Annotated[int, typer.Option(
        help="Kubernetes: run the load in the cluster as the chart's loadtest Jobs with this many Locust "
             "workers (docs/loadtest-in-cluster.md); 0 runs Locust here, through kubectl port-forward.")] = 0,
) -> None:
    """Measure the load test over a grid of layouts, each REPEATS times; a failed layout is recorded.

    Example (a 4-GPU host, the reference note's 7b experiment):

        tpserve sweep /models/llama-2-7b --tensor 1,2,4 --repeats 5 --dummy-weights \\
            --serve-arg=--no-allreduce-fusion

    On Kubernetes, with the load in the cluster (4 Locust workers):

        tpserve sweep meta-llama/Llama-2-7b-chat-hf --on kubernetes -f 7b-values.yaml --tensor 1,2 \\
            --load-in-cluster 4
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tpserve.sweep import Load, local_backend, parse_grid, run_sweep, stamp
    from tpserve.workload.options import PROMPT_SETS

    if prompt_set not in PROMPT_SETS[:2]:
        raise typer.BadParameter(f"must be builtin or random, got {prompt_set!r}", param_hint="--prompt-set")
    at_least_one(num_requests=num_requests, max_tokens=max_tokens, concurrency=concurrency)
    points = parse_grid(tensor, replicas)
    name = served_model_name or Path(model).name
    out = out or Path("results") / f"{stamp()}-sweep"
    load = Load(num_requests=num_requests, max_tokens=max_tokens, concurrency=concurrency, prompt_set=prompt_set,
                random_input_len=random_input_len)
    if on == "local":
        backend = local_backend(model, name, base_port=base_port, logs=out / "logs", serve_args=serve_arg or [],
                                vllm_args=["--load-format", "dummy"] if dummy_weights else [],
                                health_timeout_s=health_timeout)
    elif on == "kubernetes":
        from tpserve.kube import kubernetes_backend
        from tpserve.kubeload import InClusterLoad

        if load_in_cluster < 0:
            raise typer.BadParameter(f"must be 0 or more, got {load_in_cluster}", param_hint="--load-in-cluster")
        if load_in_cluster > concurrency:
            raise typer.BadParameter(f"{load_in_cluster} workers need a --concurrency of at least {load_in_cluster}",
                                     param_hint="--load-in-cluster")
        in_cluster = InClusterLoad.of(load, load_in_cluster) if load_in_cluster else None
        backend = kubernetes_backend(release, chart, namespace, model=model, values=values or [], sets=set_ or [],
                                     port=base_port, timeout_s=health_timeout, in_cluster=in_cluster)
    else:
        raise typer.BadParameter(f"must be local or kubernetes, got {on!r}", param_hint="--on")
    if load_in_cluster and on != "kubernetes":
        raise typer.BadParameter("runs the load as Kubernetes Jobs: add --on kubernetes", param_hint="--load-in-cluster")
    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("sweep", total=len(points) * repeats)

        def progress(text: str, done: int) -> None:
            bar.console.print(text, markup=False, highlight=False)
            bar.advance(task, done)

        result = run_sweep(points, backend, name=name, model=name, load=load, repeats=repeats, out=out,
                           progress=progress)
    console.print(f"{len(result.runs)} runs in {out}; {len(result.failures)} failed layouts "
                  f"(see {out / 'failures.json'}); tpserve report {out}")
    if not result.runs:
        raise TpserveError("no layout could be measured: " + "; ".join(f["error"] for f in result.failures))
