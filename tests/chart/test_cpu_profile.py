"""The CPU value profile (charts/vllm/values-cpu.yaml), which `make pod-test` plays with podman, and /dev/shm at TP 1."""

from __future__ import annotations

import pytest

from tests.chart.conftest import CHART, container, env_of, init_container, mounts_of, pod_spec, volumes_of

CPU = ("-f", str(CHART / "values-cpu.yaml"), "--set", "model.name=tpserve-test/tiny-llama",
       "--set", "model.attentionHeads=4", "--set", "model.kvHeads=4", "--set", "model.layers=2",
       "--set", "model.parameterBillions=0", "--set", "model.hiddenSize=128")
# vLLM's CPU backend sends each step to its worker through a ring of 10 chunks of VLLM_MQ_MAX_CHUNK_BYTES_MB
# (16) MiB in /dev/shm, even at TP 1 (vllm/v1/executor/multiproc_executor.py; measured in docs/pod-test.md).
CPU_SHM_NEEDED = 160 * 2**20
UNITS = {"Mi": 2**20, "Gi": 2**30}


def quantity_bytes(text: str) -> int:
    return int(float(text[:-2]) * UNITS[text[-2:]])


def test_the_cpu_profile_requests_no_gpu_and_tolerates_no_gpu_taint(render):
    deployment = render("tiny", *CPU)["Deployment"]
    resources = container(deployment)["resources"]
    assert resources == {"requests": {"cpu": "2", "memory": "8Gi", "ephemeral-storage": "40961Mi"},
                         "limits": {"memory": "8Gi"}}
    assert "gpu" not in str(pod_spec(deployment)).replace("NVIDIA_VISIBLE_DEVICES", "")
    assert "tolerations" not in pod_spec(deployment)


def test_the_cpu_profile_runs_tpserves_cpu_image_with_the_cpu_backends_settings(render):
    deployment = render("tiny", *CPU)["Deployment"]
    server = container(deployment)
    assert server["image"] == init_container(deployment)["image"] == "localhost/tpserve-cpu:0.1.0"
    env = env_of(server)
    assert {name: env[name]["value"] for name in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND",
                                                  "HF_HUB_OFFLINE")} == {
        "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "auto", "HF_HUB_OFFLINE": "1"}
    assert server["args"] == ["--", "--shutdown-timeout=60"]


def test_the_cpu_profile_mounts_a_memory_backed_dev_shm_big_enough_for_the_cpu_backend(render):
    deployment = render("tiny", *CPU)["Deployment"]
    volume = volumes_of(deployment)[mounts_of(container(deployment))["/dev/shm"]["name"]]
    assert volume["emptyDir"]["medium"] == "Memory"
    assert quantity_bytes(volume["emptyDir"]["sizeLimit"]) >= CPU_SHM_NEEDED


def test_the_cpu_profile_gives_the_startup_probe_its_budget(render):
    probe = container(render("tiny", *CPU)["Deployment"])["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == 600


def test_the_cpu_profile_passes_helm_lint_strict(tools):
    done = tools.helm_run("lint", "--strict", str(CHART), *CPU, "--set",
                          "model.revision=0123456789abcdef0123456789abcdef01234567")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("gpus", ["1", "2"])
def test_a_gpu_server_gets_dev_shm_at_tp_1_too(render, gpus):
    deployment = render("r", "--set", "model.name=example/shape", "--set", f"parallelism.tensor={gpus}", "--set", "model.attentionHeads=8",
                        "--set", "model.kvHeads=8")["Deployment"]
    assert mounts_of(container(deployment))["/dev/shm"] == {"name": "dshm", "mountPath": "/dev/shm"}
    assert volumes_of(deployment)["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert container(deployment)["resources"]["limits"]["nvidia.com/gpu"] == int(gpus)


def test_the_notes_say_cpu_when_no_gpu_is_requested(tools):
    done = tools.helm_run("install", "tiny", str(CHART), "--dry-run=client", *CPU, "--set",
                          "model.revision=0123456789abcdef0123456789abcdef01234567")
    assert done.returncode == 0, done.stderr
    assert "on CPU (no GPU requested): tensor parallel 1" in done.stdout
