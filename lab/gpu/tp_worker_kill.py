"""Kill one tensor-parallel worker of a serving vLLM mid-load and time what follows (issue: reliability).

A pod whose server hangs after losing a GPU worker keeps its GPUs and serves nothing until the kubelet's
liveness probe restarts it; a server that exits is restarted at once. This measures which one vLLM does,
and how long each step takes, so the chart's liveness settings can match:

    python3 lab/gpu/tp_worker_kill.py OUT_DIR [--tensor 2] [--rank 1] [--budget-s 240]

It serves the 7b shape (dummy weights) through ``tpserve serve``'s command line, starts the load test,
waits until requests are running, SIGKILLs the process titled ``VLLM::Worker_TP<rank>``, then polls
``/health`` and the process tree every 0.2 s. OUT_DIR gets ``tp-worker-kill.json`` (the timeline), the
server and load-test logs, the load test's results, and the server's ``/metrics`` as read mid-load
(``vllm-<version>-metrics.txt``, the names the metric contract test checks against).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from lab.gpu import NO_MULTICAST
from tpserve.commandlines import loadtest_command, serve_command
from tpserve.server import LocalServer, _session_members, cpu_env
from tpserve.shapes import LLAMA2_7B, TINY_LLAMA, write_model_folder
from tpserve.workload.servermetrics import counter_totals

REPO = Path(__file__).resolve().parents[2]

RUNNING = "vllm:num_requests_running"


def process_titled(session: int, title: str) -> int | None:
    """The PID in SESSION whose command line (vLLM sets it with setproctitle) contains TITLE."""
    for pid in _session_members(session):
        try:
            if title in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return pid
        except OSError:
            continue
    return None


def health(url: str) -> str:
    try:
        return str(requests.get(url + "/health", timeout=2).status_code)
    except requests.RequestException as exc:
        return exc.__class__.__name__


def running_requests(url: str) -> float:
    try:
        text = requests.get(url + "/metrics", timeout=5).text
    except requests.RequestException:
        return 0.0
    return counter_totals(text, (RUNNING,)).get(RUNNING, 0.0)


def watch(url: str, server: subprocess.Popen, load: subprocess.Popen, killed: float, budget_s: float, *,
          exit_key: str, gone_key: str) -> dict:
    """Poll /health, the server, its session and the load test every 0.2 s from KILLED (a monotonic time).

    Stops once the server's processes are all gone and the load test has exited, or after BUDGET_S; the
    server still running then is ``hung``.
    """
    events: dict[str, float] = {}
    statuses: list[tuple[float, str]] = []
    while time.monotonic() - killed < budget_s:
        now = round(time.monotonic() - killed, 2)
        status = health(url)
        if not statuses or statuses[-1][1] != status:
            statuses.append((now, status))
        if status != "200":
            events.setdefault("health_not_200_s", now)
        if server.poll() is not None:
            events.setdefault(exit_key, now)
        if load.poll() is not None:
            events.setdefault("load_test_exit_s", now)
        if not _session_members(server.pid):
            events.setdefault(gone_key, now)
        if gone_key in events and "load_test_exit_s" in events:
            break
        time.sleep(0.2)
    return {"events": events, "health_statuses": statuses, "hung": exit_key not in events,
            "server_exit_status": server.poll()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tensor", type=int, default=2)
    parser.add_argument("--rank", type=int, default=1, help="TP rank of the worker to kill")
    parser.add_argument("--budget-s", type=float, default=240, help="how long to wait for the server to go")
    parser.add_argument("--health-timeout-s", type=float, default=400)
    parser.add_argument("--vllm-arg", action="append", default=[], help="extra vLLM argument (repeatable)")
    parser.add_argument("--cpu", action="store_true",
                        help="rehearse on vLLM's CPU backend with the tiny shape (checks this script, not GPUs)")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    shape = TINY_LLAMA if args.cpu else LLAMA2_7B
    model = write_model_folder(shape, out / f"model-{shape.name}")
    port = 8123
    env = {**(cpu_env(out / "cache") if args.cpu else os.environ), **NO_MULTICAST, "HF_HUB_OFFLINE": "1"}
    if args.cpu:  # one core per CPU worker: vLLM cannot bind TP 2 on one NUMA node by itself
        env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(str(core) for core in range(args.tensor))
    argv = serve_command(model, served_model_name=shape.name, tensor_parallel_size=args.tensor,
                         allreduce_fusion=False, host="127.0.0.1", port=port, max_model_len=2048,
                         vllm_args=["--load-format", "dummy", *args.vllm_arg])
    if args.cpu:  # tpserve serve rightly refuses TP 2 without GPUs: the CPU rehearsal runs vLLM itself
        argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                "--served-model-name", shape.name, "-tp", str(args.tensor), "--host", "127.0.0.1",
                "--port", str(port), "--max-model-len", "2048", "--load-format", "dummy", *args.vllm_arg]
    server = LocalServer(argv, port=port, log_path=out / f"server-rank{args.rank}.log", env=env)
    timeline: dict = {"server_argv": argv, "tensor": args.tensor, "killed_rank": args.rank}
    server.start()
    load = None
    try:
        timeline["startup_s"] = round(server.wait_healthy(args.health_timeout_s), 1)
        results = out / f"load-rank{args.rank}.json"
        load_argv = loadtest_command(server.url, users=64, model=shape.name, num_requests=4000, max_tokens=256,
                                     run_time_s=int(args.budget_s) + 120, results_json=results,
                                     records_jsonl=out / f"records-rank{args.rank}.jsonl")
        load_log = (out / f"load-rank{args.rank}.log").open("wb")
        load = subprocess.Popen(load_argv, stdout=load_log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + 120
        while running_requests(server.url) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(5)  # a few seconds of steady load, so some requests finish and others are mid-stream
        metrics = requests.get(server.url + "/metrics", timeout=10).text
        version = requests.get(server.url + "/version", timeout=10).json().get("version", "unknown")
        (out / f"vllm-{version}-metrics.txt").write_text(metrics)
        timeline["vllm_version"] = version
        timeline["running_at_kill"] = running_requests(server.url)
        worker = process_titled(server.process.pid, f"Worker_TP{args.rank}")
        if worker is None:
            timeline["error"] = f"no process titled Worker_TP{args.rank} in the server's session"
            return 1
        timeline["processes_before"] = len(_session_members(server.process.pid))
        killed = time.monotonic()
        os.kill(worker, signal.SIGKILL)
        timeline |= watch(server.url, server.process, load, killed, args.budget_s,
                          exit_key="api_server_exit_s", gone_key="all_processes_gone_s")
        timeline["left_over_processes"] = len(_session_members(server.process.pid))
    finally:
        if load is not None and load.poll() is None:
            load.send_signal(signal.SIGINT)
            try:
                load.wait(60)
            except subprocess.TimeoutExpired:
                load.kill()
        if load is not None:
            timeline["load_test_exit_status"] = load.returncode
        server.stop(grace_s=10)
        (out / f"tp-worker-kill-rank{args.rank}.json").write_text(json.dumps(timeline, indent=2) + "\n")
        print(json.dumps(timeline, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
