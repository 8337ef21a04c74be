"""tpserve's errors: each carries its facts and says what to do next.

The CLI turns a :class:`TpserveError` into one line on stderr and a non-zero exit status
(see ``tpserve.cli``); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class TpserveError(Exception):
    """Base of every error tpserve reports to users."""

    exit_code = 1


class ConfigError(TpserveError):
    """A setting is missing, malformed or contradicts another one."""

    exit_code = 2


class ShapeError(TpserveError):
    """A model folder cannot be written or does not hold what was asked for."""


class ServerError(TpserveError):
    """The local vLLM server could not be started or stopped serving."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class PortInUseError(ServerError):
    """The port the server should listen on is already taken."""


class ServerNotHealthyError(ServerError):
    """The server did not answer /health in time, or exited while starting."""


class ServerDiedError(ServerError):
    """The server exited while it was being measured."""


class StartupLogError(TpserveError):
    """A file given as a server log holds no vLLM start."""


class LoadTestError(TpserveError):
    """The load test failed, or its figures cannot be trusted."""


class ModelConfigError(TpserveError):
    """A model's config.json lacks a field tpserve needs, or describes an architecture it cannot size."""


class CacheError(TpserveError):
    """The model cache cannot get, or does not hold, the model that was asked for."""

    def __init__(self, message: str, *, repo_id: str = "", revision: str = "", path: str = "") -> None:
        super().__init__(message)
        self.repo_id = repo_id
        self.revision = revision
        self.path = path


class CacheIncompleteError(CacheError):
    """A model folder has no manifest: its fetch never finished, or another tool wrote it."""


class CacheDamagedError(CacheError):
    """Files of a fetched model are missing, or were changed after the fetch."""

    def __init__(self, message: str, *, paths: tuple[str, ...] = (), **facts: str) -> None:
        super().__init__(message, **facts)
        self.paths = paths


class CacheMismatchError(CacheError):
    """A model folder holds another model, or another revision, than the one asked for."""


class NoSpaceError(CacheError):
    """The disk under the cache filled up, or would, before the download finished."""

    def __init__(self, message: str, *, needed_bytes: int | None = None, **facts: str) -> None:
        super().__init__(message, **facts)
        self.needed_bytes = needed_bytes


class HubError(CacheError):
    """The Hugging Face hub refused a request, or could not be reached."""


class GatedModelError(HubError):
    """The model is gated and the token's account has not been granted access."""


class ModelNotFoundError(HubError):
    """No such model on the hub, or it is private and the token cannot see it."""


class RevisionNotFoundError(HubError):
    """The model exists but has no such branch, tag or commit."""


class TokenRejectedError(HubError):
    """The hub rejected the token itself (401): it is invalid or expired."""


class DownloadInterruptedError(HubError):
    """The hub was unreachable, or the connection broke before every file arrived; fetch again to resume."""
