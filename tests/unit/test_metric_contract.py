"""The metric-name scanner of the metric contract (tests/metric_contract.py), on text."""

from __future__ import annotations

import pytest

from tests.metric_contract import contract_problems, enabled_switches, exported_names, metric_names

EXPOSITION = """\
# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="0.3",model_name="m"} 1.0
vllm:e2e_request_latency_seconds_sum{model_name="m"} 0.2
vllm:e2e_request_latency_seconds_count{model_name="m"} 1.0
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="m"} 24.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.0
python_gc_objects_collected_total{generation="0"} 10.0
"""


@pytest.mark.parametrize("text, names", [
    ("histogram_quantile(0.9, rate(vllm:e2e_request_latency_seconds_bucket[5m]))",
     {"vllm:e2e_request_latency_seconds"}),
    ("vllm:e2e_request_latency_seconds_sum / vllm:e2e_request_latency_seconds_count",
     {"vllm:e2e_request_latency_seconds"}),
    ("`vllm:generation_tokens_total` and `vllm:prompt_tokens_total`.",
     {"vllm:generation_tokens_total", "vllm:prompt_tokens_total"}),
    ("metricName: vllm:num_requests_waiting", {"vllm:num_requests_waiting"}),
    ("image: docker.io/vllm/vllm-openai:v0.26.0 and myvllm:thing and vllm:* and vLLM:", set()),
])
def test_the_scanner_finds_metric_names_and_maps_histogram_series_to_the_histogram(text, names):
    assert metric_names(text) == names


def test_an_exposition_offers_its_samples_and_histograms_by_name():
    assert exported_names(EXPOSITION) == {
        "vllm:e2e_request_latency_seconds", "vllm:generation_tokens", "vllm:generation_tokens_total",
        "vllm:kv_cache_usage_perc"}


def test_a_renamed_metric_is_reported_with_its_new_name_and_where_it_is_used():
    problems = contract_problems({"vllm:gpu_cache_usage_perc": ["values.yaml", "docs/a.md"]},
                                 exported_names(EXPOSITION), "vLLM 0.32.0 (CPU)")
    assert problems == [("vllm:gpu_cache_usage_perc is not exported by vLLM 0.32.0 (CPU); renamed to "
                         "vllm:kv_cache_usage_perc (used in docs/a.md, values.yaml)")]


def test_every_enabled_switch_of_the_values_is_found():
    values = {"metrics": {"serviceMonitor": {"enabled": False, "interval": "30s"}}, "pdb": {"enabled": True},
              "tests": {"users": 4}}
    assert enabled_switches(values) == ["metrics.serviceMonitor.enabled", "pdb.enabled"]
