"""Every values file of the matrix (charts/vllm/ci plus the defaults): lint, the invariants each rendering
must hold, and Kubernetes' own schemas for the oldest and newest supported versions."""

from __future__ import annotations

import copy
import json
import math
import sys

import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.chart.conftest import (
    CHART,
    CI_VALUES,
    MATRIX,
    container,
    env_of,
    init_container,
    mounts_of,
    pod_spec,
    values_args,
    volumes_of,
)
from tests.conftest import run

OLDEST_KUBERNETES = "1.29.0"
NEWEST_KUBERNETES = latest_version()  # 1.37.0 with kubernetes-validate 1.37.0
# Kinds of CRDs, which kubernetes-validate has no schema for: checked by the tests of their own.
CUSTOM_KINDS = {"ServiceMonitor"}


def merged(base: dict, override: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in override.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) and isinstance(result.get(key), dict) \
            else value
    return result


def values_of(entry: str) -> dict:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    if entry == "defaults":
        return defaults
    return merged(defaults, yaml.safe_load((CHART / "ci" / f"{entry}-values.yaml").read_text()))


@pytest.fixture
def rendered(request, render):
    entry = request.node.callspec.params["entry"]
    return values_of(entry), render("r", *values_args(entry))


def test_the_matrix_covers_what_the_issue_asks_for():
    names = {path.name.removesuffix("-values.yaml") for path in CI_VALUES}
    assert {"7b-tp1", "70b-tp4", "pipeline-tensor", "existing-claim", "hardened", "tpserve-image"} <= names


def load_window(values: dict) -> int:
    """startup.maxLoadSeconds, or the window the chart derives from the model's size when it is 0."""
    from tpserve.startup import startup_window_seconds

    return values["startup"]["maxLoadSeconds"] or startup_window_seconds(values["model"]["parameterBillions"])


@MATRIX
def test_helm_lint_strict_passes(tools, entry):
    done = tools.helm_run("lint", "--strict", str(CHART), *values_args(entry))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


