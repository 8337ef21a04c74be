"""The ``tpserve`` command line. Errors become one line on stderr here, and nowhere else."""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tpserve import launch
from tpserve.errors import ServerError, TpserveError

app = typer.Typer(
    help="Serve LLMs with vLLM tensor parallelism and measure tok/s honestly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console(stderr=True, soft_wrap=True)


def default_cache_dir() -> Path:
    """The model cache: TPSERVE_CACHE_DIR, else under HF_HOME (the image puts that on the model volume)."""
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(hf_home) / "tpserve"


CacheDir = Annotated[Path | None, typer.Option(
    envvar="TPSERVE_CACHE_DIR", show_default=False,
    help="Model cache folder (default: $HF_HOME/tpserve).")]
Revision = Annotated[str, typer.Option(
    envvar="TPSERVE_REVISION", help="Branch, tag or commit sha; pin a sha for reproducible serving.")]


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(
        envvar="TPSERVE_MODEL", help="Hugging Face repo id (served from the cache) or a local model folder.")] = "",
    revision: Revision = "main",
    served_model_name: Annotated[str, typer.Option(
        envvar="TPSERVE_SERVED_MODEL_NAME", help="Name clients see at /v1/models (default: the repo id).")] = "",
    tensor_parallel_size: Annotated[int, typer.Option(
        "--tensor-parallel-size", "-tp", envvar="TPSERVE_TENSOR_PARALLEL_SIZE",
        help="GPUs one model copy is split across.")] = 1,
    pipeline_parallel_size: Annotated[int, typer.Option(
        "--pipeline-parallel-size", "-pp", envvar="TPSERVE_PIPELINE_PARALLEL_SIZE",
        help="Pipeline stages (TP x PP GPUs in all).")] = 1,
    max_model_len: Annotated[int | None, typer.Option(
        envvar="TPSERVE_MAX_MODEL_LEN", help="Context length (default: the model's).")] = None,
    dtype: Annotated[str, typer.Option(envvar="TPSERVE_DTYPE", help="Weight and activation dtype.")] = "auto",
    gpu_memory_utilization: Annotated[float | None, typer.Option(
        envvar="TPSERVE_GPU_MEMORY_UTILIZATION", help="Fraction of each GPU's memory vLLM may use.")] = None,
    allreduce_fusion: Annotated[bool, typer.Option(
        "--allreduce-fusion/--no-allreduce-fusion", envvar="TPSERVE_ALLREDUCE_FUSION",
        help="Off for hosts without NVLink multicast, where vLLM 0.26's fused all-reduce crashes at TP > 1.")] = True,
    host: Annotated[str, typer.Option(envvar="TPSERVE_HOST", help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="TPSERVE_PORT", help="Port to listen on.")] = 8000,
    cache_dir: CacheDir = None,
    extra_args: Annotated[str, typer.Option(
        envvar="TPSERVE_EXTRA_ARGS", help="More vLLM arguments as one shell-quoted string.")] = "",
    dry_run: Annotated[bool, typer.Option(help="Check everything, then print the vLLM command instead of running it.")] = False,
) -> None:
    """Check the launch, then exec vLLM's OpenAI-compatible server (the container's entrypoint).

    A repo id is served only from a verified `tpserve fetch` of exactly that repo and revision.
    Arguments after `--` go to vLLM verbatim; the API key comes from the VLLM_API_KEY variable.
    Example:

        tpserve serve --model meta-llama/Llama-2-70b-chat-hf --revision REV -tp 4 -- --enforce-eager
    """
    config = launch.ServeConfig(
        model=model,
        revision=revision,
        served_model_name=served_model_name,
        tensor_parallel_size=tensor_parallel_size,
        pipeline_parallel_size=pipeline_parallel_size,
        max_model_len=max_model_len,
        dtype=dtype,
        gpu_memory_utilization=gpu_memory_utilization,
        allreduce_fusion=allreduce_fusion,
        host=host,
        port=port,
        extra_args=launch.parse_extra_args(extra_args) + tuple(ctx.args),
    )
    argv = launch.prepare(config, cache_dir or default_cache_dir())
    if dry_run:
        typer.echo(shlex.join(argv))
        return
    launch.exec_vllm(argv)


