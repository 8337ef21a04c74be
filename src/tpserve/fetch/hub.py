"""The Hugging Face hub as tpserve uses it: resolve a revision, download files, and say what went wrong.

This is the only module that calls huggingface_hub, and the one place its exceptions (and the disk's)
become tpserve errors. It keeps to the APIs that have stayed the same from huggingface_hub 0.24 to 2.x:
``HfApi.model_info(files_metadata=True)``, ``snapshot_download(local_dir=...)`` and the error classes
in ``huggingface_hub.utils``.
"""

from __future__ import annotations

import errno
import glob
import importlib
import os
import signal
import threading
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, constants, snapshot_download
from huggingface_hub import utils as hf_utils

from .errors import (
    CacheError,
    DownloadInterruptedError,
    GatedModelError,
    HubError,
    ModelNotFoundError,
    NoSpaceError,
    RevisionNotFoundError,
    TokenRejectedError,
)

# Files downloaded at once: huggingface_hub's default is 8, and over Xet each file in flight holds its own
# download buffer, so fewer bound the fetch's memory (docs/chart.md, "Fetch memory") while 4 streams still
# fill a link that one would not.
FETCH_WORKERS = 4


@dataclass(frozen=True)
class RemoteFile:
    """A file as the hub lists it: its size, its git blob id when it is kept in git, its sha256 when in LFS."""

    size: int | None
    blob_id: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class RemoteRevision:
    """A revision resolved to its commit, with every file the commit holds."""

    repo_id: str
    requested: str
    sha: str
    files: dict[str, RemoteFile]


def fetch_command(repo_id: str, revision: str) -> str:
    """The command that gets REPO_ID at REVISION into the cache, for messages."""
    return f"tpserve fetch {repo_id} --revision {revision}"


def size_text(count: int) -> str:
    """A byte count for people: ``140.5 GB``."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


def resolve(repo_id: str, revision: str, *, token: str | None) -> RemoteRevision:
    """Ask the hub which commit REVISION of REPO_ID is and what files it holds (one request)."""
    with translated_errors(repo_id, revision, token=token):
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True, token=token or False)
    if not info.sha:
        raise HubError(f"the hub did not say which commit {revision} of {repo_id} is; try again later",
                       repo_id=repo_id, revision=revision)
    files = {
        sibling.rfilename: RemoteFile(
            size=sibling.size if sibling.size is not None else getattr(sibling.lfs, "size", None),
            blob_id=None if sibling.lfs else sibling.blob_id,
            sha256=getattr(sibling.lfs, "sha256", None),
        )
        for sibling in info.siblings or []
    }
    return RemoteRevision(repo_id=repo_id, requested=revision, sha=info.sha, files=files)


def download(remote: RemoteRevision, names: Iterable[str], folder: Path, *, token: str | None,
             progress: bool, needed_bytes: int | None) -> None:
    """Download NAMES of REMOTE's commit into FOLDER; files already there from that commit are kept.

    An interrupted download leaves the finished files (and huggingface_hub's bookkeeping under
    ``.cache/huggingface/``) so the next call resumes.
    """
    with translated_errors(remote.repo_id, remote.requested, token=token, folder=folder,
                           needed_bytes=needed_bytes), _progress_bars(progress), \
            _exit_on_signals(remote.repo_id, remote.requested), warnings.catch_warnings():
        # tpserve checks the space before downloading and names a full disk itself (translated_errors).
        warnings.filterwarnings("ignore", message="Not enough free disk space", category=UserWarning)
        snapshot_download(remote.repo_id, revision=remote.sha, local_dir=folder, token=token or False,
                          allow_patterns=[glob.escape(name) for name in names], max_workers=FETCH_WORKERS)


@contextmanager
def translated_errors(repo_id: str, revision: str, *, token: str | None = None, folder: Path | None = None,
                      needed_bytes: int | None = None) -> Iterator[None]:
    """Turn huggingface_hub's and the disk's errors into tpserve's, each naming the fix."""
    facts = {"repo_id": repo_id, "revision": revision, "path": str(folder or "")}
    page = f"{constants.ENDPOINT}/{repo_id}"
    again = f"then run {fetch_command(repo_id, revision)} again"
    try:
        yield
    except hf_utils.GatedRepoError as exc:
        if token:
            message = (f"{repo_id} is gated and the account of HF_TOKEN has no access yet: accept its "
                       f"terms at {page} (approval can take a while), {again}")
        else:
            message = (f"{repo_id} is gated: set HF_TOKEN to a token of an account that accepted its "
                       f"terms at {page}, {again}")
        raise GatedModelError(message, **facts) from exc
    except hf_utils.RepositoryNotFoundError as exc:
        hint = "check the id" if token else "check the id, or set HF_TOKEN if it is private"
        raise ModelNotFoundError(f"model {repo_id} was not found on {constants.ENDPOINT}: {hint}",
                                 **facts) from exc
    except hf_utils.RevisionNotFoundError as exc:
        raise RevisionNotFoundError(
            f"{repo_id} has no revision {revision!r}: pass a branch, tag or full commit sha from "
            f"{page}/commits/main", **facts) from exc
    except hf_utils.HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", None)
        if status == 401:
            raise TokenRejectedError(
                f"the hub rejected HF_TOKEN (401 Unauthorized): it is invalid or expired; create a read "
                f"token at {constants.ENDPOINT}/settings/tokens and set HF_TOKEN to it, {again}",
                **facts) from exc
        if status == 403:
            raise TokenRejectedError(
                f"HF_TOKEN may not read {repo_id} (403 Forbidden): give the token read access to it, {again}",
                **facts) from exc
        raise HubError(f"the hub answered {status} for {repo_id}: wait a while, {again}", **facts) from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            needed = f"{repo_id} needs {size_text(needed_bytes)} more; " if needed_bytes else ""
            raise NoSpaceError(
                f"no space left on the device of {folder}: {needed}free some space or choose another cache "
                f"dir, {again} to resume", needed_bytes=needed_bytes, **facts) from exc
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise CacheError(f"cannot write in {folder} ({exc.strerror}): choose a writable cache dir, "
                             f"{again}", **facts) from exc
        if exc.errno is not None and not isinstance(exc, _transport_errors()):
            raise
        raise _unreachable(repo_id, revision, exc, facts, downloading=folder is not None) from exc
    except _transport_errors() as exc:
        raise _unreachable(repo_id, revision, exc, facts, downloading=folder is not None) from exc


