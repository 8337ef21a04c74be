"""The metric contract offline: every vLLM metric name in the chart (rendered with every switch on), the code,
README, docs/ and k8s/ is one vLLM 0.26 exports (tests/data/vllm-0.26.0-metrics.txt). The same names are
checked against the live CPU server in tests/e2e/test_metric_contract.py."""

from __future__ import annotations

from tests.chart.conftest import CHART
from tests.metric_contract import (
    RECORDED_0_26,
    chart_renderings,
    contract_problems,
    exported_names,
    product_texts,
    used_names,
)

SERVER_0_26 = "vLLM 0.26.0 (tests/data/vllm-0.26.0-metrics.txt)"


def test_every_metric_name_the_product_uses_is_exported_by_vllm_0_26(render_text):
    used = used_names(product_texts(render_text))
    assert contract_problems(used, exported_names(RECORDED_0_26.read_text()), SERVER_0_26) == []


def test_the_scan_reads_the_chart_rendered_with_every_switch_and_finds_the_token_counters(render_text):
    renderings = chart_renderings(CHART)
    assert {"defaults", "ci/70b-tp4-values.yaml", "--set metrics.serviceMonitor.enabled=true",
            "--set loadtest.enabled=true"} <= set(renderings)
    used = used_names(product_texts(render_text))
    assert {"vllm:generation_tokens_total", "vllm:prompt_tokens_total"} <= set(used)
    assert "helm template (defaults)" in used["vllm:generation_tokens_total"]  # the test pod's ConfigMap
    assert "src/tpserve/workload/servermetrics.py" in used["vllm:generation_tokens_total"]


def test_a_planted_name_that_vllm_does_not_export_is_caught_with_where_it_is_used(render_text):
    texts = product_texts(render_text) | {"planted.yaml": "query: sum(rate(vllm:planted_tokens_total[5m]))"}
    problems = contract_problems(used_names(texts), exported_names(RECORDED_0_26.read_text()), SERVER_0_26)
    assert problems == [f"vllm:planted_tokens_total is not exported by {SERVER_0_26} (used in planted.yaml)"]


def test_the_recorded_list_says_how_it_was_obtained_and_holds_the_autoscaling_names():
    text = RECORDED_0_26.read_text()
    assert "# HOW OBTAINED:" in text
    exported = exported_names(text)
    assert {"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
            "vllm:time_to_first_token_seconds"} <= exported
    assert "vllm:gpu_cache_usage_perc" not in exported
