"""charts/vllm rendered by the real helm: lint, what the objects say, the schema, and Kubernetes' own schemas."""

from __future__ import annotations

import json
import sys

import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.chart.conftest import CHART, container
from tests.conftest import run

OLDEST_KUBERNETES = "1.29.0"
NEWEST_KUBERNETES = latest_version()  # 1.37.0 with kubernetes-validate 1.37.0


def gpus(deployment: dict) -> tuple[int, int]:
    resources = container(deployment)["resources"]
    return resources["requests"]["nvidia.com/gpu"], resources["limits"]["nvidia.com/gpu"]


def test_the_chart_passes_helm_lint_strict(tools):
    done = tools.helm_run("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_helm_install_llama70b_names_the_service_and_deployment_llama70b_vllm(render):
    objects = render("llama70b")
    assert objects["Service"]["metadata"]["name"] == "llama70b-vllm"
    assert objects["Deployment"]["metadata"]["name"] == "llama70b-vllm"


def test_a_release_named_vllm_is_not_called_vllm_vllm(render):
    assert render("vllm")["Service"]["metadata"]["name"] == "vllm"


def test_the_service_sends_its_port_to_the_servers_http_port(render):
    service, deployment = render()["Service"], render()["Deployment"]
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert container(deployment)["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_selectors_use_only_labels_that_never_change(render):
    objects = render("llama70b")
    selector = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "llama70b"}
    assert objects["Deployment"]["spec"]["selector"]["matchLabels"] == selector
    assert objects["Service"]["spec"]["selector"] == selector
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert pod_labels["app.kubernetes.io/version"] == "0.26.0"


def test_the_container_runs_the_openai_api_server_with_model_name_and_tensor_parallelism(render):
    server = container(render()["Deployment"])
    assert server["image"] == "vllm/vllm-openai:v0.26.0"
    assert server["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert server["args"] == [
        "--model", "meta-llama/Llama-2-70b-chat-hf", "--served-model-name", "meta-llama/Llama-2-70b-chat-hf",
        "--tensor-parallel-size", "4", "--host", "0.0.0.0", "--port", "8000",
    ]


def test_the_served_name_can_differ_from_the_model(render):
    args = container(render("r", "--set", "model.servedName=llama-70b")["Deployment"])["args"]
    assert args[args.index("--served-model-name") + 1] == "llama-70b"


@pytest.mark.parametrize("set_args, expected", [
    ((), 4),
    (("--set", "parallelism.tensor=1"), 1),
    (("--set", "parallelism.tensor=2"), 2),
    (("--set", "parallelism.tensor=8"), 8),
])
def test_gpu_request_equals_limit_equals_tensor_parallelism(render, set_args, expected):
    deployment = render("llama70b", *set_args)["Deployment"]
    assert gpus(deployment) == (expected, expected)
    args = container(deployment)["args"]
    assert args[args.index("--tensor-parallel-size") + 1] == str(expected)


@pytest.mark.parametrize("tensor", [2, 4, 8])
def test_more_than_one_gpu_mounts_a_memory_backed_dev_shm(render, tensor):
    deployment = render("llama70b", "--set", f"parallelism.tensor={tensor}")["Deployment"]
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {mount["mountPath"]: mount["name"] for mount in container(deployment)["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}


def test_one_gpu_mounts_no_dev_shm(render):
    deployment = render("llama70b", "--set", "parallelism.tensor=1")["Deployment"]
    assert "/dev/shm" not in {mount["mountPath"] for mount in container(deployment)["volumeMounts"]}
    assert all("medium" not in volume["emptyDir"] for volume in deployment["spec"]["template"]["spec"]["volumes"])


def test_cpu_and_memory_come_from_values_and_memory_is_also_the_limit(render):
    resources = container(render("r", "--set", "resources.cpu=4", "--set", "resources.memory=40Gi")
                          ["Deployment"])["resources"]
    assert resources["requests"] == {"cpu": "4", "memory": "40Gi", "nvidia.com/gpu": 4}
    assert resources["limits"] == {"memory": "40Gi", "nvidia.com/gpu": 4}


def test_service_links_are_off_so_no_vllm_port_variable_reaches_the_server(render):
    assert render("vllm")["Deployment"]["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_the_deployment_recreates_its_pod_instead_of_rolling(render):
    assert render()["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}


def test_startup_and_readiness_probes_ask_the_health_endpoint(render):
    server = container(render()["Deployment"])
    for probe in ("startupProbe", "readinessProbe"):
        assert server[probe]["httpGet"] == {"path": "/health", "port": "http"}
    startup = server["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60


def test_the_pod_runs_as_user_1000_without_privileges_or_a_service_account_token(render):
    pod = render()["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": True,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert container(render()["Deployment"])["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_caches_go_to_a_writable_volume_because_user_1000_cannot_write_root_home(render):
    server = container(render()["Deployment"])
    env = {var["name"]: var.get("value") for var in server["env"]}
    assert env["HOME"] == "/cache" and env["HF_HOME"] == "/cache/huggingface"
    assert {"name": "cache", "mountPath": "/cache"} in server["volumeMounts"]


def test_the_hf_token_comes_from_an_optional_secret_never_a_literal(render):
    env = {var["name"]: var for var in container(render()["Deployment"])["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}}}
    no_secret = container(render("r", "--set", "model.tokenSecret=")["Deployment"])["env"]
    assert "HF_TOKEN" not in {var["name"] for var in no_secret}


def test_node_selector_and_tolerations_reach_the_pod(render):
    pod = render("r", "--set", "nodeSelector.nvidia\\.com/gpu\\.product=NVIDIA-H100-80GB-HBM3")["Deployment"]
    pod = pod["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.mark.parametrize("set_arg, message", [
    ("modle.name=x", "- at '': additional properties 'modle' not allowed"),
    ("model.nmae=x", "- at '/model': additional properties 'nmae' not allowed"),
    ("parallelism.tensorParallel=2", "- at '/parallelism': additional properties 'tensorParallel' not allowed"),
    ("resources.gpu=1", "- at '/resources': additional properties 'gpu' not allowed"),
    ("tolerations[0].efect=NoSchedule", "- at '/tolerations/0': additional properties 'efect' not allowed"),
])
def test_an_unknown_value_key_fails_with_the_schema_error(tools, set_arg, message):
    done = tools.helm_run("template", "llama70b", str(CHART), "--set", set_arg)
    assert done.returncode == 1
    assert "values don't meet the specifications of the schema(s)" in done.stderr
    assert message in done.stderr


@pytest.mark.parametrize("set_arg, message", [
    ("image.tag=latest", "- at '/image/tag': 'not' failed"),
    ("model.name=", "- at '/model/name': minLength: got 0, want 1"),
    ("parallelism.tensor=0", "- at '/parallelism/tensor': minimum: got 0, want 1"),
    ("shm.sizeLimit=lots", "- at '/shm/sizeLimit': 'lots' does not match pattern"),
])
def test_values_that_cannot_work_fail_with_the_schema_error(tools, set_arg, message):
    done = tools.helm_run("template", "llama70b", str(CHART), "--set", set_arg)
    assert done.returncode == 1
    assert message in done.stderr


def test_the_schema_forbids_unknown_keys_at_every_object_level():
    def objects(schema: dict, path: str = ""):
        if schema.get("type") == "object":
            yield path, schema
        for key, child in schema.get("properties", {}).items():
            yield from objects(child, f"{path}.{key}")
        if isinstance(schema.get("items"), dict):
            yield from objects(schema["items"], f"{path}[]")

    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, node in objects(schema):
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '.'} allows unknown keys"
        else:  # a free map such as nodeSelector: its values are still typed
            assert isinstance(node.get("additionalProperties"), dict), f"{path} has untyped values"


def test_every_value_has_a_comment_that_starts_with_its_name():
    lines = (CHART / "values.yaml").read_text().splitlines()

    def keys(node, prefix=""):
        for key, value in node.value if isinstance(node, yaml.MappingNode) else ():
            yield f"{prefix}{key.value}", key.start_mark.line
            yield from keys(value, f"{prefix}{key.value}.")

    for name, line in keys(yaml.compose("\n".join(lines))):
        first = line
        while first > 0 and lines[first - 1].lstrip().startswith("#"):
            first -= 1
        assert first < line, f"{name} has no comment"
        assert lines[first].lstrip().startswith(f"# {name} "), f"the comment above {name} does not start with it"


def test_notes_print_the_port_forward_and_locust_commands_for_the_release(tools):
    done = tools.helm_run("install", "llama70b", str(CHART), "--dry-run=client", "--namespace", "llm")
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "  kubectl port-forward svc/llama70b-vllm 8000:8000 --namespace llm\n" in notes
    assert "  locust -f loadtest/prompts.py --headless -u 8 -r 8 --host http://localhost:8000\n" in notes


@pytest.mark.parametrize("kubernetes", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
@pytest.mark.parametrize("set_args", [(), ("--set", "parallelism.tensor=1", "--set", "model.tokenSecret=")])
def test_every_rendered_object_passes_kubernetes_validate_strict(tools, tmp_path, kubernetes, set_args):
    done = tools.helm_run("template", "llama70b", str(CHART), *set_args)
    assert done.returncode == 0, done.stderr
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(done.stdout)
    checked = run(sys.executable, "-m", "kubernetes_validate", "--strict", "-k", kubernetes, str(manifests))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A missing schema is only a WARN with exit status 0: it counts as a failure here.
    assert "WARN" not in checked.stdout + checked.stderr
    assert checked.stdout.count("INFO") == 2, checked.stdout
