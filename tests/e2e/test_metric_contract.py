"""The metric contract against the real CPU vLLM server: every vLLM metric name the product uses (the chart
rendered with every switch on, the code, README, docs/, k8s/) is exported by this server and by vLLM 0.26
(the list recorded on the GPU host), and a name one of them lacks is reported, naming both versions."""

from __future__ import annotations

import requests

from tests.chart.conftest import render_text, tools  # noqa: F401 (fixtures: the pinned helm renders the chart)
from tests.e2e.conftest import counters
from tests.e2e.test_loadtest import locust
from tests.metric_contract import (
    RECORDED_0_26,
    contract_problems,
    exported_names,
    product_texts,
    used_names,
)
from tpserve.workload.serverapi import server_version


def live_names(server) -> set[str]:
    response = requests.get(server.url + "/metrics", timeout=30)
    response.raise_for_status()
    return exported_names(response.text)


def test_every_metric_name_the_product_uses_is_exported_by_the_cpu_server_and_by_vllm_0_26(
        vllm_server, render_text, tmp_path):  # noqa: F811 (the fixture imported above)
    # Some metrics are registered at the first request: send a few before reading /metrics.
    done = locust(vllm_server, tmp_path, "-u", "2", "-r", "2", "--num-requests", "2", "--max-tokens", "4")
    assert done.returncode == 0, done.stderr[-2000:]
    assert counters(vllm_server)
    used = used_names(product_texts(render_text))
    live = f"vLLM {server_version(vllm_server.url)} (CPU, the e2e server)"
    problems = (contract_problems(used, live_names(vllm_server), live)
                + contract_problems(used, exported_names(RECORDED_0_26.read_text()), "vLLM 0.26.0 (recorded)"))
    assert problems == [], "\n".join(problems)


def test_a_planted_name_and_the_renamed_cache_gauge_are_caught_against_the_live_server(vllm_server):
    version = server_version(vllm_server.url)
    used = {"vllm:planted_tokens_total": ["planted.yaml"], "vllm:gpu_cache_usage_perc": ["dashboard.json"],
            "vllm:generation_tokens_total": ["servermetrics.py"]}
    assert contract_problems(used, live_names(vllm_server), f"vLLM {version} (CPU)") == [
        (f"vllm:gpu_cache_usage_perc is not exported by vLLM {version} (CPU); renamed to "
         "vllm:kv_cache_usage_perc (used in dashboard.json)"),
        f"vllm:planted_tokens_total is not exported by vLLM {version} (CPU) (used in planted.yaml)"]


def test_the_names_vllm_0_26_and_the_cpu_server_both_export_include_what_autoscalers_read(vllm_server):
    both = live_names(vllm_server) & exported_names(RECORDED_0_26.read_text())
    assert {"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
            "vllm:generation_tokens_total", "vllm:prompt_tokens_total"} <= both
