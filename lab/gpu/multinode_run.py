"""Run the chart's multi-node group as processes on one host, load it, and optionally lose a worker mid-load.

REHEARSAL_DIR is what ``lab/gpu/multinode_rehearsal.py`` wrote (POD.sh and POD.json per pod: the
rendered LeaderWorkerSet's leader and workers with the controller's and kubelet's substitutions). Each pod
runs in its own session, as a pod would in its own node:

    python3 lab/gpu/multinode_run.py REHEARSAL_DIR OUT_DIR [--kill worker-1] [--budget-s 180]

1. every pod starts; the leader's ``/health`` answers (the Service's readiness);
2. the note's workload (59 prompts, 256 output tokens) passes with client tokens = server tokens;
3. with ``--kill POD``: under a longer load, POD's whole session is SIGKILLed (a node or pod lost), then
   the leader's ``/health``, its exit and the load test are timed every 0.2 s: what LeaderWorkerSet's
   RecreateGroupOnPodRestart and the leader's liveness probe have to work with.
OUT_DIR gets ``multinode.json`` (startup, load figures, the kill's timeline) and every log.
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

from lab.gpu.tp_worker_kill import health, running_requests, watch
from tpserve.commandlines import loadtest_command
from tpserve.server import _session_members
from tpserve.shapes import Shape, find_shape, write_model_folder


def prepare(pods: dict[str, dict], shape: Shape) -> None:
    """The model folder and the writable folders each pod's claim and emptyDirs would provide."""
    for spec in pods.values():
        argv, env = spec["argv"], spec["env"]
        write_model_folder(shape, Path(argv[argv.index("--model") + 1]))
        for name in ("HOME", "VLLM_CACHE_ROOT", "HF_HOME", "HF_MODULES_CACHE"):
            if env.get(name):
                Path(env[name]).mkdir(parents=True, exist_ok=True)


def kill_session(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    for pid in _session_members(process.pid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_healthy(url: str, processes: dict[str, subprocess.Popen], timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if health(url) == "200":
            return time.monotonic() - started
        if dead := [pod for pod, process in processes.items() if process.poll() is not None]:
            raise SystemExit(f"{', '.join(dead)} exited before the leader became healthy")
        time.sleep(1)
    raise SystemExit(f"the leader did not answer {url}/health within {timeout_s:.0f} s")


def load(url: str, model: str, out: Path, name: str, requests_: int, users: int, run_time_s: int, env: dict):
    argv = loadtest_command(url, users=users, model=model, num_requests=requests_, max_tokens=256,
                            run_time_s=run_time_s, results_json=out / f"{name}.json", only_summary=True)
    log = (out / f"{name}.log").open("wb")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rehearsal", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--kill", default="", help="the pod to lose mid-load, e.g. worker-1")
    parser.add_argument("--budget-s", type=float, default=180)
    parser.add_argument("--health-timeout-s", type=float, default=480)
    parser.add_argument("--shape", default="llama-2-7b", help="the dummy-weight shape to serve")
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    pods = {path.stem: json.loads(path.read_text()) for path in sorted(args.rehearsal.glob("*.json"))}
    prepare(pods, find_shape(args.shape))
    leader = pods["leader"]["argv"]
    url = f"http://127.0.0.1:{leader[leader.index('--port') + 1]}"
    model = leader[leader.index("--served-model-name") + 1]
    record: dict = {"pods": {pod: spec["argv"] for pod, spec in pods.items()}}
    processes: dict[str, subprocess.Popen] = {}
    env = {**os.environ}
    try:
        for pod in pods:
            log = (out / f"{pod}.log").open("wb")
            processes[pod] = subprocess.Popen(["bash", str(args.rehearsal / f"{pod}.sh")], stdout=log,
                                              stderr=subprocess.STDOUT, start_new_session=True)
        record["startup_s"] = round(wait_healthy(url, processes, args.health_timeout_s), 1)
        note = load(url, model, out, "load", 59, 59, 300, env)
        record["load_exit_status"] = note.wait(timeout=400)
        if args.kill:
            record["kill"] = lose_pod(url, model, out, processes, args.kill, args.budget_s, env)
    finally:
        for process in processes.values():
            kill_session(process, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_session_members(p.pid) for p in processes.values()):
            time.sleep(0.5)
        for process in processes.values():
            kill_session(process)
            process.wait()
        (out / "multinode.json").write_text(json.dumps(record, indent=2) + "\n")
        print(json.dumps({k: v for k, v in record.items() if k != "pods"}, indent=2))
    return 0 if record.get("load_exit_status") == 0 else 1


def lose_pod(url: str, model: str, out: Path, processes: dict, pod: str, budget_s: float, env: dict) -> dict:
    """SIGKILL POD's session under load and time what the leader and the load test do."""
    loaded = load(url, model, out, f"load-kill-{pod}", 4000, 64, int(budget_s) + 120, env)
    deadline = time.monotonic() + 120
    while running_requests(url) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(5)  # steady load: some requests done, others mid-stream
    timeline: dict = {"pod": pod, "running_at_kill": running_requests(url)}
    killed = time.monotonic()
    kill_session(processes[pod])
    timeline |= watch(url, processes["leader"], loaded, killed, budget_s,
                      exit_key="leader_exit_s", gone_key="leader_processes_gone_s")
    if loaded.poll() is None:
        loaded.send_signal(signal.SIGINT)
        try:
            loaded.wait(60)
        except subprocess.TimeoutExpired:
            loaded.kill()
    timeline["load_test_exit_status"] = loaded.returncode
    return timeline


if __name__ == "__main__":
    sys.exit(main())
