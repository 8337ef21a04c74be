"""One module per ``tpserve`` command; :mod:`tpserve.cli` assembles them into the app.

Options more than one command takes, and the console errors and progress go to, live here; what only
``tpserve sweep`` and ``tpserve tune`` share is in :mod:`tpserve.commands._measuring`. A command imports
no other command, and what it runs it imports inside its body, so that ``tpserve serve`` starts without
loading the rest; this package itself imports nothing of tpserve (tests/unit/test_import_graph.py).
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