@MATRIX
def test_the_gpu_request_equals_the_limit_equals_tp_times_pp(rendered, entry):
    values, objects = rendered
    resources = container(objects["Deployment"])["resources"]
    gpus = values["parallelism"]["tensor"] * values["parallelism"]["pipeline"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == gpus
    assert "nvidia.com/gpu" not in str(init_container(objects["Deployment"])["resources"])
    assert resources["requests"]["memory"] == resources["limits"]["memory"] == values["resources"]["memory"]


@MATRIX
def test_the_parallelism_reaches_the_server_and_the_init_containers_check(rendered, entry):
    values, objects = rendered
    tensor, pipeline = str(values["parallelism"]["tensor"]), str(values["parallelism"]["pipeline"])
    fetch_args = init_container(objects["Deployment"])["args"]
    assert fetch_args[fetch_args.index("--tensor-parallel-size") + 1] == tensor
    assert fetch_args[fetch_args.index("--pipeline-parallel-size") + 1] == pipeline
    server = container(objects["Deployment"])
    if values["image"]["tpserve"]:
        env = env_of(server)
        assert (env["TPSERVE_TENSOR_PARALLEL_SIZE"]["value"], env["TPSERVE_PIPELINE_PARALLEL_SIZE"]["value"]) == \
            (tensor, pipeline)
    else:
        args = server["args"]
        assert (args[args.index("--tensor-parallel-size") + 1], args[args.index("--pipeline-parallel-size") + 1]) == \
            (tensor, pipeline)


@MATRIX
def test_every_layout_tp_1_included_gets_a_sized_memory_backed_dev_shm(rendered, entry):
    values, objects = rendered
    deployment = objects["Deployment"]
    volume = volumes_of(deployment)[mounts_of(container(deployment))["/dev/shm"]["name"]]
    assert volume["emptyDir"] == {"medium": "Memory", "sizeLimit": values["shm"]["sizeLimit"]}


@MATRIX
def test_probes_give_the_load_its_time_and_readiness_asks_http(rendered, entry):
    values, objects = rendered
    server = container(objects["Deployment"])
    startup, readiness, liveness = server["startupProbe"], server["readinessProbe"], server["livenessProbe"]
    assert startup["httpGet"]["path"] == "/health"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= load_window(values)
    assert readiness["httpGet"]["path"] in ("/health", "/v1/models") and "tcpSocket" not in readiness
    command = liveness["exec"]["command"]
    assert command[1] == "/opt/tpserve-chart/check/progress_probe.py"
    assert int(command[command.index("--unhealthy-seconds") + 1]) == values["probes"]["livenessFailureSeconds"] >= 300


@MATRIX
def test_one_pod_is_recreated_several_roll_one_at_a_time_and_each_stops_within_its_grace_period(rendered, entry):
    values, objects = rendered
    deployment = objects["Deployment"]
    if values["replicaCount"] > 1:
        assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                                  "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    else:
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    grace = pod_spec(deployment)["terminationGracePeriodSeconds"]
    assert grace >= values["shutdown"]["preStopSeconds"] + values["shutdown"]["drainSeconds"] + 10
    server = container(deployment)
    drain = [arg for arg in server["args"] if "--shutdown-timeout" in arg]
    assert drain in (["--shutdown-timeout"], [f"--shutdown-timeout={values['shutdown']['drainSeconds']}"])


@MATRIX
def test_every_container_runs_as_its_images_uid_without_privileges_on_a_read_only_root(rendered, entry):
    values, objects = rendered
    # The official image's `vllm` user is uid 2000; tpserve's images (and the load test's) run as 1000.
    server_uid = 1000 if values["image"]["tpserve"] else 2000
    for kind, uid in (("Deployment", server_uid), ("Pod", 1000)):
        pod = pod_spec(objects[kind]) if kind == "Deployment" else objects[kind]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False
        assert {key: pod["securityContext"][key] for key in ("runAsUser", "runAsGroup", "runAsNonRoot")} == {
            "runAsUser": uid, "runAsGroup": uid, "runAsNonRoot": True}
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for spec in pod["containers"] + pod.get("initContainers", []):
            assert spec["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                               "capabilities": {"drop": ["ALL"]}}, spec["name"]
    assert pod_spec(objects["Deployment"])["securityContext"]["fsGroup"] == server_uid


@MATRIX
def test_the_cache_claim_is_kept_or_the_existing_one_is_used(rendered, entry):
    values, objects = rendered
    claim = volumes_of(objects["Deployment"])["cache"]["persistentVolumeClaim"]["claimName"]
    if values["cache"]["existingClaim"]:
        assert "PersistentVolumeClaim" not in objects
        assert claim == values["cache"]["existingClaim"]
    else:
        pvc = objects["PersistentVolumeClaim"]
        assert claim == pvc["metadata"]["name"]
        assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert pvc["spec"]["resources"]["requests"]["storage"] == values["cache"]["size"]
        assert pvc["spec"].get("storageClassName", None) != "" or values["cache"]["storageClass"] == "-"


@MATRIX
def test_secrets_arrive_only_by_reference_and_the_api_key_is_required(rendered, entry):
    values, objects = rendered
    deployment, test_pod = objects["Deployment"], objects["Pod"]
    references = {}
    for spec in [container(deployment), init_container(deployment)] + test_pod["spec"]["containers"]:
        for name, var in env_of(spec).items():
            if name in ("HF_TOKEN", "VLLM_API_KEY", "TPSERVE_API_KEY"):
                assert set(var) == {"name", "valueFrom"}, f"{name} of {spec['name']} is a literal"
                references[(spec["name"], name)] = var["valueFrom"]["secretKeyRef"]
    hf = values["hfToken"]
    assert references.pop(("fetch-model", "HF_TOKEN")) == {"name": hf["secretName"], "key": hf["secretKey"],
                                                           "optional": True}
    if values["apiKey"]["secretName"]:
        api = {"name": values["apiKey"]["secretName"], "key": values["apiKey"]["secretKey"], "optional": False}
        assert references == {("vllm", "VLLM_API_KEY"): api, ("load", "TPSERVE_API_KEY"): api}
    else:
        assert references == {}


@MATRIX
def test_a_pinned_revision_is_served_from_its_folder_a_moving_one_from_the_init_containers_file(rendered, entry):
    values, objects = rendered
    server = container(objects["Deployment"])
    model, revision = values["model"]["name"], values["model"]["revision"]
    folder = f"/models/hf/tpserve/{model.replace('/', '--')}/{revision}"
    pinned = len(revision) == 40
    if values["image"]["tpserve"]:
        assert server["args"][0] == "--"
        assert env_of(server)["TPSERVE_REVISION"]["value"] == revision
    elif pinned:
        assert server["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
        assert server["args"][:2] == ["--model", folder]
    if not pinned:
        assert server["command"][:2] == ["/bin/sh", "-c"]
        assert server["command"][2].startswith("model=$(cat /run/tpserve/model-path) && exec ")
        assert '--model "$model" "$@"' in server["command"][2]
        assert "--allow-moving-revision" in init_container(objects["Deployment"])["args"]
    served = env_of(server)["TPSERVE_SERVED_MODEL_NAME"]["value"] if values["image"]["tpserve"] else \
        server["args"][server["args"].index("--served-model-name") + 1]
    assert served == (values["model"]["servedName"] or model)


@MATRIX
def test_startup_budget_matches_the_documented_formula(rendered, entry):
    values, objects = rendered
    startup = container(objects["Deployment"])["startupProbe"]
    assert startup["failureThreshold"] == math.ceil(load_window(values) / 10)


@MATRIX
def test_the_rollout_deadline_is_the_fetch_and_load_budgets_plus_the_stop_and_a_margin(rendered, entry):
    values, objects = rendered
    deployment = objects["Deployment"]
    deadline = deployment["spec"]["progressDeadlineSeconds"]
    assert deadline == (values["fetch"]["maxSeconds"] + load_window(values)
                        + pod_spec(deployment)["terminationGracePeriodSeconds"] + 600)
    assert deadline > 600 + load_window(values)  # Kubernetes' default would fail a first install


@pytest.mark.parametrize("kubernetes", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
def test_every_rendered_object_passes_kubernetes_validate_strict(render_text, tmp_path, kubernetes):
    entries = ["defaults"] + [path.name.removesuffix("-values.yaml") for path in CI_VALUES]
    files, expected = [], 0
    for entry in entries:
        documents = [doc for doc in yaml.safe_load_all(render_text("r", *values_args(entry))) if doc]
        kept = [doc for doc in documents if doc["kind"] not in CUSTOM_KINDS]
        path = tmp_path / f"{entry}.yaml"
        path.write_text(yaml.safe_dump_all(kept))
        files.append(str(path))
        expected += len(kept)
    checked = run(sys.executable, "-m", "kubernetes_validate", "--strict", "-k", kubernetes, *files, timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # A missing schema is only a WARN with exit status 0: it counts as a failure here.
    assert "WARN" not in checked.stdout + checked.stderr
    assert checked.stdout.count("INFO") == expected, checked.stdout


def test_the_service_monitor_is_well_formed_for_the_prometheus_operator(render):
    objects = render("r", *values_args("hardened"))
    monitor = objects["ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"] == objects["Service"]["spec"]["selector"]
    assert monitor["spec"]["endpoints"][0]["port"] == objects["Service"]["spec"]["ports"][0]["name"]
    # Its Prometheus, in namespace monitoring, is admitted on that port by the restricted NetworkPolicy.
    assert {"ports": [{"port": "http", "protocol": "TCP"}], "from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]} in \
        objects["NetworkPolicy"]["spec"]["ingress"]


@pytest.mark.parametrize("entry", ["moving-revision"])
def test_the_moving_revision_wrapper_execs_the_server_with_the_handed_over_folder_and_every_arg(
        rendered, entry, tmp_path):
    """Run the rendered `sh -c` command with a python3 that prints its argv, as the container would."""
    _, objects = rendered
    server = container(objects["Deployment"])
    path_file = tmp_path / "model-path"
    folder = "/models/hf/tpserve/meta-llama--Llama-2-7b-chat-hf/" + "0" * 40
    path_file.write_text(folder + "\n")
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    fake.chmod(0o755)
    command = [part.replace("/run/tpserve/model-path", str(path_file)) for part in server["command"]]
    done = run(*command, *server["args"], env={"PATH": f"{fake.parent}:/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["-m", "vllm.entrypoints.openai.api_server", "--model", folder,
                                       *server["args"]]
    assert '{"pass_config": {"fuse_allreduce_rms": false}}' in server["args"]


def test_the_moving_revision_wrapper_fails_without_the_init_containers_file(render, tmp_path):
    server = container(render("r", *values_args("moving-revision"))["Deployment"])
    command = [part.replace("/run/tpserve/model-path", str(tmp_path / "missing")) for part in server["command"]]
    done = run(*command, *server["args"], env={"PATH": "/usr/bin:/bin"})
    assert done.returncode != 0
    assert "missing" in done.stderr
