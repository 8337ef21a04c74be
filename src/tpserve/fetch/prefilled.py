"""Adopt a model that is already on disk in Hugging Face hub layout, without the network (``fetch --offline``).

A volume filled by ``hf download ORG/NAME --revision SHA --cache-dir DIR`` (or a copy of such a cache)
holds ``DIR/models--ORG--NAME/snapshots/SHA/``, whose files link into ``blobs/``, but no tpserve
manifest. :func:`adopt` checks that snapshot with what can be known offline, links its files into
tpserve's cache (``<cache_dir>/<org>--<name>/<sha>/``, as :mod:`tpserve.fetch.cache` keeps it) and writes the
manifest there, so that serving accepts it like a fetched model. It never calls the hub.

Offline verification covers: the commit is a pinned 40-hex sha; config.json is there and parses; there
are weights (``*.safetensors`` or ``*.bin``, chosen as the online fetch chooses them); every shard an
``*.index.json`` names is there; no file is a dangling link or empty; and every file whose blob is named
by its hash (sha256 for LFS files such as weights, the git blob id for the others: huggingface_hub's own
layout) hashes to that name. It cannot tell whether the hub's commit lists files that were not
downloaded (a tokenizer left out, say), nor check a file that is a plain copy rather than a blob link.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

from . import cache
from .errors import CacheDamagedError, CacheIncompleteError, ConfigError

SHA256 = re.compile(r"[0-9a-f]{64}")


def default_hub_cache() -> Path:
    """Where huggingface_hub keeps its cache: HF_HUB_CACHE, else $HF_HOME/hub (~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    hf_home = os.environ.get("HF_HOME") or str(Path.home() / ".cache" / "huggingface")
    return Path(hf_home) / "hub"


def snapshot_path(hub_cache: str | Path, repo_id: str, sha: str) -> Path:
    """The folder huggingface_hub keeps REPO_ID at commit SHA in, under HUB_CACHE."""
    return Path(hub_cache) / f"models--{repo_id.replace('/', '--')}" / "snapshots" / sha


def fill_command(repo_id: str, sha: str, hub_cache: str | Path) -> str:
    """The command that fills HUB_CACHE with REPO_ID at SHA, for messages."""
    return f"hf download {repo_id} --revision {sha} --cache-dir {hub_cache}"


def adopt(repo_id: str, revision: str, cache_dir: str | Path, hub_cache: str | Path) -> cache.Manifest:
    """Verify REPO_ID at commit REVISION in HUB_CACHE, link it into CACHE_DIR, and write its manifest.

    A folder in CACHE_DIR that already verifies is returned as it is. Nothing is downloaded: a missing or
    damaged file is an error that names it.
    """
    cache._check_names(repo_id, revision)
    if not cache.COMMIT_SHA.fullmatch(revision):
        raise ConfigError(
            f"--offline needs a 40-hex commit sha, not {revision!r}: a branch or tag cannot be resolved "
            f"without the hub; look it up in {hub_cache}/models--{repo_id.replace('/', '--')}/refs/ or on the "
            "model page's commit history, and pass it as --revision")
    target = cache.model_path(cache_dir, repo_id, revision)
    try:
        return cache.verify(target, repo_id=repo_id, revision=revision)
    except (CacheIncompleteError, CacheDamagedError):
        pass
    snapshot = snapshot_path(hub_cache, repo_id, revision)
    facts = {"repo_id": repo_id, "revision": revision, "path": str(snapshot)}
    refill = fill_command(repo_id, revision, hub_cache)
    if not snapshot.is_dir():
        there = snapshot.parent
        known = sorted(p.name for p in there.iterdir()) if there.is_dir() else []
        listing = f" (snapshots there: {', '.join(known)})" if known else ""
        raise CacheIncompleteError(
            f"no snapshot of {repo_id} at {revision} in {hub_cache}: {snapshot} does not exist{listing}; "
            f"fill it with {refill}", **facts)
    names = cache.select_files(path.name for path in snapshot.iterdir() if not path.is_dir())
    if cache.CONFIG_NAME not in names:
        raise CacheIncompleteError(f"{cache.CONFIG_NAME} is missing from {snapshot}; fill it with {refill}",
                                   **facts)
    if not any(name.endswith(cache.WEIGHT_SUFFIXES) for name in names):
        raise CacheIncompleteError(
            f"{repo_id} at {revision} has no *.safetensors or *.bin weights beside {cache.CONFIG_NAME} in "
            f"{snapshot}; fill it with {refill}", **facts)
    for name in names:
        _check_file(snapshot, name, refill, facts)
    for name in names:
        if name.endswith(".index.json"):
            for shard in _shards(snapshot / name, repo_id, revision, refill, facts):
                if shard not in names:
                    raise CacheIncompleteError(
                        f"{shard} is missing from {snapshot} ({name} names it); fill it with {refill}", **facts)
    try:
        json.loads((snapshot / cache.CONFIG_NAME).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CacheDamagedError(f"{cache.CONFIG_NAME} of {repo_id} at {revision} is not JSON ({exc}); "
                                f"fill it again with {refill}", paths=(cache.CONFIG_NAME,), **facts) from exc
    return _link_and_record(snapshot, target, names, repo_id, revision)


def _check_file(snapshot: Path, name: str, refill: str, facts: dict[str, str]) -> None:
    """Refuse NAME if it is a dangling link, empty, or its blob's content is not what the blob is named by."""
    path = snapshot / name
    if not path.exists():
        raise CacheIncompleteError(
            f"{name} is missing from {snapshot}: it links to {path.resolve()}, which does not exist; "
            f"fill it again with {refill}", **facts)
    if path.stat().st_size == 0:
        raise CacheDamagedError(f"{name} is empty in {snapshot}; fill it again with {refill}",
                                paths=(name,), **facts)
    if not path.is_symlink():
        return
    blob = path.resolve().name
    if SHA256.fullmatch(blob):
        actual = cache._sha256(path)
    elif cache.COMMIT_SHA.fullmatch(blob):
        actual = cache._git_blob_id(path)
    else:
        return
    if actual != blob:
        raise CacheDamagedError(
            f"{name} does not hash to its blob name in {snapshot} ({actual}, not {blob}): the file was changed "
            f"or cut short; delete the blob and fill it again with {refill}", paths=(name,), **facts)


def _shards(index: Path, repo_id: str, revision: str, refill: str, facts: dict[str, str]) -> set[str]:
    """The weight files an ``*.index.json`` names."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        return {str(shard) for shard in weight_map.values()}
    except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise CacheDamagedError(
            f"{index.name} of {repo_id} at {revision} has no weight_map naming the shards ({exc!r}); "
            f"fill it again with {refill}", paths=(index.name,), **facts) from exc


def _link_and_record(snapshot: Path, target: Path, names: list[str], repo_id: str,
                     revision: str) -> cache.Manifest:
    """Hard-link the files into TARGET (a relative symlink across file systems), then write the manifest."""
    target.mkdir(parents=True, exist_ok=True)
    (target / cache.MANIFEST_NAME).unlink(missing_ok=True)
    for name in names:
        source, link = (snapshot / name).resolve(), target / name
        link.unlink(missing_ok=True)
        try:
            os.link(source, link)
        except OSError:
            link.symlink_to(os.path.relpath(source, target))
    manifest = cache.Manifest(
        repo_id=repo_id,
        requested_revision=revision,
        resolved_sha=revision,
        files=tuple(cache.ManifestFile(name, (target / name).stat().st_size) for name in names),
        config_sha256=cache._sha256(target / cache.CONFIG_NAME),
        parameter_count=cache._parameter_count(target / cache.CONFIG_NAME),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tpserve_version=cache._version(),
        source="offline",
    )
    cache._write_manifest(target, manifest)
    return manifest
