"""Every shell script of the repository passes shellcheck: found by name (*.sh) and by shebang."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO

SHEBANG = re.compile(rb"#!\S*(/|env )(ba|da|k)?sh\b")
NEEDS_SHELLCHECK = pytest.mark.skipif(shutil.which("shellcheck") is None,
                                      reason="shellcheck is not installed (.ci/run installs it)")


def shell_scripts() -> list[str]:
    """Tracked files that are shell scripts, relative to the repository root."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    scripts = []
    for name in (part.decode() for part in listed.split(b"\0") if part):
        path = REPO / name
        if not path.is_file():
            continue
        with path.open("rb") as file:
            first = file.readline(128)
        if name.endswith(".sh") or SHEBANG.match(first):
            scripts.append(name)
    return scripts


def test_the_shell_scripts_found_include_ci_and_the_gpu_host_scripts():
    assert {".ci/run", "lab/gpu/run_on_host.sh", "lab/gpu/host_env.sh"} <= set(shell_scripts())


@NEEDS_SHELLCHECK
def test_every_shell_script_passes_shellcheck():
    done = subprocess.run(["shellcheck", "--external-sources", *shell_scripts()], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout
