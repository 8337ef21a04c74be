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


def free_ports_in_a_row(count: int) -> int:
    """A port P such that P .. P+COUNT-1 are all free now: a local sweep or tune gives replica i the port P + i, and
    a port taken by anything else on the machine would fail that layout."""
    for _ in range(200):
        base = free_port()
        held = []
        try:
            for number in range(base, base + count):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", number))
            return base
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} free ports in a row on 127.0.0.1 after 200 tries")


@pytest.fixture
def port() -> int:
    """The base port of a server, or of a sweep's replicas (up to 4 in a row free)."""
    return free_ports_in_a_row(4)


def run(*argv: str, timeout: float = 600, env: dict | None = None, cwd: Path = REPO):
    """Run a command the way a user would, capturing its output."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                          check=False)


def tpserve(*args: str, **kwargs):
    return run(sys.executable, "-m", "tpserve", *args, **kwargs)
