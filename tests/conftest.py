"""Shared test helpers: the repository root, free ports, and running tpserve/locust as users do."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# Property tests must not fail on a slow or busy machine: no per-example deadline.
settings.register_profile("tpserve", deadline=None)
settings.load_profile("tpserve")


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
