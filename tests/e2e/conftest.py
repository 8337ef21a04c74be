"""A real vLLM server on CPU, started once for the end-to-end tests through ``tpserve serve``."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import REPO, free_port
from tpserve.commandlines import serve_command
from tpserve.server import LocalServer, cpu_env
from tpserve.shapes import TINY_LLAMA, write_model_folder

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
    port = free_port()
    argv = serve_command(tiny_model, served_model_name=MODEL_NAME, host="127.0.0.1", port=port, max_model_len=2048,
                         vllm_args=["--load-format", "dummy"])
    server = LocalServer(argv, port=port, log_path=tmp_path_factory.mktemp("vllm") / "server.log",
                         env=cpu_env(CACHE))
    server.start()
    try:
        server.wait_healthy(300)
        yield server
    finally:
        server.stop()


def counters(server) -> dict:
    from tpserve.workload.serverapi import server_counters

    return server_counters(server.url)


def get_json(url: str):
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.json()
