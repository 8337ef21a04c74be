"""Fixtures of the pod test: the images, the hub stand-in, the chart rendered with the CPU profile, podman.

Every test here is marked ``pod`` and deselected from ``make test`` (pyproject's addopts); ``make pod-test``
selects them. Nothing is left running: pods, volumes and the tmpfs for /dev/shm go at the end, also on
failure, and leftovers of an interrupted run go at the start.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lab.hubfake import HubFake
from tests.chart.conftest import CHART, load_tool, tools  # noqa: F401  (the pinned helm, as tests/chart uses it)
from tests.conftest import REPO, free_port
from tests.pod import kubeplay
from tests.pod.kubeplay import Site
from tests.pod.model import REPO_ID, tiny_llama_files

RELEASE = "tiny"
FULLNAME = f"{RELEASE}-vllm"
SERVER_POD = f"{FULLNAME}-pod-0"
TEST_POD = f"{FULLNAME}-test-load"
CLAIM = f"{FULLNAME}-cache"
SHM_VOLUME = f"{FULLNAME}-dshm"
CONFIGMAP_VOLUME = f"{FULLNAME}-fetch"
# The address a container reaches the host by on podman's default network (its bridge's gateway).
HOST_FROM_PODS = "host.containers.internal"
BASE_IMAGE = load_tool("pod_images").BASE
WORK = REPO / ".cache" / "pod-test"
BUILD_TIMINGS = WORK / "build-times.json"
TIMINGS = WORK / "timings.json"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.pod)


@dataclass
class Report:
    """What the run measured and changed, printed at the end and written to .cache/pod-test/timings.json."""

    changes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    facts: dict[str, object] = field(default_factory=dict)


REPORT = Report()


def pytest_terminal_summary(terminalreporter):
    if not (REPORT.changes or REPORT.timings):
        return
    terminalreporter.section("pod test: what podman played differently from Kubernetes")
    for change in REPORT.changes:
        terminalreporter.write_line(f"- {change}")
    terminalreporter.section("pod test: timings (s) and facts")
    for name, seconds in REPORT.timings.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f}")
    for name, value in REPORT.facts.items():
        terminalreporter.write_line(f"{name}: {value}")
    WORK.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(json.dumps({"timings_s": REPORT.timings, "facts": REPORT.facts,
                                   "changes": REPORT.changes}, indent=2) + "\n")


@pytest.fixture(scope="session")
def images() -> list[dict]:
    """The three images the default `helm test` runner needs, built or reused (tools/pod_images.py, without the
    load-test image of tests.runner=locust); their build seconds are reported."""
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / "build.log"
    with log.open("w") as out:
        done = subprocess.run([sys.executable, "tools/pod_images.py", "--timings", str(BUILD_TIMINGS),
                               "--no-loadtest"], cwd=REPO,
                              stdout=out, stderr=subprocess.STDOUT, timeout=3600, check=False)
    assert done.returncode == 0, f"the image build failed; see {log}:\n{log.read_text()[-3000:]}"
    steps = json.loads(BUILD_TIMINGS.read_text())
    for step in steps:
        REPORT.timings[f"image {step['image']} ({'built or cached' if step['built'] else 'present'})"] = \
            step["seconds"]
    return steps


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """The hub stand-in with the tiny Llama published; reachable from pods at host.containers.internal.

    It listens on every address of the host: the pods' bridge (podman's gateway) exists only while a
    container runs, so it cannot be bound to alone beforehand.
    """
    fake = HubFake("0.0.0.0", url_host=HOST_FROM_PODS).start()
    files = tiny_llama_files(tmp_path_factory.mktemp("tiny-llama"))
    fake.sha = fake.publish(REPO_ID, files)
    fake.files = files
    yield fake
    fake.stop()


def _cleanup() -> None:
    """Remove the release's pods and volumes. The emptyDirs' volumes carry the chart's plain names (tmp,
    home, run): `podman kube down` of this test's own manifests removes them, and nothing else here
    deletes volumes of those names, which a user of this machine might own."""
    for manifest in sorted(WORK.glob("*.yaml")):
        kubeplay.down(manifest)
    for pod in (SERVER_POD, TEST_POD):
        kubeplay.run("podman", "pod", "rm", "--force", "--ignore", pod, check=False)
    kubeplay.run("podman", "volume", "rm", "--force", CLAIM, SHM_VOLUME, CONFIGMAP_VOLUME, check=False)


@pytest.fixture(scope="session")
def site(images, tmp_path_factory):
    """The claim's volume (owned by uid 1000 with its two subPath folders), a tmpfs volume for /dev/shm
    and a free host port; all removed at the end, whatever happened."""
    _cleanup()
    kubeplay.run("podman", "volume", "create", CLAIM)
    claim_path = Path(kubeplay.run("podman", "volume", "inspect", "--format", "{{.Mountpoint}}", CLAIM).stdout.strip())
    values = yaml.safe_load((CHART / "values-cpu.yaml").read_text())
    shm_bytes = int(values["shm"]["sizeLimit"].removesuffix("Gi")) * 2**30
    kubeplay.run("podman", "volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                 # nr_blocks, not size: podman 4.3 takes size= for an XFS quota and refuses it here.
                 "--opt", f"o=nr_blocks={shm_bytes // 4096},mode=1777", SHM_VOLUME)
    # podman's first mount of a new volume copies the image folder's owner and mode onto it: at /dev/shm that
    # is root 0755, which uid 1000 cannot write. A first mount where the image has nothing avoids it.
    kubeplay.run("podman", "run", "--rm", "--network", "none", "-v", f"{SHM_VOLUME}:/tpserve-first-mount",
                 BASE_IMAGE, "true")
    REPORT.changes.append(f"tmpfs volume {SHM_VOLUME}: mounted once where the image has no folder before the "
                          "play, because podman's first mount of a new volume copies the image's /dev/shm owner "
                          "and mode (root, 0755) onto it and uid 1000 could not write there")
    results = tmp_path_factory.mktemp("helm-test-results")
    results.chmod(0o777)
    yield Site(claim_volume=CLAIM, claim_path=claim_path, shm_volume=SHM_VOLUME, host_port=free_port(),
               host_address=HOST_FROM_PODS, results_dir=results)
    _cleanup()


def prepare_claim(site: Site) -> None:
    """The subPath folders, made as the init container makes them (uid 1000) before the server mounts them."""
    for folder in (site.claim_path, site.claim_path / "hf", site.claim_path / "vllm-cache"):
        folder.mkdir(exist_ok=True)
        subprocess.run(["chown", "1000:1000", str(folder)], check=True)


@pytest.fixture(scope="session")
def render(tools, hub):  # noqa: F811
    """``render(revision)`` -> the chart's objects with the CPU profile, the stand-in model and hub."""

    def render(revision: str) -> list[dict]:
        done = tools.helm_run(
            "template", RELEASE, str(CHART), "-f", str(CHART / "values-cpu.yaml"),
            "--set", f"model.name={REPO_ID}", "--set", f"model.revision={revision}",
            "--set", "model.attentionHeads=4", "--set", "model.kvHeads=4", "--set", "model.layers=2",
            "--set", "model.parameterBillions=0", "--set", "model.hiddenSize=128",
            # The stand-in model is public: no token Secret (podman kube play rejects kind: Secret anyway).
            "--set", "hfToken.secretName=",
            "--set", f"fetch.extraEnv.HF_ENDPOINT={hub.url}")
        assert done.returncode == 0, done.stderr
        return [doc for doc in yaml.safe_load_all(done.stdout) if doc]

    return render


