"""How much one Locust process of tpserve's load test can measure, and what it adds to TTFT.

Against ``lab/benchmarks/sse_server.py`` (a local streaming endpoint far faster than any model):
1. throughput — one Locust process streams REQUESTS × TOKENS one-token events at CONCURRENCY and
   reports the output tok/s it parsed, with the CPU each process used (goal ≥ 20,000 tok/s);
2. added TTFT — one request at a time, the time from the server writing a request's first event to
   the load test stamping its arrival (both on the host's shared monotonic clock; goal ≤ 1 ms).

    .venv/bin/python lab/benchmarks/client_headroom.py
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from tpserve.commandlines import loadtest_command
from tpserve.machine import describe_machine
from tpserve.workload.metrics import percentile

REPO = Path(__file__).resolve().parents[2]
SSE_SERVER = Path(__file__).resolve().with_name("sse_server.py")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start_server(port: int, first_delay: float, log: Path) -> subprocess.Popen:
    server = subprocess.Popen([sys.executable, str(SSE_SERVER), "--port", str(port),
                               "--first-delay", str(first_delay), "--log", str(log)])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            import requests

            if requests.get(f"http://127.0.0.1:{port}/version", timeout=1).ok:
                return server
        except requests.RequestException:
            time.sleep(0.1)
    server.kill()
    sys.exit("the SSE server did not start")


def locust(port: int, users: int, out: Path, **options) -> tuple[dict, float]:
    argv = loadtest_command(f"http://127.0.0.1:{port}", users=users, run_time_s=600, results_json=out,
                            only_summary=True, **options)
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO)
    cpu = 0.0
    while process.poll() is None:
        try:
            cpu = cpu_seconds(process.pid)
        except (OSError, IndexError):
            pass
        time.sleep(0.05)
    if process.returncode != 0:
        sys.exit(f"locust failed: {process.stderr.read()[-3000:]}")
    return json.loads(out.read_text()), cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--port", type=int, default=8041)
    parser.add_argument("--out", type=Path, default=REPO / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        log = scratch / "first-events.jsonl"
        server = start_server(args.port, 0.0, log)
        try:
            server_cpu_before = cpu_seconds(server.pid)
            load, locust_cpu = locust(args.port, args.concurrency, scratch / "load.json",
                                      num_requests=args.requests, max_tokens=args.tokens)
            server_cpu = cpu_seconds(server.pid) - server_cpu_before
        finally:
            server.kill()
        log.unlink(missing_ok=True)
        prompts = scratch / "probes.jsonl"
        prompts.write_text("".join(json.dumps({"prompt": f"probe {i}"}) + "\n" for i in range(args.probes)))
        server = start_server(args.port, 0.02, log)
        try:
            probe, _ = locust(args.port, 1, scratch / "probe.json", prompt_set="file", prompt_file=prompts,
                              num_requests=args.probes, max_tokens=8, records_jsonl=scratch / "records.jsonl")
        finally:
            server.kill()
        sent = {}
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            sent[entry["prompt"]] = entry["first_event_sent"]
        lines = (scratch / "records.jsonl").read_text().splitlines()
        added_ms = []
        for record, i in zip(map(json.loads, lines), range(args.probes), strict=True):
            added_ms.append((record["send_time"] + record["ttft"] - sent[f"probe {i}"]) * 1000)
    figures = {
        "benchmark": "client_headroom",
        "throughput": {"requests": args.requests, "tokens_per_request": args.tokens,
                       "concurrency": args.concurrency, "completed": load["completed"],
                       "parsed_output_tok_s": load["output_throughput"], "duration_s": load["duration"],
                       "locust_cpu_s": locust_cpu, "server_cpu_s": server_cpu, "goal_tok_s": 20000},
        "added_ttft": {"probes": args.probes, "median_ms": statistics.median(added_ms),
                       "p99_ms": percentile(added_ms, 99), "max_ms": max(added_ms), "goal_ms": 1.0,
                       "probe_run_ok": probe["ok"]},
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
    }
    t, a = figures["throughput"], figures["added_ttft"]
    print(f"one Locust process parsed {t['parsed_output_tok_s']:,.0f} output tok/s "
          f"({t['completed']} × {args.tokens} tokens in {t['duration_s']:.1f} s; CPU: locust {t['locust_cpu_s']:.1f} s, "
          f"server {t['server_cpu_s']:.1f} s; goal ≥ 20,000)")
    print(f"added TTFT over {args.probes} requests: median {a['median_ms']:.3f} ms, p99 {a['p99_ms']:.3f} ms, "
          f"max {a['max_ms']:.3f} ms (goal ≤ 1 ms) on {figures['machine']['cpu']}, {figures['machine']['cores']} cores")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{datetime.now(UTC):%Y%m%d}-client-headroom.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
