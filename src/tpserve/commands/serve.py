"""``tpserve serve``: check the launch, then exec vLLM (the container's entrypoint)."""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from tpserve import launch
from tpserve.commands import CacheDir, Revision, default_cache_dir

# vLLM arguments after `--` pass through untouched.
CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}


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
    settings: Annotated[str, typer.Option(
        envvar="TPSERVE_SETTINGS",
        help="vLLM settings profile: tuned (measured per model size and GPU memory, outputs unchanged; none "
             "measured yet, so nothing today), fp8 (tuned plus the measured fp8 combination: fp8 KV cache and "
             "weights, bfloat16; changes outputs) or vllm (vLLM's own defaults). A flag "
             "you give wins. docs/settings.md.")] = "tuned",
    dry_run: Annotated[bool, typer.Option(help="Check everything, then print the vLLM command instead of running it.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help='With --dry-run: print the command as JSON, {"argv": [...], "env": {...}} (the list exec '
        'would run and the variables tpserve sets for it).')] = False,
) -> None:
    """Check the launch, then exec vLLM's OpenAI-compatible server (the container's entrypoint).

    A repo id is served only from a verified `tpserve fetch` of exactly that repo and revision.
    Arguments after `--` go to vLLM verbatim; the API key comes from the VLLM_API_KEY variable.
    After SIGTERM, running requests may finish for 30 s (vLLM's --shutdown-timeout; `-- --shutdown-timeout N` to change).
    On NVIDIA GPUs the settings profile adds its flags for the model's size and the GPUs' memory (none on CPU);
    the line it prints on stderr names them. Example:

        tpserve serve --model meta-llama/Llama-2-70b-chat-hf --revision REV -tp 4 -- --enforce-eager
    """
    if as_json and not dry_run:
        raise typer.BadParameter("prints the --dry-run command as JSON: add --dry-run", param_hint="--json")
    config = _config(ctx.args, model=model, revision=revision, served_model_name=served_model_name,
                     tensor_parallel_size=tensor_parallel_size, pipeline_parallel_size=pipeline_parallel_size,
                     max_model_len=max_model_len, dtype=dtype, gpu_memory_utilization=gpu_memory_utilization,
                     allreduce_fusion=allreduce_fusion, host=host, port=port, extra_args=extra_args,
                     settings=settings)
    argv = launch.prepare(config, cache_dir or default_cache_dir(),
                          say=lambda line: typer.echo(f"tpserve: {line}", err=True))
    if dry_run:
        typer.echo(json.dumps({"argv": argv, "env": launch.env_added(config)}, indent=2) if as_json
                   else shlex.join(argv))
        return
    launch.exec_vllm(argv, launch.vllm_env(config))


def _config(vllm_args: Sequence[str], *, extra_args: str, **options) -> launch.ServeConfig:
    return launch.ServeConfig(**options, extra_args=launch.parse_extra_args(extra_args) + tuple(vllm_args))


def serve_config(args: Sequence[str]) -> tuple[launch.ServeConfig, Path]:
    """The configuration ``tpserve serve ARGS`` would launch and its cache folder, read by the command's own
    parser.

    The ``TPSERVE_*`` variables of this process count, as they would for a server started from it.
    Nothing is checked or resolved: the model need not be on this machine.
    """
    parser = typer.Typer()
    parser.command(context_settings=CONTEXT)(serve)
    with typer.main.get_command(parser).make_context("serve", list(args)) as ctx:
        options = {k: v for k, v in ctx.params.items() if k not in ("cache_dir", "dry_run", "as_json")}
        return _config(ctx.args, **options), ctx.params["cache_dir"] or default_cache_dir()
