"""The chart's alert rules as it renders them (metrics.prometheusRule; docs/monitoring.md), checked by the
projects that read them: the PrometheusRule against prometheus-operator's own CRD (its pinned Go module), and its
rules by `promtool test rules` on the series of tests/monitoring/*.yaml, each alert firing where it must and quiet
where it must not. promtool is Prometheus v0.316.0's, built from its module (`python tools/cluster build
prometheus`, reused from the build cache). Marked ``scaleout`` for that Go build (CI compiles it within its time
budget, .ci/run); no cluster is started.
"""

from __future__ import annotations

import copy
import shutil

# build and crds are tools/cluster's modules, on sys.path through tests/cluster/conftest.py (tests/scaleout's imports it).
import build
import crds
import jsonschema
import pytest
import yaml

from tests.chart.conftest import CHART, CRD_API_VERSIONS
from tests.conftest import REPO, run

API = "monitoring.coreos.com/v1/PrometheusRule"
TESTS = REPO / "tests" / "monitoring"
# The release the series of tests/monitoring are written for.
RELEASE, NAMESPACE = "llama70b", "llm"


@pytest.fixture(scope="module")
def prometheus_rule(tools) -> dict:
    done = tools.helm_run("template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                          "--set", "metrics.prometheusRule.enabled=true")
    assert done.returncode == 0, done.stderr
    return next(doc for doc in yaml.safe_load_all(done.stdout) if doc and doc["kind"] == "PrometheusRule")


@pytest.fixture(scope="module")
def promtool() -> str:
    folder, _ = build.build("prometheus")
    return str(folder / "promtool")


@pytest.fixture(scope="module")
def crd_schema() -> dict:
    crd = yaml.safe_load(crds.crd_file(API, offline=False).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == API.split("/")[1]]
    return closed(version["schema"]["openAPIV3Schema"])


def closed(schema: dict) -> dict:
    """SCHEMA with every object that lists its properties closed to others, as the API server's strict field
    validation refuses unknown fields (it would otherwise drop them silently)."""
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node and \
                    not node.get("x-kubernetes-preserve-unknown-fields"):
                node["additionalProperties"] = False
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema


def schema_errors(document: dict, schema: dict) -> list[str]:
    return [f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
            for error in jsonschema.Draft7Validator(schema).iter_errors(document)]


def test_the_api_the_chart_requires_is_the_crd_it_is_checked_against():
    assert API in CRD_API_VERSIONS


def test_the_rendered_prometheus_rule_is_valid_for_prometheus_operators_own_crd(prometheus_rule, crd_schema):
    assert schema_errors(prometheus_rule, crd_schema) == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda rule: rule.update({"fore": "2m"}), "Additional properties are not allowed ('fore' was unexpected)"),
    (lambda rule: rule.update({"for": "2 minutes"}), "does not match"),
])
def test_the_crd_check_refuses_a_rule_the_api_server_would(prometheus_rule, crd_schema, change, message):
    broken = copy.deepcopy(prometheus_rule)
    change(broken["spec"]["groups"][0]["rules"][0])
    assert any(message in error for error in schema_errors(broken, crd_schema))


def test_promtool_finds_the_rendered_rules_valid(prometheus_rule, promtool, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(prometheus_rule["spec"], sort_keys=False))
    done = run(promtool, "check", "rules", str(rules), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout, done.stdout


def test_each_alert_fires_on_its_series_and_stays_quiet_on_the_others(prometheus_rule, promtool, tmp_path):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(prometheus_rule["spec"], sort_keys=False))
    tests = sorted(TESTS.glob("*.yaml"))
    for test in tests:
        shutil.copy(test, tmp_path / test.name)
    alerts = {rule["alert"] for rule in prometheus_rule["spec"]["groups"][0]["rules"]}
    tested = {line.split(":", 1)[1].strip() for test in tests for line in test.read_text().splitlines()
              if line.strip().startswith("alertname:")}
    assert tested == alerts
    done = run(promtool, "test", "rules", *(test.name for test in tests), cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("  SUCCESS") == len(tests), done.stdout
