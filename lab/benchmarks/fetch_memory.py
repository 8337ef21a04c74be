"""How much memory the chart's init container uses to fetch a multi-GB weights file (issue 11).

The hub stand-in of lab/hubfake serves a repo whose model.safetensors is SIZE_GIB GiB (a sparse file of
zeros, streamed from disk), and the init container's code — charts/vllm/files/tpserve, run as
``python3 -m tpserve.fetchjob`` with the fetch container's environment as the chart renders it
(k8s/base/deployment.yaml) — downloads it into a scratch cache. The fetch's peak RSS (the kernel's
high-water mark, from ``wait4``), its wall time and its throughput are printed and written to
``results/<date>-fetch-memory.json``. With ``--revision REV`` the code and environment are those committed
at REV (``git archive``), to measure the chart as it was before a change.

The stand-in speaks plain HTTP and sends no Xet headers, so this measures huggingface_hub's HTTP path;
the Xet settings the chart sets are not exercised by it. What is recorded of them is the configuration
hf_xet reads from that environment (``hf_xet.XetConfig``): proof that the names are live, not a measurement.

    .venv/bin/python lab/benchmarks/fetch_memory.py --size-gib 4 [--revision main]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import yaml

from tpserve.machine import describe_machine

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # lab.hubfake, the stand-in the tests use too

from lab.hubfake import DiskFile, HubFake, fixture_files

MODEL = "bench-org/big-weights"
SHIPPED = "charts/vllm/files"
DEPLOYMENT = "k8s/base/deployment.yaml"
LIMIT_BYTES = 4 * 2**30  # values.yaml fetch.resources.memory


def checkout(revision: str | None, scratch: Path) -> Path:
    """A tree holding the shipped fetch code and the rendered Deployment: this checkout, or them at REVISION."""
    if revision is None:
        return REPO
    tree = scratch / "at-revision"
    # src/tpserve too: charts/vllm/files/tpserve links to src/tpserve/fetch.
    archive = subprocess.run(["git", "-C", str(REPO), "archive", revision, SHIPPED, "src/tpserve", DEPLOYMENT],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def chart_fetch_env(tree: Path) -> dict[str, str]:
    """The init container's literal environment variables, as the chart renders them by default."""
    spec = yaml.safe_load((tree / DEPLOYMENT).read_text())["spec"]["template"]["spec"]
    fetch = next(c for c in spec["initContainers"] if c["name"] == "fetch-model")
    return {entry["name"]: str(entry["value"]) for entry in fetch["env"] if "value" in entry}


XET_KEYS = ("reconstruction.download_buffer_size", "reconstruction.download_buffer_perfile_size",
            "reconstruction.download_buffer_limit", "data.max_concurrent_file_downloads", "chunk_cache.size_bytes")


