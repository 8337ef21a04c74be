"""The types a load test's requests flow through: the run's plan, one spec and one result per request.

The run record built from them is :class:`tpserve.workload.runrecord.RunRecord`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class RequestSpec:
    """One request to send: the prompt (or chat messages) and how many tokens must come back."""

    prompt: str
    max_tokens: int
    prompt_id: str = ""
    messages: tuple[dict, ...] = ()

    def chat_messages(self) -> list[dict]:
        return list(self.messages) or [{"role": "user", "content": self.prompt}]


@dataclass(frozen=True)
class RequestResult:
    """What one request did. A failed request is a result with ``error`` set.

    Times are seconds. ``send_time`` and ``finish_time`` are ``time.perf_counter()`` readings of the
    process that sent the request (monotonic), used only to measure the run's duration.
    """

    prompt_id: str
    send_time: float
    finish_time: float
    ttft: float = 0.0
    latency: float = 0.0
    itl: tuple[float, ...] = field(default_factory=tuple)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    max_tokens: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict:
        record = asdict(self)
        record["itl"] = list(self.itl)
        return record

    @classmethod
    def from_json(cls, record: dict) -> RequestResult:
        return cls(**{**record, "itl": tuple(record.get("itl", ()))})


@dataclass(frozen=True)
class RunPlan:
    """What a run sends (its workload). ``num_requests`` 0 means: until Locust's ``--run-time`` ends it.

    ``request_rate`` 0 is a closed loop (each of ``concurrency`` users sends its next request when
    the last one finishes); above 0, sends follow a Poisson process at that rate, still capped at
    ``concurrency`` in flight. ``warmup_requests`` are sent first and left out of every figure.
    """

    host: str
    model: str
    max_tokens: int
    num_requests: int
    temperature: float = 0.0
    prompt_set: str = "builtin"
    endpoint: str = "completions"
    concurrency: int = 1
    request_rate: float = 0.0
    warmup_requests: int = 0
    seed: int = 0
    max_error_rate: float = 0.0

    @property
    def mode(self) -> str:
        load = f"poisson {self.request_rate:g} req/s" if self.request_rate else "closed loop"
        count = f"{self.num_requests} requests" if self.num_requests else "timed"
        return f"{count}, {load}, concurrency {self.concurrency}"

    @property
    def endpoint_path(self) -> str:
        return "/v1/chat/completions" if self.endpoint == "chat" else "/v1/completions"
