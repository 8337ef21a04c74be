"""``tpserve demo``: real vLLM on CPU through ``tpserve serve``, measured by the Locust load test.

The whole experiment on any laptop or CI box: a tiny Llama with dummy weights, the same entrypoint
the container uses, the same Locust file users run against a cluster, one results file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from tpserve.errors import LoadTestError
from tpserve.machine import describe_machine
from tpserve.server import LocalServer
from tpserve.shapes import TINY_LLAMA, write_model_folder
from tpserve.workload.run import write_json

# vLLM on CPU: a 1 GiB KV cache is plenty for the tiny model; no hub, no telemetry.
CPU_ENV_DEFAULTS = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": "auto",
    "HF_HUB_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


@dataclass(frozen=True)
class DemoOptions:
    port: int = 8000
    num_requests: int = 59
    concurrency: int = 8
    max_tokens: int = 64
    max_model_len: int = 2048
    health_timeout_s: float = 300.0
    run_timeout_s: float = 600.0
    locustfile: Path = Path("loadtest/prompts.py")
    cache_dir: Path = Path(".cache")
    results_dir: Path = Path("results")


def cpu_env(cache_dir: Path) -> dict[str, str]:
    """This process's environment plus vLLM-on-CPU defaults; values already set are kept."""
    env = dict(os.environ)
    for key, value in CPU_ENV_DEFAULTS.items():
        env.setdefault(key, value)
    env.setdefault("VLLM_CACHE_ROOT", str((cache_dir / "vllm").resolve()))
    return env


def serve_argv(model_dir: Path, options: DemoOptions) -> list[str]:
    return [
        sys.executable, "-m", "tpserve", "serve",
        "--model", str(model_dir),
        "--served-model-name", TINY_LLAMA.name,
        "--host", "127.0.0.1",
        "--port", str(options.port),
        "--max-model-len", str(options.max_model_len),
        "--", "--load-format", "dummy",
    ]


def locust_argv(url: str, options: DemoOptions, results_json: Path) -> list[str]:
    return [
        sys.executable, "-m", "locust", "-f", str(options.locustfile), "--headless",
        "-u", str(options.concurrency), "-r", str(options.concurrency),
        "--host", url,
        "--model", TINY_LLAMA.name,
        "--num-requests", str(options.num_requests),
        "--max-tokens", str(options.max_tokens),
        "--run-time", f"{int(options.run_timeout_s)}s",
        "--results-json", str(results_json),
        "--only-summary",
    ]


def _run_load(server: LocalServer, argv: list[str], log_path: Path, env: dict) -> int:
    """Run Locust to completion while watching the server; stop Locust if the server dies."""
    with log_path.open("wb") as log:
        locust = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, start_new_session=True)
    try:
        while locust.poll() is None:
            server.check_alive()
            time.sleep(0.5)
        return locust.returncode
    finally:
        if locust.poll() is None:
            locust.kill()
            locust.wait()


def run_demo(options: DemoOptions, say=print) -> tuple[dict, Path]:
    """Serve, wait, measure, stop; return the report and where it was written."""
    if not options.locustfile.is_file():
        raise LoadTestError(f"no Locust file at {options.locustfile}: run the demo from the repository root")
    work = options.cache_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    model_dir = write_model_folder(TINY_LLAMA, options.cache_dir / "models" / TINY_LLAMA.name)
    env = cpu_env(options.cache_dir)
    server = LocalServer(serve_argv(model_dir, options), port=options.port, log_path=work / "server.log", env=env)
    load_results = work / "load.json"
    load_results.unlink(missing_ok=True)
    say(f"starting vLLM (CPU) on {server.url}; log: {server.log_path}")
    with server:
        startup_s = server.wait_healthy(options.health_timeout_s)
        say(f"healthy after {startup_s:.0f} s; sending {options.num_requests} requests "
            f"at concurrency {options.concurrency}")
        locust_log = work / "locust.log"
        status = _run_load(server, locust_argv(server.url, options, load_results), locust_log, env)
        server.check_alive()
    if not load_results.is_file():
        raise LoadTestError(f"Locust exited with status {status} and wrote no results; see {locust_log}")
    document = json.loads(load_results.read_text())
    document["demo"] = {
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
        "shape": TINY_LLAMA.config(),
        "server_argv": server.argv,
        "server_startup_s": round(startup_s, 1),
        "locust_exit_status": status,
    }
    document["machine"] = describe_machine()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = write_json(options.results_dir / f"{stamp}-demo.json", document)
    return document, path
