import math

import pytest

from tests.conftest import REPO
from tests.exposition import AWKWARD_LABEL_VALUES
from tpserve.fetch.errors import LoadTestError
from tpserve.workload.servermetrics import (
    GENERATION_TOKENS,
    PROMPT_TOKENS,
    Histogram,
    Sample,
    busy_seconds,
    counter_totals,
    histogram,
    in_flight,
    mean_in_flight,
    sample,
    saturated_throughput,
    server_window,
)

EXPOSITION = """\
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 120.0
vllm:generation_tokens_total{engine="1",model_name="m"} 30.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e+09
vllm:prompt_tokens_total{engine="0",model_name="m"} 44.0
vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="local_compute"} 44.0
"""


def test_counters_are_summed_over_label_sets_and_lookalikes_ignored():
    assert counter_totals(EXPOSITION) == {GENERATION_TOKENS: 150.0, PROMPT_TOKENS: 44.0}


def test_a_counter_the_server_does_not_export_is_absent_not_zero():
    assert counter_totals("# nothing here\nother_metric 1\n") == {}


@pytest.mark.parametrize("value", AWKWARD_LABEL_VALUES)
def test_counters_are_read_whatever_their_label_values_hold(value):
    text = (f'vllm:generation_tokens_total{{engine="0",model_name="{value}"}} 7.0\n'
            f'vllm:generation_tokens_total{{engine="1",model_name="m"}} 5.0 1700000000000\n# EOF\n')
    assert counter_totals(text) == {GENERATION_TOKENS: 12.0}


@pytest.mark.parametrize("value", AWKWARD_LABEL_VALUES)
def test_histogram_buckets_are_read_whatever_their_label_values_hold(value):
    text = "\n".join(["# TYPE vllm:e2e_request_latency_seconds histogram",
                      f'vllm:e2e_request_latency_seconds_bucket{{model_name="{value}",le="0.5"}} 1.0',
                      f'vllm:e2e_request_latency_seconds_bucket{{model_name="{value}",le="+Inf"}} 3.0',
                      f'vllm:e2e_request_latency_seconds_sum{{model_name="{value}"}} 2.5',
                      f'vllm:e2e_request_latency_seconds_count{{model_name="{value}"}} 3.0', "# EOF", ""])
    assert histogram(text, "vllm:e2e_request_latency_seconds") == Histogram(((0.5, 1.0), (math.inf, 3.0)), 2.5, 3.0)


def test_text_that_is_not_prometheus_exposition_is_refused_naming_the_server():
    with pytest.raises(LoadTestError, match=r"^the server's /metrics is not Prometheus text \(.+\): "
                                            r"point the load test at a vLLM server's base URL$"):
        counter_totals('vllm:generation_tokens_total{engine="0" 7.0\n')


def scrape(generated: float, prompt: float, finished: float, ttft: dict[str, float], ttft_sum: float,
           running: int = 0, waiting: int = 0) -> str:
    """A vLLM-shaped exposition with two engines, the TTFT histogram's counts split between them."""
    lines = [f'vllm:generation_tokens_total{{engine="0",model_name="m"}} {generated}',
             f'vllm:prompt_tokens_total{{engine="0",model_name="m"}} {prompt}',
             f'vllm:request_success_total{{engine="0",finished_reason="length",model_name="m"}} {finished}',
             'vllm:request_success_total{engine="0",finished_reason="abort",model_name="m"} 0.0',
             f'vllm:num_requests_running{{engine="0",model_name="m"}} {running}',
             f'vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}',
             "# TYPE vllm:time_to_first_token_seconds histogram"]
    for engine, share in (("0", 0.75), ("1", 0.25)):
        lines += [f'vllm:time_to_first_token_seconds_bucket{{engine="{engine}",le="{le}",model_name="m"}} '
                  f"{count * share}" for le, count in ttft.items()]
        lines += [f'vllm:time_to_first_token_seconds_sum{{engine="{engine}",model_name="m"}} {ttft_sum * share}',
                  f'vllm:time_to_first_token_seconds_count{{engine="{engine}",model_name="m"}} {ttft["+Inf"] * share}']
    return "\n".join(lines) + "\n"


BEFORE = scrape(1000, 400, 10, {"0.1": 4, "0.25": 8, "0.5": 10, "+Inf": 10}, 2.0)
# 20 more requests: 4 within 0.1 s, 12 within 0.1–0.25 s, 4 within 0.25–0.5 s.
AFTER = scrape(3560, 2000, 30, {"0.1": 8, "0.25": 24, "0.5": 30, "+Inf": 30}, 6.4, running=3, waiting=5)


def test_a_histogram_is_summed_over_engines_with_its_bounds_in_order():
    assert histogram(AFTER, "vllm:time_to_first_token_seconds") == Histogram(
        ((0.1, 8.0), (0.25, 24.0), (0.5, 30.0), (float("inf"), 30.0)), 6.4, 30.0)


def test_a_histogram_the_server_does_not_export_is_none():
    assert histogram(EXPOSITION, "vllm:time_to_first_token_seconds") is None


