"""``tpserve serve`` at tensor parallel 4 on real GPUs, measured by the Locust load test.

Dummy weights of Llama-2's real shapes: the speed is that of the real models, nothing is downloaded.
Each run's report (with the machine and its GPUs) is written under ``TPSERVE_GPU_RESULTS``.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime

import pytest

from tests.conftest import REPO, free_port, run, tpserve
from tests.gpu.conftest import RESULTS
from tpserve.machine import describe_machine
from tpserve.server import LocalServer
from tpserve.shapes import LLAMA2_7B, LLAMA2_70B, write_model_folder

# NVLink multicast stays off on shared hosts; vLLM 0.26's fused all-reduce needs it, hence the switch.
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {shape.name: write_model_folder(shape, root / shape.name) for shape in (LLAMA2_7B, LLAMA2_70B)}


def serve_and_measure(model_dir, name: str, tensor: int, tmp_path, requests: int = 59, max_tokens: int = 256):
    port = free_port()
    env = {**os.environ, **NO_MULTICAST, "HF_HUB_OFFLINE": "1"}
    argv = [sys.executable, "-m", "tpserve", "serve", "--model", str(model_dir), "--served-model-name", name,
            "-tp", str(tensor), "--no-allreduce-fusion", "--host", "127.0.0.1", "--port", str(port),
            "--max-model-len", "4096", "--", "--load-format", "dummy"]
    server = LocalServer(argv, port=port, log_path=RESULTS / f"{name}-tp{tensor}-server.log", env=env)
    server.start()
    try:
        startup_s = server.wait_healthy(900)
        report_path = tmp_path / "run.json"
        done = run(sys.executable, "-m", "locust", "-f", str(REPO / "loadtest" / "prompts.py"), "--headless",
                   "-u", str(requests), "-r", str(requests), "--host", server.url, "--model", name,
                   "--num-requests", str(requests), "--max-tokens", str(max_tokens),
                   "--run-time", "600s", "--results-json", str(report_path), timeout=700, env=env)
        server.check_alive()
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(report_path.read_text())
    report["server_startup_s"] = round(startup_s, 1)
    report["tensor_parallel_size"] = tensor
    report["machine"] = describe_machine()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"{stamp}-{name}-tp{tensor}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{name} TP={tensor}: {report['output_throughput']:.0f} output tok/s, "
          f"TTFT p50 {report['median_ttft_ms']:.0f} ms, TPOT p50 {report['median_tpot_ms']:.2f} ms, "
          f"startup {startup_s:.0f} s")
    return report


@pytest.mark.needs_gpus(4)
@pytest.mark.parametrize("shape", ["llama-2-7b", "llama-2-70b"])
def test_tp4_serves_every_request_and_tokens_match_the_server(models, shape, tmp_path):
    report = serve_and_measure(models[shape], shape, 4, tmp_path)
    assert (report["completed"], report["failed"]) == (59, 0)
    assert report["token_check"]["status"] == "ok"
    assert report["token_check"]["server_generation_tokens"] == 59 * 256


@pytest.mark.needs_gpus(3)
def test_tp3_for_70b_is_refused_before_vllm_starts(models):
    done = tpserve("serve", "--model", str(models["llama-2-70b"]), "-tp", "3", "--dry-run")
    assert done.returncode == 2
    assert "64 attention heads and 8 KV heads, which tensor parallel 3 cannot split evenly" in done.stderr
