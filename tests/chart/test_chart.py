"""charts/vllm with its defaults and single settings, rendered by the real helm: what each object says."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from tests.chart.conftest import CHART, container, env_of, init_container, mounts_of, pod_spec, volumes_of
from tpserve.fetch import cache
from tpserve.fetch import hub as hub_module

SHA_70B = "e9149a12809580e8602995856f8098ce973d1080"
PATH_70B = f"/models/hf/tpserve/meta-llama--Llama-2-70b-chat-hf/{SHA_70B}"
CHECK_SCRIPT = CHART / "files" / "check" / "check_tokens.py"
PROBE_SCRIPT = CHART / "files" / "check" / "progress_probe.py"
FUSION_OFF = '{"pass_config": {"fuse_allreduce_rms": false}}'


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_the_chart_passes_helm_lint_strict(tools):
    done = tools.helm_run("lint", "--strict", str(CHART))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_helm_install_llama70b_names_its_objects_llama70b_vllm(render):
    objects = render("llama70b")
    assert {kind: obj["metadata"]["name"] for kind, obj in objects.items()} == {
        "Service": "llama70b-vllm", "Deployment": "llama70b-vllm", "NetworkPolicy": "llama70b-vllm",
        "ConfigMap": "llama70b-vllm-fetch", "PersistentVolumeClaim": "llama70b-vllm-cache",
        "Pod": "llama70b-vllm-test-load"}


def test_a_release_named_vllm_is_not_called_vllm_vllm(render):
    assert render("vllm")["Service"]["metadata"]["name"] == "vllm"


def test_the_service_sends_its_port_to_the_servers_http_port(render):
    service, deployment = render()["Service"], render()["Deployment"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert container(deployment)["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_selectors_use_only_labels_that_never_change(render):
    objects = render("llama70b")
    selector = {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "llama70b"}
    assert objects["Deployment"]["spec"]["selector"]["matchLabels"] == selector
    assert objects["Service"]["spec"]["selector"] == selector
    assert objects["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == selector
    pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    assert objects["Deployment"]["metadata"]["labels"]["app.kubernetes.io/version"] == "0.26.0"


@pytest.mark.parametrize("values", [(), ("--set", "multiNode.enabled=true", "--set", "parallelism.tensor=8",
                                         "--set", "multiNode.nodes=2")])
def test_pod_templates_carry_no_version_labels_so_a_chart_only_upgrade_restarts_nothing(render, values):
    objects = render("llama70b", *values)
    if "LeaderWorkerSet" in objects:
        spec = objects["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
        templates = [spec["leaderTemplate"], spec["workerTemplate"], *spec.get("volumeClaimTemplates", [])]
    else:
        templates = [objects["Deployment"]["spec"]["template"]]
    for template in templates:
        assert not {"app.kubernetes.io/version", "helm.sh/chart"} & template["metadata"]["labels"].keys()


def test_a_new_chart_version_with_the_same_values_leaves_the_pod_template_unchanged(render, tools, tmp_path):
    copy = tmp_path / "vllm"
    shutil.copytree(CHART, copy)
    chart_yaml = copy / "Chart.yaml"
    chart_yaml.write_text(re.sub(r"(?m)^version: .*$", "version: 9.9.9", chart_yaml.read_text()))
    done = tools.helm_run("template", "llama70b", str(copy))
    assert done.returncode == 0, done.stderr
    bumped = next(o for o in yaml.safe_load_all(done.stdout) if o and o["kind"] == "Deployment")
    assert bumped["metadata"]["labels"]["helm.sh/chart"] == "vllm-9.9.9"
    assert bumped["spec"]["template"] == render()["Deployment"]["spec"]["template"]


def test_the_test_pod_is_never_selected_by_the_service_or_adopted_by_the_deployment(render):
    objects = render("llama70b")
    labels = objects["Pod"]["metadata"]["labels"]
    assert not objects["Service"]["spec"]["selector"].items() <= labels.items()
    assert objects["Pod"]["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_the_default_is_the_official_vllm_image_serving_the_verified_pinned_folder(render):
    server = container(render()["Deployment"])
    assert server["image"] == "docker.io/vllm/vllm-openai:v0.26.0"
    assert server["imagePullPolicy"] == "IfNotPresent"
    assert server["command"] == ["python3", "-m", "vllm.entrypoints.openai.api_server"]
    assert server["args"] == [
        "--model", PATH_70B, "--served-model-name", "meta-llama/Llama-2-70b-chat-hf",
        "--tensor-parallel-size", "4", "--pipeline-parallel-size", "1", "--dtype", "auto",
        "--host", "0.0.0.0", "--port", "8000", "--compilation-config", FUSION_OFF, "--shutdown-timeout", "60",
    ]


def test_the_rendered_model_folder_is_where_tpserve_cache_puts_that_commit(render):
    path = flag(container(render()["Deployment"])["args"], "--model")
    assert path == str(cache.model_path("/models/hf/tpserve", "meta-llama/Llama-2-70b-chat-hf", SHA_70B))


def test_the_init_container_fetches_the_pinned_revision_with_tpserves_shipped_code(render):
    fetch = init_container(render()["Deployment"])
    assert fetch["image"] == container(render()["Deployment"])["image"]
    assert fetch["command"] == ["python3", "-m", "tpserve.fetchjob"]
    assert fetch["args"] == [
        "--model", "meta-llama/Llama-2-70b-chat-hf", "--revision", SHA_70B, "--cache-dir", "/models/hf/tpserve",
        "--tensor-parallel-size", "4", "--pipeline-parallel-size", "1", "--path-file", "/run/tpserve/model-path",
        "--mkdir", "/models/vllm-cache", "--declared", "model.attentionHeads=64", "--declared", "model.kvHeads=8",
        "--declared", "model.layers=80", "--declared", "model.parameterBillions=68.98",
        "--declared", "model.hiddenSize=8192", "--declared", "model.vocabSize=32000"]
    env = env_of(fetch)
    assert env["PYTHONPATH"]["value"] == "/opt/tpserve-chart"
    assert env["HF_HOME"]["value"] == "/models/hf"
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "void"
    assert "nvidia.com/gpu" not in str(fetch["resources"])
    assert mounts_of(fetch)["/opt/tpserve-chart/tpserve"] == {
        "name": "fetch-code", "mountPath": "/opt/tpserve-chart/tpserve", "readOnly": True}
    assert fetch["terminationMessagePolicy"] == "FallbackToLogsOnError"


def byte_count(text: str) -> int:
    """hf_xet's sizes (``512mb``, decimal) and Kubernetes' quantities (``4Gi``) in bytes."""
    number, unit = re.fullmatch(r"(\d+)\s*([a-zA-Z]*)", text).groups()
    scale = {"": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit]
    return int(number) * scale


def test_the_init_container_bounds_xets_download_buffers_well_inside_its_memory_limit(render):
    fetch = init_container(render()["Deployment"])
    env = {name: var["value"] for name, var in env_of(fetch).items() if "value" in var}
    memory = byte_count(fetch["resources"]["limits"]["memory"])
    buffers = byte_count(env["HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT"])
    files = int(env["HF_XET_DATA_MAX_CONCURRENT_FILE_DOWNLOADS"])

    assert env["HF_XET_HIGH_PERFORMANCE"] == "0"
    assert env["HF_XET_CHUNK_CACHE_SIZE_BYTES"] == "0"
    assert files == hub_module.FETCH_WORKERS
    assert byte_count(env["HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_SIZE"]) + files * byte_count(
        env["HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_PERFILE_SIZE"]) <= buffers <= memory / 4


def test_fetch_extra_env_replaces_a_xet_bound_instead_of_repeating_it(render):
    fetch = init_container(render("r", "--set-string", "fetch.extraEnv.HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT=4gb",
                                  "--set", "fetch.resources.memory=8Gi")["Deployment"])
    assert env_of(fetch)["HF_XET_RECONSTRUCTION_DOWNLOAD_BUFFER_LIMIT"]["value"] == "4gb"


def test_the_fetch_code_configmap_mounts_as_a_tpserve_package_of_byte_identical_files(render):
    objects = render()
    data = objects["ConfigMap"]["data"]
    source = CHART / "files" / "tpserve"
    # The init container's modules, the `helm test` client of tests.runner=serving and the liveness probe.
    assert data == {path.name: path.read_text() for path in [*source.glob("*.py"), CHECK_SCRIPT, PROBE_SCRIPT]}
    # Every key a file of the mounted folder: no `items` with folder paths, which podman cannot mount.
    assert volumes_of(objects["Deployment"])["fetch-code"]["configMap"] == {
        "name": "llama70b-vllm-fetch", "defaultMode": 0o444}
    assert env_of(init_container(objects["Deployment"]))["PYTHONPATH"]["value"] + "/tpserve" in \
        mounts_of(init_container(objects["Deployment"]))


def test_a_new_fetch_script_changes_the_pod_template_so_pods_restart(render):
    annotations = render()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{64}", annotations["checksum/fetch-code"])


def test_the_server_runs_offline_without_the_hf_token(render):
    env = env_of(container(render()["Deployment"]))
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    assert "HF_TOKEN" not in env
    assert env["VLLM_CACHE_ROOT"]["value"] == "/models/vllm-cache"


def test_the_kernels_compiled_at_warm_up_are_kept_on_the_cache_claim_beside_the_compile_cache(render, render_error):
    deployment = render()["Deployment"]
    env = env_of(container(deployment))
    mounts = mounts_of(container(deployment))
    claim = {v["name"]: v for v in pod_spec(deployment)["volumes"]}[mounts["/models/vllm-cache"]["name"]]
    assert claim["persistentVolumeClaim"]["claimName"].endswith("-vllm-cache")
    for name in ("TRITON_CACHE_DIR", "FLASHINFER_WORKSPACE_BASE", "CUDA_CACHE_PATH"):
        assert env[name]["value"].startswith("/models/vllm-cache/jit/"), name
        problems = render_error("--set", f"vllm.extraEnv.{name}=/tmp/x")
        assert f"vllm.extraEnv.{name} is set by the chart; remove it" in problems


def test_the_hf_token_reaches_only_the_init_container_from_an_optional_secret(render):
    env = env_of(init_container(render()["Deployment"]))
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {
        "secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}}}
    no_secret = init_container(render("r", "--set", "hfToken.secretName=")["Deployment"])
    assert "HF_TOKEN" not in env_of(no_secret)


def test_the_api_key_comes_from_a_required_secret_as_vllm_api_key(render):
    deployment = render("r", "--set", "apiKey.secretName=keys", "--set", "apiKey.secretKey=serving")["Deployment"]
    assert env_of(container(deployment))["VLLM_API_KEY"] == {"name": "VLLM_API_KEY", "valueFrom": {
        "secretKeyRef": {"name": "keys", "key": "serving", "optional": False}}}
    assert "--api-key" not in container(deployment)["args"]
    assert "VLLM_API_KEY" not in env_of(container(render()["Deployment"]))


def test_the_served_name_can_differ_from_the_model(render):
    args = container(render("r", "--set", "model.servedName=llama-70b")["Deployment"])["args"]
    assert flag(args, "--served-model-name") == "llama-70b"


@pytest.mark.parametrize("fusion, tensor, expected", [(False, 4, True), (True, 4, False), (False, 1, False)])
def test_the_fusion_switch_adds_the_compilation_config_only_where_tp_uses_fusion(render, fusion, tensor, expected):
    args = container(render("r", "--set", f"vllm.allreduceFusion={str(fusion).lower()}", "--set",
                            f"parallelism.tensor={tensor}")["Deployment"])["args"]
    assert (["--compilation-config", FUSION_OFF] == args[args.index("--port") + 2:args.index("--port") + 4]) \
        is expected


def test_extra_args_become_flags_true_bare_false_absent_maps_as_json_numbers_whole(tmp_path, render):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"vllm": {"extraArgs": {
        "enforce-eager": True, "enable-prefix-caching": False, "max-num-seqs": 1000000,
        "swap-space": 4.5, "kv-cache-dtype": "fp8", "override-generation-config": {"temperature": 0.5}}}}))
    args = container(render("r", "-f", str(values))["Deployment"])["args"]
    assert args[args.index("--shutdown-timeout") + 2:] == [
        "--enforce-eager", "--kv-cache-dtype=fp8", "--max-num-seqs=1000000",
        '--override-generation-config={"temperature":0.5}', "--swap-space=4.5"]


def test_extra_env_reaches_the_server_and_fetch_env_the_init_container(render):
    deployment = render("r", "--set", "vllm.extraEnv.NCCL_DEBUG=INFO",
                        "--set", "fetch.extraEnv.HF_ENDPOINT=https://hub.example.com")["Deployment"]
    assert env_of(container(deployment))["NCCL_DEBUG"] == {"name": "NCCL_DEBUG", "value": "INFO"}
    assert env_of(init_container(deployment))["HF_ENDPOINT"]["value"] == "https://hub.example.com"


def test_max_model_len_and_gpu_memory_utilization_are_passed_only_when_set(render):
    args = container(render()["Deployment"])["args"]
    assert "--max-model-len" not in args and "--gpu-memory-utilization" not in args
    args = container(render("r", "--set", "vllm.maxModelLen=4096", "--set", "vllm.gpuMemoryUtilization=0.9")
                     ["Deployment"])["args"]
    assert flag(args, "--max-model-len") == "4096" and flag(args, "--gpu-memory-utilization") == "0.9"


def test_service_links_are_off_so_no_vllm_port_variable_reaches_the_server(render):
    assert pod_spec(render("vllm")["Deployment"])["enableServiceLinks"] is False


def test_the_startup_probe_allows_max_load_seconds_then_liveness_is_lenient(render):
    server = container(render("r", "--set", "startup.maxLoadSeconds=3605")["Deployment"])
    startup = server["startupProbe"]
    assert startup["httpGet"] == {"path": "/health", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] == 3610
    liveness = server["livenessProbe"]
    assert liveness["exec"]["command"][liveness["exec"]["command"].index("--unhealthy-seconds") + 1] == "300"


def test_liveness_is_the_progress_probe_with_both_budgets_in_the_script_not_in_the_failure_threshold(render):
    liveness = container(render()["Deployment"])["livenessProbe"]
    assert liveness == {
        "exec": {"command": ["python3", "/opt/tpserve-chart/check/progress_probe.py",
                             "--state", "/tmp/tpserve-progress-probe.json",
                             "--unhealthy-seconds", "300", "--stall-seconds", "180"]},
        "periodSeconds": 30, "timeoutSeconds": 20, "failureThreshold": 2}
    changed = container(render("r", "--set", "probes.livenessFailureSeconds=600", "--set", "probes.stallSeconds=0")
                        ["Deployment"])["livenessProbe"]["exec"]["command"]
    assert changed[-4:] == ["--unhealthy-seconds", "600", "--stall-seconds", "0"]


def test_the_probe_script_is_mounted_read_only_from_the_configmap_and_its_state_folder_is_writable(render):
    objects = render()
    deployment = objects["Deployment"]
    mounts = mounts_of(container(deployment))
    check = mounts["/opt/tpserve-chart/check"]
    assert check["readOnly"] is True
    volume = volumes_of(deployment)[check["name"]]
    assert volume["configMap"]["name"] == objects["ConfigMap"]["metadata"]["name"]
    assert objects["ConfigMap"]["data"]["progress_probe.py"] == PROBE_SCRIPT.read_text()
    assert "emptyDir" in volumes_of(deployment)[mounts["/tmp"]["name"]] and not mounts["/tmp"].get("readOnly")


def test_a_new_probe_script_changes_the_pods_checksum_so_pods_restart(render, tools, tmp_path):
    copy = tmp_path / "vllm"
    shutil.copytree(CHART, copy)
    (copy / "files" / "check" / "progress_probe.py").write_text(PROBE_SCRIPT.read_text() + "# changed\n")
    done = tools.helm_run("template", "llama70b", str(copy))
    assert done.returncode == 0, done.stderr
    changed = next(o for o in yaml.safe_load_all(done.stdout) if o and o["kind"] == "Deployment")
    key = "checksum/fetch-code"
    before = render()["Deployment"]["spec"]["template"]["metadata"]["annotations"][key]
    assert changed["spec"]["template"]["metadata"]["annotations"][key] != before


def test_a_negative_stall_budget_is_refused_by_the_schema(render_error):
    assert "at '/probes/stallSeconds': minimum: got -1, want 0" in render_error("--set", "probes.stallSeconds=-1")


def test_the_rollout_deadline_covers_the_download_the_load_and_the_old_pods_stop(render):
    # fetch.maxSeconds + the load window (1,755 s derived for Llama-2-70b) + terminationGracePeriodSeconds + 600 s for
    # scheduling and the pull.
    assert render()["Deployment"]["spec"]["progressDeadlineSeconds"] == 3600 + 1755 + 100 + 600
    deployment = render("r", "--set", "fetch.maxSeconds=7200", "--set", "startup.maxLoadSeconds=600",
                        "--set", "shutdown.drainSeconds=0")["Deployment"]
    assert deployment["spec"]["progressDeadlineSeconds"] == 7200 + 600 + 40 + 600
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] == 40


def test_readiness_can_ask_v1_models(render):
    probe = container(render("r", "--set", "probes.readinessPath=/v1/models")["Deployment"])["readinessProbe"]
    assert probe["httpGet"] == {"path": "/v1/models", "port": "http"}


def test_prestop_and_drain_fit_inside_the_grace_period(render):
    deployment = render("r", "--set", "shutdown.preStopSeconds=15", "--set", "shutdown.drainSeconds=120")["Deployment"]
    server = container(deployment)
    assert server["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "15"]
    assert flag(server["args"], "--shutdown-timeout") == "120"
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] == 15 + 120 + 30
    no_prestop = container(render("r", "--set", "shutdown.preStopSeconds=0")["Deployment"])
    assert "lifecycle" not in no_prestop


SAME_NODE = {"labelSelector": {"matchLabels": {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "r"}},
             "topologyKey": "kubernetes.io/hostname"}


@pytest.mark.parametrize("replicas", ["0", "1"])
def test_one_replica_is_recreated_because_a_new_pod_cannot_get_the_old_ones_gpus(render, replicas):
    deployment = render("r", "--set", f"replicaCount={replicas}")["Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize("set_args", [
    ("cache.accessMode=ReadWriteMany",),
    ("cache.existingClaim=shared-weights",),
    ("cache.allowReadWriteOnceReplicas=true",),
])
def test_several_replicas_roll_one_at_a_time_without_a_surge_pod(render, set_args):
    args = [arg for set_arg in ("replicaCount=3", *set_args) for arg in ("--set", set_arg)]
    deployment = render("r", *args)["Deployment"]
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}


def test_replicas_on_an_existing_claim_need_no_access_mode_and_no_placement(render):
    objects = render("r", "--set", "replicaCount=2", "--set", "cache.existingClaim=shared-weights")
    assert "PersistentVolumeClaim" not in objects
    assert "affinity" not in pod_spec(objects["Deployment"])


@pytest.mark.parametrize("set_args", [(), ("cache.existingClaim=node-local-weights",)])
def test_read_write_once_replicas_are_put_on_one_node_when_allowed(render, set_args):
    args = [arg for set_arg in ("replicaCount=2", "cache.allowReadWriteOnceReplicas=true", *set_args)
            for arg in ("--set", set_arg)]
    assert pod_spec(render("r", *args)["Deployment"])["affinity"] == {
        "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [SAME_NODE]}}
    one = render("r", "--set", "cache.allowReadWriteOnceReplicas=true")["Deployment"]
    assert "affinity" not in pod_spec(one)


def test_the_same_node_affinity_is_added_to_the_users_own(tmp_path, render):
    own_term = {"labelSelector": {"matchLabels": {"app": "cache-warmer"}}, "topologyKey": "kubernetes.io/hostname"}
    node = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]}]}}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"replicaCount": 2, "cache": {"allowReadWriteOnceReplicas": True}, "affinity": {
        "nodeAffinity": node, "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [own_term]}}}))
    assert pod_spec(render("r", "-f", str(values))["Deployment"])["affinity"] == {
        "nodeAffinity": node, "podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [own_term, SAME_NODE]}}
    assert yaml.safe_load(values.read_text())["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] \
        == [own_term]


@pytest.mark.parametrize("set_args, expected", [
    ((), None),
    (("--set", "cache.storageClass=fast-ssd"), "fast-ssd"),
    (("--set", "cache.storageClass=-"), ""),
])
def test_an_unset_storage_class_means_the_cluster_default_never_an_empty_string(render, set_args, expected):
    spec = render("r", *set_args)["PersistentVolumeClaim"]["spec"]
    assert spec.get("storageClassName", None) == expected
    assert spec["accessModes"] == ["ReadWriteOnce"] and spec["resources"] == {"requests": {"storage": "300Gi"}}


def test_the_cache_claim_is_kept_on_uninstall_unless_told_otherwise(render):
    assert render()["PersistentVolumeClaim"]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert "annotations" not in render("r", "--set", "cache.keep=false")["PersistentVolumeClaim"]["metadata"]
    assert render("r", "--set", "cache.annotations.team=llm")["PersistentVolumeClaim"]["metadata"]["annotations"] == {
        "helm.sh/resource-policy": "keep", "team": "llm"}


def test_the_weights_are_read_only_for_the_server_and_the_compile_cache_is_on_the_same_claim(render):
    deployment = render()["Deployment"]
    mounts = mounts_of(container(deployment))
    assert mounts["/models/hf"] == {"name": "cache", "mountPath": "/models/hf", "subPath": "hf", "readOnly": True}
    assert mounts["/models/vllm-cache"] == {"name": "cache", "mountPath": "/models/vllm-cache",
                                            "subPath": "vllm-cache"}
    assert mounts_of(init_container(deployment))["/models"] == {"name": "cache", "mountPath": "/models"}
    assert volumes_of(deployment)["cache"] == {"name": "cache",
                                               "persistentVolumeClaim": {"claimName": "llama70b-vllm-cache"}}


def test_every_writable_path_on_the_read_only_root_is_an_emptydir_of_its_own(render):
    deployment = render()["Deployment"]
    volumes = volumes_of(deployment)
    for spec in (container(deployment), init_container(deployment)):
        assert spec["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = mounts_of(spec)
        home = env_of(spec)["HOME"]["value"]
        assert [mounts[path]["name"] for path in ("/tmp", home, "/run/tpserve")] == ["tmp", "home", "run"]
        assert not [mount for mount in mounts.values() if "subPath" in mount and mount["name"] != "cache"]
    assert mounts_of(container(deployment))["/run/tpserve"]["readOnly"] is True
    assert volumes["tmp"]["emptyDir"] == volumes["home"]["emptyDir"] == {"sizeLimit": "20Gi"}
    assert volumes["run"]["emptyDir"] == {"sizeLimit": "1Mi"}


def test_gpu_product_is_a_node_selector_shortcut(render):
    pod = pod_spec(render("r", "--set", "gpu.product=NVIDIA-H100-80GB-HBM3",
                          "--set", "nodeSelector.pool=gpu")["Deployment"])
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "pool": "gpu"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "nodeSelector" not in pod_spec(render()["Deployment"])


def test_runtime_class_priority_class_and_pull_secrets_reach_the_pod(render):
    pod = pod_spec(render("r", "--set", "runtimeClassName=nvidia", "--set", "priorityClassName=llm",
                          "--set", "imagePullSecrets[0]=regcred")["Deployment"])
    assert (pod["runtimeClassName"], pod["priorityClassName"]) == ("nvidia", "llm")
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_an_image_digest_pins_the_bytes_on_top_of_the_tag(render):
    digest = "sha256:" + "a" * 64
    assert container(render("r", "--set", f"image.digest={digest}")["Deployment"])["image"] == \
        f"docker.io/vllm/vllm-openai:v0.26.0@{digest}"


def test_the_network_policy_admits_only_the_serving_port_and_chosen_namespaces(render):
    assert render()["NetworkPolicy"]["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    spec = render("r", "--set", "networkPolicy.namespaces.apps=true",
                  "--set", "networkPolicy.namespaces.old=false")["NetworkPolicy"]["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}], "from": [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "vllm-test", "app.kubernetes.io/instance": "r"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}]}]
    assert "NetworkPolicy" not in render("r", "--set", "networkPolicy.enabled=false")


def test_the_network_policy_admits_the_monitoring_namespace_on_the_serving_port_when_sources_are_restricted(render):
    http = [{"port": "http", "protocol": "TCP"}]
    spec = render("r", "--set", "networkPolicy.namespaces.apps=true",
                  "--set", "networkPolicy.monitoringNamespace=monitoring")["NetworkPolicy"]["spec"]
    assert spec["ingress"][1:] == [{"ports": http, "from": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}]
    assert spec["ingress"][0]["from"][-1] == {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "apps"}}}
    # Without restricted sources every namespace is admitted already.
    open_policy = render("r", "--set", "networkPolicy.monitoringNamespace=monitoring")["NetworkPolicy"]["spec"]
    assert open_policy["ingress"] == [{"ports": http}]


MONITORING_WARNING = (
    "Warning: the ServiceMonitor is on, but the NetworkPolicy admits only the namespaces of networkPolicy.namespaces, "
    "so Prometheus cannot scrape /metrics unless it runs in one of them: set networkPolicy.monitoringNamespace to "
    "the namespace Prometheus runs in (e.g. --set networkPolicy.monitoringNamespace=monitoring).")


@pytest.mark.parametrize("set_args, warned", [
    (("metrics.serviceMonitor.enabled=true", "networkPolicy.namespaces.apps=true"), True),
    (("metrics.serviceMonitor.enabled=true", "networkPolicy.namespaces.apps=true",
      "networkPolicy.monitoringNamespace=monitoring"), False),
    (("metrics.serviceMonitor.enabled=true",), False),
    (("metrics.serviceMonitor.enabled=true", "networkPolicy.namespaces.apps=true", "networkPolicy.enabled=false"),
     False),
    (("networkPolicy.namespaces.apps=true",), False),
])
def test_notes_warn_when_the_network_policy_shuts_out_the_service_monitors_prometheus(tools, set_args, warned):
    args = [arg for set_arg in set_args for arg in ("--set", set_arg)]
    done = tools.helm_run("install", "llama70b", str(CHART), "--dry-run=client", "--namespace", "llm", *args)
    assert done.returncode == 0, done.stderr
    assert (MONITORING_WARNING in " ".join(done.stdout.split("NOTES:", 1)[1].split())) is warned


def test_the_service_monitor_and_pdb_render_only_when_enabled(render):
    assert {"ServiceMonitor", "PodDisruptionBudget"}.isdisjoint(render())
    objects = render("r", "--set", "metrics.serviceMonitor.enabled=true",
                     "--set", "podDisruptionBudget.enabled=true")
    assert objects["ServiceMonitor"]["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s"}]
    assert objects["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1


def test_the_helm_test_pod_runs_the_charts_client_with_the_serving_image_by_default(render):
    objects = render("r", "--set", "apiKey.secretName=keys", "--set", "image.digest=sha256:" + "a" * 64)
    pod = objects["Pod"]
    (load,) = pod["spec"]["containers"]
    assert load["image"] == container(objects["Deployment"])["image"] == \
        "docker.io/vllm/vllm-openai:v0.26.0@sha256:" + "a" * 64
    assert load["imagePullPolicy"] == "IfNotPresent"
    assert load["command"] == ["python3", "/opt/tpserve-chart/check/check_tokens.py"]
    assert load["args"] == ["--host", "http://r-vllm:8000", "--model", "meta-llama/Llama-2-70b-chat-hf",
                            "--requests", "16", "--concurrency", "4", "--max-tokens", "32", "--run-time", "10m"]
    env = env_of(load)
    assert {name: var.get("value") for name, var in env.items() if "value" in var} == {
        "HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "NVIDIA_VISIBLE_DEVICES": "void"}
    assert env["TPSERVE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "keys", "key": "api-key",
                                                                   "optional": False}
    assert mounts_of(load)["/opt/tpserve-chart/check"] == {"name": "check-code",
                                                           "mountPath": "/opt/tpserve-chart/check", "readOnly": True}
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    assert volumes["check-code"]["configMap"] == {"name": "r-vllm-fetch", "defaultMode": 0o444}
    assert objects["ConfigMap"]["data"]["check_tokens.py"] == CHECK_SCRIPT.read_text()
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert load["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_helm_test_pod_runs_tpserves_load_test_image_with_runner_locust(render):
    objects = render("r", "--set", "apiKey.secretName=keys", "--set", "tests.runner=locust")
    pod = objects["Pod"]
    (load,) = pod["spec"]["containers"]
    assert load["image"] == "tpserve-loadtest:0.1.0"
    assert "command" not in load
    assert load["args"] == ["--headless", "--users", "4", "--spawn-rate", "4", "--run-time", "10m",
                            "--host", "http://r-vllm:8000"]
    env = env_of(load)
    assert {name: var.get("value") for name, var in env.items() if "value" in var} == {
        "HOME": "/tmp", "TPSERVE_MODEL": "meta-llama/Llama-2-70b-chat-hf", "TPSERVE_NUM_REQUESTS": "16",
        "TPSERVE_MAX_TOKENS": "32", "TPSERVE_MAX_ERROR_RATE": "0", "NVIDIA_VISIBLE_DEVICES": "void"}
    assert env["TPSERVE_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "keys", "key": "api-key",
                                                                   "optional": False}
    assert [volume["name"] for volume in pod["spec"]["volumes"]] == ["tmp", "results"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_an_unknown_test_runner_is_refused_by_the_schema(render_error):
    assert "at '/tests/runner': value must be one of 'serving', 'locust'" in render_error("--set", "tests.runner=k6")


def test_notes_print_the_port_forward_and_locust_commands_for_the_release(tools):
    done = tools.helm_run("install", "llama70b", str(CHART), "--dry-run=client", "--namespace", "llm")
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "  kubectl port-forward svc/llama70b-vllm 8000:8000 --namespace llm\n" in notes
    assert "  locust -f loadtest/prompts.py --headless -u 8 -r 8 --host http://localhost:8000\n" in notes
    assert "  helm test llama70b --namespace llm --logs\n" in notes
    assert "TPSERVE_API_KEY" not in notes


def test_notes_wait_as_long_as_the_rollout_deadline_and_say_helm_wait_needs_that_timeout(tools):
    done = tools.helm_run("install", "llama70b", str(CHART), "--dry-run=client", "--namespace", "llm",
                          "--set", "fetch.maxSeconds=5400")
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    deadline = 5400 + 1755 + 100 + 600
    assert f"  kubectl rollout status deployment/llama70b-vllm --timeout={deadline}s --namespace llm\n" in notes
    assert (f"`helm install --wait` or `helm upgrade --wait` needs `--timeout {deadline}s` or longer: "
            "Helm's default of 5m0s reports a first install that is still downloading as failed.") in " ".join(
        notes.split())


def test_notes_tell_how_to_pass_the_api_key_to_locust(tools):
    done = tools.helm_run("install", "llama70b", str(CHART), "--dry-run=client", "--namespace", "llm",
                          "--set", "apiKey.secretName=keys")
    assert done.returncode == 0, done.stderr
    assert ("  export TPSERVE_API_KEY=\"$(kubectl get secret keys --namespace llm -o jsonpath='{.data.api-key}' "
            "| base64 -d)\"\n  locust -f loadtest/prompts.py") in done.stdout.split("NOTES:", 1)[1]


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


def test_templates_stay_small_define_only_vllm_helpers_and_one_object_each():
    for path in sorted((CHART / "templates").rglob("*")):
        if not path.is_file():
            continue
        text = path.read_text()
        assert len(text.splitlines()) <= 150, f"{path.name} has {len(text.splitlines())} lines: split out a helper"
        for name in re.findall(r'define "([^"]+)"', text):
            assert name.startswith("vllm."), f"{path.name} defines {name}, not prefixed vllm."
        if path.suffix == ".yaml":
            assert len(re.findall(r"^kind:", text, re.MULTILINE)) == 1, f"{path.name} holds more than one object"


def test_image_tags_are_fixed():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for image in (values["image"], values["tests"]["image"]):
        assert image["tag"] not in ("", "latest") and re.search(r"\d", image["tag"])


def test_fetch_offline_verifies_the_claims_hub_cache_without_the_network_or_a_token(render):
    init = init_container(render("r", "--set", "fetch.offline=true")["Deployment"])
    assert init["args"][-3:] == ["--offline", "--from", "/models/hf/hub"]
    env = env_of(init)
    assert env["HF_HUB_OFFLINE"]["value"] == "1"
    assert "HF_TOKEN" not in env
    online = init_container(render()["Deployment"])
    assert "--offline" not in online["args"] and "HF_HUB_OFFLINE" not in env_of(online)


@pytest.mark.parametrize("billions", [68.98, 6.74, 405.85, 0.01, 0])
def test_the_startup_window_is_derived_from_the_models_size_as_tpserve_derives_it(render, billions):
    from tpserve.startup import startup_window_seconds

    deployment = render("r", "--set", "model.name=example/shape", "--set", f"model.parameterBillions={billions}",
                        "--set", "gpu.memoryGiB=0")["Deployment"]
    window = startup_window_seconds(billions)
    assert container(deployment)["startupProbe"]["failureThreshold"] == -(-window // 10)
    assert deployment["spec"]["progressDeadlineSeconds"] == 3600 + window + 100 + 600


def test_a_startup_window_given_in_seconds_wins_over_the_derived_one(render):
    deployment = render("r", "--set", "startup.maxLoadSeconds=600")["Deployment"]
    assert container(deployment)["startupProbe"]["failureThreshold"] == 60
    assert deployment["spec"]["progressDeadlineSeconds"] == 3600 + 600 + 100 + 600
