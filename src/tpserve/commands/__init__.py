"""One module per ``tpserve`` command; :mod:`tpserve.cli` assembles them into the app.

Options more than one command takes, and the console errors and progress go to, live here. Each
command imports what it runs inside its body, so that ``tpserve serve`` starts without loading the rest.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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


def at_least_one(**values: int) -> None:
    """Refuse a count below 1, naming its option (``num_requests`` is ``--num-requests``)."""
    for name, value in values.items():
        if value < 1:
            raise typer.BadParameter(f"must be at least 1, got {value}", param_hint="--" + name.replace("_", "-"))


# The load options of tpserve sweep and tpserve tune: None keeps the --workload preset's value (tpserve.presets).
Workload = Annotated[str | None, typer.Option(
    help="A named workload: note (59 built-in prompts × 256 tokens, all in flight), throughput (1,000 random "
         "512-token prompts × 256, 256 in flight) or chat (loadtest/data/chat.jsonl, 64 in flight); the options "
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
    """The sweep's :class:`tpserve.sweep.Load`: the --workload preset with the options given over it, checked."""
    from tpserve.presets import workload as preset
    from tpserve.workload.options import PROMPT_SETS

    if explicit.get("prompt_set") not in (None, *PROMPT_SETS):
        raise typer.BadParameter(f"must be one of {', '.join(PROMPT_SETS)}, got {explicit['prompt_set']!r}",
                                 param_hint="--prompt-set")
    load = preset(workload, **explicit)
    at_least_one(num_requests=load.num_requests, max_tokens=load.max_tokens, concurrency=load.concurrency)
    return load
