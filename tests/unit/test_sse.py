import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpserve.workload.requesttypes import RequestSpec
from tpserve.workload.sse import (
    DONE,
    StreamError,
    StreamTimeout,
    check_length,
    parse_line,
    result_from_stream,
)

SPEC = RequestSpec(prompt="hi", max_tokens=3, prompt_id="p0")


def event(text=None, usage=None):
    payload = {"choices": [{"index": 0, "text": text}] if text is not None else []}
    if usage is not None:
        payload["usage"] = usage
    return f"data: {json.dumps(payload)}\n".encode()


def stream(*lines_at):
    """(line, timestamp) pairs with blank separator lines, as vLLM sends them."""
    out = []
    for line, stamp in lines_at:
        out += [(line, stamp), (b"\n", stamp)]
    return out


USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_a_complete_stream_gives_ttft_itl_latency_and_usage():
    lines = stream(
        (event("a"), 10.25), (event("b"), 10.30), (event("c"), 10.40),
        (event(usage=USAGE), 10.41), (b"data: [DONE]\n", 10.42),
    )
    result = result_from_stream(SPEC, 10.0, lines)
    assert result.ok
    assert result.ttft == pytest.approx(0.25)
    assert result.itl == pytest.approx((0.05, 0.10))
    assert result.latency == pytest.approx(0.40)  # to the last token event, as vLLM's benchmark does
    assert result.finish_time == pytest.approx(10.42)
    assert (result.prompt_tokens, result.completion_tokens) == (5, 3)


def test_a_stream_cut_before_done_is_a_failure_with_its_reason():
    result = result_from_stream(SPEC, 0.0, stream((event("a"), 0.1)))
    assert result.error == "stream ended before [DONE]"


def test_a_stream_without_usage_is_a_failure_naming_include_usage():
    result = result_from_stream(SPEC, 0.0, stream((event("a"), 0.1), (b"data: [DONE]\n", 0.2)))
    assert "include_usage" in result.error


def test_a_malformed_line_is_a_failure_not_a_crash():
    result = result_from_stream(SPEC, 0.0, stream((b"data: {not json\n", 0.1)))
    assert result.error.startswith("malformed stream: data is not JSON")


def test_an_error_event_in_the_stream_is_reported():
    line = b'data: {"error": {"message": "out of KV cache"}}\n'
    result = result_from_stream(SPEC, 0.0, stream((line, 0.1)))
    assert result.error == "server error in stream: out of KV cache"


def test_a_transport_error_while_reading_is_a_failure():
    def lines():
        yield event("a"), 0.1
        raise StreamError("connection lost mid-stream: ConnectionResetError")

    result = result_from_stream(SPEC, 0.0, lines())
    assert result.error == "malformed stream: connection lost mid-stream: ConnectionResetError"


def test_a_server_silent_past_the_request_timeout_is_a_timeout_not_a_malformed_stream():
    def lines():
        yield event("a"), 0.1
        raise StreamTimeout("no bytes from the server for 2 s (--request-timeout)")

    result = result_from_stream(SPEC, 0.0, lines())
    assert result.error == "timed out mid-stream: no bytes from the server for 2 s (--request-timeout)"
    assert result.ttft == pytest.approx(0.1)


def test_a_request_the_server_aborted_says_so_rather_than_only_coming_up_short():
    aborted = b'data: {"choices": [{"index": 0, "text": "", "finish_reason": "abort"}]}\n'
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1}}\n'
    result = check_length(result_from_stream(
        SPEC, 0.0, stream((event("a"), 0.1), (aborted, 0.2), (usage, 0.2), (b"data: [DONE]\n", 0.2))))
    assert result.error == "aborted by the server (finish_reason abort): it was stopping, or dropped the request"
    assert result.completion_tokens == 1


def test_a_completion_shorter_than_max_tokens_fails_the_length_check():
    short = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
    lines = stream((event("a"), 0.1), (event(usage=short), 0.2), (b"data: [DONE]\n", 0.3))
    result = check_length(result_from_stream(SPEC, 0.0, lines))
    assert result.error == "completion_tokens 2 != max_tokens 3"


@pytest.mark.parametrize("line", [b"\n", b": keep-alive\n", b"event: message\n", b"id: 7\n", b"\r\n"])
def test_blank_lines_comments_and_sse_fields_are_skipped(line):
    assert parse_line(line) is None


def test_done_marker_is_recognised():
    assert parse_line(b"data: [DONE]\r\n") == DONE


@pytest.mark.parametrize("line, message", [
    (b"garbage\n", "not an SSE data line"),
    (b"data: [1, 2]\n", "not a JSON object"),
    (b"data: \xff\xfe\n", "not UTF-8"),
])
def test_bad_lines_raise_stream_errors_naming_the_problem(line, message):
    with pytest.raises(StreamError, match=message):
        parse_line(line)


@given(st.lists(st.binary(max_size=200), max_size=30))
def test_any_byte_stream_gives_a_result_and_never_raises(chunks):
    lines = [(chunk + b"\n", float(i)) for i, chunk in enumerate(chunks)]
    result = result_from_stream(SPEC, 0.0, lines)
    assert result.ok or result.error
    assert result.latency >= 0


@given(st.lists(st.text(max_size=40), min_size=1, max_size=20))
def test_any_sequence_of_text_events_counts_every_event(texts):
    lines = [(event(t), 1.0 + i) for i, t in enumerate(texts)]
    usage = {"prompt_tokens": 1, "completion_tokens": len(texts)}
    lines += [(event(usage=usage), 100.0), (b"data: [DONE]\n", 101.0)]
    result = result_from_stream(SPEC, 0.0, lines)
    assert result.ok
    assert len(result.itl) == len(texts) - 1
    assert result.ttft == 1.0
