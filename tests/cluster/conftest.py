"""Fixtures of the cluster test: a real single-node Kubernetes (tools/cluster), the images, the hub stand-in.

Every test here is marked ``cluster`` and deselected from ``make test``; ``make cluster-test`` selects them.
The session starts the cluster unless one is up already, and takes down what it started, also on failure.
Commands run through a shell with PATH holding the pinned helm and kubectl and the project's locust, and
KUBECONFIG naming the cluster's: the README's lines run as a user types them.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.hubfake import HubFake
from tests.chart.conftest import TOOLS_BIN
from tests.conftest import REPO, wait_until
from tests.pod.model import REPO_ID, tiny_llama_files

sys.path.insert(0, str(REPO / "tools" / "cluster"))
import versions

CLUSTER_TOOL = REPO / "tools" / "cluster"
WORK = versions.CACHE / "test"
TIMINGS = WORK / "timings.json"
SERVING_IMAGE = "localhost/tpserve-cpu:0.1.0"
# The chart's in-cluster load test (loadtest.enabled, tests/cluster/test_loadtest.py) runs this one.
LOADTEST_IMAGE = "localhost/tpserve-loadtest:0.1.0"
NAMESPACE = "default"
RELEASE = "llama70b"
FULLNAME = f"{RELEASE}-vllm"
# Generous bounds for a busy 2-core CI box; every wait returns as soon as its condition holds.
ROLLOUT_TIMEOUT = "20m"
ROLLOUT_TIMEOUT_S = 1200
SELECTOR = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=server"
# The README's line for the token Secret, as written there (the hub stand-in takes any token).
README_TOKEN = "hf_..."
TOKEN_LINE = f"kubectl create secret generic hf-token --from-literal=token={README_TOKEN}"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.cluster)


@dataclass
class Report:
    """The seconds each step took and the facts it found; printed at the end and kept in WORK."""

    timings: dict[str, float] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)

    def time(self, step: str, since: float) -> float:
        self.timings[step] = round(time.monotonic() - since, 1)
        return self.timings[step]


REPORT = Report()


def summarize(terminalreporter, title: str, path: Path) -> None:
    """Print REPORT's timings and facts under TITLE at the end of the run, and keep them in PATH."""
    if not (REPORT.timings or REPORT.facts):
        return
    terminalreporter.section(title)
    for name, seconds in REPORT.timings.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f}")
    for name, value in REPORT.facts.items():
        terminalreporter.write_line(f"{name}: {value}")
    WORK.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"timings_s": REPORT.timings, "facts": REPORT.facts}, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter):
    summarize(terminalreporter, "cluster test: timings (s) and facts", TIMINGS)


@dataclass(frozen=True)
class Shell:
    """Commands as a user types them, against the test cluster."""

    env: dict[str, str]

    def run(self, line: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=self.env, cwd=REPO,
                              timeout=timeout, check=False)
        if check:
            assert done.returncode == 0, f"{line}\nexit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        return done

    def popen(self, line: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["bash", "-c", f"exec {line}"], env=self.env, cwd=REPO, text=True,
                                start_new_session=True, **kwargs)

    def json(self, line: str) -> dict:
        return json.loads(self.run(line).stdout)

    def kubectl_json(self, *args: str) -> dict:
        return self.json("kubectl " + " ".join(shlex.quote(arg) for arg in args) + " -o json")


def _cluster_tool(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLUSTER_TOOL), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def images() -> None:
    """The serving image and the load-test image, built or reused by tools/pod_images.py (the pod test's)."""
    WORK.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with (WORK / "images.log").open("w") as out:
        done = subprocess.run([sys.executable, "tools/pod_images.py"], cwd=REPO, stdout=out,
                              stderr=subprocess.STDOUT, timeout=3600, check=False)
    assert done.returncode == 0, f"the image build failed; see {WORK / 'images.log'}"
    REPORT.time("images (built or reused)", start)


@pytest.fixture(scope="session")
def cluster(images):
    """The cluster, up, with the serving image loaded; taken down at the end when this session started it."""
    started_here = _cluster_tool("status", timeout=60).returncode != 0
    if started_here:
        _cluster_tool("down", timeout=300)
        start = time.monotonic()
        up = _cluster_tool("up", timeout=3600)
        (WORK / "up.log").write_text(up.stdout + up.stderr)
        if up.returncode != 0:
            _cluster_tool("down", timeout=300)
            pytest.fail(f"tools/cluster up failed:\n{up.stdout[-2000:]}\n{up.stderr[-3000:]}")
        REPORT.time("cluster up (build or reuse, start, node Ready, DNS)", start)
        up_times = versions.CACHE / "up-times.json"
        if up_times.is_file():
            for step, seconds in json.loads(up_times.read_text()).items():
                REPORT.timings[f"cluster up: {step}"] = seconds
    for image in (SERVING_IMAGE, LOADTEST_IMAGE):
        start = time.monotonic()
        loaded = _cluster_tool("load", image, timeout=1800)
        assert loaded.returncode == 0, loaded.stdout + loaded.stderr
        REPORT.time(f"load {image} into containerd", start)
    try:
        yield
    finally:
        if started_here:
            down = _cluster_tool("down", timeout=600)
            (WORK / "down.log").write_text(down.stdout + down.stderr)
            assert down.returncode == 0, down.stdout + down.stderr


