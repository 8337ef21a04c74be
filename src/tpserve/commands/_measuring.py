"""What ``tpserve sweep`` and ``tpserve tune`` share: their common options, gathered in one
:class:`MeasureOptions`, and :func:`campaign_for`, which turns it into the measuring engine's
:class:`tpserve.measure.campaign.Campaign` (its load, its backend) that both strategies run.

Not a command (its name starts with ``_``): both commands import it, and it imports no command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from tpserve.commands import at_least_one, console

# The load options of tpserve sweep and tpserve tune: None keeps the --workload preset's value (tpserve.presets).
WorkloadPreset = Annotated[str | None, typer.Option(
    help="A workload preset: note (59 built-in prompts × 256 tokens, all in flight), throughput (1,000 random "
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
    from tpserve.presets import workload_preset
    from tpserve.workload.options import PROMPT_SETS

    if explicit.get("prompt_set") not in (None, *PROMPT_SETS):
        raise typer.BadParameter(f"must be one of {', '.join(PROMPT_SETS)}, got {explicit['prompt_set']!r}",
                                 param_hint="--prompt-set")
    load = workload_preset(workload, **explicit)
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


@dataclass(frozen=True)
class MeasureOptions:
    """The options ``tpserve sweep`` and ``tpserve tune`` share, as given (a load option None keeps the
    --workload preset's value): each command builds one from its own options, and :func:`campaign_for` reads
    it once into the campaign, as vLLM's sweep tools read one args object per tool. COMMAND (sweep or tune)
    names the default output folder."""

    command: str
    model: str
    served_model_name: str = ""
    tensor: str = "1"
    replicas: str = "1"
    repeats: int = 1
    vllm: tuple[str, ...] = ()
    workload: str | None = None
    num_requests: int | None = None
    max_tokens: int | None = None
    concurrency: int | None = None
    prompt_set: str | None = None
    random_input_len: int | None = None
    prompt_file: Path | None = None
    out: Path | None = None
    resume: bool = False
    on: str = "local"
    base_port: int = 8100
    health_timeout: float = 900.0
    serve_args: tuple[str, ...] = ()
    dummy_weights: bool = False
    release: str = ""
    namespace: str = "default"
    chart: Path = Path("charts/vllm")
    values: tuple[Path, ...] = ()
    sets: tuple[str, ...] = ()
    load_in_cluster: int = 0

    @property
    def vllm_args(self) -> list[str]:
        """What every local point gives vLLM verbatim: ``--load-format dummy`` with --dummy-weights."""
        return ["--load-format", "dummy"] if self.dummy_weights else []


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


def backend_for(options: MeasureOptions, *, name: str, load, settings_axes, logs: Path):
    """The points' backend (:data:`tpserve.measure.runner.Backend`) for ``--on``, and how a point is served for
    good (:data:`tpserve.measure.runner.Serving`): ``tpserve serve`` here, or one Helm release of the chart per
    point; every option that cannot work with it is refused first. NAME is what the servers serve the model
    as, LOGS the servers' log folder."""
    from tpserve.measure.local import local_backend, serving

    on, load_in_cluster = options.on, options.load_in_cluster
    if on not in ("local", "kubernetes"):
        raise typer.BadParameter(f"must be local or kubernetes, got {on!r}", param_hint="--on")
    if on == "local":
        if load_in_cluster:
            raise typer.BadParameter("runs the load as Kubernetes Jobs: add --on kubernetes",
                                     param_hint="--load-in-cluster")
        base, cache_dir = local_serve_config(options.model, name, list(options.serve_args))
        backend = local_backend(base, cache_dir, base_port=options.base_port, logs=logs,
                                vllm_args=options.vllm_args, health_timeout_s=options.health_timeout)
        return backend, serving(base, cache_dir)
    from tpserve.measure.incluster import InClusterLoad
    from tpserve.measure.kubernetes import check_axes, deploying, kubernetes_backend

    if options.serve_args:
        raise typer.BadParameter("tpserve serve arguments are for local servers: on Kubernetes the chart's values "
                                 "(-f, --set) configure the server", param_hint="--serve-arg")
    if options.vllm_args:
        raise typer.BadParameter("dummy weights are for local servers: on Kubernetes set "
                                 "vllm.extraArgs.load-format=dummy", param_hint="--dummy-weights")
    check_axes(settings_axes, options.values, options.sets)
    if load_in_cluster and load.prompt_set == "file":
        raise typer.BadParameter("the chart's loadtest Jobs have no prompt file: use the builtin or random "
                                 "prompt set", param_hint="--load-in-cluster")
    if load_in_cluster < 0:
        raise typer.BadParameter(f"must be 0 or more, got {load_in_cluster}", param_hint="--load-in-cluster")
    if load_in_cluster > load.concurrency:
        raise typer.BadParameter(f"{load_in_cluster} workers need a --concurrency of at least {load_in_cluster}",
                                 param_hint="--load-in-cluster")
    if not (options.chart / "Chart.yaml").is_file():
        raise typer.BadParameter(f"no Helm chart at {options.chart}: pass --chart PATH to tpserve's chart "
                                 "(charts/vllm in a checkout of tpserve; the installed package does not carry it)",
                                 param_hint="--chart")
    in_cluster = InClusterLoad.of(load, load_in_cluster) if load_in_cluster else None
    backend = kubernetes_backend(options.release, options.chart, options.namespace, model=options.model,
                                 values=options.values, sets=options.sets, port=options.base_port,
                                 timeout_s=options.health_timeout, in_cluster=in_cluster)
    return backend, deploying(options.release, options.chart, options.namespace, options.values, options.sets)


def campaign_for(options: MeasureOptions):
    """The :class:`tpserve.measure.campaign.Campaign` that OPTIONS describe, every option checked before any
    server starts; the output folder defaults to a new one named after the time and the command."""
    from tpserve.axes import parse_axes
    from tpserve.data import OUTPUT_DIR
    from tpserve.measure.campaign import Campaign, stamp
    from tpserve.measure.points import parse_grid

    load = load_for(options.workload, num_requests=options.num_requests, max_tokens=options.max_tokens,
                    concurrency=options.concurrency, prompt_set=options.prompt_set,
                    random_input_len=options.random_input_len, prompt_file=options.prompt_file)
    settings_axes = parse_axes(list(options.vllm), [*options.serve_args, *options.vllm_args])
    layouts = parse_grid(options.tensor, options.replicas)
    name = served_name_for(options.on, options.model, options.served_model_name, options.values, options.sets)
    check_resume(options.resume, options.out, "search" if options.command == "tune" else options.command)
    out = options.out or OUTPUT_DIR / f"{stamp()}-{options.command}"
    backend, serving = backend_for(options, name=name, load=load, settings_axes=settings_axes, logs=out / "logs")
    return Campaign(model=options.model, name=name, layouts=tuple(layouts), settings_axes=tuple(settings_axes),
                    load=load, backend=backend, out=out, repeats=options.repeats, resume=options.resume,
                    serving=serving)


@contextmanager
def progress_bar(command: str, total: int, unit: str) -> Iterator[Callable[[str, int], None]]:
    """A progress bar of TOTAL runs on the console (stderr), and the campaign's progress callback that prints
    a line above it and advances it."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn(command), BarColumn(), MofNCompleteColumn(), TextColumn(unit), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(command, total=total)

        def progress(text: str, done: int) -> None:
            bar.console.print(text, markup=False, highlight=False)
            bar.advance(task, done)

        yield progress