@app.command()
def fetch(
    model: Annotated[str, typer.Argument(help="Hugging Face repo id, e.g. meta-llama/Llama-2-70b-chat-hf.")],
    revision: Revision = "main",
    cache_dir: CacheDir = None,
    progress: Annotated[bool, typer.Option(help="Show download progress bars.")] = True,
) -> None:
    """Download a model once into the cache, keyed by repo id and commit sha, with a verified manifest.

    The token comes from the HF_TOKEN variable only. Running it again on a complete cache does
    nothing; an interrupted download resumes; damaged files are fetched again. Example:

        HF_TOKEN=... tpserve fetch meta-llama/Llama-2-70b-chat-hf --revision main
    """
    from tpserve import cache

    folder = cache_dir or default_cache_dir()
    manifest = cache.fetch(model, revision, folder, token=os.environ.get("HF_TOKEN") or None, progress=progress)
    path = cache.model_path(folder, manifest.repo_id, manifest.resolved_sha)
    size = sum(entry.size for entry in manifest.files)
    params = f"{manifest.parameter_count / 1e9:.1f}B parameters, " if manifest.parameter_count else ""
    typer.echo(f"{manifest.repo_id}@{manifest.requested_revision} = {manifest.resolved_sha}: "
               f"{len(manifest.files)} files, {size / 2**30:.2f} GiB, {params}at {path}")


