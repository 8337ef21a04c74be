"""The pod `helm install` renders, run for real: the CPU serving image, played with podman (docs/pod-test.md).

The chart is rendered with its CPU profile by the real helm; the init container fetches the tiny Llama from
the hub stand-in with the image's own huggingface_hub; vLLM (CPU) serves it as uid 1000 on a read-only root;
the chart's own `helm test` pod (tests.runner=serving: the same serving image runs the chart's check_tokens.py)
sends its checked load through the published port. The tests run in file order
and share the plays, which are slow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.pod import kubeplay
from tests.pod.conftest import REPORT, SERVER_POD, TEST_POD, WORK, Play, play_server
from tests.pod.model import REPO_ID

MANIFEST = "tpserve-manifest.json"
SERVER = f"{SERVER_POD}-vllm"


def status_fields(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


@pytest.fixture(scope="module")
def first(hub, site, render) -> Play:
    play = play_server(hub, site, render(hub.sha), "first-play")
    REPORT.timings["first play: fetch (init container)"] = _init_seconds(play)
    REPORT.timings["first play: server start to /health 200"] = play.ready_s or -1
    return play


def _init_seconds(play: Play) -> float:
    from tests.pod.conftest import container_seconds

    return container_seconds(play.init)


def test_the_init_container_fetched_and_verified_the_model_into_the_claims_volume(first, hub, site):
    assert first.init.exit_code == 0, first.init_log
    folder = site.claim_path / "hf" / "tpserve" / REPO_ID.replace("/", "--") / hub.sha
    assert f"verified at /models/hf/tpserve/{REPO_ID.replace('/', '--')}/{hub.sha}" in first.init_log
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["resolved_sha"] == hub.sha
    assert {entry["path"] for entry in manifest["files"]} == set(hub.files)
    assert all((folder / name).read_bytes() == data for name, data in hub.files.items())
    downloaded = {request.path.rsplit("/", 1)[-1] for request in first.requests
                  if request.method == "GET" and "/resolve/" in request.path}
    assert downloaded == set(hub.files), "the init container fetched from the hub stand-in, every file once"
    assert (folder.stat().st_uid, (site.claim_path / "vllm-cache").stat().st_uid) == (1000, 1000)


def test_the_server_runs_as_the_charts_uid_with_a_read_only_root_no_capabilities_and_its_memory_limit(first):
    assert first.server and first.server.status == "running"
    fields = status_fields(first.server.pid)
    assert fields["Uid"].split() == ["1000"] * 4 and fields["Gid"].split() == ["1000"] * 4
    assert int(fields["CapEff"], 16) == 0 and int(fields["CapPrm"], 16) == 0
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"
    write = kubeplay.run("podman", "exec", SERVER, "python3", "-c", "open('/probe', 'w')", check=False)
    assert write.returncode != 0 and "Read-only file system" in write.stderr
    for writable in ("/tmp", "/home/vllm", "/models/vllm-cache", "/dev/shm"):
        kubeplay.run("podman", "exec", SERVER, "python3", "-c",
                     f"import tempfile; tempfile.NamedTemporaryFile(dir='{writable}')")
    weights = kubeplay.run("podman", "exec", SERVER, "touch", "/models/hf/probe", check=False)
    assert weights.returncode != 0 and "Read-only file system" in weights.stderr
    limit = kubeplay.run("podman", "inspect", "--format", "{{.HostConfig.Memory}}", SERVER).stdout.strip()
    assert int(limit) == 8 * 2**30, "the CPU profile's resources.memory, as the container's memory limit"


def test_dev_shm_is_the_memory_backed_volume_and_the_cpu_backend_maps_more_than_64_mib_there(first):
    shm = kubeplay.run("podman", "exec", SERVER, "python3", "-c", "import os, json; s = os.statvfs('/dev/shm'); "
                       "print(json.dumps([s.f_blocks * s.f_frsize, {e.name: e.stat().st_size "
                       "for e in os.scandir('/dev/shm')}]))")
    size, segments = json.loads(shm.stdout)
    mounts = Path(f"/proc/{first.server.pid}/mountinfo").read_text().splitlines()
    assert any(line.split()[4] == "/dev/shm" and " - tmpfs " in line for line in mounts)
    assert size == 2**30
    mapped = sum(segments.values())
    REPORT.facts["/dev/shm segments of vLLM CPU at TP 1 (MiB)"] = {name: round(bytes_ / 2**20, 1)
                                                                   for name, bytes_ in segments.items()}
    # The worker's message ring alone is 10 chunks of 16 MiB: more than the 64 MiB a runtime gives by default.
    assert mapped > 64 * 2**20, segments


def test_health_answers_on_the_published_port_within_the_startup_budget(first, site):
    assert first.ready_s is not None and first.ready_s <= first.budget_s
    assert kubeplay.http_status(f"http://127.0.0.1:{site.host_port}/health") == 200


@pytest.fixture(scope="module")
def helm_test(first, site) -> dict:
    """The chart's `helm test` pod, played against the published port; its exit status and figures."""
    manifest = first.manifest.with_name(first.manifest.stem + "-helm-test.yaml")
    kubeplay.run("podman", "kube", "play", "--network", "podman", str(manifest), timeout=300)
    try:
        container = f"{TEST_POD}-load"
        state = kubeplay.wait_for(f"{container} finished", lambda: (s := kubeplay.state(container)) and
                                  s.status == "exited" and s, 660)  # tests.runTime (10m) and a minute
        log = kubeplay.logs(container)
    finally:
        kubeplay.down(manifest)
    (WORK / "helm-test.log").write_text(log)
    results = site.results_dir / "helm-test.json"
    return {"exit_code": state.exit_code, "log": log,
            "results": json.loads(results.read_text()) if results.is_file() else None}


