"""The shell scripts the chart puts in container commands (``/bin/sh -c SCRIPT``) pass shellcheck."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from tests.chart.conftest import CHART, CI_VALUES
from tests.conftest import REPO


def inline_scripts(document: object):
    """Every SCRIPT of a ``[sh, -c, SCRIPT, ...]`` command in DOCUMENT."""
    if isinstance(document, dict):
        command = document.get("command")
        if isinstance(command, list) and len(command) >= 3 and command[0].endswith("sh") and command[1] == "-c":
            yield command[2]
        for value in document.values():
            yield from inline_scripts(value)
    elif isinstance(document, list):
        for value in document:
            yield from inline_scripts(value)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (.ci/run installs it)")
def test_every_sh_c_script_the_chart_and_k8s_render_passes_shellcheck(render_text, tmp_path):
    texts = [render_text("llama70b"), render_text("llama70b", "-f", str(CHART / "values-cpu.yaml"))]
    texts += [render_text("llama70b", "-f", str(path)) for path in CI_VALUES]
    texts.append(render_text("llama70b", "-f", str(CHART / "ci" / "moving-revision-values.yaml"), "--set",
                             "image.tpserve=true"))
    texts += [path.read_text() for path in sorted((REPO / "k8s").rglob("*.yaml"))]
    scripts = sorted({script for text in texts for doc in yaml.safe_load_all(text) if doc
                      for script in inline_scripts(doc)})
    assert len(scripts) >= 2  # the tpserve image's command and the plain vLLM image's

    for number, script in enumerate(scripts):
        path = tmp_path / f"script-{number}.sh"
        path.write_text(f"#!/bin/sh\n{script}\n")
        done = subprocess.run(["shellcheck", str(path)], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{script}\n{done.stdout}"
