"""What ``tpserve sweep`` and ``tpserve tune`` share: the load and backend options, and the helpers that
turn them into the measuring engine's :class:`tpserve.measure.runner.Load` and
:data:`tpserve.measure.runner.Backend`.

Not a command (its name starts with ``_``): both commands import it, and it imports no command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tpserve.commands import at_least_one

# The load options of tpserve sweep and tpserve tune: None keeps the --workload preset's value (tpserve.presets).
Workload = Annotated[str | None, typer.Option(
    help="A named workload: note (59 built-in prompts × 256 tokens, all in flight), throughput (1,000 random "
         "512-token prompts × 256, 256 in flight) or chat (tpserve/data/chat.jsonl, 64 in flight); the options "
         "below override it. Default: note's values.", show_default=False)]
NumRequests = Annotated[int | None, typer.Option(help="Requests per run.", show_default=False)]
MaxTokens = Annotated[int | None, typer.Option(help="Output tokens per request.", show_default=False)]
Concurrency = Annotated[int | None, typer.Option(help="Requests in flight per run, over all replicas.",
                                                 show_default=False)]
PromptSet = Annotated[str | None, typer.Option(help="builtin, random or file.", show_default=False)]
RandomInputLen = Annotated[int | None, typer.Option(help="Prompt tokens of random prompts.", show_default=False)]
PromptFile = Annotated[Path | None, typer.Option(
    help='JSONL of --prompt-set file: {"prompt": ...} or {"messages": [...]}, optional "max_tokens", per line.',
    show_default=False)]
VllmAxis = Annotated[list[str] | None, typer.Option(
    "--vllm", help="A vLLM setting axis KEY=V1,V2,..., repeatable: the flag without dashes and its values; "
                   "default leaves it to vLLM, on/off for switches, cudagraph-mode=... sets --compilation-config "
                   "(docs/tuning.md).", show_default=False)]
ServeArg = Annotated[list[str] | None, typer.Option(
    help="Local: a tpserve serve argument, repeatable (e.g. --serve-arg=--no-allreduce-fusion).")]


def load_for(workload: str | None, **explicit):
    """The sweep's :class:`tpserve.measure.runner.Load`: the --workload preset with the options given over it, checked."""
    from tpserve.presets import workload as preset
    from tpserve.workload.options import PROMPT_SETS

    if explicit.get("prompt_set") not in (None, *PROMPT_SETS):
        raise typer.BadParameter(f"must be one of {', '.join(PROMPT_SETS)}, got {explicit['prompt_set']!r}",
                                 param_hint="--prompt-set")
    load = preset(workload, **explicit)
    at_least_one(num_requests=load.num_requests, max_tokens=load.max_tokens, concurrency=load.concurrency)
    return load


# Where a sweep or a search runs its points: these servers (local) or the chart (kubernetes).
On = Annotated[str, typer.Option(help="local (tpserve serve on this host) or kubernetes (the Helm chart).")]
Release = Annotated[str, typer.Option(help="Kubernetes: the Helm release.")]
Namespace = Annotated[str, typer.Option(help="Kubernetes: the namespace.")]
Chart = Annotated[Path, typer.Option(help="Kubernetes: the chart (charts/vllm of a tpserve checkout).")]
Values = Annotated[list[Path] | None, typer.Option("--values", "-f", help="Kubernetes: values file.")]
Sets = Annotated[list[str] | None, typer.Option("--set", help="Kubernetes: KEY=VALUE for the chart.")]
LoadInCluster = Annotated[int, typer.Option(
    help="Kubernetes: run the load in the cluster as the chart's loadtest Jobs with this many Locust "
         "workers (docs/loadtest-in-cluster.md); 0 runs Locust here, through kubectl port-forward.")]


Resume = Annotated[bool, typer.Option(
    help="Continue in --out: a point whose runs are all recorded there already is not measured again.")]