def _unreachable(repo_id: str, revision: str, exc: BaseException, facts: dict[str, str], *,
                 downloading: bool) -> HubError:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if not downloading:
        return DownloadInterruptedError(
            f"cannot reach the hub at {constants.ENDPOINT} to resolve {revision} of {repo_id} ({reason}): "
            f"check the network (and HF_ENDPOINT), then run {fetch_command(repo_id, revision)} again",
            **facts)
    return DownloadInterruptedError(
        f"downloading {repo_id} failed ({reason}); check the network and run "
        f"{fetch_command(repo_id, revision)} again: it resumes, keeping the files that finished", **facts)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network errors of whichever HTTP client this huggingface_hub uses (httpx2, httpx or requests)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError, hf_utils.LocalEntryNotFoundError]
    clients = (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException"))
    for module, name in clients:
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


@contextmanager
def _exit_on_signals(repo_id: str, revision: str) -> Iterator[None]:
    """End the process at once on SIGINT or SIGTERM while files download, saying how to resume.

    huggingface_hub's download threads cannot be interrupted, so Python would wait for their files to
    finish (hours for large weights, forever on a stalled connection) before exiting. Nothing is lost by
    not waiting: finished files stay, the manifest is not written, and the next fetch resumes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        os.write(2, f"error: {signal.Signals(signum).name} stopped the download of {repo_id}; run "
                    f"{fetch_command(repo_id, revision)} again: it resumes, keeping the files that "
                    "finished\n".encode())
        os._exit(128 + signum)

    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextmanager
def _progress_bars(enabled: bool) -> Iterator[None]:
    """huggingface_hub's own progress bars, or none for the length of the download."""
    if enabled or hf_utils.are_progress_bars_disabled():
        yield
        return
    hf_utils.disable_progress_bars()
    try:
        yield
    finally:
        hf_utils.enable_progress_bars()