def startup_budget_s(objects: list[dict]) -> int:
    """The server's startup budget as the chart renders it: startupProbe periodSeconds × failureThreshold."""
    (deployment,) = [obj for obj in objects if obj["kind"] == "Deployment"]
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    return probe["periodSeconds"] * probe["failureThreshold"]


@dataclass(frozen=True)
class Play:
    """One play of the server pod, as the tests look at it."""

    manifest: Path
    budget_s: int
    init: kubeplay.State
    server: kubeplay.State | None
    init_log: str
    ready_s: float | None
    requests: list
    exit_code: int


def instant(stamp: str) -> datetime:
    """A podman timestamp (RFC 3339 with nanoseconds) as a datetime."""
    match = re.fullmatch(r"([\d-]+T[\d:]+)(?:\.(\d+))?(Z|[+-][\d:]+)?", stamp.strip())
    assert match, f"not a timestamp: {stamp!r}"
    zone = "+00:00" if match[3] in (None, "Z") else match[3]
    return datetime.fromisoformat(f"{match[1]}.{(match[2] or '0')[:6].ljust(6, '0')}{zone}")


def container_seconds(state: kubeplay.State) -> float:
    """How long a finished container ran, from podman's timestamps."""
    return (instant(state.finished_at) - instant(state.started_at)).total_seconds()


def play_server(hub, site: Site, objects: list[dict], name: str) -> Play:
    """Play the server's objects, wait for the init container and, when it succeeded, for /health."""
    played, test_pod, changes = kubeplay.adapt_for_podman(objects, site)
    for change in changes:
        if change not in REPORT.changes:
            REPORT.changes.append(change)
    budget = startup_budget_s(objects)
    manifest = kubeplay.write_manifest(WORK / f"{name}.yaml", played)
    if test_pod is not None:
        kubeplay.write_manifest(WORK / f"{name}-helm-test.yaml", kubeplay.helm_test_manifest(played, test_pod))
    prepare_claim(site)
    kubeplay.run("podman", "volume", "rm", "--force", CONFIGMAP_VOLUME, check=False)
    hub.requests.clear()
    done = kubeplay.run("podman", "kube", "play", "--network", "podman", str(manifest), timeout=budget, check=False)
    init_name, server_name = f"{SERVER_POD}-fetch-model", f"{SERVER_POD}-vllm"
    assert kubeplay.state(init_name), f"podman kube play made no pod ({done.returncode}): {done.stderr[-3000:]}"
    init = kubeplay.wait_for(f"{init_name} finished", lambda: (s := kubeplay.state(init_name)) and
                             s.status == "exited" and s, budget)
    init_log = kubeplay.logs(init_name)
    if init.exit_code != 0:
        return Play(manifest, budget, init, kubeplay.state(server_name), init_log, None, list(hub.requests),
                    done.returncode)
    server = kubeplay.wait_for(f"{server_name} running", lambda: (s := kubeplay.state(server_name)) and
                               s.status in ("running", "exited") and s, budget)
    assert server.status == "running", kubeplay.logs(server_name)[-3000:]
    url = f"http://127.0.0.1:{site.host_port}/health"

    def healthy() -> bool:
        current = kubeplay.state(server_name)
        assert current and current.status == "running", f"the server exited:\n{kubeplay.logs(server_name)[-3000:]}"
        return kubeplay.http_status(url) == 200

    kubeplay.wait_for(f"{url} answering 200 (the startup probe's budget)", healthy, budget)
    ready = (datetime.now(UTC) - instant(server.started_at)).total_seconds()
    return Play(manifest, budget, init, kubeplay.state(server_name), init_log, ready, list(hub.requests),
                done.returncode)