def check_resume(resume: bool, out: Path | None, command: str) -> None:
    """Refuse --resume without --out: the default folder is a new one, so there would be nothing to resume."""
    from tpserve.fetch.errors import ConfigError

    if resume and out is None:
        raise ConfigError(f"--resume continues the {command} in the folder --out names: add --out FOLDER")


def served_name_for(on: str, model: str, served_model_name: str, values, sets) -> str:
    """What the load test asks for: --served-model-name; else on Kubernetes the name the chart serves under
    (model.servedName or model.name of the values), locally the model folder's name."""
    if served_model_name:
        return served_model_name
    if on == "kubernetes":
        from tpserve.measure.kubernetes import served_name

        return served_name(model, values or [], sets or [])
    return Path(model).name


def local_serve_config(model: str, name: str, serve_args: list[str]):
    """The ``tpserve serve`` configuration every local point starts from, and its model cache: MODEL served as
    NAME with the --serve-arg options, read once by the serve command's own parser (its variables too)."""
    import click

    from tpserve.commands.serve import serve_config
    from tpserve.measure.local import exact_settings

    try:
        return serve_config(["--model", model, "--served-model-name", name, *exact_settings(serve_args)])
    except click.UsageError as exc:
        raise typer.BadParameter(exc.format_message(), param_hint="--serve-arg") from None


def backend_for(on: str, *, model: str, name: str, load, settings_axes, logs: Path, base_port: int,
                health_timeout: float, serve_args: list[str], vllm_args: list[str], release: str, chart: Path,
                namespace: str, values: list[Path], sets: list[str], load_in_cluster: int):
    """The points' backend (:data:`tpserve.measure.runner.Backend`) for ``--on``: ``tpserve serve`` here, or one Helm
    release of the chart per point; every option that cannot work with it is refused first."""
    from tpserve.measure.local import local_backend

    if on not in ("local", "kubernetes"):
        raise typer.BadParameter(f"must be local or kubernetes, got {on!r}", param_hint="--on")
    if on == "local":
        if load_in_cluster:
            raise typer.BadParameter("runs the load as Kubernetes Jobs: add --on kubernetes",
                                     param_hint="--load-in-cluster")
        base, cache_dir = local_serve_config(model, name, serve_args)
        return local_backend(base, cache_dir, base_port=base_port, logs=logs, vllm_args=vllm_args,
                             health_timeout_s=health_timeout)
    from tpserve.measure.incluster import InClusterLoad
    from tpserve.measure.kubernetes import check_axes, kubernetes_backend

    if serve_args:
        raise typer.BadParameter("tpserve serve arguments are for local servers: on Kubernetes the chart's values "
                                 "(-f, --set) configure the server", param_hint="--serve-arg")
    if vllm_args:
        raise typer.BadParameter("dummy weights are for local servers: on Kubernetes set "
                                 "vllm.extraArgs.load-format=dummy", param_hint="--dummy-weights")
    check_axes(settings_axes, values, sets)
    if load_in_cluster and load.prompt_set == "file":
        raise typer.BadParameter("the chart's loadtest Jobs have no prompt file: use the builtin or random "
                                 "prompt set", param_hint="--load-in-cluster")
    if load_in_cluster < 0:
        raise typer.BadParameter(f"must be 0 or more, got {load_in_cluster}", param_hint="--load-in-cluster")
    if load_in_cluster > load.concurrency:
        raise typer.BadParameter(f"{load_in_cluster} workers need a --concurrency of at least {load_in_cluster}",
                                 param_hint="--load-in-cluster")
    if not (chart / "Chart.yaml").is_file():
        raise typer.BadParameter(f"no Helm chart at {chart}: pass --chart PATH to tpserve's chart (charts/vllm in a "
                                 "checkout of tpserve; the installed package does not carry it)", param_hint="--chart")
    in_cluster = InClusterLoad.of(load, load_in_cluster) if load_in_cluster else None
    return kubernetes_backend(release, chart, namespace, model=model, values=values, sets=sets, port=base_port,
                              timeout_s=health_timeout, in_cluster=in_cluster)
