"""The model cache: ``fetch`` downloads a model pinned to one commit, ``verify`` proves a folder holds
the model that was asked for before vLLM spends minutes loading it.

A cache that served Llama-2-7b while 70b was asked for is the mistake this module exists to prevent.
A model lives at ``<cache_dir>/<org>--<name>/<commit sha>/`` and counts as complete only once
``tpserve-manifest.json`` is there: written last and atomically, it names the repo, the commit, and
every file with its size. ``tpserve.fetch.hub`` talks to the hub (huggingface_hub resumes downloads and draws
the progress bars); this module picks the files, checks what arrived, and keeps the manifest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from fnmatch import fnmatch
from importlib import metadata
from pathlib import Path

from . import hub, modelconfig
from .errors import (
    CacheDamagedError,
    CacheError,
    CacheIncompleteError,
    CacheMismatchError,
    ConfigError,
    DownloadInterruptedError,
    ModelConfigError,
    NoSpaceError,
)
from .hub import RemoteFile, fetch_command

MANIFEST_NAME = "tpserve-manifest.json"
MANIFEST_FORMAT = 1
# Written before a download starts: the files it brings and their sizes, so that an unfinished fetch can be
# told apart from a finished one by what has not arrived.
PENDING_NAME = "tpserve-pending.json"
CONFIG_NAME = "config.json"
COMMIT_SHA = re.compile(r"[0-9a-f]{40}")
REPO_ID = re.compile(r"([\w.-]+/)?[\w.-]{1,96}")

# What vLLM reads from a Hugging Face-format repo besides the weights.
METADATA_PATTERNS = (
    CONFIG_NAME, "generation_config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
    "special_tokens_map.json", "added_tokens.json", "vocab.json", "vocab.txt", "merges.txt",
    "chat_template.jinja", "chat_template.json",
)
SAFETENSORS_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
PICKLE_PATTERNS = ("*.bin", "*.bin.index.json")
NOT_WEIGHTS = ("training_args.bin", "optimizer.bin", "scheduler.bin")
WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass(frozen=True)
class ManifestFile:
    """One file of a fetched model, as the hub listed it.

    ``sha256`` is the content's hash: the hub's LFS oid for weights, hashed at fetch time for the small files
    kept in git; None in manifests of an older tpserve. Only ``verify(hashes=True)`` reads it.
    """

    path: str
    size: int
    sha256: str | None = None


@dataclass(frozen=True)
class Manifest:
    """What a complete cache folder holds; ``tpserve-manifest.json`` is this record as JSON."""

    repo_id: str
    requested_revision: str
    resolved_sha: str
    files: tuple[ManifestFile, ...]
    config_sha256: str
    parameter_count: int | None
    created_at: str
    tpserve_version: str
    # "hub" when downloaded by tpserve; "offline" when adopted from a pre-filled Hugging Face cache.
    source: str = "hub"

    def to_json(self) -> str:
        return json.dumps({"format": MANIFEST_FORMAT, **asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.pop("format", None) != MANIFEST_FORMAT:
            raise ValueError(f"not a format {MANIFEST_FORMAT} manifest")
        files = tuple(ManifestFile(path=str(f["path"]), size=int(f["size"]), sha256=f.get("sha256"))
                      for f in data.pop("files"))
        return cls(files=files, **data)


def fetch(repo_id: str, revision: str, cache_dir: str | Path, *, token: str | None = None,
          progress: bool = True, verify_hashes: bool = False) -> Manifest:
    """Download REPO_ID at REVISION into CACHE_DIR unless a verified copy is there, and return its manifest.

    A full commit sha that is cached is checked on disk without touching the network; any other
    revision costs one hub request to resolve it. Files damaged since an earlier fetch are downloaded
    again, and a fetch that was cut off resumes. TOKEN is the only token used: no stored login is read.
    With VERIFY_HASHES every file is also hashed against the hub's sha256, so that content changed without
    a change of size is found and fetched again; that reads every byte of the model.
    """
    _check_names(repo_id, revision)
    if COMMIT_SHA.fullmatch(revision):
        try:
            return verify(model_path(cache_dir, repo_id, revision), repo_id=repo_id, revision=revision,
                          hashes=verify_hashes)
        except (CacheIncompleteError, CacheDamagedError):
            pass
    try:
        remote = hub.resolve(repo_id, revision, token=token)
    except DownloadInterruptedError as exc:
        earlier = find_cached(repo_id, revision, cache_dir)
        if earlier is None:
            raise
        raise DownloadInterruptedError(
            f"{exc}; {earlier} holds an earlier fetch of {revision}: pass --revision {earlier.name} to use "
            "it without the network", repo_id=repo_id, revision=revision, path=str(earlier)) from exc
    wanted = {name: remote.files[name] for name in select_files(remote.files)}
    if CONFIG_NAME not in wanted or not any(name.endswith(WEIGHT_SUFFIXES) for name in wanted):
        raise CacheError(
            f"{repo_id} at {revision} has no {CONFIG_NAME} with *.safetensors or *.bin weights beside it: "
            "tpserve serves Hugging Face transformers-format models only", repo_id=repo_id, revision=revision)
    target = model_path(cache_dir, repo_id, remote.sha)

    done = _complete_manifest(target, remote, wanted, hashes=verify_hashes)
    if done is not None:
        if done.requested_revision != revision:
            done = replace(done, requested_revision=revision)
            with hub.translated_errors(repo_id, revision, folder=target):
                _write_manifest(target, done, sync_files=False)
        return done

    (target / MANIFEST_NAME).unlink(missing_ok=True)
    for name in _stale_files(target, wanted, hashes=verify_hashes):
        (target / name).unlink(missing_ok=True)
    needed = sum(entry.size or 0 for name, entry in wanted.items() if not (target / name).is_file())
    _check_space(target, needed, repo_id, revision)
    with hub.translated_errors(repo_id, revision, folder=target, needed_bytes=needed):
        target.mkdir(parents=True, exist_ok=True)
        (target / PENDING_NAME).write_text(json.dumps({name: entry.size for name, entry in wanted.items()}))
    hub.download(remote, wanted, target, token=token, progress=progress, needed_bytes=needed)
    stale = _stale_files(target, wanted, hashes=verify_hashes)
    if stale:
        raise CacheDamagedError(
            f"{', '.join(stale)} of {repo_id}@{remote.sha} did not arrive as the hub lists it; "
            f"run {fetch_command(repo_id, revision)} again to repair", paths=tuple(stale),
            repo_id=repo_id, revision=revision, path=str(target))
    manifest = Manifest(
        repo_id=repo_id,
        requested_revision=revision,
        resolved_sha=remote.sha,
        files=tuple(ManifestFile(name, (target / name).stat().st_size, wanted[name].sha256 or _sha256(target / name))
                    for name in sorted(wanted)),
        config_sha256=_sha256(target / CONFIG_NAME),
        parameter_count=_parameter_count(target / CONFIG_NAME),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        tpserve_version=_version(),
    )
    with hub.translated_errors(repo_id, revision, folder=target):
        _write_manifest(target, manifest)
    (target / PENDING_NAME).unlink(missing_ok=True)
    return manifest


def verify(model_dir: str | Path, *, repo_id: str | None = None, revision: str | None = None,
           hashes: bool = False) -> Manifest:
    """Check MODEL_DIR holds a complete, unchanged fetch of REPO_ID at REVISION (either when given).

    REVISION may be the name it was fetched by or its commit sha. Sizes of every file and the
    config.json hash are checked; weights are hashed only with HASHES (minutes for large models), so
    without it a same-size change to a weights file goes unnoticed.
    """
    model_dir = Path(model_dir)
    manifest = _read_manifest(model_dir, repo_id, revision)
    if repo_id is not None and manifest.repo_id != repo_id:
        raise CacheMismatchError(
            f"{model_dir} holds {manifest.repo_id}, not {repo_id}: refusing to serve a different model; "
            f"point at the cache of {repo_id} or run {fetch_command(repo_id, revision or 'main')}",
            repo_id=repo_id, revision=revision or "", path=str(model_dir))
    if revision is not None and not _same_revision(manifest, revision):
        raise CacheMismatchError(
            f"{model_dir} holds {manifest.repo_id} at {manifest.resolved_sha} (fetched as "
            f"{manifest.requested_revision}), not revision {revision}; run "
            f"{fetch_command(manifest.repo_id, revision)}",
            repo_id=manifest.repo_id, revision=revision, path=str(model_dir))
    problems = _damage(model_dir, manifest, hashes=hashes)
    if problems:
        raise CacheDamagedError(
            f"{model_dir} was changed after its fetch: {'; '.join(problems.values())}; run "
            f"{fetch_command(manifest.repo_id, manifest.resolved_sha)} again to repair",
            paths=tuple(problems), repo_id=manifest.repo_id, revision=manifest.resolved_sha,
            path=str(model_dir))
    return manifest


def find_cached(repo_id: str, revision: str, cache_dir: str | Path) -> Path | None:
    """The folder with a manifest for REPO_ID at REVISION, without touching the network or hashing.

    For a branch or tag this is the newest fetch made by that name: the hub may have moved on since.
    Call :func:`verify` on the result before trusting its files.
    """
    _check_names(repo_id, revision)
    repo_dir = Path(cache_dir) / repo_folder(repo_id)
    if COMMIT_SHA.fullmatch(revision):
        folders = [repo_dir / revision]
    else:
        folders = sorted(path for path in repo_dir.iterdir() if path.is_dir()) if repo_dir.is_dir() else []
    found = []
    for folder in folders:
        try:
            manifest = Manifest.from_json((folder / MANIFEST_NAME).read_text())
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if manifest.repo_id == repo_id and _same_revision(manifest, revision):
            found.append((manifest.created_at, folder))
    return max(found)[1] if found else None


def unfinished(repo_id: str, cache_dir: str | Path) -> Path | None:
    """The newest folder of REPO_ID whose fetch started but never wrote its manifest, if any."""
    repo_dir = Path(cache_dir) / repo_folder(repo_id)
    folders = repo_dir.glob(f"*/{PENDING_NAME}") if repo_dir.is_dir() else []
    started = [(path.stat().st_mtime, path.parent) for path in folders
               if not (path.parent / MANIFEST_NAME).exists()]
    return max(started)[1] if started else None


def select_files(repo_files: Iterable[str]) -> list[str]:
    """The files vLLM needs from a repo: config, tokenizer and weights, safetensors whenever there are any.

    Only the top level counts (subfolders hold other formats: ``onnx/``, ``original/``), and Mistral's
    ``consolidated.safetensors`` is left out when Hugging Face-format shards are there as well.
    """
    top = sorted(name for name in repo_files if "/" not in name)
    weights = [name for name in top if _matches(name, SAFETENSORS_PATTERNS)]
    if not any(name.endswith(".safetensors") for name in weights):
        weights = [name for name in top if _matches(name, PICKLE_PATTERNS) and name not in NOT_WEIGHTS]
    elif any(name.endswith(".safetensors") and not name.startswith("consolidated") for name in weights):
        weights = [name for name in weights if not name.startswith("consolidated")]
    return sorted([name for name in top if _matches(name, METADATA_PATTERNS)] + weights)


def repo_folder(repo_id: str) -> str:
    """The cache folder name of a repo: ``meta-llama/Llama-2-7b-hf`` becomes ``meta-llama--Llama-2-7b-hf``."""
    return repo_id.replace("/", "--")


def model_path(cache_dir: str | Path, repo_id: str, sha: str) -> Path:
    """Where REPO_ID at commit SHA lives under CACHE_DIR."""
    return Path(cache_dir) / repo_folder(repo_id) / sha


def _check_names(repo_id: str, revision: str) -> None:
    if not REPO_ID.fullmatch(repo_id) or "--" in repo_id or ".." in repo_id:
        raise ConfigError(f"{repo_id!r} is not a Hugging Face repo id: expected ORG/NAME, "
                          "e.g. meta-llama/Llama-2-7b-hf")
    if not revision.strip():
        raise ConfigError("no revision: pass a branch, tag or commit sha, e.g. --revision main")


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch(name, pattern) for pattern in patterns)


def _same_revision(manifest: Manifest, revision: str) -> bool:
    if revision in (manifest.requested_revision, manifest.resolved_sha):
        return True
    return len(revision) >= 7 and re.fullmatch(r"[0-9a-f]+", revision) is not None \
        and manifest.resolved_sha.startswith(revision)


def _read_manifest(model_dir: Path, repo_id: str | None, revision: str | None) -> Manifest:
    command = fetch_command(repo_id or "MODEL", revision or "REVISION")
    path = model_dir / MANIFEST_NAME
    facts = {"repo_id": repo_id or "", "revision": revision or "", "path": str(model_dir)}
    if not model_dir.is_dir():
        raise CacheIncompleteError(f"{model_dir} does not exist: run {command}", **facts)
    try:
        return Manifest.from_json(path.read_text())
    except FileNotFoundError:
        missing = _not_arrived(model_dir)
        which = f" ({', '.join(missing)} not downloaded yet)" if missing else ""
        raise CacheIncompleteError(
            f"{model_dir} has no {MANIFEST_NAME}: its fetch did not finish{which}, or another tool wrote it; "
            f"run {command} to complete it", **facts) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CacheDamagedError(f"{path} cannot be read ({exc}); run {command} again to repair",
                                paths=(MANIFEST_NAME,), **facts) from exc


def _not_arrived(model_dir: Path) -> list[str]:
    """The files an unfinished fetch into MODEL_DIR was to bring that are missing or short."""
    try:
        wanted = json.loads((model_dir / PENDING_NAME).read_text())
    except (OSError, ValueError):
        return []
    return [name for name, size in sorted(wanted.items()) if not (model_dir / name).is_file()
            or size not in (None, (model_dir / name).stat().st_size)]


def _damage(model_dir: Path, manifest: Manifest, *, hashes: bool = False) -> dict[str, str]:
    """What differs from MANIFEST on disk, by file; with HASHES, content as well as sizes."""
    problems = {}
    for entry in manifest.files:
        path = model_dir / entry.path
        if not path.is_file():
            problems[entry.path] = f"{entry.path} is missing"
        elif (size := path.stat().st_size) != entry.size:
            problems[entry.path] = f"{entry.path} is {size} bytes, not {entry.size}"
        elif hashes and entry.sha256 is None:
            problems[entry.path] = f"{entry.path} has no sha256 in the manifest (an older tpserve fetched it)"
        elif hashes and _sha256(path) != entry.sha256:
            problems[entry.path] = f"{entry.path} does not hash to its sha256 {entry.sha256}"
    config = model_dir / CONFIG_NAME
    if CONFIG_NAME not in problems and config.is_file() and _sha256(config) != manifest.config_sha256:
        problems[CONFIG_NAME] = f"{CONFIG_NAME} has changed"
    return problems


def _complete_manifest(target: Path, remote: hub.RemoteRevision, wanted: dict[str, RemoteFile], *,
                       hashes: bool) -> Manifest | None:
    """The manifest of TARGET if it is complete, unchanged and lists exactly WANTED; else None."""
    try:
        manifest = verify(target, repo_id=remote.repo_id, revision=remote.sha, hashes=hashes)
    except (CacheIncompleteError, CacheDamagedError):
        return None
    listed = {entry.path: entry.size for entry in manifest.files}
    return manifest if listed == {name: entry.size for name, entry in wanted.items()} else None


def _stale_files(folder: Path, wanted: dict[str, RemoteFile], *, hashes: bool) -> list[str]:
    """Files in FOLDER, or missing from it, that are not what the hub lists: wrong size or git blob id.

    Only files kept in git (config, tokenizer) have a blob id to check; weights, in LFS, are checked by size,
    and with HASHES by their sha256 as well.
    """
    stale = []
    for name, entry in sorted(wanted.items()):
        path = folder / name
        if (not path.is_file() or entry.size not in (None, path.stat().st_size)
                or (entry.blob_id is not None and _git_blob_id(path) != entry.blob_id)
                or (hashes and entry.sha256 is not None and _sha256(path) != entry.sha256)):
            stale.append(name)
    return stale


def _git_blob_id(path: Path) -> str:
    """Git's id of the file at PATH, hashed as it is read: memory stays flat whatever the file's size."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as file:
        return hashlib.file_digest(file, lambda: digest).hexdigest()


