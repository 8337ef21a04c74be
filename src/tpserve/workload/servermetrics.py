"""Read vLLM's Prometheus metrics: the counters that check the client's token counts, and the server's own
figures for a window between two scrapes of /metrics — the arbiter when two clients disagree.

Pure functions over exposition text, so the arithmetic is tested on recorded scrapes without a server.
The text is read by prometheus_client's parser, the library vLLM exports it with, never by a regex here.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample as ExpositionSample

from tpserve.fetch.errors import LoadTestError

GENERATION_TOKENS = "vllm:generation_tokens_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
REQUESTS_FINISHED = "vllm:request_success_total"
REQUESTS_RUNNING = "vllm:num_requests_running"
REQUESTS_WAITING = "vllm:num_requests_waiting"
# The latency histograms the window reads, each under the key stem metrics.py uses for the client's figure.
HISTOGRAMS = {
    "ttft": "vllm:time_to_first_token_seconds",
    "e2el": "vllm:e2e_request_latency_seconds",
    "itl": "vllm:inter_token_latency_seconds",
    "tpot": "vllm:request_time_per_output_token_seconds",
}


def exposition_samples(exposition: str) -> Iterator[ExpositionSample]:
    """Every sample of a Prometheus text exposition, with its labels unescaped: the one reader of /metrics."""
    try:
        for family in text_string_to_metric_families(exposition):
            yield from family.samples
    except ValueError as error:
        raise LoadTestError(f"the server's /metrics is not Prometheus text ({error}): "
                            "point the load test at a vLLM server's base URL") from error


def counter_totals(exposition: str, names: tuple[str, ...] = (GENERATION_TOKENS, PROMPT_TOKENS)) -> dict:
    """Sum each named counter (or gauge) over all its label sets in a Prometheus text exposition.

    A name that does not appear is absent from the result, so callers can tell "0" from "not exported".
    """
    totals: dict[str, float] = {}
    for found in exposition_samples(exposition):
        if found.name in names:
            totals[found.name] = totals.get(found.name, 0.0) + found.value
    return totals


@dataclass(frozen=True)
class Histogram:
    """A Prometheus histogram summed over its label sets: cumulative counts per upper bound, ascending,
    the last bound +Inf."""

    buckets: tuple[tuple[float, float], ...]
    sum: float
    count: float

    def minus(self, earlier: Histogram) -> Histogram:
        """What was observed after EARLIER (the same histogram read before)."""
        if [le for le, _ in self.buckets] != [le for le, _ in earlier.buckets]:
            raise LoadTestError("the server's histogram buckets changed between the two scrapes of /metrics "
                                "(did the server restart?): measure the run again")
        return Histogram(tuple((le, n - m) for (le, n), (_, m) in zip(self.buckets, earlier.buckets, strict=True)),
                         self.sum - earlier.sum, self.count - earlier.count)

    @property
    def mean(self) -> float | None:
        """The exact mean (sum ÷ count); None without observations."""
        return self.sum / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        """The q-quantile (0–1) as Prometheus' histogram_quantile estimates it: linear within the bucket
        that holds the rank, the first bucket starting at 0, and the highest finite bound for a rank in +Inf.
        """
        if not 0 <= q <= 1:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        if self.count <= 0:
            return None
        rank = q * self.count
        lower, below = 0.0, 0.0
        for le, cumulative in self.buckets:
            if cumulative >= rank and cumulative > below:
                if math.isinf(le):
                    return lower
                return lower + (le - lower) * (rank - below) / (cumulative - below)
            lower, below = le, cumulative
        return lower


def histogram(exposition: str, name: str) -> Histogram | None:
    """NAME's histogram summed over its label sets (engines, models), or None if the server does not export it."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    seen = False
    for found in exposition_samples(exposition):
        if found.name == f"{name}_bucket" and "le" in found.labels:
            bound = float(found.labels["le"])
            buckets[bound] = buckets.get(bound, 0.0) + found.value
            seen = True
        elif found.name == f"{name}_sum":
            total += found.value
        elif found.name == f"{name}_count":
            count += found.value
    return Histogram(tuple(sorted(buckets.items())), total, count) if seen else None


