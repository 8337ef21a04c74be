"""Where the `helm test` pod runs: on the server's pool by default (a tainted GPU pool included), next to a
server whose node already has the serving image, without taking or seeing a GPU; or where tests.* says."""

from __future__ import annotations

import pytest

from tests.chart.conftest import env_of, pod_spec
from tests.chart.test_multinode import TWO_NODES
from tests.chart.test_validation import problems

NODE_TERM = "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0]"
ANTI_TERM = "affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"
GPU_POOL = ("--set", "gpu.product=NVIDIA-H100-80GB-HBM3", "--set", "nodeSelector.pool=gpu",
            "--set", f"{NODE_TERM}.key=zone", "--set", f"{NODE_TERM}.operator=In", "--set", f"{NODE_TERM}.values={{a}}",
            "--set", f"{ANTI_TERM}.topologyKey=kubernetes.io/hostname",
            "--set", f"{ANTI_TERM}.labelSelector.matchLabels.app\\.kubernetes\\.io/name=vllm")


def near_a_server(selector: dict) -> dict:
    return {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
        "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": selector}}}]}


@pytest.mark.parametrize("runner", ["serving", "locust"])
def test_the_test_pod_is_placed_on_the_servers_pool_near_a_server_by_default(render, runner):
    objects = render("r", *GPU_POOL, "--set", f"tests.runner={runner}")
    server, test = pod_spec(objects["Deployment"]), objects["Pod"]["spec"]
    assert test["nodeSelector"] == server["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                                                              "pool": "gpu"}
    assert test["tolerations"] == server["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    # The servers' node affinity, not their pod (anti-)affinity, which is about servers among themselves: a
    # required anti-affinity to servers would keep the test pod off every node that runs one.
    assert test["affinity"] == {"nodeAffinity": server["affinity"]["nodeAffinity"],
                                "podAffinity": near_a_server({"app.kubernetes.io/name": "vllm",
                                                              "app.kubernetes.io/instance": "r"})}


def test_the_test_pod_takes_no_gpu_and_sees_none_where_the_nvidia_runtime_is_the_default(render):
    objects = render("r", *GPU_POOL)
    (load,) = objects["Pod"]["spec"]["containers"]
    assert "nvidia.com/gpu" not in str(load["resources"])
    assert env_of(load)["NVIDIA_VISIBLE_DEVICES"] == {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}
    assert "runtimeClassName" not in objects["Pod"]["spec"]
    assert load["resources"]["requests"]["ephemeral-storage"] == "2Gi"


def test_with_multinode_the_test_pod_prefers_a_leaders_node(render):
    test = render("r", *TWO_NODES)["Pod"]["spec"]
    assert test["affinity"] == {"podAffinity": near_a_server({
        "app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "r",
        "leaderworkerset.sigs.k8s.io/worker-index": "0"})}


def test_placement_own_uses_the_tests_scheduling_values_instead(render):
    test = render("r", *GPU_POOL, "--set", "tests.placement=own", "--set", "tests.nodeSelector.pool=cpu",
                  "--set", "tests.tolerations=null", "--set", "tests.affinity=null")["Pod"]["spec"]
    assert test["nodeSelector"] == {"pool": "cpu"}
    assert "tolerations" not in test and "affinity" not in test
    own = render("r", "--set", "tests.placement=own", "--set", "tests.tolerations[0].key=ci",
                 "--set", "tests.tolerations[0].operator=Exists")["Pod"]["spec"]
    assert own["tolerations"] == [{"key": "ci", "operator": "Exists"}]
    assert "nodeSelector" not in own and "affinity" not in own


def test_tests_scheduling_values_without_placement_own_are_refused_not_ignored(render_error):
    assert problems(render_error("--set", "tests.nodeSelector.pool=cpu",
                                 "--set", "tests.tolerations[0].operator=Exists")) == [
        ("tests.nodeSelector is used only with tests.placement=own (server, the default, gives the test pod the "
         "server's scheduling): set tests.placement=own or remove it"),
        ("tests.tolerations is used only with tests.placement=own (server, the default, gives the test pod the "
         "server's scheduling): set tests.placement=own or remove it")]
