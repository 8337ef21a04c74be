"""``tpserve fetch``: download a model once into the cache, with a verified manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from tpserve.commands import CacheDir, Revision, default_cache_dir


def fetch(
    model: Annotated[str, typer.Argument(help="Hugging Face repo id, e.g. meta-llama/Llama-2-70b-chat-hf.")],
    revision: Revision = "main",
    cache_dir: CacheDir = None,
    progress: Annotated[bool, typer.Option(help="Show download progress bars.")] = True,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Never touch the network: verify the model already in a Hugging Face hub cache "
                          "(--from) at the pinned commit --revision, link it into the cache and write the "
                          "manifest. Refuses a branch or tag, and names any missing or damaged file.")] = False,
    from_dir: Annotated[Path | None, typer.Option(
        "--from", show_default=False,
        help="With --offline: the Hugging Face hub cache holding models--ORG--NAME/snapshots/SHA/, as "
             "`hf download --cache-dir DIR` leaves it (default: $HF_HUB_CACHE, else $HF_HOME/hub).")] = None,
    verify_hashes: Annotated[bool, typer.Option(
        "--verify-hashes", help="Also hash every file against the sha256 the hub lists (the LFS oid of weights) "
                                "and fetch again any that differ: finds content changed at the same size, "
                                "which the default size check misses. Reads every byte of the model.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the verified model as JSON: repo_id, requested_revision, resolved_sha, path, files, "
                       "bytes, parameters (null when config.json does not tell) and verified_offline_from (the "
                       "hub snapshot --offline verified, else null).")] = False,
) -> None:
    """Download a model once into the cache, keyed by repo id and commit sha, with a verified manifest.

    The token comes from the HF_TOKEN variable only. Running it again on a complete cache does
    nothing; an interrupted download resumes; damaged files are fetched again. Files are checked by
    size (and config.json by hash); --verify-hashes checks the content of every file too. Example:

        HF_TOKEN=... tpserve fetch meta-llama/Llama-2-70b-chat-hf --revision main

    With --offline, a model someone downloaded in Hugging Face hub layout (an air-gapped copy) is
    checked on disk instead: config.json parses, weights and every shard of an *.index.json are there,
    no link dangles, no file is empty, and each blob named by its hash (sha256 for weights) hashes to
    its name. Without the hub, files the commit has but nobody downloaded cannot be noticed. Example:

        tpserve fetch meta-llama/Llama-2-70b-chat-hf --revision e9149a12809580e8602995856f8098ce973d1080 \\
            --offline --from /mnt/hf-cache/hub
    """
    from tpserve.fetch import cache, prefilled

    folder = cache_dir or default_cache_dir()
    if from_dir is not None and not offline:
        raise typer.BadParameter("is read only with --offline", param_hint="--from")
    if verify_hashes and offline:
        raise typer.BadParameter("checks a download against the hub; --offline already hashes every blob "
                                 "against its name", param_hint="--verify-hashes")
    snapshot = None
    if offline:
        hub_cache = from_dir or prefilled.default_hub_cache()
        manifest = prefilled.adopt(model, revision, folder, hub_cache)
        snapshot = prefilled.snapshot_path(hub_cache, model, manifest.resolved_sha)
    else:
        manifest = cache.fetch(model, revision, folder, token=os.environ.get("HF_TOKEN") or None,
                               progress=progress, verify_hashes=verify_hashes)
    path = cache.model_path(folder, manifest.repo_id, manifest.resolved_sha)
    size = sum(entry.size for entry in manifest.files)
    if as_json:
        typer.echo(json.dumps({
            "repo_id": manifest.repo_id, "requested_revision": manifest.requested_revision,
            "resolved_sha": manifest.resolved_sha, "path": str(path), "files": len(manifest.files), "bytes": size,
            "parameters": manifest.parameter_count or None,
            "verified_offline_from": str(snapshot) if snapshot else None}, indent=2))
        return
    params = f"{manifest.parameter_count / 1e9:.1f}B parameters, " if manifest.parameter_count else ""
    origin = f"verified offline from {snapshot}, " if snapshot else ""
    typer.echo(f"{manifest.repo_id}@{manifest.requested_revision} = {manifest.resolved_sha}: "
               f"{len(manifest.files)} files, {size / 2**30:.2f} GiB, {params}{origin}at {path}")
