"""Writes the JSON schemas of the custom resources the chart renders (README.md says from what, at which commits).

Each is the CRD's openAPIV3Schema, transcribed from the project's Go API types (the kubebuilder markers that
generate its CRD: required fields, enums, bounds, patterns), in kubernetes-validate's strict layout: every
object closed with additionalProperties false, and the Kubernetes types a CRD embeds (PodTemplateSpec,
PersistentVolumeClaim, HorizontalPodAutoscalerBehavior, ObjectMeta) referred to Kubernetes' own strict
definitions instead of the CRD's inlined copy, so they are checked at least as strictly as built-in kinds.

    python tests/chart/schemas/make_schemas.py    # rewrites the *.json beside it
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
K8S = "/api/_definitions.json#/$defs/"


def ref(name: str) -> dict:
    return {"$ref": K8S + name}


def closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def string(**extra) -> dict:
    return {"type": "string", **extra}


def integer(minimum: int | None = None, maximum: int | None = None) -> dict:
    schema: dict = {"type": "integer"}
    if minimum is not None:
        schema["minimum"] = minimum
    if maximum is not None:
        schema["maximum"] = maximum
    return schema


def resource(api_version: str, kind: str, spec: dict, spec_required: bool = True) -> dict:
    group, version = api_version.split("/")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://kubernetes.io/api/{kind.lower()}/{group}/{version}",
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata"] + (["spec"] if spec_required else []),
        "properties": {
            "apiVersion": {"enum": [api_version]},
            "kind": {"enum": [kind]},
            "metadata": ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
            "spec": spec,
            "status": {"type": "object"},
        },
    }


INT_OR_STRING = ref("io.k8s.apimachinery.pkg.util.intstr.IntOrString")
PORT = integer(1, 65535)
GROUP = string(maxLength=253, pattern=r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
KIND = string(minLength=1, maxLength=63, pattern=r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
OBJECT_NAME = string(minLength=1, maxLength=253)
NAMESPACE = string(minLength=1, maxLength=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SECTION_NAME = string(minLength=1, maxLength=253,
                      pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_KEY = string(minLength=1, maxLength=253, pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*"
                                                       r"[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")
LABEL_VALUE = string(maxLength=63, pattern=r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# kubernetes-sigs/lws api/leaderworkerset/v1/leaderworkerset_types.go
LEADER_WORKER_SET = resource("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", closed({
    "replicas": integer(0),
    "startupPolicy": {"enum": ["LeaderCreated", "LeaderReady"]},
    "rolloutStrategy": closed({
        "type": {"enum": ["RollingUpdate"]},
        "rollingUpdateConfiguration": closed({
            "partition": integer(0), "maxUnavailable": INT_OR_STRING, "maxSurge": INT_OR_STRING}),
    }, required=("type",)),
    "networkConfig": closed({"subdomainPolicy": {"enum": ["Shared", "UniquePerReplica"]}},
                            required=("subdomainPolicy",)),
    "leaderWorkerTemplate": closed({
        "leaderTemplate": ref("io.k8s.api.core.v1.PodTemplateSpec"),
        "workerTemplate": ref("io.k8s.api.core.v1.PodTemplateSpec"),
        "size": integer(1),
        "restartPolicy": {"enum": ["Default", "RecreateGroupOnPodRestart", "RecreateGroupAfterStart", "None"]},
        "subGroupPolicy": closed({"subGroupPolicyType": {"enum": ["LeaderWorker", "LeaderExcluded"]},
                                  "subGroupSize": integer(1)}),
        "volumeClaimTemplates": {"type": "array", "items": ref("io.k8s.api.core.v1.PersistentVolumeClaim")},
        "persistentVolumeClaimRetentionPolicy":
            ref("io.k8s.api.apps.v1.StatefulSetPersistentVolumeClaimRetentionPolicy"),
    }, required=("workerTemplate",)),
}, required=("leaderWorkerTemplate",)))

# kedacore/keda apis/keda/v1alpha1/scaledobject_types.go and scaletriggers_types.go
METRIC_TYPE = {"enum": ["AverageValue", "Value", "Utilization"]}
SCALED_OBJECT = resource("keda.sh/v1alpha1", "ScaledObject", closed({
    "scaleTargetRef": closed({"name": string(), "apiVersion": string(), "kind": string(),
                              "envSourceContainerName": string()}, required=("name",)),
    "pollingInterval": integer(), "cooldownPeriod": integer(), "initialCooldownPeriod": integer(),
    "idleReplicaCount": integer(), "minReplicaCount": integer(), "maxReplicaCount": integer(),
    "advanced": closed({
        "horizontalPodAutoscalerConfig": closed({
            "behavior": ref("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior"), "name": string()}),
        "restoreToOriginalReplicaCount": {"type": "boolean"},
        "scalingModifiers": closed({"formula": string(), "target": string(), "activationTarget": string(),
                                    "metricType": METRIC_TYPE}),
    }),
    "triggers": {"type": "array", "items": closed({
        "type": string(), "name": string(), "useCachedMetrics": {"type": "boolean"},
        "metadata": {"type": "object", "additionalProperties": string()},
        "authenticationRef": closed({"name": string(), "kind": string()}, required=("name",)),
        "metricType": METRIC_TYPE,
    }, required=("type", "metadata"))},
    "fallback": closed({"failureThreshold": integer(), "replicas": integer()},
                       required=("failureThreshold", "replicas")),
}, required=("scaleTargetRef", "triggers")))

# kubernetes-sigs/gateway-api-inference-extension api/v1/inferencepool_types.go and shared_types.go
INFERENCE_POOL = resource("inference.networking.k8s.io/v1", "InferencePool", closed({
    "selector": closed({"matchLabels": {"type": "object", "maxProperties": 64, "propertyNames": LABEL_KEY,
                                        "additionalProperties": LABEL_VALUE}}, required=("matchLabels",)),
    "targetPorts": {"type": "array", "minItems": 1, "maxItems": 1,
                    "items": closed({"number": PORT}, required=("number",))},
    "endpointPickerRef": closed({
        "group": GROUP, "kind": KIND, "name": OBJECT_NAME, "portNumber": PORT,
        "failureMode": {"enum": ["FailOpen", "FailClose"]},
    }, required=("name",)),
}, required=("selector", "targetPorts", "endpointPickerRef")))

# kubernetes-sigs/gateway-api apis/v1/httproute_types.go and shared_types.go: the fields of a route that
# matches paths and sends them to backends (header, query and method matches, filters, timeouts and retries
# are left out: the chart renders none, so any of them fails here).
PARENT_REF = closed({"group": GROUP, "kind": KIND, "namespace": NAMESPACE, "name": OBJECT_NAME,
                     "sectionName": SECTION_NAME, "port": PORT}, required=("name",))
HTTP_ROUTE = resource("gateway.networking.k8s.io/v1", "HTTPRoute", closed({
    "parentRefs": {"type": "array", "maxItems": 32, "items": PARENT_REF},
    "hostnames": {"type": "array", "maxItems": 16, "items": string(minLength=1, maxLength=253)},
    "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": closed({
        "name": SECTION_NAME,
        "matches": {"type": "array", "maxItems": 64, "items": closed({
            "path": closed({"type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                            "value": string(maxLength=1024)}),
        })},
        "backendRefs": {"type": "array", "maxItems": 16, "items": closed({
            "group": GROUP, "kind": KIND, "name": OBJECT_NAME, "namespace": NAMESPACE, "port": PORT,
            "weight": integer(0, 1000000),
        }, required=("name",))},
    })},
}))

SCHEMAS = {
    "leaderworkerset-leaderworkerset-v1.json": LEADER_WORKER_SET,
    "scaledobject-keda-v1alpha1.json": SCALED_OBJECT,
    "inferencepool-inference-v1.json": INFERENCE_POOL,
    "httproute-gateway-v1.json": HTTP_ROUTE,
}

if __name__ == "__main__":
    for name, schema in SCHEMAS.items():
        (HERE / name).write_text(json.dumps(schema, indent=2) + "\n")
        print(HERE / name)
