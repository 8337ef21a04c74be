"""The CRD YAML of the custom resources the chart renders, taken from each project's pinned Go module.

``go mod download`` fetches a module through the Go module proxy and checks it against the checksum
database; the hash pinned in versions.CRD_MODULES must match what it reports, so a changed upload is refused.
``tools/cluster build`` downloads them with the parts; afterwards (the cluster test) they are read with the
proxy off, from that module cache only (MODULE_CACHE).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from versions import CACHE, CRD_MODULES

# Their own module cache, so the download and the later offline read agree whatever HOME and GOPATH are.
MODULE_CACHE = CACHE / "crd-modules"


def crd_file(api: str, offline: bool = True) -> Path:
    """The CRD YAML that serves API (``group/version/Kind``): from the Go module cache, or (OFFLINE false)
    downloaded into it first."""
    return module_dir(api, offline) / CRD_MODULES[api][3]


def module_dir(api: str, offline: bool = True) -> Path:
    """The pinned module that holds API's CRD, unpacked: its other manifests (webhooks, sibling CRDs) come from
    the same verified copy."""
    module, version, pinned, _ = CRD_MODULES[api]
    return pinned_module_dir(module, version, pinned, offline)


def pinned_module_dir(module: str, version: str, pinned: str, offline: bool = True) -> Path:
    """MODULE at VERSION, unpacked in MODULE_CACHE (downloaded first unless OFFLINE), refused unless it hashes to
    PINNED (its go.sum hash)."""
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOMODCACHE": str(MODULE_CACHE), "GOTOOLCHAIN": "local",
           # Offline, the checksum database cannot be asked either: the pinned hash below stands in for it.
           **({"GOPROXY": "off", "GOSUMDB": "off"} if offline else {})}
    done = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True,
                          env=env, timeout=600, check=False)
    found = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Error" in found:
        raise SystemExit(f"go mod download {module}@{version} failed: {found.get('Error') or done.stderr.strip()}")
    if found["Sum"] != pinned:
        raise SystemExit(f"{module}@{version} hashes to {found['Sum']}, not the pinned {pinned}: refusing it")
    return Path(found["Dir"])


def download_all() -> None:
    for api in CRD_MODULES:
        print(f"{api}: {crd_file(api, offline=False)}", flush=True)
