"""The alerts (metrics.prometheusRule) and the Grafana dashboard (metrics.dashboard) a release ships: off by
default, scoped to the release's series, tuned by their values, and every vLLM metric name they use checked by the
metric contract. `promtool test rules` and the CRD check of the rendered rules are in
tests/scaleout/test_alert_rules.py (they need Go builds)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.chart.conftest import CHART
from tests.conftest import REPO
from tests.metric_contract import (
    RECORDED_0_26,
    chart_renderings,
    contract_problems,
    exported_names,
    metric_names,
    product_texts,
    used_names,
)

ALERTS = {"TpserveEngineStalled", "TpserveServerDown", "TpserveQueueGrowing", "TpserveKVCacheFull",
          "TpserveServerRestarting", "TpserveFetchFailing"}
RULE = ("--set", "metrics.prometheusRule.enabled=true")
DASHBOARD = ("--set", "metrics.dashboard.enabled=true")
# A series selector in PromQL: a metric name and its {...} matchers.
SELECTOR = re.compile(r"(vllm:[a-z0-9_:]+|\bup\b|process_[a-z_]+|kube_[a-z_]+)(\{[^}]*\})?")
RELEASE = 'namespace="llm",service="llama70b-vllm"'
FETCH_PODS = 'namespace="llm",pod=~"llama70b-vllm-.+",container="fetch-model"'
DASHBOARD_RELEASE = 'namespace="$namespace",service="$service"'


def objects(render_text, *args: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(render_text("llama70b", "--namespace", "llm", *args)) if doc]


def prometheus_rule(render_text, *args: str) -> dict:
    return next(doc for doc in objects(render_text, *RULE, *args) if doc["kind"] == "PrometheusRule")


def rules(render_text, *args: str) -> dict[str, dict]:
    (group,) = prometheus_rule(render_text, *args)["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def dashboard_config_map(render_text, *args: str) -> dict:
    return next(doc for doc in objects(render_text, *DASHBOARD, *args)
                if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-dashboard"))


def dashboard(render_text, *args: str) -> dict:
    (text,) = dashboard_config_map(render_text, *args)["data"].values()
    return json.loads(text)


def panel_exprs(board: dict) -> list[str]:
    return [target["expr"] for panel in board["panels"] for target in panel["targets"]]


def unscoped(expr: str, *allowed: str) -> list[str]:
    """Each series selector of EXPR whose matchers are none of ALLOWED."""
    return [match.group(0) for match in SELECTOR.finditer(expr) if (match.group(2) or "")[1:-1] not in allowed]


def test_neither_the_alerts_nor_the_dashboard_render_by_default(render_text):
    kinds = [(doc["kind"], doc["metadata"]["name"]) for doc in objects(render_text)]
    assert not [kind for kind in kinds if kind[0] == "PrometheusRule" or kind[1].endswith("-dashboard")]


def test_the_prometheus_rule_is_named_like_the_service_monitor_and_holds_every_alert_once(render_text):
    found = objects(render_text, *RULE, "--set", "metrics.serviceMonitor.enabled=true",
                    "--set", "metrics.prometheusRule.labels.release=kube-prometheus-stack")
    monitor = next(doc for doc in found if doc["kind"] == "ServiceMonitor")
    rule = next(doc for doc in found if doc["kind"] == "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == monitor["metadata"]["name"] == "llama70b-vllm"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (group,) = rule["spec"]["groups"]
    assert sorted(r["alert"] for r in group["rules"]) == sorted(ALERTS)


def test_every_alert_has_a_severity_a_summary_naming_the_release_and_a_runbook_heading_in_the_docs(render_text):
    headings = re.findall(r"(?m)^### (\w+)$", (REPO / "docs" / "monitoring.md").read_text())
    for name, rule in rules(render_text).items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert "(release llm/llama70b-vllm)" in rule["annotations"]["summary"], name
        assert rule["annotations"]["description"], name
        assert rule["annotations"]["runbook_url"] == f"docs/monitoring.md#{name.lower()}"
        assert name in headings


def test_every_rule_selects_only_the_series_of_the_release(render_text):
    for name, rule in rules(render_text).items():
        assert SELECTOR.search(rule["expr"]), name
        allowed = (FETCH_PODS + ',reason="CrashLoopBackOff"', FETCH_PODS) if name == "TpserveFetchFailing" else \
            (RELEASE,)
        assert unscoped(rule["expr"], *allowed) == [], name


def test_thresholds_durations_and_the_rate_window_come_from_the_values(render_text):
    tuned = rules(render_text, "--set", "metrics.prometheusRule.rateWindow=10m",
                  "--set", "metrics.prometheusRule.engineStalled.for=7m",
                  "--set", "metrics.prometheusRule.queueGrowing.waiting=3",
                  "--set-json", "metrics.prometheusRule.kvCacheFull.usage=0.8",
                  "--set", "metrics.prometheusRule.serverRestarting.restarts=4",
                  "--set", "metrics.prometheusRule.serverRestarting.window=1h",
                  "--set", "metrics.prometheusRule.runbookUrl=https://git.example.com/docs/monitoring.md")
    assert tuned["TpserveEngineStalled"]["for"] == "7m"
    assert "[10m]" in tuned["TpserveEngineStalled"]["expr"] and "[10m]" in tuned["TpserveFetchFailing"]["expr"]
    assert tuned["TpserveQueueGrowing"]["expr"].endswith(") > 3")
    assert tuned["TpserveKVCacheFull"]["expr"].endswith(") > 0.8")
    assert tuned["TpserveServerRestarting"]["expr"].endswith("[1h])) >= 4")
    assert tuned["TpserveKVCacheFull"]["annotations"]["runbook_url"] == (
        "https://git.example.com/docs/monitoring.md#tpservekvcachefull")


@pytest.mark.parametrize(("value", "message"), [
    ("metrics.prometheusRule.rateWindow=5 minutes", "at '/metrics/prometheusRule/rateWindow'"),
    ("metrics.prometheusRule.engineStalled.for=", "at '/metrics/prometheusRule/engineStalled/for'"),
    ("metrics.prometheusRule.kvCacheFull.usage=95", "at '/metrics/prometheusRule/kvCacheFull/usage'"),
    ("metrics.prometheusRule.queueGrowing.treshold=3", "additional properties 'treshold' not allowed"),
])
def test_a_duration_prometheus_cannot_read_or_a_misspelt_key_is_refused_by_the_schema(render_error, value, message):
    assert message in render_error(*RULE, "--set", value)


def test_the_dashboard_is_a_configmap_for_the_grafana_sidecar_with_the_release_as_its_default(render_text):
    config_map = dashboard_config_map(render_text, "--set", "metrics.dashboard.annotations.grafana_folder=LLM")
    assert config_map["metadata"]["name"] == "llama70b-vllm-dashboard"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "LLM"}
    assert list(config_map["data"]) == ["tpserve-llm-llama70b-vllm.json"]
    board = dashboard(render_text)
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["current"]["value"] == "llm"
    assert variables["service"]["current"]["value"] == "llama70b-vllm"
    assert board["title"] == "tpserve llama70b-vllm (llm)"


def test_the_dashboard_uid_is_the_releases_own_and_survives_an_upgrade(render_text):
    uid = dashboard(render_text)["uid"]
    assert uid == dashboard(render_text, "--set", "metrics.prometheusRule.rateWindow=10m")["uid"]
    other = [doc for doc in yaml.safe_load_all(render_text("mistral", "--namespace", "llm", *DASHBOARD)) if doc]
    (text,) = next(doc for doc in other if doc["metadata"]["name"] == "mistral-vllm-dashboard")["data"].values()
    assert json.loads(text)["uid"] != uid
    assert re.fullmatch(r"[a-z0-9-]{1,40}", uid)


def test_every_dashboard_panel_queries_only_the_selected_release_through_the_datasource_variable(render_text):
    board = dashboard(render_text)
    expressions = panel_exprs(board)
    assert len(board["panels"]) >= 8
    for expr in expressions:
        assert SELECTOR.search(expr), expr
        assert unscoped(expr, DASHBOARD_RELEASE) == [], expr
    for panel in board["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]


def test_the_dashboard_shows_throughput_latency_percentiles_batch_cache_preemptions_and_restarts(render_text):
    used = metric_names("\n".join(panel_exprs(dashboard(render_text))))
    assert used == {"vllm:generation_tokens_total", "vllm:prompt_tokens_total", "vllm:time_to_first_token_seconds",
                    "vllm:inter_token_latency_seconds", "vllm:num_requests_running", "vllm:num_requests_waiting",
                    "vllm:kv_cache_usage_perc", "vllm:num_preemptions_total"}
    latency = [expr for expr in panel_exprs(dashboard(render_text)) if "histogram_quantile" in expr]
    assert sorted(expr.split(",")[0] for expr in latency) == sorted(
        f"histogram_quantile({q}" for q in ("0.5", "0.95", "0.99") for _ in range(2))
    assert any("process_start_time_seconds" in expr for expr in panel_exprs(dashboard(render_text)))


def test_the_metric_contract_scans_the_rendered_rules_and_dashboard(render_text):
    assert {"--set metrics.prometheusRule.enabled=true", "--set metrics.dashboard.enabled=true"} <= set(
        chart_renderings(CHART))
    used = used_names(product_texts(render_text))
    for name in ("vllm:generation_tokens_total", "vllm:kv_cache_usage_perc", "vllm:num_requests_waiting"):
        assert "helm template (--set metrics.prometheusRule.enabled=true)" in used[name], name
    for name in ("vllm:inter_token_latency_seconds", "vllm:time_to_first_token_seconds", "vllm:num_preemptions_total"):
        assert "helm template (--set metrics.dashboard.enabled=true)" in used[name], name


def test_a_made_up_metric_in_the_dashboard_is_caught_by_the_contract_in_the_rendered_chart(tools, tmp_path):
    chart = tmp_path / "vllm"
    shutil.copytree(CHART, chart)
    board = json.loads((chart / "files" / "dashboard.json").read_text())
    board["panels"][0]["targets"][0]["expr"] = f"sum(rate(vllm:made_up_tokens_total{{{DASHBOARD_RELEASE}}}[5m]))"
    (chart / "files" / "dashboard.json").write_text(json.dumps(board))
    done = tools.helm_run("template", "llama70b", str(chart), *DASHBOARD)
    assert done.returncode == 0, done.stderr
    server = "vLLM 0.26.0"
    problems = contract_problems(used_names({"dashboard": done.stdout}), exported_names(RECORDED_0_26.read_text()),
                                 server)
    assert problems == [f"vllm:made_up_tokens_total is not exported by {server} (used in dashboard)"]


def test_notes_name_the_alerts_and_the_dashboard_when_they_are_on(tools):
    args = ("install", "llama70b", str(CHART), "--dry-run=client", "--namespace", "llm")
    off = tools.helm_run(*args)
    on = tools.helm_run(*args, *RULE, *DASHBOARD)
    assert off.returncode == 0 and on.returncode == 0, off.stderr + on.stderr
    notes = " ".join(on.stdout.split("NOTES:", 1)[1].split())
    assert "Alerts: PrometheusRule llama70b-vllm (TpserveEngineStalled," in notes
    assert 'namespace="llm" and service="llama70b-vllm", labels the chart\'s ServiceMonitor would set' in notes
    assert "TpserveFetchFailing reads kube-state-metrics" in notes
    assert "Dashboard: ConfigMap llama70b-vllm-dashboard, for the Grafana sidecar (labels grafana_dashboard=1)" in notes
    assert "Alerts:" not in off.stdout.split("NOTES:", 1)[1]
    assert "Dashboard:" not in off.stdout.split("NOTES:", 1)[1]
