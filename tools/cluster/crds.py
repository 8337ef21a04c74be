"""The CRD YAML of the custom resources the chart renders, taken from each project's pinned Go module.

``go mod download`` fetches a module through the Go module proxy and checks it against the checksum
database; the hash pinned in versions.CRD_MODULES must match what it reports, so a changed upload is refused.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from versions import CRD_MODULES


def crd_file(api: str) -> Path:
    """The CRD YAML that serves API (``group/version/Kind``), downloaded into the Go module cache once."""
    module, version, pinned, path = CRD_MODULES[api]
    done = subprocess.run(["go", "mod", "download", "-json", f"{module}@{version}"], capture_output=True, text=True,
                          env={**os.environ, "GOFLAGS": "-mod=mod"}, timeout=600, check=False)
    found = json.loads(done.stdout or "{}")
    if done.returncode != 0 or "Error" in found:
        raise SystemExit(f"go mod download {module}@{version} failed: {found.get('Error') or done.stderr.strip()}")
    if found["Sum"] != pinned:
        raise SystemExit(f"{module}@{version} hashes to {found['Sum']}, not the pinned {pinned}: refusing its CRD")
    return Path(found["Dir"]) / path