@pytest.mark.parametrize("q, expected", [
    (0.5, 0.1 + 0.15 * (10 - 4) / 12),  # rank 10 of 20: the 6th of 12 in the 0.1–0.25 bucket
    (0.1, 0.1 * 2 / 4),                  # rank 2 in the first bucket, which starts at 0
    (1.0, 0.5),
])
def test_quantiles_interpolate_within_the_bucket_that_holds_the_rank(q, expected):
    window = histogram(AFTER, "vllm:time_to_first_token_seconds").minus(
        histogram(BEFORE, "vllm:time_to_first_token_seconds"))
    assert window.quantile(q) == pytest.approx(expected)


def test_a_rank_in_the_open_bucket_gives_the_highest_finite_bound_as_prometheus_does():
    assert Histogram(((0.5, 1.0), (1.0, 1.0), (float("inf"), 4.0)), 40.0, 4.0).quantile(0.5) == 1.0


def test_an_empty_histogram_has_no_mean_or_quantile():
    empty = Histogram(((0.1, 0.0), (float("inf"), 0.0)), 0.0, 0.0)
    assert (empty.mean, empty.quantile(0.5)) == (None, None)


def test_the_window_holds_the_servers_tokens_requests_and_latencies_between_the_scrapes():
    window = server_window(BEFORE, AFTER)
    assert (window.generation_tokens, window.prompt_tokens, window.requests_finished) == (2560, 1600, 20)
    assert window.mean_ttft_ms == pytest.approx(4.4 / 20 * 1000)
    assert window.median_ttft_ms == pytest.approx(175.0)
    assert window.median_e2el_ms is None and window.mean_itl_ms is None
    assert window.output_throughput(12.8) == pytest.approx(200.0)


def test_counters_that_went_down_mean_the_server_restarted():
    with pytest.raises(LoadTestError, match=r"^the server's counters went down between the two scrapes of /metrics "
                                            r"\(did the server restart\?\): measure the run again$"):
        server_window(AFTER, BEFORE)


def test_a_scrape_without_vllms_counters_is_refused_with_what_to_check():
    with pytest.raises(LoadTestError, match="^the server does not export vllm:generation_tokens_total: "
                                            r"is this a vLLM server's /metrics\?$"):
        server_window("up 1\n", AFTER)


def test_buckets_that_changed_between_scrapes_are_refused():
    with pytest.raises(LoadTestError, match="^the server's histogram buckets changed between the two scrapes"):
        Histogram(((1.0, 2.0), (float("inf"), 2.0)), 1.0, 2.0).minus(Histogram(((float("inf"), 1.0),), 0.1, 1.0))


def test_in_flight_reads_the_running_and_waiting_gauges():
    assert in_flight(AFTER) == (3, 5)


def series(points: list[tuple[float, float, int, int]]) -> list[Sample]:
    return [Sample(*point) for point in points]


RUN = series([(0.0, 500, 0, 0), (0.5, 500, 0, 0), (1.0, 560, 32, 20), (1.5, 700, 32, 20), (2.0, 840, 32, 12),
              (2.5, 980, 32, 0), (3.0, 1040, 9, 0), (3.5, 1050, 0, 0), (4.0, 1050, 0, 0)])


def test_a_scrape_becomes_a_sample_of_the_generation_counter_and_the_queue():
    assert sample(AFTER, 7.5) == Sample(7.5, 3560.0, 3, 5)


def test_the_server_was_busy_from_midway_before_its_first_tokens_to_midway_after_its_last():
    assert busy_seconds(RUN) == pytest.approx((3.25 - 0.75, 0.5))


def test_a_late_scrape_widens_the_busy_windows_error():
    late = [RUN[0], RUN[1], Sample(4.5, 560, 32, 20), *series([(5.0, 700, 32, 20), (5.5, 760, 0, 0)])]
    assert busy_seconds(late) == pytest.approx((5.25 - 2.5, (4.0 + 0.5) / 2))


def test_a_counter_that_never_moved_gives_no_busy_time():
    assert busy_seconds(RUN[:2]) is None


def test_the_saturated_rate_spans_the_scrapes_that_saw_a_queue():
    assert saturated_throughput(RUN) == pytest.approx(((840 - 560) / 1.0, 1.0))
    assert saturated_throughput(series([(0, 0, 4, 0), (1, 100, 4, 0)])) is None


def test_the_mean_in_flight_counts_only_scrapes_that_saw_requests():
    assert mean_in_flight(RUN) == pytest.approx((52 + 52 + 44 + 32 + 9) / 5)


def recorded(when: str) -> str:
    return (REPO / "tests" / "data" / f"vllm-0.32.0-cpu-metrics-{when}-run.txt").read_text()


def test_the_window_of_a_recorded_vllm_0_32_run_counts_exactly_what_the_load_test_sent():
    """16 built-in prompts (259 prompt tokens) × 32 output tokens; the load test measured a mean E2E of 228.2 ms."""
    window = server_window(recorded("before"), recorded("after"))
    assert (window.generation_tokens, window.prompt_tokens, window.requests_finished) == (512, 259, 16)
    assert window.median_ttft_ms == pytest.approx(32.0)
    assert window.median_e2el_ms == pytest.approx(200.0)
    assert window.mean_e2el_ms == pytest.approx(214.358, abs=1e-3)
    assert all(value is not None for value in window.to_json().values())
