"""``tpserve serve`` at tensor parallel 4 on real GPUs, measured by the Locust load test.

Dummy weights of Llama-2's real shapes: the speed is that of the real models, nothing is downloaded.
Each run's report (with the machine and its GPUs) is written under ``TPSERVE_GPU_RESULTS``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from lab.gpu import NO_MULTICAST
from tests.conftest import free_port, run, tpserve
from tests.gpu.conftest import RESULTS
from tpserve.commandlines import loadtest_command, serve_command, served_layout
from tpserve.commands.serve import serve_config
from tpserve.machine import describe_machine, device_kind
from tpserve.server import LocalServer
from tpserve.shapes import LLAMA2_7B, LLAMA2_70B, write_model_folder
from tpserve.workload import runrecord


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {shape.name: write_model_folder(shape, root / shape.name) for shape in (LLAMA2_7B, LLAMA2_70B)}


def serve_and_measure(model_dir, name: str, tensor: int, tmp_path, requests: int = 59, max_tokens: int = 256):
    port = free_port()
    env = {**os.environ, **NO_MULTICAST, "HF_HUB_OFFLINE": "1"}
    argv = serve_command(model_dir, served_model_name=name, tensor_parallel_size=tensor, allreduce_fusion=False,
                         host="127.0.0.1", port=port, max_model_len=4096, vllm_args=["--load-format", "dummy"])
    server = LocalServer(argv, port=port, log_path=RESULTS / f"{name}-tp{tensor}-server.log", env=env)
    server.start()
    try:
        startup_s = server.wait_healthy(900)
        report_path = tmp_path / "run.json"
        done = run(*loadtest_command(server.url, users=requests, model=name, num_requests=requests,
                                     max_tokens=max_tokens, run_time_s=600, results_json=report_path),
                   timeout=700, env=env)
        server.check_alive()
    finally:
        server.stop()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    machine = describe_machine()
    record = runrecord.load(report_path)
    config, cache_dir = serve_config(argv[argv.index("serve") + 1:])
    record = replace(record, layout=served_layout(config, cache_dir, device_kind(machine)),
                     provenance=replace(record.provenance, command="gpu test", machine=machine,
                                        server_argv=tuple(argv), server_startup_s=round(startup_s, 1)))
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    runrecord.write(RESULTS / f"{stamp}-{name}-tp{tensor}.json", record)
    m = record.metrics
    print(f"{name} TP={tensor}: {m.output_throughput:.0f} output tok/s, TTFT p50 {m.median_ttft_ms:.0f} ms, "
          f"TPOT p50 {m.median_tpot_ms:.2f} ms, startup {startup_s:.0f} s")
    return record


@pytest.mark.needs_gpus(4)
@pytest.mark.parametrize("shape", ["llama-2-7b", "llama-2-70b"])
def test_tp4_serves_every_request_and_tokens_match_the_server(models, shape, tmp_path):
    record = serve_and_measure(models[shape], shape, 4, tmp_path)
    assert (record.metrics.completed, record.metrics.failed) == (59, 0)
    assert record.token_check.ok and record.token_check.server_generation_tokens == 59 * 256
    assert record.layout.tensor_parallel_size == 4


@pytest.mark.needs_gpus(3)
def test_tp3_for_70b_is_refused_before_vllm_starts(models):
    done = tpserve("serve", "--model", str(models["llama-2-70b"]), "-tp", "3", "--dry-run")
    assert done.returncode == 2
    assert "64 attention heads and 8 KV heads, which tensor parallel 3 cannot split evenly" in done.stderr
