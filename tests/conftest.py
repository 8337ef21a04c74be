"""Shared test helpers: the repository root, free ports, and running tpserve/locust as users do."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# Property tests must not fail on a slow or busy machine: no per-example deadline.
settings.register_profile("tpserve", deadline=None)
settings.load_profile("tpserve")


def wait_until(condition: Callable[[], object], what: str, timeout_s: float = 300, poll_s: float = 0.2):
    """Poll CONDITION until it is true and return its value; fail naming WHAT after a generous TIMEOUT_S.

    Tests wait on conditions, never on fixed sleeps: CI is a busy 2-core machine.
    """
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"still waiting after {timeout_s:g} s: {what}"
        time.sleep(poll_s)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


def run(*argv: str, timeout: float = 600, env: dict | None = None, cwd: Path = REPO):
    """Run a command the way a user would, capturing its output."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                          check=False)


def tpserve(*args: str, **kwargs):
    return run(sys.executable, "-m", "tpserve", *args, **kwargs)