@dataclass(frozen=True)
class ServerWindow:
    """What the server itself counted between two scrapes of /metrics: tokens, finished requests, and the
    mean (exact) and median (interpolated within its histogram bucket) of its latencies, in milliseconds.

    A latency is None when the server does not export its histogram or saw no observation in the window.
    vLLM times a request from its arrival at the server, so these figures leave out what clients add.
    """

    generation_tokens: int
    prompt_tokens: int
    requests_finished: int
    mean_ttft_ms: float | None = None
    median_ttft_ms: float | None = None
    mean_e2el_ms: float | None = None
    median_e2el_ms: float | None = None
    mean_itl_ms: float | None = None
    median_itl_ms: float | None = None
    mean_tpot_ms: float | None = None
    median_tpot_ms: float | None = None

    def output_throughput(self, seconds: float) -> float:
        """Generated tokens per second over a window of SECONDS (the client's duration, or the server's)."""
        return self.generation_tokens / seconds if seconds > 0 else 0.0

    def to_json(self) -> dict:
        return asdict(self)


def server_window(before: str, after: str) -> ServerWindow:
    """The server's own figures for what happened between scrapes BEFORE and AFTER of its /metrics."""
    names = (GENERATION_TOKENS, PROMPT_TOKENS, REQUESTS_FINISHED)
    start, end = counter_totals(before, names), counter_totals(after, names)
    if GENERATION_TOKENS not in start or GENERATION_TOKENS not in end:
        raise LoadTestError(f"the server does not export {GENERATION_TOKENS}: is this a vLLM server's /metrics?")
    delta = {name: end.get(name, 0.0) - start.get(name, 0.0) for name in names}
    if any(value < 0 for value in delta.values()):
        raise LoadTestError("the server's counters went down between the two scrapes of /metrics "
                            "(did the server restart?): measure the run again")
    latencies: dict[str, float | None] = {}
    for key, name in HISTOGRAMS.items():
        earlier, later = histogram(before, name), histogram(after, name)
        window = later.minus(earlier) if earlier is not None and later is not None else None
        mean, median = (window.mean, window.quantile(0.5)) if window is not None else (None, None)
        latencies[f"mean_{key}_ms"] = None if mean is None else mean * 1000
        latencies[f"median_{key}_ms"] = None if median is None else median * 1000
    return ServerWindow(round(delta[GENERATION_TOKENS]), round(delta[PROMPT_TOKENS]),
                        round(delta[REQUESTS_FINISHED]), **latencies)


def in_flight(exposition: str) -> tuple[int, int]:
    """The requests the server is running and holding in its queue at the moment of this scrape."""
    gauges = counter_totals(exposition, (REQUESTS_RUNNING, REQUESTS_WAITING))
    return round(gauges.get(REQUESTS_RUNNING, 0.0)), round(gauges.get(REQUESTS_WAITING, 0.0))


@dataclass(frozen=True)
class Sample:
    """One scrape taken during a run: when (seconds, any monotonic clock), the generation counter, and the
    requests the server was running and queueing."""

    at: float
    generation_tokens: float
    running: int
    waiting: int


def sample(exposition: str, at: float) -> Sample:
    totals = counter_totals(exposition, (GENERATION_TOKENS,))
    return Sample(at, totals.get(GENERATION_TOKENS, 0.0), *in_flight(exposition))


def busy_seconds(samples: list[Sample]) -> tuple[float, float] | None:
    """How long the server generated tokens, as scrapes taken during the run see it, and how far off that
    can be: (seconds, ± seconds). None when the generation counter never moved between two scrapes.

    The window runs from midway between the last scrape before the counter moved and the first after, to
    midway between the last scrape before it stopped and the first after; each end is off by at most half
    its interval. A starved server answers a scrape late, which widens that interval.
    """
    moved = [i for i in range(1, len(samples)) if samples[i].generation_tokens > samples[i - 1].generation_tokens]
    if not moved:
        return None
    first, last = moved[0], moved[-1]
    start = (samples[first - 1].at + samples[first].at) / 2
    end = (samples[last - 1].at + samples[last].at) / 2
    error = (samples[first].at - samples[first - 1].at + samples[last].at - samples[last - 1].at) / 2
    if end <= start:
        return samples[last].at - samples[first - 1].at, error
    return end - start, error


def saturated_throughput(samples: list[Sample]) -> tuple[float, float] | None:
    """(generation tokens per second, seconds) between the first and the last scrape that saw requests
    queued: the server's own rate while its batch was full, the clients' ramp-up and drain left out.
    None without two such scrapes (the server never queued: the point is not throughput-bound)."""
    full = [s for s in samples if s.waiting > 0]
    if len(full) < 2 or full[-1].at <= full[0].at:
        return None
    seconds = full[-1].at - full[0].at
    return (full[-1].generation_tokens - full[0].generation_tokens) / seconds, seconds


def mean_in_flight(samples: list[Sample]) -> float | None:
    """The requests the server held (running + queued), averaged over the scrapes that saw any."""
    busy = [s.running + s.waiting for s in samples if s.running + s.waiting > 0]
    return sum(busy) / len(busy) if busy else None
