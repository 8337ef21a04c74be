"""Every object the scale-out modes render (multiNode, autoscaling, gateway), checked strictly: built-in kinds by
kubernetes-validate --strict, the LeaderWorkerSet, ScaledObject, InferencePool and HTTPRoute by their CRD schemas
(tests/chart/schemas), at the oldest and newest supported Kubernetes."""

from __future__ import annotations

import copy
import sys

import pytest
import yaml

from tests.chart import custom_resources
from tests.chart.test_matrix import NEWEST_KUBERNETES, OLDEST_KUBERNETES
from tests.conftest import run

GATEWAY = ("--set", "gateway.enabled=true", "--set", "gateway.endpointPicker.name=vllm-epp",
           "--set", "gateway.parentRefs.inference-gateway.namespace=gateway")
MULTI_NODE = ("--set", "multiNode.enabled=true", "--set", "parallelism.tensor=8", "--set", "parallelism.pipeline=2")
# Each scale-out mode, and all of them at once.
VARIANTS = {
    "multi-node": MULTI_NODE,
    "multi-node-existing-claim": (*MULTI_NODE, "--set", "cache.existingClaim=shared-weights",
                                  "--set-json", 'multiNode.env={"NCCL_SOCKET_IFNAME": "eth0", "NCCL_IB_HCA": "mlx5"}'),
    "keda": ("--set", "autoscaling.enabled=true", "--set", "cache.accessMode=ReadWriteMany",
             "--set-json", "autoscaling.kvCacheUsagePerReplica=0.8"),
    "keda-to-zero": ("--set", "autoscaling.enabled=true", "--set", "autoscaling.minReplicas=0",
                     "--set", "cache.accessMode=ReadWriteMany"),
    "hpa": ("--set", "autoscaling.enabled=true", "--set", "autoscaling.engine=hpa",
            "--set", "cache.accessMode=ReadWriteMany", "--set-json", "autoscaling.kvCacheUsagePerReplica=0.9"),
    "gateway": GATEWAY,
    "everything": (*MULTI_NODE, *GATEWAY, "--set", "autoscaling.enabled=true", "--set", "replicaCount=2",
                   "--set", "podDisruptionBudget.enabled=true", "--set", "metrics.serviceMonitor.enabled=true"),
}
CUSTOM = {"LeaderWorkerSet", "ScaledObject", "InferencePool", "HTTPRoute", "ServiceMonitor"}


def documents(render_text, args) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(render_text("r", *args)) if doc]


@pytest.mark.parametrize("kubernetes", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
def test_every_scale_out_object_passes_strict_validation(render_text, tmp_path, kubernetes):
    files, builtin, kinds = [], 0, set()
    for name, args in VARIANTS.items():
        docs = documents(render_text, args)
        kinds |= {doc["kind"] for doc in docs}
        for doc in docs:
            if doc["kind"] in CUSTOM - {"ServiceMonitor"}:
                assert custom_resources.errors(doc, kubernetes) == [], f"{name}: {doc['kind']}"
        kept = [doc for doc in docs if doc["kind"] not in CUSTOM]
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(kept))
        files.append(str(path))
        builtin += len(kept)
    assert {"LeaderWorkerSet", "ScaledObject", "HorizontalPodAutoscaler", "InferencePool", "HTTPRoute",
            "PodDisruptionBudget"} <= kinds
    checked = run(sys.executable, "-m", "kubernetes_validate", "--strict", "-k", kubernetes, *files, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARN" not in checked.stdout + checked.stderr
    assert checked.stdout.count("INFO") == builtin, checked.stdout


@pytest.fixture(scope="module")
def custom_objects(render_text) -> dict[str, dict]:
    docs = documents(render_text, VARIANTS["everything"]) + documents(render_text, VARIANTS["hpa"])
    return {doc["kind"]: doc for doc in docs if doc["kind"] in CUSTOM - {"ServiceMonitor"}}


@pytest.mark.parametrize(("kind", "path", "value", "message"), [
    ("LeaderWorkerSet", ("spec", "leaderWorkerTemplate", "sizee"), 2, "Additional properties are not allowed"),
    ("LeaderWorkerSet", ("spec", "startupPolicy"), "LeaderStarted", "is not one of"),
    ("LeaderWorkerSet", ("spec", "leaderWorkerTemplate", "workerTemplate", "spec", "containers", 0, "argz"), [],
     "Additional properties are not allowed"),
    ("LeaderWorkerSet", ("spec", "leaderWorkerTemplate", "volumeClaimTemplates", 0, "spec", "accessMode"), "x",
     "Additional properties are not allowed"),
    ("ScaledObject", ("spec", "triggers", 0, "metadata", "threshold"), 4, "is not of type 'string'"),
    ("ScaledObject", ("spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleDown", "window"), 1,
     "Additional properties are not allowed"),
    ("InferencePool", ("spec", "targetPortNumber"), 8000, "Additional properties are not allowed"),
    ("InferencePool", ("spec", "endpointPickerRef", "failureMode"), "Open", "is not one of"),
    ("HTTPRoute", ("spec", "rules", 0, "backendRefs", 0, "weight"), -1, "is less than the minimum"),
])
def test_the_crd_schemas_refuse_what_the_api_server_would(custom_objects, kind, path, value, message):
    """The schemas are not vacuous: one wrong field, in the CRD's own part or in an embedded Kubernetes type."""
    document = copy.deepcopy(custom_objects[kind])
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    found = custom_resources.errors(document, NEWEST_KUBERNETES)
    assert any(message in error for error in found), found


def test_a_kind_without_a_schema_is_an_error_not_a_pass():
    document = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert custom_resources.errors(document, NEWEST_KUBERNETES) == [
        f"no schema for Widget example.com/v1 in {custom_resources.SCHEMAS}"]
