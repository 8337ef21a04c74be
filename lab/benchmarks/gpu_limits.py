"""What one GPU achieves at the two limits a served model meets: memory bandwidth and dense matmul throughput.

``tpserve report`` holds every run against its roofline: decode against the bytes a step reads at the
card's memory bandwidth, prefill against its dense tensor throughput. Spec sheets give the peak; this
measures what torch reaches on the card beside the serving runs, so the report can also show the
fraction of what is achievable (``docs/performance.md``, "Roofline").

- copy: ``dst.copy_(src)`` of one large buffer; each iteration reads it and writes it, so the bytes
  moved are twice its size.
- read: ``torch.sum`` of one large float32 buffer, which only reads (decode mostly reads).
- matmul: ``A @ B`` in bfloat16, and ``torch._scaled_mm`` in float8 e4m3 (Hopper and Ada), FLOPs
  2·M·N·K; fp8 says why when torch or the card cannot run it.

Buffers are far larger than the L2 cache; data is random (power draw, and so clocks, depend on it).
Each figure is the median and the best over timed iterations after warm-ups (CUDA events on a GPU).

    python3 lab/benchmarks/gpu_limits.py --out results/FOLDER/gpu-limits.json
    .venv/bin/python lab/benchmarks/gpu_limits.py --cpu          # rehearsal on CPU, small sizes

Prints the JSON; ``--out`` also writes it. ``tpserve report`` reads any ``gpu-limits.json`` under the
folders it reports, or one named with ``--gpu-limits``, and matches it to runs by ``device``.
Only torch and the standard library are needed, so it runs in the serving image as it is.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

FORMAT = 1
GPU_SIZES = {"copy_bytes": 4 << 30, "read_bytes": 4 << 30, "matmul": (4096, 8192, 16384)}
CPU_SIZES = {"copy_bytes": 64 << 20, "read_bytes": 64 << 20, "matmul": (128, 256)}


def timed(op: Callable[[], object], device: torch.device, warmup: int, iterations: int) -> list[float]:
    """Seconds of each of ITERATIONS calls of OP after WARMUP untimed ones (CUDA events on a GPU)."""
    for _ in range(warmup):
        op()
    seconds = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        for _ in range(iterations):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            op()
            end.record()
            end.synchronize()
            seconds.append(start.elapsed_time(end) / 1000)
    else:
        for _ in range(iterations):
            began = time.perf_counter()
            op()
            seconds.append(time.perf_counter() - began)
    return seconds


def rates(amount: float, seconds: list[float], unit: float) -> dict:
    """AMOUNT per second over the median and the fastest iteration, in UNIT (1e9: GB/s, 1e12: TFLOPS)."""
    return {"median": amount / statistics.median(seconds) / unit, "best": amount / min(seconds) / unit,
            "seconds": seconds}


def copy_bandwidth(device: torch.device, size: int, warmup: int, iterations: int) -> dict:
    source = torch.randint(0, 256, (size,), dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    seconds = timed(lambda: target.copy_(source), device, warmup, iterations)
    return {"bytes": size, "bytes_moved_per_iteration": 2 * size, "counted": "reads + writes",
            "iterations": iterations, "gb_s": rates(2 * size, seconds, 1e9)}


def read_bandwidth(device: torch.device, size: int, warmup: int, iterations: int) -> dict:
    values = torch.rand(size // 4, dtype=torch.float32, device=device)
    seconds = timed(lambda: torch.sum(values), device, warmup, iterations)
    return {"bytes": values.numel() * 4, "bytes_moved_per_iteration": values.numel() * 4, "counted": "reads",
            "iterations": iterations, "gb_s": rates(values.numel() * 4, seconds, 1e9)}


def bf16_matmul(device: torch.device, size: int, warmup: int, iterations: int) -> dict:
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    seconds = timed(lambda: a @ b, device, warmup, iterations)
    return {"m": size, "n": size, "k": size, "iterations": iterations, "tflops": rates(2 * size**3, seconds, 1e12)}


def fp8_matmul(device: torch.device, size: int, warmup: int, iterations: int) -> dict:
    """torch._scaled_mm with per-tensor scales, as vLLM's fp8 linear layers on Hopper; B column-major, as
    the kernel requires."""
    a = torch.randn(size, size, device=device).to(torch.float8_e4m3fn)
    b = torch.randn(size, size, device=device).to(torch.float8_e4m3fn).t().contiguous().t()
    scale = torch.tensor(1.0, device=device)
    seconds = timed(lambda: torch._scaled_mm(a, b, scale_a=scale, scale_b=scale, out_dtype=torch.bfloat16),
                    device, warmup, iterations)
    return {"m": size, "n": size, "k": size, "iterations": iterations, "tflops": rates(2 * size**3, seconds, 1e12)}


def matmuls(kernel: Callable[..., dict], device: torch.device, sizes: tuple[int, ...], warmup: int,
            iterations: int) -> dict:
    """KERNEL at each size; the best median over sizes is the figure the report uses."""
    try:
        runs = [kernel(device, size, warmup, iterations) for size in sizes]
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, TypeError, AttributeError, NotImplementedError) as exc:
        return {"available": False, "reason": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    return {"available": True, "sizes": runs, "tflops": max(run["tflops"]["median"] for run in runs)}


def describe(device: torch.device) -> dict:
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        free, total = torch.cuda.mem_get_info(device)
        return {"device": torch.cuda.get_device_name(device), "device_type": "cuda",
                "capability": f"{major}.{minor}", "cuda": torch.version.cuda, "memory_bytes": total,
                "free_bytes_at_start": free}
    return {"device": f"CPU ({platform.processor() or platform.machine()})", "device_type": "cpu",
            "threads": torch.get_num_threads()}


def measure(device: torch.device, sizes: dict, warmup: int, iterations: int) -> dict:
    torch.manual_seed(0)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    copy = copy_bandwidth(device, sizes["copy_bytes"], warmup, iterations)
    read = read_bandwidth(device, sizes["read_bytes"], warmup, iterations)
    bf16 = matmuls(bf16_matmul, device, sizes["matmul"], warmup, iterations)
    fp8 = matmuls(fp8_matmul, device, sizes["matmul"], warmup, iterations)
    return {
        "benchmark": "gpu_limits", "format": FORMAT, **describe(device),
        "torch": torch.__version__, "python": platform.python_version(), "host": socket.gethostname(),
        "started_at": started, "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "warmup": warmup, "iterations": iterations,
        # The memory figure the report uses: the better of the two access patterns, medians.
        "memory_gb_s": max(copy["gb_s"]["median"], read["gb_s"]["median"]),
        "copy": copy, "read": read, "matmul": {"bf16": bf16, "fp8": fp8},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="measure the CPU with small sizes (a rehearsal)")
    parser.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations (GPU 50, CPU 5)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations first (GPU 10, CPU 1)")
    parser.add_argument("--out", type=Path, help="also write the JSON here (results/FOLDER/gpu-limits.json)")
    args = parser.parse_args(argv)
    if args.cpu:
        device, sizes, iterations, warmup = torch.device("cpu"), CPU_SIZES, 5, 1
    else:
        if not torch.cuda.is_available():
            print("gpu_limits: torch sees no CUDA device: run on a GPU host, or pass --cpu to rehearse",
                  file=sys.stderr)
            return 2
        device, sizes, iterations, warmup = torch.device("cuda", args.device), GPU_SIZES, 50, 10
    iterations = args.iterations if args.iterations is not None else iterations
    warmup = args.warmup if args.warmup is not None else warmup
    if iterations < 1 or warmup < 0:
        print(f"gpu_limits: --iterations must be at least 1 and --warmup at least 0, got {iterations} and "
              f"{warmup}", file=sys.stderr)
        return 2
    try:
        result = measure(device, sizes, warmup, iterations)
    except torch.cuda.OutOfMemoryError:
        print("gpu_limits: out of GPU memory (the copy alone holds two 4 GiB buffers): run it while no server holds the GPU",
              file=sys.stderr)
        return 2
    text = json.dumps(result, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
