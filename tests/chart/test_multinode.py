"""multiNode: one server over several nodes as a LeaderWorkerSet running vLLM's native multi-node launch."""

from __future__ import annotations

import pytest

from tests.chart.conftest import CHART, env_of, mounts_of
from tests.chart.test_validation import problems

SHA_70B = "e9149a12809580e8602995856f8098ce973d1080"
PATH_70B = f"/models/hf/tpserve/meta-llama--Llama-2-70b-chat-hf/{SHA_70B}"
# Llama-2-70b over 2 nodes of 8 GPUs: tensor parallel inside a node, the two pipeline stages across.
TWO_NODES = ("--set", "multiNode.enabled=true", "--set", "parallelism.tensor=8", "--set", "parallelism.pipeline=2")


def templates(lws: dict) -> tuple[dict, dict]:
    spec = lws["spec"]["leaderWorkerTemplate"]
    return spec["leaderTemplate"], spec["workerTemplate"]


def server(template: dict) -> dict:
    (only,) = template["spec"]["containers"]
    return only


@pytest.fixture(scope="module")
def objects(render):
    return render("llama70b", *TWO_NODES)


def test_multinode_is_off_by_default_and_replaces_the_deployment_when_on(render, objects):
    assert "LeaderWorkerSet" not in render("llama70b")
    assert {kind: obj["metadata"]["name"] for kind, obj in objects.items()} == {
        "Service": "llama70b-vllm", "LeaderWorkerSet": "llama70b-vllm", "NetworkPolicy": "llama70b-vllm",
        "ConfigMap": "llama70b-vllm-fetch", "Pod": "llama70b-vllm-test-load"}
    assert objects["LeaderWorkerSet"]["apiVersion"] == "leaderworkerset.x-k8s.io/v1"


