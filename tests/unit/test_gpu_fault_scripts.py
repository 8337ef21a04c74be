"""The GPU fault scripts' host-independent parts: finding a vLLM process by its title, preparing pods."""

import json
import signal
import subprocess

from tests.conftest import wait_until
from tests.gpu.multinode_run import prepare
from tests.gpu.tp_worker_kill import process_titled
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
