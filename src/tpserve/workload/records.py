"""Typed records for what flows through a load test: one spec and one result per request."""

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