def _sha256(path: Path) -> str:
    """The sha256 of PATH's content; a file unchanged since it was last hashed (same inode, size and
    modification time) is not read again, so one fetch with hashes reads each weights file once."""
    stat = path.stat()
    return _sha256_of(str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=1024)
def _sha256_of(path: str, _inode: int, _size: int, _mtime_ns: int) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _parameter_count(config_path: Path) -> int | None:
    """The model's parameter count, or None for an architecture tpserve cannot count."""
    try:
        return modelconfig.parameter_count(json.loads(config_path.read_text()))
    except (ModelConfigError, ValueError):
        return None


def _version() -> str:
    try:
        return metadata.version("tpserve")
    except metadata.PackageNotFoundError:
        return "unknown"


def _write_manifest(folder: Path, manifest: Manifest, *, sync_files: bool = True) -> None:
    """Write the manifest atomically, after the files it lists are on disk (not just in the page cache)."""
    if sync_files:
        for entry in manifest.files:
            fd = os.open(folder / entry.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{MANIFEST_NAME}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(manifest.to_json())
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, folder / MANIFEST_NAME)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _check_space(target: Path, needed: int, repo_id: str, revision: str) -> None:
    """Refuse a download that cannot fit, instead of failing hours into it."""
    probe = next(path for path in (target, *target.parents) if path.exists())
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise NoSpaceError(
            f"not enough space for {repo_id} in {target}: it needs {hub.size_text(needed)} more, the disk "
            f"has {hub.size_text(free)} free; free some space or choose another cache dir, then run "
            f"{fetch_command(repo_id, revision)}",
            needed_bytes=needed, repo_id=repo_id, revision=revision, path=str(target))