def test_the_charts_helm_test_passes_with_client_tokens_equal_to_the_servers_counter(helm_test):
    """The default tests.runner=serving: the serving image (tpserve-cpu) runs the chart's check_tokens.py."""
    assert helm_test["exit_code"] == 0, helm_test["log"][-3000:]
    assert helm_test["log"].startswith("helm test passed: 16/16 requests"), helm_test["log"][-3000:]
    results = helm_test["results"]
    assert results["status"] == "ok"
    assert results["client_completion_tokens"] == results["server_generation_tokens"] == 16 * 32
    assert results["client_prompt_tokens"] == results["server_prompt_tokens"]
    assert (results["completed"], results["failed"]) == (16, 0)
    REPORT.facts["helm test: requests ok / failed"] = f"{results['completed']} / {results['failed']}"
    REPORT.facts["helm test: tokens client / server"] = (f"{results['client_completion_tokens']} / "
                                                         f"{results['server_generation_tokens']}")
    REPORT.facts["helm test: output tok/s"] = results["output_throughput"]
    REPORT.facts["helm test: TTFT p50 (ms)"] = results["p50_ttft_ms"]
    REPORT.timings["helm test: load duration"] = results["duration_s"]


@pytest.fixture(scope="module")
def second(first, helm_test, hub, site, render) -> Play:
    """The same release played again on the same claim, as after a pod restart or a reinstall."""
    kubeplay.down(first.manifest)
    play = play_server(hub, site, render(hub.sha), "second-play")
    REPORT.timings["second play: verify (init container)"] = _init_seconds(play)
    REPORT.timings["second play: server start to /health 200"] = play.ready_s or -1
    return play


def test_a_second_play_serves_from_the_cache_without_touching_the_hub(second, hub):
    assert second.init.exit_code == 0, second.init_log
    assert "verified at" in second.init_log
    assert not [request for request in second.requests if "/resolve/" in request.path], "no file downloaded"
    assert second.requests == [], "a pinned commit that is cached is verified without the network"
    assert second.ready_s is not None and second.ready_s <= second.budget_s


@pytest.fixture(scope="module")
def wrong(second, hub, site, render) -> Play:
    kubeplay.down(second.manifest)
    play = play_server(hub, site, render("f" * 40), "wrong-revision")
    kubeplay.down(play.manifest)
    return play


def test_a_wrong_revision_ends_the_pod_at_the_init_container_with_a_one_line_reason(wrong, hub):
    assert wrong.exit_code != 0, "podman kube play reports the failed init container"
    assert wrong.init.exit_code == 1
    message = wrong.init_log.strip().splitlines()[-1]
    assert message.startswith(f"error: {REPO_ID} has no revision '{'f' * 40}'"), wrong.init_log
    assert wrong.server is None or wrong.server.status in ("created", "configured"), "the server never started"
    REPORT.facts["wrong revision: init container"] = f"exit {wrong.init.exit_code}: {message}"
