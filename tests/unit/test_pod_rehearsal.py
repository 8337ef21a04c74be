"""The pieces of the GPU hardened-pod rehearsal (lab/gpu/pod_rehearsal.py) that run anywhere: the
seccomp wrapper standing in for RuntimeDefault, and the pod spec's translation into mounts and env."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

GPU = REPO / "lab" / "gpu"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory) -> Path:
    if not (shutil.which("cc") and shutil.which("setpriv")):
        pytest.skip("needs a C compiler and util-linux's setpriv")
    binary = tmp_path_factory.mktemp("seccomp") / "runtime-default-seccomp"
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-static", "-o", str(binary),
                    str(GPU / "runtime_default_seccomp.c")], check=True)
    return binary


PROBE = """
import ctypes, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
def refused(number):
    return libc.syscall(number, 0, 0, 0) == -1 and ctypes.get_errno() == 1
print("pidfd_getfd", refused(438))          # CAP_SYS_PTRACE in RuntimeDefault
print("kcmp", refused(312))
print("set_mempolicy", refused(238))        # CAP_SYS_NICE
print("keyctl", refused(250))
box = []
thread = threading.Thread(target=box.append, args=("ok",)); thread.start(); thread.join()
print("thread", box == ["ok"])
print("fork", subprocess.run(["true"]).returncode == 0)
print("new user namespace", subprocess.run(["unshare", "--user", "true"], capture_output=True).returncode)
"""


def test_the_seccomp_wrapper_refuses_what_runtime_default_refuses_and_keeps_threads_and_fork(wrapper):
    done = subprocess.run(["setpriv", "--no-new-privs", str(wrapper), sys.executable, "-c", PROBE],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answers = dict(line.rsplit(" ", 1) for line in done.stdout.splitlines())
    assert answers == {"pidfd_getfd": "True", "kcmp": "True", "set_mempolicy": "True", "keyctl": "True",
                       "thread": "True", "fork": "True", "new user namespace": "1"}


def test_the_seccomp_wrapper_refuses_to_start_without_no_new_privs(wrapper):
    if subprocess.run(["grep", "-q", "NoNewPrivs:\t1", "/proc/self/status"], check=False).returncode == 0:
        pytest.skip("this process already runs with no_new_privs")
    done = subprocess.run([str(wrapper), "true"], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "no_new_privs is not set; run it under setpriv --no-new-privs" in done.stderr


def test_sub_paths_are_made_like_the_kubelet_does_and_read_only_mounts_stay_read_only(tmp_path, monkeypatch):
    rehearsal = load("pod_rehearsal")
    monkeypatch.setattr(rehearsal, "ROOT", tmp_path)
    pod = {"volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "c"}},
                       {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}]}
    volumes = rehearsal.prepare_volumes(pod, {}, fs_group=1000)
    container = {"volumeMounts": [{"name": "cache", "mountPath": "/models/hf", "subPath": "hf", "readOnly": True},
                                  {"name": "cache", "mountPath": "/models/vllm-cache", "subPath": "vllm-cache"},
                                  {"name": "dshm", "mountPath": "/dev/shm"}]}
    mounts = rehearsal.mounts_of(container, volumes, fs_group=1000)
    assert [(m["target"], m["readOnly"]) for m in mounts] == [
        ("/models/hf", True), ("/models/vllm-cache", False), ("/dev/shm", False)]
    assert mounts[0]["source"] == str(tmp_path / "volumes" / "cache" / "hf")
    assert (tmp_path / "volumes" / "cache" / "vllm-cache").stat().st_gid == 1000
    assert mounts[2] == {"kind": "tmpfs", "size": "16G", "target": "/dev/shm", "readOnly": False}


def test_a_container_that_reads_a_secret_is_refused_by_name():
    rehearsal = load("pod_rehearsal")
    container = {"name": "vllm", "env": [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k"}}}]}
    with pytest.raises(SystemExit, match="vllm: VLLM_API_KEY comes from"):
        rehearsal.container_env(container, rehearsal.IMAGE_STANDINS["server"], {})
