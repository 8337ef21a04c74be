"""``tpserve serve`` becomes vLLM itself, so the container's SIGTERM reaches vLLM and it shuts down cleanly."""

import os
import signal
from pathlib import Path

from tests.conftest import wait_until
from tests.e2e.conftest import CACHE
from tpserve.commandlines import serve_command
from tpserve.server import LocalServer, _session_members, cpu_env


def test_serve_execs_vllm_in_its_own_process_which_shuts_down_gracefully_on_sigterm(tiny_model, tmp_path, port):
    argv = serve_command(tiny_model, served_model_name="t", host="127.0.0.1", port=port,
                         vllm_args=["--load-format", "dummy"])
    server = LocalServer(argv, port=port, log_path=tmp_path / "server.log", env=cpu_env(CACHE))
    server.start()
    try:
        server.wait_healthy(300)
        pid = server.process.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"vllm.entrypoints.openai.api_server" in cmdline and b"tpserve" not in cmdline
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: server.exit_status() is not None, "vLLM exits after SIGTERM")
        assert server.exit_status() == 0, server.log_tail()
        assert "Shutting down" in server.log_tail(200)
        wait_until(lambda: _session_members(pid) == [], "vLLM's own processes are gone after its shutdown")
    finally:
        server.stop()
