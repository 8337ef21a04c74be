"""Benchmark metrics as pure functions over request records, with ``vllm bench serve``'s definitions.

Key names match the JSON that ``vllm bench serve --save-result`` writes, so the two can be compared
field by field. Percentiles are computed from the raw records (linear interpolation, as numpy's
default), never from Locust's bucketed response-time histogram.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

from tpserve.workload.records import RequestResult

PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile of VALUES by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return 0.0
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within [0, 100], got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def describe_ms(name: str, seconds: Sequence[float]) -> dict[str, float]:
    """mean/median/std/p50/p90/p99 of a list of durations in seconds, reported in milliseconds."""
    ms = [s * 1000 for s in seconds]
    stats = {
        f"mean_{name}_ms": statistics.fmean(ms) if ms else 0.0,
        f"median_{name}_ms": statistics.median(ms) if ms else 0.0,
        f"std_{name}_ms": statistics.pstdev(ms) if ms else 0.0,
    }
    for q in PERCENTILES:
        stats[f"p{q}_{name}_ms"] = percentile(ms, q)
    return stats


def tpot(result: RequestResult) -> float | None:
    """Time per output token after the first: (E2EL − TTFT) / (output tokens − 1); None below 2 tokens."""
    if result.completion_tokens < 2:
        return None
    return (result.latency - result.ttft) / (result.completion_tokens - 1)


def duration(results: Iterable[RequestResult]) -> float:
    """Seconds from the first send to the last finish, over every request (failed ones included)."""
    results = list(results)
    if not results:
        return 0.0
    return max(r.finish_time for r in results) - min(r.send_time for r in results)


def summarize(results: Sequence[RequestResult]) -> dict:
    """The run's figures. Throughputs count successful requests only, over the whole run's duration."""
    ok = [r for r in results if r.ok]
    seconds = duration(results)
    input_tokens = sum(r.prompt_tokens for r in ok)
    output_tokens = sum(r.completion_tokens for r in ok)
    per_second = (lambda n: n / seconds) if seconds > 0 else (lambda n: 0.0)
    errors: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            errors[r.error] = errors.get(r.error, 0) + 1
    summary = {
        "duration": seconds,
        "num_prompts": len(results),
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "errors": errors,
        "total_input_tokens": input_tokens,
        "total_output_tokens": output_tokens,
        "request_throughput": per_second(len(ok)),
        "output_throughput": per_second(output_tokens),
        "total_token_throughput": per_second(input_tokens + output_tokens),
    }
    summary |= describe_ms("ttft", [r.ttft for r in ok])
    summary |= describe_ms("tpot", [t for r in ok if (t := tpot(r)) is not None])
    summary |= describe_ms("itl", [gap for r in ok for gap in r.itl])
    summary |= describe_ms("e2el", [r.latency for r in ok])
    return summary
