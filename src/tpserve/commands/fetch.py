"""``tpserve fetch``: download a model once into the cache, with a verified manifest."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from tpserve.commands import CacheDir, Revision, default_cache_dir


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
