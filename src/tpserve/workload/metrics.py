"""Benchmark metrics as pure functions over request records, with ``vllm bench serve``'s definitions.

Key names match the JSON that ``vllm bench serve --save-result`` writes, so the two can be compared
field by field. Percentiles are computed from the raw records (linear interpolation, as numpy's
default), never from Locust's bucketed response-time histogram.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from tpserve.workload.requesttypes import RequestResult

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


@dataclass(frozen=True)
class Metrics:
    """A run's figures under ``vllm bench serve``'s names: seconds, token counts, per-second rates, ms.

    Throughputs count successful requests only, over the whole run's duration. The send lateness
    figures exist only for paced (Poisson) runs; ``max_concurrent_requests`` is missing only from
    files of schema version 1, written before it was measured.
    """

    duration: float
    num_prompts: int
    completed: int
    failed: int
    total_input_tokens: int
    total_output_tokens: int
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    mean_ttft_ms: float
    median_ttft_ms: float
    std_ttft_ms: float
    p50_ttft_ms: float
    p90_ttft_ms: float
    p99_ttft_ms: float
    mean_tpot_ms: float
    median_tpot_ms: float
    std_tpot_ms: float
    p50_tpot_ms: float
    p90_tpot_ms: float
    p99_tpot_ms: float
    mean_itl_ms: float
    median_itl_ms: float
    std_itl_ms: float
    p50_itl_ms: float
    p90_itl_ms: float
    p99_itl_ms: float
    mean_e2el_ms: float
    median_e2el_ms: float
    std_e2el_ms: float
    p50_e2el_ms: float
    p90_e2el_ms: float
    p99_e2el_ms: float
    max_concurrent_requests: int | None = None
    mean_send_lateness_ms: float | None = None
    p99_send_lateness_ms: float | None = None
    max_send_lateness_ms: float | None = None

    def to_json(self) -> dict:
        """The figures as flat JSON keys; the lateness figures only when the run was paced."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name)) is not None}

    @classmethod
    def from_json(cls, document: dict) -> Metrics:
        """The figures out of a flat document that also holds other keys (a whole run's JSON)."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in document.items() if key in names})


def max_concurrent_requests(results: Sequence[RequestResult]) -> int:
    """The most successful requests in flight within any one second of the run, as ``vllm bench serve``.

    vLLM counts a request in every whole second (from the first send) that it was in flight.
    """
    ok = [r for r in results if r.ok]
    if not ok:
        return 0
    start = min(r.send_time for r in ok)
    per_second: dict[int, int] = {}
    for r in ok:
        for second in range(int(r.send_time - start), int(r.send_time + r.latency - start) + 1):
            per_second[second] = per_second.get(second, 0) + 1
    return max(per_second.values())


def error_counts(results: Iterable[RequestResult]) -> dict[str, int]:
    """How many requests failed for each reason."""
    errors: dict[str, int] = {}
    for r in results:
        if r.error is not None:
            errors[r.error] = errors.get(r.error, 0) + 1
    return errors


def lateness_ms(lateness_s: Sequence[float]) -> dict[str, float]:
    """How late the paced sends left compared with their Poisson schedule (empty for closed loops)."""
    if not lateness_s:
        return {}
    ms = sorted(x * 1000 for x in lateness_s)
    return {"mean_send_lateness_ms": sum(ms) / len(ms), "p99_send_lateness_ms": percentile(ms, 99),
            "max_send_lateness_ms": ms[-1]}


def summarize(results: Sequence[RequestResult], send_lateness_s: Sequence[float] = ()) -> Metrics:
    """The run's figures from its raw records (failed ones included in the duration and counts)."""
    ok = [r for r in results if r.ok]
    seconds = duration(results)
    input_tokens = sum(r.prompt_tokens for r in ok)
    output_tokens = sum(r.completion_tokens for r in ok)
    per_second = (lambda n: n / seconds) if seconds > 0 else (lambda n: 0.0)
    summary = {
        "duration": seconds,
        "num_prompts": len(results),
        "completed": len(ok),
        "failed": len(results) - len(ok),
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
    summary["max_concurrent_requests"] = max_concurrent_requests(results)
    return Metrics(**summary, **lateness_ms(send_lateness_s))
