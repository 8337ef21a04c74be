import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tpserve.workload.metrics import (
    duration,
    error_counts,
    max_concurrent_requests,
    percentile,
    summarize,
    tpot,
)
from tpserve.workload.requesttypes import RequestResult


def result(send, ttft, latency, out, prompt=10, error=None, itl=()):
    return RequestResult("p", send, send + latency, ttft=ttft, latency=latency, itl=itl,
                         prompt_tokens=prompt, completion_tokens=out, max_tokens=out, error=error)


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=50),
       st.floats(min_value=0, max_value=100))
def test_percentile_matches_numpys_linear_interpolation(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), rel=1e-9, abs=1e-9)


def test_percentile_of_nothing_is_zero_and_out_of_range_is_rejected():
    assert percentile([], 50) == 0.0
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 101)


def test_tpot_excludes_the_first_token():
    assert tpot(result(0, ttft=0.5, latency=1.5, out=11)) == pytest.approx(0.1)
    assert tpot(result(0, ttft=0.5, latency=1.5, out=1)) is None


def test_duration_runs_from_first_send_to_last_finish():
    assert duration([result(1.0, 0.1, 2.0, 4), result(2.0, 0.1, 3.0, 4)]) == pytest.approx(4.0)


def test_summary_counts_only_successes_in_throughput_but_whole_run_in_duration():
    runs = [
        result(0.0, ttft=0.2, latency=1.0, out=9, itl=(0.1,) * 8),
        result(0.0, ttft=0.4, latency=2.0, out=17, itl=(0.1,) * 16),
        result(1.0, ttft=0.0, latency=3.0, out=0, error="HTTP 500: boom"),
    ]
    summary = summarize(runs)
    assert summary.duration == pytest.approx(4.0)
    assert (summary.completed, summary.failed) == (2, 1)
    assert error_counts(runs) == {"HTTP 500: boom": 1}
    assert summary.total_output_tokens == 26
    assert summary.output_throughput == pytest.approx(26 / 4.0)
    assert summary.total_token_throughput == pytest.approx((26 + 20) / 4.0)
    assert summary.request_throughput == pytest.approx(0.5)
    assert summary.mean_ttft_ms == pytest.approx(300.0)
    assert summary.median_tpot_ms == pytest.approx(100.0)
    assert summary.p99_itl_ms == pytest.approx(100.0)
    assert summary.mean_send_lateness_ms is None and "mean_send_lateness_ms" not in summary.to_json()


def test_summary_of_an_empty_run_has_zero_throughput():
    summary = summarize([])
    assert summary.output_throughput == 0.0 and summary.num_prompts == 0 and summary.max_concurrent_requests == 0


def test_peak_concurrency_counts_successful_requests_per_whole_second_as_vllm_bench_serve():
    # in flight during seconds 0-1, 0-2, 2-3 and (failed) 0-3: seconds 0 and 1 hold two, second 2 holds two
    runs = [result(0.0, 0.1, 1.5, 4), result(0.2, 0.1, 2.0, 4), result(2.5, 0.1, 0.5, 4),
            result(0.0, 0.0, 3.0, 0, error="HTTP 500: x")]
    assert max_concurrent_requests(runs) == 2
    assert max_concurrent_requests(runs[:2] + [result(0.1, 0.1, 0.5, 4)]) == 3
