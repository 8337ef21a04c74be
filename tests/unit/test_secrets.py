"""Planted secrets never show in what tpserve's commands print, as users run them.

The Hugging Face token is read from HF_TOKEN and the API key from VLLM_API_KEY; neither may appear in
output, error messages or the command line tpserve builds for vLLM (process listings show argv).
"""

import os
import sys

import pytest

from lab.hubfake import fixture_files
from tests.conftest import run, tpserve

TOKEN = "hf_PLANTEDtoken0123456789"
API_KEY = "sk-planted-api-key"
GATED = "tiny-org/gated-llama"


@pytest.fixture
def gated(hub):
    hub.publish(GATED, fixture_files("tiny-llama"), gated=True)
    return hub


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert TOKEN not in text and API_KEY not in text


def test_a_rejected_token_is_named_as_hf_token_in_one_line_never_by_its_value(gated, tmp_path):
    done = tpserve("fetch", GATED, "--cache-dir", str(tmp_path), env={**os.environ, "HF_TOKEN": TOKEN})

    assert done.returncode == 1
    assert done.stderr.startswith("error: the hub rejected HF_TOKEN (401 Unauthorized)")
    assert done.stderr.count("\n") == 1
    assert_no_secret(done.stdout, done.stderr)


@pytest.mark.parametrize("command", [
    ("-m", "tpserve", "fetch", GATED),
    ("-m", "tpserve.fetch.fetchjob", "--model", GATED, "--revision", "main", "--allow-moving-revision"),
], ids=["tpserve fetch", "the chart's init container"])
def test_a_granted_token_fetches_without_printing_it(gated, tmp_path, command):
    gated.valid_tokens.add(TOKEN)
    gated.repos[GATED].granted.add(TOKEN)

    done = run(sys.executable, *command, "--cache-dir", str(tmp_path), env={**os.environ, "HF_TOKEN": TOKEN})

    assert done.returncode == 0, done.stderr
    assert {request.token for request in gated.requests} == {TOKEN}
    assert_no_secret(done.stdout, done.stderr)


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_bytes(fixture_files("tiny-llama")["config.json"])
    return folder


def test_serve_dry_run_prints_a_command_that_leaves_the_key_in_the_environment(model_folder):
    done = tpserve("serve", "--model", str(model_folder), "--dry-run",
                   env={**os.environ, "VLLM_API_KEY": API_KEY, "HF_TOKEN": TOKEN})

    assert done.returncode == 0, done.stderr
    assert "vllm.entrypoints.openai.api_server" in done.stdout and "--api-key" not in done.stdout
    assert_no_secret(done.stdout, done.stderr)


@pytest.mark.parametrize("args, variables", [
    (("--", "--api-key", API_KEY), {}),
    (("--", f"--api-key={API_KEY}"), {}),
    ((), {"TPSERVE_EXTRA_ARGS": f"--api-key {API_KEY}"}),
    (("--extra-args", f"--api-key '{API_KEY}"), {}),
], ids=["after --", "--api-key=", "TPSERVE_EXTRA_ARGS", "badly quoted --extra-args"])
def test_an_api_key_on_the_command_line_is_refused_without_echoing_it(model_folder, args, variables):
    done = tpserve("serve", "--model", str(model_folder), "--dry-run", *args, env={**os.environ, **variables})

    assert done.returncode == 2
    assert done.stdout == "" and done.stderr.count("\n") == 1
    assert_no_secret(done.stderr)