@pytest.fixture(scope="session")
def shell(cluster, tmp_path_factory) -> Shell:
    """PATH: the pinned helm and kubectl, then the project's virtualenv (locust, tpserve); KUBECONFIG: the
    cluster's; HOME and helm's folders: fresh."""
    home = tmp_path_factory.mktemp("cluster-home")
    path = os.pathsep.join([str(TOOLS_BIN), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "KUBECONFIG": str(versions.KUBECONFIG), "HOME": str(home),
           "HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    shell = Shell(env)
    shell.run(f"{shlex.quote(sys.executable)} tools/k8s_tools.py {shlex.quote(str(TOOLS_BIN))}")
    return shell


@pytest.fixture(scope="session")
def hub(cluster, tmp_path_factory):
    """The hub stand-in with the tiny Llama, on the node's address (made by tools/cluster): pods reach it
    there, and nothing else does."""
    fake = HubFake(versions.NODE_IP).start()
    fake.valid_tokens.add(README_TOKEN)
    files = tiny_llama_files(tmp_path_factory.mktemp("tiny-llama"))
    fake.sha = fake.publish(REPO_ID, files)
    fake.files = files
    yield fake
    fake.stop()


def cpu_values(hub: HubFake, revision: str | None = None) -> str:
    """The values a CPU cluster needs besides values-cpu.yaml (docs/cluster-test.md names each): the tiny
    model and its heads, the hub stand-in's address for the init container, CPU requests that fit 2 cores."""
    return " ".join([
        "-f charts/vllm/values-cpu.yaml",
        f"--set model.name={REPO_ID}", f"--set model.revision={revision or hub.sha}",
        "--set model.attentionHeads=4", "--set model.kvHeads=4", "--set model.layers=2",
        "--set model.parameterBillions=0", "--set model.hiddenSize=128",
        f"--set fetch.extraEnv.HF_ENDPOINT={hub.url}",
        # Requests, not limits: the node has 2 cores, and values-cpu.yaml's 2 would leave none for the helm test
        # pod or a second release. vLLM still uses both cores (no CPU limit is set).
        "--set resources.cpu=500m", "--set fetch.resources.cpu=500m",
    ])


# How long a pod may stay unschedulable for want of CPU or memory before the wait gives up: the scheduler retries
# when a pod that frees some goes, which on this cluster is within seconds of a test's uninstall.
UNSCHEDULABLE_S = 180


def unschedulable(pod: dict) -> str:
    """The scheduler's reason when it finds no node with the CPU or memory POD requests, else ''."""
    for condition in pod.get("status", {}).get("conditions", []):
        if (condition["type"] == "PodScheduled" and condition["status"] == "False"
                and "Insufficient" in condition.get("message", "")):
            return condition["message"]
    return ""


def wait_ready_pod(shell: Shell, selector: str, timeout_s: float = ROLLOUT_TIMEOUT_S, exclude: str = "") -> dict:
    """The server pod (by label SELECTOR, other than EXCLUDE) once it is Ready. Fails early, saying what holds the
    node's requests, when a pod stays unschedulable for want of CPU or memory (something left running)."""
    since: dict[str, float] = {}

    def ready():
        pods = shell.kubectl_json("get", "pods", "-l", selector)["items"]
        for pod in pods:
            name = pod["metadata"]["name"]
            if name == exclude or pod["metadata"].get("deletionTimestamp"):
                continue
            conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
            if conditions.get("Ready") == "True":
                return pod
            if not (reason := unschedulable(pod)):
                since.pop(name, None)
            elif time.monotonic() - since.setdefault(name, time.monotonic()) > UNSCHEDULABLE_S:
                held = shell.run("kubectl get pods --all-namespaces -o wide; kubectl describe node", check=False)
                raise AssertionError(f"pod {name} unschedulable for {UNSCHEDULABLE_S} s: {reason}\n"
                                     f"{held.stdout[-4000:]}")
        return None
    return wait_until(ready, f"a Ready pod with {selector}", timeout_s, poll_s=1)


@pytest.fixture(scope="session")
def installed(shell: Shell, hub):
    """The user's first steps: a namespace that enforces the restricted Pod Security Standard, the token
    Secret, `helm install --wait`. The server pod as the API server has it, once Ready. The release and its claim
    go at the end: the scale-out test that follows on this cluster needs the node's memory for servers of its own."""
    shell.run("kubectl label namespace default pod-security.kubernetes.io/enforce=restricted "
              "pod-security.kubernetes.io/enforce-version=latest --overwrite")
    shell.run(TOKEN_LINE)
    hub.requests.clear()
    start = time.monotonic()
    done = shell.run(f"helm install {RELEASE} charts/vllm {cpu_values(hub)} --wait --timeout {ROLLOUT_TIMEOUT}",
                     timeout=1500, check=False)
    REPORT.time("helm install --wait (fetch, vLLM start, Ready)", start)
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n" + shell.run(
        f"kubectl describe pods -l {SELECTOR}; kubectl get events", check=False).stdout[-4000:]
    try:
        pod = wait_ready_pod(shell, SELECTOR)
        yield {"pod": pod, "install": done, "hub_requests": list(hub.requests)}
    finally:
        shell.run(f"helm uninstall {RELEASE} --wait", timeout=600, check=False)
        shell.run(f"kubectl delete pvc {FULLNAME}-cache --wait=false", check=False)
