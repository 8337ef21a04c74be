"""``tpserve demo``: real vLLM on CPU through ``tpserve serve``, measured by the Locust load test.

The whole experiment on any laptop or CI box: a tiny Llama with dummy weights, the same entrypoint
the container uses, the same Locust file users run against a cluster, one results file.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from tpserve.commandlines import loadtest_command, serve_command_of, served_layout
from tpserve.data import LOCUSTFILE, OUTPUT_DIR
from tpserve.fetch.errors import LoadTestError
from tpserve.launch import ServeConfig
from tpserve.machine import describe_machine, device_kind
from tpserve.server import LocalServer, check_port_free, cpu_env
from tpserve.shapes import TINY_LLAMA, write_model_folder
from tpserve.workload import runrecord
from tpserve.workload.runrecord import RunRecord


@dataclass(frozen=True)
class DemoOptions:
    port: int = 8000
    num_requests: int = 59
    concurrency: int = 8
    max_tokens: int = 64
    max_model_len: int = 2048
    health_timeout_s: float = 300.0
    run_timeout_s: float = 600.0
    locustfile: Path = LOCUSTFILE
    cache_dir: Path = Path(".cache")
    results_dir: Path = OUTPUT_DIR


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


def run_demo(options: DemoOptions, say=print) -> tuple[RunRecord, Path]:
    """Serve, wait, measure, stop; return the run's record and where it was written."""
    if not options.locustfile.is_file():
        raise LoadTestError(f"no Locust file at {options.locustfile}: pass --locustfile PATH")
    work = options.cache_dir / "demo"
    work.mkdir(parents=True, exist_ok=True)
    model_dir = write_model_folder(TINY_LLAMA, options.cache_dir / "models" / TINY_LLAMA.name)
    env = cpu_env(options.cache_dir)
    config = ServeConfig(str(model_dir), served_model_name=TINY_LLAMA.name, host="127.0.0.1", port=options.port,
                         max_model_len=options.max_model_len, extra_args=("--load-format", "dummy"))
    argv = serve_command_of(config)
    server = LocalServer(argv, port=options.port, log_path=work / "server.log", env=env)
    load_results = work / "load.json"
    load_results.unlink(missing_ok=True)
    check_port_free(server.host, server.port)
    say(f"starting vLLM (CPU) on {server.url}; log: {server.log_path}")
    with server:
        startup_s = server.wait_healthy(options.health_timeout_s)
        say(f"healthy after {startup_s:.0f} s; sending {options.num_requests} requests "
            f"at concurrency {options.concurrency}")
        locust_log = work / "locust.log"
        load = loadtest_command(server.url, users=options.concurrency, locustfile=options.locustfile,
                                model=TINY_LLAMA.name, num_requests=options.num_requests,
                                max_tokens=options.max_tokens, run_time_s=int(options.run_timeout_s),
                                only_summary=True, results_json=load_results)
        status = _run_load(server, load, locust_log, env)
        server.check_alive()
    if not load_results.is_file():
        raise LoadTestError(f"Locust exited with status {status} and wrote no results; see {locust_log}")
    machine = describe_machine()
    record = runrecord.load(load_results)
    record = replace(
        record, layout=served_layout(config, options.cache_dir, device_kind(machine)),
        provenance=replace(record.provenance, command="demo", machine=machine, server_argv=tuple(argv),
                           server_startup_s=round(startup_s, 1)),
        context={"options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
                 "shape": TINY_LLAMA.config(), "locust_exit_status": status})
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return record, runrecord.write(options.results_dir / f"{stamp}-demo.json", record)
