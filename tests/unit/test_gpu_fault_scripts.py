"""The GPU fault scripts' host-independent parts: finding a vLLM process by its title, preparing pods."""

import json
import signal
import subprocess

from lab.gpu.multinode_run import prepare
from lab.gpu.tp_worker_kill import process_titled
from tests.conftest import wait_until
from tpserve.shapes import TINY_LLAMA


def test_a_tensor_parallel_worker_is_found_by_the_title_vllm_gives_it(tmp_path):
    # vLLM renames its workers with setproctitle; `exec -a` gives a process the same kind of command line.
    group = subprocess.Popen(["bash", "-c", "exec -a VLLM::Worker_TP1 sleep 300"], start_new_session=True)
    try:
        found = wait_until(lambda: process_titled(group.pid, "Worker_TP1"), "the worker shows its title")
        assert found == group.pid
        assert process_titled(group.pid, "Worker_TP0") is None
    finally:
        group.send_signal(signal.SIGKILL)
        group.wait()


def test_each_pod_gets_its_model_folder_and_writable_folders(tmp_path):
    pods = {pod: {"argv": ["vllm", "serve", "--model", str(tmp_path / pod / "models" / "m")],
                  "env": {"HOME": str(tmp_path / pod / "home"), "VLLM_CACHE_ROOT": str(tmp_path / pod / "cache")}}
            for pod in ("leader", "worker-1")}
    prepare(pods, TINY_LLAMA)
    for pod in pods:
        assert json.loads((tmp_path / pod / "models" / "m" / "config.json").read_text())["num_hidden_layers"] > 0
        assert (tmp_path / pod / "home").is_dir() and (tmp_path / pod / "cache").is_dir()


def test_the_watch_after_a_kill_records_when_the_server_and_the_load_test_are_gone(tmp_path):
    import time

    from lab.gpu.tp_worker_kill import watch
    from tests.conftest import free_port

    server = subprocess.Popen(["sleep", "300"], start_new_session=True)
    load = subprocess.Popen(["true"])
    killed = time.monotonic()
    server.kill()
    timeline = watch(f"http://127.0.0.1:{free_port()}", server, load, killed, 300,
                     exit_key="api_server_exit_s", gone_key="all_processes_gone_s")
    assert set(timeline["events"]) == {"health_not_200_s", "api_server_exit_s", "load_test_exit_s",
                                       "all_processes_gone_s"}
    assert not timeline["hung"] and timeline["server_exit_status"] == -signal.SIGKILL
    assert timeline["health_statuses"][0][1] == "ConnectionError"


def test_a_server_that_outlives_the_budget_is_called_hung(tmp_path):
    import time

    from lab.gpu.tp_worker_kill import watch
    from tests.conftest import free_port

    server = subprocess.Popen(["sleep", "300"], start_new_session=True)
    load = subprocess.Popen(["true"])
    try:
        timeline = watch(f"http://127.0.0.1:{free_port()}", server, load, time.monotonic(), 1,
                         exit_key="leader_exit_s", gone_key="leader_processes_gone_s")
    finally:
        server.kill()
        server.wait()
    assert timeline["hung"] and "leader_exit_s" not in timeline["events"]


def test_a_new_pod_of_the_ready_session_gets_an_empty_home_at_the_same_path(tmp_path, monkeypatch):
    # vLLM 0.26 hashes VLLM_CONFIG_ROOT (under HOME) into its compile cache key: a HOME path per pod missed the cache
    # that a chart's pod, whose HOME path never changes, would hit (results/20261206-h100x1-ready).
    from lab.gpu import ready_on_host

    monkeypatch.setattr(ready_on_host, "WORK", tmp_path)
    session = ready_on_host.Session(tmp_path / "out", deadline=0, cpu=True)
    first = ready_on_host.pod_env(session, "cold", tmp_path / "cache")
    (tmp_path / first["HOME"] / "jit-cache").write_text("kept only within one pod")
    again = ready_on_host.pod_env(session, "cold", tmp_path / "cache")
    assert (tmp_path / again["HOME"] / "jit-cache").is_file()
    other = ready_on_host.pod_env(session, "warm", tmp_path / "cache")
    assert (other["HOME"], other["TMPDIR"]) == (first["HOME"], first["TMPDIR"])
    assert list((tmp_path / other["HOME"]).iterdir()) == []