def test_a_group_is_one_leader_and_its_workers_recreated_together_and_started_together(objects):
    spec = objects["LeaderWorkerSet"]["spec"]
    assert spec["replicas"] == 1
    assert spec["startupPolicy"] == "LeaderCreated"
    assert spec["rolloutStrategy"] == {"type": "RollingUpdate",
                                       "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0}}
    assert spec["leaderWorkerTemplate"]["size"] == 2
    assert spec["leaderWorkerTemplate"]["restartPolicy"] == "RecreateGroupOnPodRestart"


def test_the_leader_serves_rank_0_and_the_workers_join_it_headless(objects):
    leader, worker = (server(t) for t in templates(objects["LeaderWorkerSet"]))
    common = ["--model", PATH_70B, "--served-model-name", "meta-llama/Llama-2-70b-chat-hf",
              "--tensor-parallel-size", "8", "--pipeline-parallel-size", "2", "--dtype", "auto",
              "--host", "0.0.0.0", "--port", "8000", "--compilation-config",
              '{"pass_config": {"fuse_allreduce_rms": false}}', "--shutdown-timeout", "60", "--nnodes", "2"]
    rendezvous = ["--master-addr", "$(LWS_LEADER_ADDRESS)", "--master-port", "29501"]
    assert leader["command"] == worker["command"] == ["vllm", "serve"]
    assert leader["args"] == [*common, "--node-rank", "0", *rendezvous]
    assert worker["args"] == [*common, "--node-rank", "$(LWS_WORKER_INDEX)", *rendezvous, "--headless"]


def test_each_pod_requests_its_share_of_the_gpus(objects):
    for template in templates(objects["LeaderWorkerSet"]):
        resources = server(template)["resources"]
        assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 8


def test_only_the_leader_serves_http_and_is_probed_the_worker_has_no_probe_to_fail(objects):
    leader, worker = (server(t) for t in templates(objects["LeaderWorkerSet"]))
    assert leader["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"},
                               {"name": "dist", "containerPort": 29501, "protocol": "TCP"}]
    assert leader["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    # Llama-2-70b's load window, derived from its size (docs/chart.md "Startup budget").
    assert leader["startupProbe"]["failureThreshold"] * leader["startupProbe"]["periodSeconds"] >= 1755
    assert not {"ports", "startupProbe", "readinessProbe", "livenessProbe", "lifecycle"} & set(worker)


def test_the_leaders_liveness_is_the_progress_probe_which_catches_a_group_stalled_by_a_lost_worker(objects):
    """Measured: with its worker lost the leader's /health stays 200 while its requests make no progress."""
    leader, worker = (server(t) for t in templates(objects["LeaderWorkerSet"]))
    command = leader["livenessProbe"]["exec"]["command"]
    assert command[:2] == ["python3", "/opt/tpserve-chart/check/progress_probe.py"]
    assert command[command.index("--stall-seconds") + 1] == "180"
    assert mounts_of(leader)["/opt/tpserve-chart/check"]["readOnly"] is True
    assert "/opt/tpserve-chart/check" not in mounts_of(worker)


def test_every_pod_gets_the_same_fetch_security_shm_and_its_pod_ip_as_vllm_host_ip(objects):
    leader, worker = templates(objects["LeaderWorkerSet"])
    assert leader["spec"]["initContainers"] == worker["spec"]["initContainers"]
    (fetch,) = leader["spec"]["initContainers"]
    assert fetch["args"][fetch["args"].index("--pipeline-parallel-size") + 1] == "2"
    for template in (leader, worker):
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert server(template)["securityContext"]["readOnlyRootFilesystem"] is True
        assert mounts_of(server(template))["/dev/shm"]["name"] == "dshm"
        assert env_of(server(template))["VLLM_HOST_IP"] == {
            "name": "VLLM_HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}
        assert template["metadata"]["labels"]["app.kubernetes.io/instance"] == "llama70b"


def test_leader_and_worker_pods_are_the_deployments_pod_but_for_the_servers_command_probes_and_cache(render):
    """One pod spec (vllm.podSpec) for every role, so hardening checked on the Deployment holds for the group."""
    deployment = render("llama70b", "--set", "parallelism.tensor=8", "--set", "parallelism.pipeline=2",
                        "--set", "gpu.perNode=16")["Deployment"]["spec"]["template"]
    for template in templates(render("llama70b", *TWO_NODES)["LeaderWorkerSet"]):
        pod, single = dict(template["spec"]), dict(deployment["spec"])
        pod_server, single_server = dict(pod.pop("containers")[0]), dict(single.pop("containers")[0])
        assert [v for v in single.pop("volumes") if v["name"] != "cache"] == pod.pop("volumes")
        assert pod == single
        for key in ("command", "args", "env", "ports", "startupProbe", "readinessProbe", "livenessProbe",
                    "lifecycle", "resources"):
            pod_server.pop(key, None)
            single_server.pop(key)
        # Only the probed roles mount the probe's script.
        probe_mount = "/opt/tpserve-chart/check"
        pod_mounts = [m for m in pod_server.pop("volumeMounts") if m["mountPath"] != probe_mount]
        assert pod_mounts == [m for m in single_server.pop("volumeMounts") if m["mountPath"] != probe_mount]
        assert pod_server == single_server
        assert template["metadata"] == deployment["metadata"]


def test_fabric_settings_reach_leader_and_workers_only_when_set(render):
    lws = render("r", *TWO_NODES, "--set-json", 'multiNode.env={"NCCL_SOCKET_IFNAME": "eth0", "NCCL_IB_HCA": "mlx5"}')[
        "LeaderWorkerSet"]
    for template in templates(lws):
        env = env_of(server(template))
        assert (env["NCCL_SOCKET_IFNAME"]["value"], env["NCCL_IB_HCA"]["value"]) == ("eth0", "mlx5")
    assert "NCCL" not in str(render("r", *TWO_NODES)["LeaderWorkerSet"])
    assert "VLLM_HOST_IP" not in str(render("r")["Deployment"])


def test_each_pod_gets_a_cache_claim_of_its_own_kept_on_scale_down_and_uninstall(objects, render):
    template = objects["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
    (claim,) = template["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "cache"
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "300Gi"}}}
    assert template["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    for pod in templates(objects["LeaderWorkerSet"]):
        assert "cache" not in {volume["name"] for volume in pod["spec"]["volumes"]}
    dropped = render("r", *TWO_NODES, "--set", "cache.keep=false")["LeaderWorkerSet"]
    assert dropped["spec"]["leaderWorkerTemplate"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete"


def test_an_existing_claim_is_mounted_by_every_pod_instead(render):
    objects = render("r", *TWO_NODES, "--set", "cache.existingClaim=shared-weights")
    template = objects["LeaderWorkerSet"]["spec"]["leaderWorkerTemplate"]
    assert "volumeClaimTemplates" not in template and "PersistentVolumeClaim" not in objects
    for pod in templates(objects["LeaderWorkerSet"]):
        volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
        assert volumes["cache"]["persistentVolumeClaim"] == {"claimName": "shared-weights"}


def test_the_service_selects_only_the_leaders_and_the_group_reaches_itself_on_every_port(objects):
    assert objects["Service"]["spec"]["selector"] == {
        "app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "llama70b",
        "leaderworkerset.sigs.k8s.io/worker-index": "0"}
    ingress = objects["NetworkPolicy"]["spec"]["ingress"]
    assert {"from": [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": "llama70b"}}}]} in ingress


def test_a_moving_revision_is_refused_since_each_pod_of_a_group_would_resolve_it_on_its_own(render_error):
    assert ("model.allowMovingRevision=true with multiNode.enabled=true: each pod of a group resolves the branch on "
            "its own, so the ranks of one server could load different commits; pin model.revision to a 40-hex "
            "commit sha") in problems(render_error(*TWO_NODES, "--set", "model.revision=main",
                                                   "--set", "model.allowMovingRevision=true"))


@pytest.mark.parametrize(("args", "expected"), [
    (("--set", "parallelism.tensor=4", "--set", "parallelism.pipeline=3", "--set", "multiNode.nodes=5"),
     ("parallelism.tensor × parallelism.pipeline = 4 × 3 = 12 GPUs cannot be split evenly over multiNode.nodes=5 "
     "pods (vLLM's --nnodes must divide the world size): make tensor × pipeline a multiple of 5, e.g. tensor = "
     "the GPUs of one node and pipeline = 5")),
    (("--set", "parallelism.tensor=8", "--set", "parallelism.pipeline=4"),
     ("parallelism.tensor × parallelism.pipeline / multiNode.nodes = 32 / 2 = 16 GPUs per pod, more than "
     "gpu.perNode=8: raise multiNode.nodes, lower the parallelism, or raise gpu.perNode if your nodes have more GPUs")),
    (("--set", "parallelism.tensor=4", "--set", "parallelism.pipeline=3"),
     ("parallelism.tensor=4 does not fit pods of 6 GPUs: a tensor-parallel group would straddle part of a node, "
     "so use a tensor size that divides 6 or is a multiple of it")),
    (("--set", "model.name=example/shape", "--set", "parallelism.tensor=2", "--set", "model.layers=1",
      "--set", "parallelism.pipeline=2"),
     "parallelism.pipeline=2 is more than model.layers=1: every pipeline stage needs at least one layer, so lower it"),
    (("--set", "image.tpserve=true"),
     ("multiNode.enabled needs the official vLLM image (image.tpserve=false): the workers run `vllm serve "
     "--headless`, which `tpserve serve` does not start")),
    (("--set", "cache.allowReadWriteOnceReplicas=true"),
     ("cache.allowReadWriteOnceReplicas is for the Deployment's one shared claim; with multiNode.enabled every pod "
     "gets a claim of its own (or mounts cache.existingClaim, which must then be ReadWriteMany): remove it")),
    (("--set", "multiNode.masterPort=8000"),
     "multiNode.masterPort=8000 is the server's HTTP port: pick another, e.g. 29501"),
    (("--set-string", "multiNode.env.LWS_WORKER_INDEX=1"),
     "multiNode.env.LWS_WORKER_INDEX is set in every pod by the LeaderWorkerSet controller: remove it"),
    (("--set", "vllm.extraEnv.VLLM_HOST_IP=10.0.0.1"),
     "vllm.extraEnv.VLLM_HOST_IP is set by the chart to the pod's IP: remove it"),
    (("--set", "multiNode.env.HF_HOME=/x"), "multiNode.env.HF_HOME is set by the chart; remove it"),
    (("--set", "vllm.extraArgs.headless=true"), ("vllm.extraArgs.headless is set by the chart: use the chart (on "
                                                 "multiNode workers)")),
    (("--set", "vllm.extraArgs.master-port=1234"), ("vllm.extraArgs.master-port is set by the chart: use "
                                                    "multiNode.masterPort")),
])
def test_impossible_multinode_layouts_are_refused_with_the_fix(render_error, args, expected):
    assert problems(render_error("--set", "multiNode.enabled=true", "--set", "parallelism.tensor=8",
                                 "--set", "parallelism.pipeline=2", *args)) == [expected]


def test_every_multinode_problem_is_reported_at_once(render_error):
    stderr = render_error(*TWO_NODES, "--set", "image.tpserve=true", "--set", "multiNode.masterPort=8000",
                          "--set", "parallelism.pipeline=3")
    assert len(problems(stderr)) == 3
    assert "the values of chart vllm have 3 problem(s); nothing was applied:" in stderr


def test_a_group_of_one_is_refused_by_the_schema(render_error):
    assert "/multiNode/nodes" in render_error(*TWO_NODES, "--set", "multiNode.nodes=1")


def test_helm_lint_strict_passes_with_multinode(tools):
    done = tools.helm_run("lint", "--strict", str(CHART), *TWO_NODES)
    assert done.returncode == 0, done.stdout + done.stderr


def test_notes_say_what_the_cluster_needs_and_how_to_wait_for_the_group(tools):
    done = tools.helm_run("install", "llama70b", str(CHART), "--dry-run=client", "--namespace", "llm", *TWO_NODES)
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "LeaderWorkerSet controller (leaderworkerset.x-k8s.io/v1, with volumeClaimTemplates)" in notes
    assert "  kubectl logs --follow llama70b-vllm-0 --container fetch-model --namespace llm\n" in notes
    assert "  kubectl wait --for=condition=Available leaderworkerset/llama70b-vllm --timeout=" in notes
    assert "rollout status deployment" not in notes
