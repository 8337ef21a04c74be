import os
import socket
import sys

import pytest

from tests.conftest import wait_until
from tpserve.fetch.errors import PortInUseError, ServerDiedError, ServerNotHealthyError
from tpserve.server import LocalServer, _session_members, check_port_free


@pytest.fixture
def listening_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_port_in_use_is_refused_with_the_fix(listening_port):
    with pytest.raises(PortInUseError, match=f"port {listening_port} on 127.0.0.1 is already in use: stop"):
        check_port_free("127.0.0.1", listening_port)


# A stand-in for a server that never answers /health and starts a child of its own, as vLLM does.
SILENT_PARENT = [sys.executable, "-c",
                 ("import subprocess, sys, time; print('loading weights', flush=True); "
                 "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)")]


def test_a_server_that_never_gets_healthy_times_out_with_its_log_and_leaves_nothing(tmp_path):
    server = LocalServer(SILENT_PARENT, port=free_port(), log_path=tmp_path / "server.log")
    server.start()
    try:
        wait_until(lambda: "loading weights" in server.log_tail().splitlines() and len(_session_members(server.process.pid)) == 2,
                   "the stand-in server printed its line and started its child")
        with pytest.raises(ServerNotHealthyError, match="did not answer .*/health within 2 s") as caught:
            server.wait_healthy(2)
        assert "loading weights" in caught.value.log_tail
        assert len(_session_members(server.process.pid)) == 2
    finally:
        server.stop(grace_s=5)
    assert _session_members(server.process.pid) == []


def test_a_server_that_exits_while_starting_is_reported_with_its_status(tmp_path):
    argv = [sys.executable, "-c", "import sys; print('bad config'); sys.exit(3)"]
    with LocalServer(argv, port=free_port(), log_path=tmp_path / "server.log") as server:
        with pytest.raises(ServerNotHealthyError, match="exited with status 3 before it became healthy") as e:
            server.wait_healthy(30)
        assert "bad config" in e.value.log_tail


def test_a_server_that_dies_is_noticed(tmp_path):
    argv = [sys.executable, "-c", "import time; time.sleep(300)"]
    with LocalServer(argv, port=free_port(), log_path=tmp_path / "server.log") as server:
        server.check_alive()
        os.kill(server.process.pid, 9)
        server.process.wait(timeout=300)
        with pytest.raises(ServerDiedError, match="exited with status -9 during the run"):
            server.check_alive()


def test_stop_escalates_to_sigkill_for_a_process_that_ignores_sigterm(tmp_path):
    argv = [sys.executable, "-c",
            ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
            "time.sleep(300)")]
    server = LocalServer(argv, port=free_port(), log_path=tmp_path / "server.log")
    server.start()
    wait_until(lambda: "up" in server.log_tail().splitlines(), "the process ignores SIGTERM")
    server.stop(grace_s=1)
    assert server.process.returncode == -9


def test_the_log_starts_with_the_command_so_a_server_silent_until_it_hangs_still_shows_what_ran(tmp_path):
    argv = [sys.executable, "-c", "import time; time.sleep(300)"]
    server = LocalServer(argv, port=free_port(), log_path=tmp_path / "server.log")
    server.start()
    try:
        with pytest.raises(ServerNotHealthyError) as caught:
            server.wait_healthy(0.5)
        assert caught.value.log_tail.startswith(f"$ {sys.executable} -c 'import time; time.sleep(300)'\n")
    finally:
        server.stop()
