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


class LoadTestError(TpserveError):
    """The load test failed, or its figures cannot be trusted."""