def xet_config(env: dict[str, str]) -> dict[str, str] | None:
    """The download settings hf_xet takes from ENV, as it reads them; None without hf_xet."""
    script = ("import json, hf_xet; config = dict(hf_xet.XetConfig().items()); "
              f"print(json.dumps({{key: str(config.get(key)) for key in {XET_KEYS!r}}}))")
    done = subprocess.run([sys.executable, "-c", script], check=False, env=env, capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def sample_rss(pid: int, samples: list[tuple[float, int]], start: float) -> None:
    """VmRSS of PID every 0.2 s until it exits: how memory moves over the download, beside the peak."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            text = status.read_text()
        except (FileNotFoundError, ProcessLookupError):
            return
        rss = next((int(line.split()[1]) for line in text.splitlines() if line.startswith("VmRSS:")), None)
        if rss is None:  # a zombie: it has exited
            return
        samples.append((round(time.monotonic() - start, 1), rss * 1024))
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument("--revision", help="measure the chart's code and env as committed at this git revision")
    parser.add_argument("--out", type=Path, default=REPO / "results")
    args = parser.parse_args()
    size = int(args.size_gib * 2**30)
    code = args.revision or "working tree"
    if args.revision:
        code = subprocess.run(["git", "-C", str(REPO), "rev-parse", args.revision], check=True,
                              capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="fetch-memory-") as scratch:
        scratch = Path(scratch)
        tree = checkout(args.revision, scratch)
        chart_env = chart_fetch_env(tree)
        weights = scratch / "served" / "model.safetensors"
        weights.parent.mkdir()
        with weights.open("wb") as file:
            file.truncate(size)  # sparse: no disk and no time to make
        hashing = time.monotonic()
        files = {name: data for name, data in fixture_files("tiny-llama").items() if not name.endswith(".safetensors")}
        files["model.safetensors"] = DiskFile.of(weights)
        print(f"stand-in: {size / 2**30:.2f} GiB model.safetensors hashed in {time.monotonic() - hashing:.1f} s",
              flush=True)
        hub = HubFake().start()
        try:
            sha = hub.publish(MODEL, files)
            env = {key: value for key, value in os.environ.items()
                   if not key.startswith(("HF_", "HUGGING_FACE", "TPSERVE_"))}
            env |= chart_env | {
                "PYTHONPATH": str(tree / SHIPPED), "HF_HOME": str(scratch / "hf-home"),
                "HF_XET_CACHE": str(scratch / "hf-xet"), "HF_ENDPOINT": hub.url, "NO_PROXY": "127.0.0.1,localhost"}
            argv = [sys.executable, "-m", "tpserve.fetchjob", "--model", MODEL, "--revision", sha,
                    "--cache-dir", str(scratch / "models" / "hf" / "tpserve"),
                    "--path-file", str(scratch / "run" / "model-path")]
            xet_with_env = xet_config(env)
            xet_defaults = xet_config({key: value for key, value in env.items() if not key.startswith("HF_XET_")})
            samples: list[tuple[float, int]] = []
            start = time.monotonic()
            process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            sampler = threading.Thread(target=sample_rss, args=(process.pid, samples, start), daemon=True)
            sampler.start()
            _, status, usage = os.wait4(process.pid, 0)
            wall_s = time.monotonic() - start
            process.returncode = os.waitstatus_to_exitcode(status)
            output = process.stdout.read()
            sampler.join(timeout=2)
        finally:
            hub.stop()
        if process.returncode != 0:
            sys.exit(f"the fetch failed ({process.returncode}):\n{output}")
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    figures = {
        "benchmark": "fetch_memory",
        "what": "the chart's init container code (python3 -m tpserve.fetchjob, charts/vllm/files/tpserve) with "
                "the fetch container's rendered env, fetching one multi-GB safetensors file from the hub "
                "stand-in (lab/hubfake)",
        "path_measured": "huggingface_hub plain HTTP (the stand-in sends no Xet headers); the Xet settings are "
                         "configured, not measured",
        "code": code,
        "weights_bytes": size,
        "peak_rss_bytes": peak,
        "peak_rss_mib": round(peak / 2**20, 1),
        "limit_bytes": LIMIT_BYTES,
        "peak_of_limit": round(peak / LIMIT_BYTES, 3),
        "wall_s": round(wall_s, 2),
        "throughput_mb_s": round(size / wall_s / 1e6, 1),
        "rss_samples": samples[:: max(1, len(samples) // 60)],
        "fetch_env": {key: value for key, value in chart_env.items() if key.startswith("HF_")},
        "xet_config_with_fetch_env": xet_with_env,
        "xet_config_defaults_on_this_host": xet_defaults,
        "fetch_packages": {name: _version(name) for name in ("huggingface_hub", "hf_xet", "httpx", "httpx2",
                                                             "requests")},
        "fetch_output": output.strip().splitlines()[-1:],
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe_machine(),
    }
    print(f"fetch of {size / 2**30:.2f} GiB over HTTP: peak RSS {figures['peak_rss_mib']} MiB "
          f"({figures['peak_of_limit']:.1%} of the 4Gi limit), {wall_s:.1f} s, {figures['throughput_mb_s']} MB/s "
          f"on {figures['machine']['cpu']}, {figures['machine']['cores']} cores "
          f"(huggingface_hub {figures['fetch_packages']['huggingface_hub']})")
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d")
    suffix = f"-at-{args.revision}" if args.revision else ""
    (args.out / f"{stamp}-fetch-memory{suffix}.json").write_text(json.dumps(figures, indent=2) + "\n")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
