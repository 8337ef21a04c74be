"""Issue 26 item 1: every name and label value the chart derives is one the API server and the controllers accept,
for every release name helm accepts (its own rule: DNS-1123 labels joined by dots, at most 53 characters) and
every nameOverride and fullnameOverride, with each optional object rendered; what cannot be made valid is
refused in the chart's problem list, naming the value and the limit.

The rules are Kubernetes' own (k8s.io/apimachinery/pkg/util/validation): Services and LeaderWorkerSets need a
DNS-1035 label, a Job's name is copied into its pods' job-name label (63 characters), and the worker
StatefulSet of group G of a LeaderWorkerSet is named <name>-<G> (lws pod_controller.go) and labels its pods
controller-revision-hash=<StatefulSet>-<hash of up to 10 characters>, a label value of at most 63.
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.chart.conftest import CHART
from tests.chart.test_validation import problems
from tpserve.measure.kubernetes import fullname, name_overrides

HELM_RELEASE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS_1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
# The longest LeaderWorkerSet name whose worker StatefulSets (<name>-<group>, groups up to 999) keep their
# pods' controller-revision-hash label (<StatefulSet>-<10 characters>) within 63 characters.
LWS_NAME_BUDGET = 63 - len("-") - 10 - len("-999")

RELEASES = ["llama70b", "a", "7b", "7b-vllm", "my.team.llama", "r" * 53, "9" * 53, "x" * 40 + "-vllm-" + "y" * 7]
OVERRIDES = [(), ("nameOverride=llm",), ("nameOverride=" + "n" * 63,), ("nameOverride=" + "n" * 61 + "--" + "n" * 7,),
             ("fullnameOverride=serving",), ("fullnameOverride=" + "s" * 63,), ("fullnameOverride=" + "s" * 70,)]
DEPLOYMENT = ("--set", "podDisruptionBudget.enabled=true", "--set", "metrics.serviceMonitor.enabled=true",
              "--set", "replicaCount=2", "--set", "cache.accessMode=ReadWriteMany", "--set", "autoscaling.enabled=true",
              "--set", "autoscaling.engine=hpa", "--set", "loadtest.enabled=true",
              "--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.dashboard.enabled=true")
SCALE_OUT = ("-f", str(CHART.parent.parent / "tests" / "chart" / "scale-out-values.yaml"),
             "--set", "metrics.serviceMonitor.enabled=true", "--set", "loadtest.enabled=true")
MODES = {"deployment": DEPLOYMENT, "scale-out": SCALE_OUT}


def sets_args(sets) -> list[str]:
    return [arg for item in sets for arg in ("--set", item)]


def name_rule(kind: str) -> tuple[re.Pattern, int]:
    """The rule and length limit of a KIND's metadata.name."""
    if kind in ("Service", "LeaderWorkerSet"):
        return DNS_1035_LABEL, 63
    if kind == "Job":
        return DNS_1123_LABEL, 63
    return DNS_1123_SUBDOMAIN, 253


