"""A real vLLM server on CPU, started once for the end-to-end tests through ``tpserve serve``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, free_port
from tpserve.commandlines import serve_command
from tpserve.server import LocalServer, cpu_env
from tpserve.shapes import TINY_LLAMA, write_model_folder
from tpserve.workload.servermetrics import counter_totals

CACHE = REPO / ".cache"
MODEL_NAME = "e2e-tiny-llama"


def pytest_collection_modifyitems(items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def tiny_model():
    return write_model_folder(TINY_LLAMA, CACHE / "models" / TINY_LLAMA.name)


@pytest.fixture(scope="session")
def vllm_server(tiny_model, tmp_path_factory):
    with healthy_server(tiny_model, tmp_path_factory.mktemp("vllm")) as server:
        yield server


@contextmanager
def healthy_server(model, log_dir: Path, vllm_args: Sequence[str] = (), env: dict | None = None):
    """``tpserve serve`` of MODEL on a free port, healthy; stopped with all its processes at exit.

    VLLM_ARGS go to vLLM after the test defaults; ENV adds to the CPU environment.
    """
    port = free_port()
    argv = serve_command(model, served_model_name=MODEL_NAME, host="127.0.0.1", port=port, max_model_len=2048,
                         vllm_args=["--load-format", "dummy", *vllm_args])
    server = LocalServer(argv, port=port, log_path=log_dir / "server.log", env={**cpu_env(CACHE), **(env or {})})
    server.start()
    try:
        server.wait_healthy(900)  # a start on a busy 2-core machine has taken more than 300 s
        yield server
    finally:
        server.stop()


def counters(server) -> dict:
    from tpserve.workload.serverapi import server_counters

    return server_counters(server.url)


def get_json(url: str):
    response = requests.get(url, timeout=60)
    response.raise_for_status()
    return response.json()


def under_way(loadtest, log: Path, condition: Callable[[], bool]) -> Callable[[], bool]:
    """For wait_until: CONDITION, but fail at once, with the end of its LOG, if the LOADTEST process has ended.

    Tests that act mid-load wait on the server's generation counter, which only grows, while the load test
    runs; vLLM's running/waiting gauges can read 0 between bursts on a starved machine.
    """
    def check() -> bool:
        assert loadtest.poll() is None, f"the load test ended too soon:\n{log.read_text()[-3000:]}"
        return condition()

    return check


def requests_in_server(server) -> float:
    """Requests vLLM is working on or has queued now (its running and waiting gauges)."""
    text = requests.get(server.url + "/metrics", timeout=60).text
    return sum(counter_totals(text, ("vllm:num_requests_running", "vllm:num_requests_waiting")).values())