@app.command()
def plan(
    model: Annotated[str, typer.Argument(
        help="Catalog name (e.g. llama-2-70b), model folder, config.json, or a repo id fetched before.")],
    gpu: Annotated[str, typer.Option(
        help="GPU kind: a10, l4, a100-40gb, a100-80gb, h100, h200, b200 or mi300x.")],
    gpus_per_node: Annotated[int, typer.Option(help="GPUs in a node; tensor parallel stays in one.")] = 8,
    context: Annotated[int | None, typer.Option(
        help="Tokens per sequence, vLLM's --max-model-len (default: the model's maximum, as vLLM).")] = None,
    dtype: Annotated[str, typer.Option(help="Weights: auto (the config's), fp16, bf16, fp8, int8.")] = "auto",
    kv_dtype: Annotated[str, typer.Option(help="KV cache: auto (16-bit, vLLM's), fp16, bf16, fp8.")] = "auto",
    gpu_memory_utilization: Annotated[float | None, typer.Option(
        help="Fraction of each GPU vLLM may use (default: 0.92, vLLM 0.26's).")] = None,
    revision: Revision = "main",
    cache_dir: CacheDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Size MODEL on GPUs of one kind before renting them: how many it needs, and what each layout holds.

    Shows the weights, the KV cache per token, the tensor-parallel sizes that split the heads, the
    fewest GPUs that fit (pipeline stages across nodes when one node is not enough), and per layout
    the KV-cache tokens and concurrent sequences at the context length. docs/plan.md has the memory
    model. Example:

        tpserve plan llama-2-70b --gpu a100-40gb --context 4096
    """
    from tpserve import catalog
    from tpserve import plan as planning

    source = planning.resolve_model(model, cache_dir or default_cache_dir(), revision)
    if gpu_memory_utilization is None:
        gpu_memory_utilization = planning.GPU_MEMORY_UTILIZATION
    result = planning.make_plan(source, catalog.gpu_kind(gpu), gpus_per_node=gpus_per_node, context=context,
                                dtype=dtype, kv_dtype=kv_dtype, utilization=gpu_memory_utilization)
    if as_json:
        typer.echo(result.to_json(), nl=False)
    else:
        planning.print_plan(result, Console(soft_wrap=True))
    if result.minimum is None:
        last = result.layouts[-1]
        raise TpserveError(f"{result.model} fits on no layout of {result.gpu.label}: at {last.name}, "
                           f"{last.reason}")


@app.command()
def shapes(
    name: Annotated[str, typer.Argument(help="A catalog model (e.g. llama-2-70b) or tiny-llama.")],
    directory: Annotated[Path, typer.Argument(help="Folder to write; one holding the same shape is reused.")],
) -> None:
    """Write a model folder of a real architecture for vLLM's --load-format dummy: nothing to download.

    The folder holds the model's published config.json and the 32,000-token Mistral v1 tokenizer,
    which is exact for mistral-7b and mixtral-8x7b. The Llama-2 shapes get a tokenizer of their size
    and special ids with other pieces; Llama-3.1 and Qwen2.5 keep their own vocab_size, so embedding
    and lm_head cost what they really cost, and the tokenizer uses ids below 32,000 only
    (docs/shapes.md). Example:

        tpserve shapes llama-2-70b models/llama-2-70b
        tpserve serve --model models/llama-2-70b -tp 4 -- --load-format dummy
    """
    from tpserve.modelconfig import parameter_count
    from tpserve.shapes import find_shape, tokenizer_fidelity, write_model_folder

    shape = find_shape(name)
    folder = write_model_folder(shape, directory)
    typer.echo(f"{folder}: {shape.name}, {parameter_count(shape.config()):,} parameters (dummy weights); "
               f"tokenizer {tokenizer_fidelity(shape)}")
    typer.echo(f"serve it: tpserve serve --model {folder} -- --load-format dummy")


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port for the local vLLM server.")] = 8000,
    num_requests: Annotated[int, typer.Option(help="Requests to send (the built-in suite has 59).")] = 59,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once (Locust users).")] = 8,
    max_tokens: Annotated[int, typer.Option(help="Output tokens per request.")] = 64,
    health_timeout: Annotated[float, typer.Option(help="Seconds to wait for the server's /health.")] = 300.0,
    locustfile: Annotated[Path, typer.Option(help="The Locust file to run.")] = Path("loadtest/prompts.py"),
    results_dir: Annotated[Path, typer.Option(help="Where the results JSON goes.")] = Path("results"),
    cache_dir: Annotated[Path, typer.Option(help="Model folder and vLLM caches.")] = Path(".cache"),
) -> None:
    """Serve a tiny Llama with real vLLM on CPU and measure it with the Locust load test.

    Example (from the repository root):

        tpserve demo --num-requests 59 --concurrency 8
    """
    from tpserve.demo import DemoOptions, run_demo
    from tpserve.workload.report import print_summary

    for name, value in (("--num-requests", num_requests), ("--concurrency", concurrency),
                        ("--max-tokens", max_tokens)):
        if value < 1:
            raise typer.BadParameter(f"must be at least 1, got {value}", param_hint=name)
    options = DemoOptions(port=port, num_requests=num_requests, concurrency=concurrency, max_tokens=max_tokens,
                          health_timeout_s=health_timeout, locustfile=locustfile, results_dir=results_dir,
                          cache_dir=cache_dir)
    document, path = run_demo(options, say=lambda text: console.print(f"[dim]{text}[/dim]"))
    print_summary(document, Console())
    console.print(f"results: {path}")
    if not document["ok"]:
        raise TpserveError("the run failed its checks: " + "; ".join(document["problems"]))


@app.command()
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
) -> None:
    """Measure the load test over a grid of layouts, each REPEATS times; a failed layout is recorded.

    Example (a 4-GPU host, the reference note's 7b experiment):

        tpserve sweep /models/llama-2-7b --tensor 1,2,4 --repeats 5 --dummy-weights \
            --serve-arg=--no-allreduce-fusion
    """
    from tpserve import sweep as sweeping
    from tpserve.workload.options import PROMPT_SETS

    if prompt_set not in PROMPT_SETS[:2]:
        raise typer.BadParameter(f"must be builtin or random, got {prompt_set!r}", param_hint="--prompt-set")
    for name, value in (("--num-requests", num_requests), ("--max-tokens", max_tokens),
                        ("--concurrency", concurrency)):
        if value < 1:
            raise typer.BadParameter(f"must be at least 1, got {value}", param_hint=name)
    points = sweeping.parse_grid(tensor, replicas)
    name = served_model_name or Path(model).name
    out = out or Path("results") / f"{sweeping.stamp()}-sweep"
    load = sweeping.Load(num_requests=num_requests, max_tokens=max_tokens, concurrency=concurrency,
                         prompt_set=prompt_set, random_input_len=random_input_len)
    if on == "local":
        args = list(serve_arg or []) + (["--", "--load-format", "dummy"] if dummy_weights else [])
        backend = sweeping.local_backend(model, name, base_port=base_port, logs=out / "logs", serve_args=args,
                                         health_timeout_s=health_timeout)
    elif on == "kubernetes":
        from tpserve import kube

        backend = kube.kubernetes_backend(release, chart, namespace, values=values or [], sets=set_ or [],
                                          port=base_port, timeout_s=health_timeout)
    else:
        raise typer.BadParameter(f"must be local or kubernetes, got {on!r}", param_hint="--on")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"), TimeElapsedColumn())
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("sweep", total=len(points) * repeats)

        def progress(text: str, done: int) -> None:
            bar.console.print(text, markup=False, highlight=False)
            bar.advance(task, done)

        result = sweeping.sweep(points, backend, name=name, model=name, load=load, repeats=repeats, out=out,
                                progress=progress)
    console.print(f"{len(result.runs)} runs in {out}; {len(result.failures)} failed layouts "
                  f"(see {out / 'failures.json'}); tpserve report {out}")
    if not result.runs:
        raise TpserveError("no layout could be measured: " + "; ".join(f["error"] for f in result.failures))


@app.command()
def report(
    paths: Annotated[list[Path], typer.Argument(help="Results files or folders.")],
    markdown_out: Annotated[Path | None, typer.Option("--markdown", help="Also write the table here.")] = None,
    plot_out: Annotated[Path | None, typer.Option("--plot", help="Write a PNG plot here.")] = None,
    price: Annotated[list[str] | None, typer.Option(help="KIND=USD per GPU-hour, repeatable (h200=3.5).")] = None,
    ttft_budget_ms: Annotated[float | None, typer.Option(help="Latency budget: TTFT p50 at most this.")] = None,
    tpot_budget_ms: Annotated[float | None, typer.Option(help="Latency budget: TPOT p50 at most this.")] = None,
) -> None:
    """The reference note's table from measured runs: tok/s with spread, per GPU, latency and cost.

    Example:

        tpserve report results/20261126-sweep --plot tps.png --price h200=3.5 --tpot-budget-ms 20
    """
    from tpserve import report as reporting

    runs = reporting.load_runs(paths)
    work = reporting.check_same_workload(runs)
    table = reporting.rows(runs)
    text = reporting.markdown(table, work, reporting.parse_prices(price or []), ttft_budget_ms, tpot_budget_ms)
    typer.echo(text, nl=False)
    if markdown_out:
        markdown_out.write_text(text)
    if plot_out:
        console.print(f"plot: {reporting.plot(table, plot_out)}")


def _terminate(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    """Entry point: run the app, turning tpserve's errors into one line and an exit status."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app(standalone_mode=False)
    except TpserveError as exc:
        if isinstance(exc, ServerError) and exc.log_tail:
            console.print("[dim]last lines of the server log:[/dim]")
            console.print(exc.log_tail, markup=False, highlight=False, end="")
        console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        console.print("aborted")
        sys.exit(130)
    except typer.Exit:
        raise
    except Exception as exc:  # usage errors arrive here in non-standalone mode; newer typer bundles its click
        import click

        usage = (click.ClickException, getattr(typer, "TyperException", click.ClickException))
        if isinstance(exc, usage) and hasattr(exc, "show"):
            exc.show()
            sys.exit(exc.exit_code)
        raise