def label_maps(node) -> list[dict]:
    """Every labels and matchLabels map anywhere in NODE."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("labels", "matchLabels") and isinstance(value, dict):
                found.append(value)
            found.extend(label_maps(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(label_maps(item))
    return found


def invalid_names(documents: list[dict]) -> list[str]:
    """What in DOCUMENTS the API server or a controller would refuse, one line each."""
    wrong = []
    for doc in documents:
        kind, name = doc["kind"], doc["metadata"]["name"]
        rule, limit = name_rule(kind)
        if not rule.fullmatch(name) or len(name) > limit:
            wrong.append(f"{kind} {name!r}")
        if kind == "LeaderWorkerSet" and len(name) > LWS_NAME_BUDGET:
            wrong.append(f"LeaderWorkerSet {name!r} is longer than {LWS_NAME_BUDGET}")
        for labels in label_maps(doc):
            for key, value in labels.items():
                if not LABEL_VALUE.fullmatch(str(value)) or len(str(value)) > 63:
                    wrong.append(f"{kind} {name} label {key}={value!r}")
    return wrong


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("sets", OVERRIDES, ids=lambda sets: ",".join(item[:20] for item in sets) or "plain")
@pytest.mark.parametrize("release", RELEASES)
def test_every_name_and_label_is_valid_or_the_install_is_refused_naming_the_limit(tools, release, sets, mode):
    assert HELM_RELEASE.fullmatch(release) and len(release) <= 53, "helm itself would refuse this release"
    done = tools.helm_run("template", release, str(CHART), *MODES[mode], *sets_args(sets))
    expected = fullname(release, **name_overrides((), sets))
    if mode == "scale-out" and len(expected) > LWS_NAME_BUDGET:
        assert done.returncode == 1, done.stdout[-500:]
        assert problems(done.stderr) == [(
            f"with multiNode.enabled the LeaderWorkerSet name {expected} is {len(expected)} characters, more than "
            f"{LWS_NAME_BUDGET}: its worker StatefulSets are named {expected}-<group> and Kubernetes labels their pods "
            "controller-revision-hash=<StatefulSet>-<hash of up to 10 characters>, at most 63 characters; "
            f"use a shorter release name or set fullnameOverride to at most {LWS_NAME_BUDGET} characters")]
        return
    assert done.returncode == 0, done.stderr
    documents = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    assert invalid_names(documents) == []
    served = {doc["metadata"]["name"] for doc in documents
              if doc["kind"] in ("Service", "Deployment", "LeaderWorkerSet") and "loadtest" not in doc["metadata"]["name"]}
    assert served == {expected}


def test_a_release_name_that_starts_with_a_digit_puts_the_charts_name_first(render):
    assert render("7b")["Service"]["metadata"]["name"] == fullname("7b") == "vllm-7b"
    assert fullname("7b", name_override="llm") == "llm-7b"


def test_dots_of_a_release_name_become_dashes_in_object_names_and_stay_in_the_instance_label(render):
    service = render("my.team.llama")["Service"]
    assert service["metadata"]["name"] == fullname("my.team.llama") == "my-team-llama-vllm"
    assert service["spec"]["selector"]["app.kubernetes.io/instance"] == "my.team.llama"


def test_a_release_and_name_override_that_both_start_with_a_digit_are_refused(render_error_for):
    assert problems(render_error_for("7b", "--set", "nameOverride=8b")) == [(
        "release name 7b and nameOverride=8b both start with a digit, so every object's name would (8b-7b), "
        "which Services refuse (a DNS-1035 label starts with a letter): set fullnameOverride to a name that starts "
        "with a letter, e.g. fullnameOverride=vllm-7b")]


@pytest.mark.parametrize("value", ["7b", "Serving", "my.serving", "serving-"])
def test_a_full_name_override_that_no_service_may_carry_is_refused(render_error, value):
    assert problems(render_error("--set", f"fullnameOverride={value}")) == [(
        f"fullnameOverride={value} is not a Service name (a DNS-1035 label): lowercase letters, digits and '-', "
        "starting with a letter and ending with a letter or digit, e.g. fullnameOverride=vllm-7b")]


@pytest.mark.parametrize("value", ["LLM", "llm_", "-llm", "my.llm"])
def test_a_name_override_that_is_no_label_is_refused(render_error, value):
    assert problems(render_error("--set", f"nameOverride={value}")) == [(
        f"nameOverride={value} is not a DNS-1123 label, which object names and the app.kubernetes.io/name label need: "
        "lowercase letters, digits and '-', starting and ending with a letter or digit, e.g. nameOverride=llm")]


def loadtest_jobs(render_text, release: str, *args: str) -> list[str]:
    documents = yaml.safe_load_all(render_text(release, "--set", "loadtest.enabled=true", *args))
    return sorted(doc["metadata"]["name"] for doc in documents if doc and doc["kind"] == "Job")


@pytest.mark.parametrize("release", ["llama70b", "r" * 53, "x" * 45 + "-vllm"])
def test_two_runs_of_the_load_test_never_share_a_job_name(render_text, release):
    names = {run: loadtest_jobs(render_text, release, "--set-string", f"loadtest.run={run}")
             for run in ("1", "2", "10", "a" * 15 + "1", "a" * 15 + "2")}
    every = [name for jobs in names.values() for name in jobs]
    assert len(set(every)) == len(every) == 10
    assert all(len(name) <= 63 and DNS_1123_LABEL.fullmatch(name) for name in every)
    assert all(name.endswith((f"-loadtest-{run}-master", f"-loadtest-{run}-worker"))
               for run, jobs in names.items() for name in jobs)


def test_a_short_release_keeps_its_load_test_names_unchanged(render_text):
    assert loadtest_jobs(render_text, "llama70b") == ["llama70b-vllm-loadtest-1-master", "llama70b-vllm-loadtest-1-worker"]


@pytest.mark.parametrize("value", ["-1", "Run1", "a" * 17, "run_1"])
def test_a_load_test_run_that_cannot_name_a_job_is_refused(render_error, value):
    assert problems(render_error("--set", "loadtest.enabled=true", "--set-string", f"loadtest.run={value}")) == [(
        f"loadtest.run={value} cannot name the run's Jobs: 1 to 16 lowercase letters, digits and '-', starting and "
        "ending with a letter or digit, e.g. --set loadtest.run=2")]


@pytest.fixture
def render_error_for(tools):
    def render_error_for(release: str, *args: str) -> str:
        done = tools.helm_run("template", release, str(CHART), *args)
        assert done.returncode == 1, done.stdout[-2000:]
        return done.stderr
    return render_error_for


def test_the_leaderworkersets_headless_services_never_take_the_name_of_the_charts_service(render_text):
    """The LeaderWorkerSet controller's shared headless Service is named like the LeaderWorkerSet (lws
    reconcileHeadlessServices), which is the chart's client Service's name: it would find that name taken and
    create none, and the pods' <name>-<group>.<name> addresses (LWS_LEADER_ADDRESS) would never resolve. One
    headless Service per group, named <name>-<group>, avoids it."""
    documents = [doc for doc in yaml.safe_load_all(render_text("llama70b", *SCALE_OUT)) if doc]
    (lws,) = [doc for doc in documents if doc["kind"] == "LeaderWorkerSet"]
    assert lws["spec"]["networkConfig"] == {"subdomainPolicy": "UniquePerReplica"}
    assert lws["metadata"]["name"] in {doc["metadata"]["name"] for doc in documents if doc["kind"] == "Service"}
