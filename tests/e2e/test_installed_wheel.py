"""tpserve from its wheel, installed in a fresh venv and run outside the checkout: it finds its own files.

The venv reuses the checkout's dependencies (vLLM, Locust, ...) through a ``.pth`` line naming
``.venv``'s site-packages, which adds that folder to ``sys.path`` without reading its ``.pth`` files,
so ``.venv``'s editable install (a ``.pth`` naming ``src/``) stays out and ``import tpserve`` can only
find the wheel's copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO, run
from tests.e2e.conftest import MODEL_NAME
from tpserve.commandlines import loadtest_command

PROBE = ("import json, tpserve, tpserve.commandlines, tpserve.data, tpserve.presets; print(json.dumps({"
         "'package': tpserve.__file__, 'locustfile': str(tpserve.commandlines.DEFAULT_LOCUSTFILE), "
         "'chat': str(tpserve.presets.PRESETS['chat'].prompt_file), 'output': str(tpserve.data.OUTPUT_DIR)}))")


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A venv holding only the wheel built from a copy of the checkout's sources."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = run(sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                "--no-index", "-w", str(root / "dist"), cwd=root)
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("tpserve-*.whl")
    made = run(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(root / "venv"), cwd=root)
    assert made.returncode == 0, made.stderr
    python = root / "venv" / "bin" / "python"
    site = run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root)
    (Path(site.stdout.strip()) / "checkout-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(str(python), "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-index", str(wheel),
                    cwd=root)
    assert installed.returncode == 0, installed.stderr
    return root / "venv"


# A PYTHONPATH naming a checkout's src/ would put that tpserve ahead of the wheel's.
OUTSIDE = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}


def installed(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run(str(venv / "bin" / "python"), *args, cwd=cwd, env=OUTSIDE)


def test_the_venv_imports_the_wheels_tpserve_and_finds_the_files_it_ships_inside_it(venv, tmp_path):
    done = installed(venv, "-c", PROBE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    for key in ("package", "locustfile", "chat"):
        assert Path(found[key]).is_relative_to(venv) and Path(found[key]).is_file(), (key, found[key])
    assert found["output"] == "tpserve-out"


def test_locust_finds_the_completion_user_in_the_wheels_locust_file(venv, tmp_path):
    probe = installed(venv, "-c", PROBE, cwd=tmp_path)
    locustfile = json.loads(probe.stdout)["locustfile"]
    done = installed(venv, "-m", "locust", "-f", locustfile, "--list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("Available Users:", 1)[1].split() == ["CompletionUser"]


def test_plan_and_shapes_run_from_the_wheel_outside_the_checkout(venv, tmp_path):
    plan = run(str(venv / "bin" / "tpserve"), "plan", "llama-2-7b", "--gpu", "h100", cwd=tmp_path, env=OUTSIDE)
    assert plan.returncode == 0, plan.stderr
    assert "tpserve serve" in plan.stdout
    shapes = run(str(venv / "bin" / "tpserve"), "shapes", "llama-2-7b", str(tmp_path / "model"), cwd=tmp_path,
                 env=OUTSIDE)
    assert shapes.returncode == 0, shapes.stderr
    assert json.loads((tmp_path / "model" / "config.json").read_text())["num_hidden_layers"] == 32
    assert (tmp_path / "model" / "tokenizer.json").is_file()


def test_the_wheels_load_test_measures_the_cpu_server_from_outside_the_checkout(venv, tmp_path, vllm_server):
    probe = installed(venv, "-c", PROBE, cwd=tmp_path)
    argv = loadtest_command(vllm_server.url, users=2, locustfile=Path(json.loads(probe.stdout)["locustfile"]),
                            num_requests=4, max_tokens=8, run_time_s=300, only_summary=True,
                            results_json=Path("run.json"), python=str(venv / "bin" / "python"))
    done = run(*argv, cwd=tmp_path, timeout=400, env=OUTSIDE)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    assert (report["completed"], report["failed"], report["model_id"]) == (4, 0, MODEL_NAME)
    assert report["token_check"]["status"] == "ok"
