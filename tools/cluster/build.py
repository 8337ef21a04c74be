"""Build the cluster's parts from their pinned Go modules, cached by what goes into them, and make the two
images no registry gives here (the pod sandbox's and cluster DNS's) with podman.

A build lands in ``.cache/cluster/build/<component>-<key>/`` where the key hashes the module's go.mod,
go.sum and sources, the Go version and the link flags: a change of any pin builds anew, anything else
reuses. Each build's seconds go to ``.cache/cluster/build-times.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import crds
from node import ClusterError
from versions import CACHE, COMPONENTS, CONTAINERD, COREDNS_IMAGE, GO_MODULES, KUBERNETES, PARTS, PAUSE_IMAGE

BUILDS = CACHE / "build"
BUILD_TIMES = CACHE / "build-times.json"


def _ldflags(component: str) -> str:
    """Version stamps, so that `kubectl version` and helm's kubeVersion check see the pinned release."""
    flags = ["-s", "-w"]
    if component == "kubernetes":
        major, minor = KUBERNETES.removeprefix("v").split(".")[:2]
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
            flags += [f"-X {package}.gitVersion={KUBERNETES}", f"-X {package}.gitMajor={major}",
                      f"-X {package}.gitMinor={minor}", f"-X {package}.gitTreeState=clean",
                      f"-X {package}.buildDate=1970-01-01T00:00:00Z"]
    elif component == "containerd":
        flags.append(f"-X github.com/containerd/containerd/v2/version.Version={CONTAINERD}")
    elif component == "lws":
        flags.append(f"-X sigs.k8s.io/lws/pkg/version.GitVersion={PARTS[component][1]}")
    return " ".join(flags)


def go_version() -> str:
    return subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()


def build_key(component: str) -> str:
    module = GO_MODULES / component
    digest = hashlib.sha256()
    for path in sorted(module.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(go_version().encode() + b"\0" + _ldflags(component).encode())
    return digest.hexdigest()[:16]


def binaries(component: str) -> list[str]:
    """The file names a component's build yields."""
    return list(PARTS[component][2])


def bin_dir(component: str) -> Path:
    return BUILDS / f"{component}-{build_key(component)}"


class BuildTimeout(ClusterError):
    """A build stopped at its deadline (tools/cluster build --within); `build` exits 3 for it."""


def _go_build(argv: list[str], cwd: Path, env: dict[str, str], deadline: float | None) -> None:
    """Run `go build` in a process group of its own, so that a DEADLINE (time.monotonic()) passed stops the
    compilers it started too; what they finished stays in Go's build cache for the next run."""
    process = subprocess.Popen(argv, cwd=cwd, env=env, start_new_session=True)
    try:
        returncode = process.wait(None if deadline is None else max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise BuildTimeout(f"{argv[-1]} was still compiling when its time ran out; the packages compiled so far are "
                           "kept in Go's build cache, and the next build goes on from there") from None
    if returncode != 0:
        raise subprocess.CalledProcessError(returncode, argv)


def build(component: str, deadline: float | None = None) -> tuple[Path, float | None]:
    """The folder with COMPONENT's binaries, and the seconds spent building them (None: reused). A DEADLINE
    (time.monotonic()) bounds the build: past it, ClusterError."""
    target = bin_dir(component)
    if all((target / name).is_file() for name in binaries(component)):
        return target, None
    start = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f".{component}-", dir=BUILDS if BUILDS.is_dir() else None))
    try:
        env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"}
        for name, package in PARTS[component][2].items():
            print(f"building {component}: {name}", flush=True)
            _go_build(["go", "build", "-trimpath", "-ldflags", _ldflags(component), "-o", str(scratch / name), package],
                      GO_MODULES / component, env, deadline)
        BUILDS.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    seconds = time.monotonic() - start
    _record(component, seconds)
    return target, seconds


def _record(component: str, seconds: float) -> None:
    times = json.loads(BUILD_TIMES.read_text()) if BUILD_TIMES.is_file() else {}
    times[component] = {"seconds": round(seconds, 1), "key": build_key(component), "go": go_version(),
                        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    BUILD_TIMES.parent.mkdir(parents=True, exist_ok=True)
    BUILD_TIMES.write_text(json.dumps(times, indent=2) + "\n")


def build_all(components=COMPONENTS, within_s: float | None = None) -> dict[str, Path]:
    """Build (or reuse) COMPONENTS, the node's parts unless named, all within WITHIN_S seconds when given; the
    CRDs come with the node's parts."""
    deadline = None if within_s is None else time.monotonic() + within_s
    folders = {}
    for component in components:
        folders[component], seconds = build(component, deadline)
        what = "cached" if seconds is None else f"built in {seconds:.0f} s"
        print(f"{component}: {what} ({folders[component]})", flush=True)
    if components is COMPONENTS:
        crds.download_all()
    return folders


def image_from_binary(image: str, binary: Path, entrypoint: str, user: str) -> None:
    """IMAGE: BINARY alone in an empty image, built with podman unless an image of this binary is there."""
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()[:16]
    label = "org.tpserve.binary-sha256"
    seen = subprocess.run(["podman", "image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', image],
                          capture_output=True, text=True, check=False)
    if seen.returncode == 0 and seen.stdout.strip() == digest:
        return
    with tempfile.TemporaryDirectory(prefix="tpserve-image-") as context:
        shutil.copy2(binary, Path(context) / binary.name)
        (Path(context) / "Containerfile").write_text(
            f"FROM scratch\nCOPY {binary.name} /{binary.name}\nUSER {user}\nLABEL {label}={digest}\n"
            f'ENTRYPOINT ["/{entrypoint}"]\n')
        subprocess.run(["podman", "build", "--pull=never", "--network", "none", "-t", image, context], check=True,
                       stdout=subprocess.DEVNULL)


def node_images(folders: dict[str, Path]) -> list[str]:
    """The sandbox and DNS images, made from the built binaries; their names."""
    image_from_binary(PAUSE_IMAGE, folders["pause"] / "pause", "pause", "65535:65535")
    # CoreDNS binds port 53: root in its container, with only NET_BIND_SERVICE (the Deployment drops the rest).
    image_from_binary(COREDNS_IMAGE, folders["coredns"] / "coredns", "coredns", "0:0")
    return [PAUSE_IMAGE, COREDNS_IMAGE]
