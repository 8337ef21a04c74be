"""Install the pinned checkov into a virtualenv of its own, under .cache/tools, once.

checkov pins many libraries (boto3, networkx, pydantic, ...) that conflict with vLLM's in .venv, so
it lives apart:

    python tools/checkov_env.py [--venv DIR]

prints the path of the checkov executable (stdout). A second run checks the stamp file and the
executable and returns at once; pip is only needed the first time. Standard library only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKOV_VERSION = "3.3.30"
DEFAULT_VENV = REPO / ".cache" / "tools" / f"checkov-{CHECKOV_VERSION}"
STAMP = ".tpserve-installed"


def checkov_path(venv: Path) -> Path:
    return venv / "bin" / "checkov"


def ensure_checkov(venv: Path = DEFAULT_VENV) -> Path:
    """The checkov executable of VENV, created and installed first if the stamp says it is not there."""
    stamp = venv / STAMP
    executable = checkov_path(venv)
    if executable.exists() and stamp.exists() and stamp.read_text().strip() == CHECKOV_VERSION:
        return executable
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         f"checkov=={CHECKOV_VERSION}"],
    ]
    for argv in steps:
        done = subprocess.run(argv, check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"checkov_env: `{' '.join(argv)}` exited {done.returncode}: "
                             f"{done.stderr.strip()[-1000:]}\nCheck that PyPI is reachable.")
    stamp.write_text(CHECKOV_VERSION + "\n")
    return executable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                        help=f"the virtualenv (default: {DEFAULT_VENV.relative_to(REPO)})")
    args = parser.parse_args(argv)
    print(ensure_checkov(args.venv.absolute()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
