"""Parse an OpenAI-style server-sent-event stream into a :class:`RequestResult`.

Pure code over ``(line, timestamp)`` pairs so it is tested without a server; the Locust user feeds
it lines read one at a time from the raw socket, each stamped when it arrived.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tpserve.workload.requesttypes import RequestResult, RequestSpec

DONE = "[DONE]"


class StreamError(ValueError):
    """The stream is not a well-formed completion stream."""


class StreamTimeout(StreamError):
    """The server sent nothing more for longer than the request timeout."""


def parse_line(line: bytes | str) -> dict | str | None:
    """One SSE line → its JSON payload, ``DONE``, or ``None`` for blank lines and comments."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StreamError(f"line is not UTF-8: {line[:80]!r}") from exc
    line = line.strip("\r\n")
    if not line or line.startswith(":"):
        return None
    if not line.startswith("data:"):
        if line.split(":", 1)[0] in ("event", "id", "retry"):
            return None
        raise StreamError(f"not an SSE data line: {line[:80]!r}")
    payload = line[len("data:"):].strip()
    if payload == DONE:
        return DONE
    try:
        event = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise StreamError(f"data is not JSON: {payload[:80]!r}") from exc
    if not isinstance(event, dict):
        raise StreamError(f"data is not a JSON object: {payload[:80]!r}")
    return event


def _has_output(event: dict) -> bool:
    choices = event.get("choices")
    return isinstance(choices, list) and len(choices) > 0


def result_from_stream(
    spec: RequestSpec, send_time: float, lines: Iterable[tuple[bytes | str, float]]
) -> RequestResult:
    """Consume a stream's timestamped lines and measure the request as ``vllm bench serve`` does.

    TTFT is the arrival of the first event carrying ``choices`` (for chat, the role-only delta counts,
    as in vLLM's benchmark); ITL the gaps between successive such events; the latency ends at the
    last of them (the trailing usage event carries no token); token counts come from the final
    ``usage`` event (``stream_options.include_usage``). ``finish_time`` is the last line read.
    """
    first_output = last_output = 0.0
    itl: list[float] = []
    usage: dict | None = None
    aborted = False
    done = False
    finish = send_time

    def result(error: str | None) -> RequestResult:
        return RequestResult(
            prompt_id=spec.prompt_id,
            send_time=send_time,
            finish_time=finish,
            ttft=first_output - send_time if first_output else 0.0,
            latency=(last_output or finish) - send_time,
            itl=tuple(itl),
            prompt_tokens=int((usage or {}).get("prompt_tokens") or 0),
            completion_tokens=int((usage or {}).get("completion_tokens") or 0),
            max_tokens=spec.max_tokens,
            error=error,
        )

    try:
        for line, stamp in lines:
            finish = stamp
            event = parse_line(line)
            if event is None:
                continue
            if event == DONE:
                done = True
                break
            if "error" in event and not _has_output(event):
                message = event["error"].get("message") if isinstance(event["error"], dict) else event["error"]
                return result(f"server error in stream: {message}")
            if _has_output(event):
                aborted |= any(isinstance(c, dict) and c.get("finish_reason") == "abort" for c in event["choices"])
                if first_output:
                    itl.append(stamp - last_output)
                else:
                    first_output = stamp
                last_output = stamp
            if isinstance(event.get("usage"), dict):
                usage = event["usage"]
    except StreamTimeout as exc:
        return result(f"timed out mid-stream: {exc}")
    except StreamError as exc:
        return result(f"malformed stream: {exc}")

    if not done:
        return result("stream ended before [DONE]")
    if aborted:
        return result("aborted by the server (finish_reason abort): it was stopping, or dropped the request")
    if usage is None:
        return result("stream had no usage event (the server ignored stream_options.include_usage)")
    if not first_output:
        return result("stream carried no output")
    return result(None)


def check_length(result: RequestResult) -> RequestResult:
    """Fail a request whose completion is not exactly ``max_tokens`` long (fixed-length workloads)."""
    if result.ok and result.completion_tokens != result.max_tokens:
        from dataclasses import replace

        return replace(
            result,
            error=f"completion_tokens {result.completion_tokens} != max_tokens {result.max_tokens}",
        )
    return result
