"""Planted secrets never reach a rendered manifest, a k8s/ file or helm's error output.

The chart takes the Hugging Face token and the API key only as names of Secrets; every other way a
user might hand it one (an unknown key, an extra variable, an extra vLLM flag) is refused without the
value in the message. Secret variables in what it renders come from ``secretKeyRef`` alone.
"""

from __future__ import annotations

import pytest
import yaml

from tests.chart.conftest import CHART, CI_VALUES
from tests.conftest import REPO

TOKEN = "hf_PLANTEDtoken0123456789abcdefghijklmn"
API_KEY = "sk-planted-api-key"
SECRET_VARIABLES = {"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "VLLM_API_KEY", "TPSERVE_API_KEY"}
WITH_SECRETS = ("--set", "hfToken.secretName=hf-token", "--set", "apiKey.secretName=api-key")


def variables(document: object):
    """Every environment variable (a dict with a name and a value or valueFrom) anywhere in DOCUMENT."""
    if isinstance(document, dict):
        if "name" in document and ("value" in document or "valueFrom" in document):
            yield document
        for value in document.values():
            yield from variables(value)
    elif isinstance(document, list):
        for value in document:
            yield from variables(value)


def command_lines(document: object):
    """Every container's command and args, as lists of strings."""
    if isinstance(document, dict):
        for key in ("command", "args"):
            if isinstance(document.get(key), list):
                yield [str(part) for part in document[key]]
        for value in document.values():
            yield from command_lines(value)
    elif isinstance(document, list):
        for value in document:
            yield from command_lines(value)


def assert_secrets_only_by_reference(text: str) -> None:
    assert TOKEN not in text and API_KEY not in text
    documents = [doc for doc in yaml.safe_load_all(text) if doc]
    secret_vars = [var for doc in documents for var in variables(doc) if var["name"] in SECRET_VARIABLES]
    for var in secret_vars:
        assert set(var) == {"name", "valueFrom"} and "secretKeyRef" in var["valueFrom"], var
    for argv in (argv for doc in documents for argv in command_lines(doc)):
        assert not any(part.startswith("--api-key") for part in argv), argv


@pytest.mark.parametrize("values", ["defaults", "cpu profile", *(path.name for path in CI_VALUES)])
def test_rendered_manifests_take_the_token_and_key_from_secrets_only(render_text, values):
    files = {"defaults": (), "cpu profile": ("-f", str(CHART / "values-cpu.yaml"))}.get(
        values, ("-f", str(CHART / "ci" / values)))
    text = render_text("llama70b", *files, *WITH_SECRETS)

    assert_secrets_only_by_reference(text)
    assert {var["name"] for doc in yaml.safe_load_all(text) if doc for var in variables(doc)} >= {
        "HF_TOKEN", "VLLM_API_KEY", "TPSERVE_API_KEY"}


def test_the_plain_manifests_in_k8s_take_secrets_by_reference_only():
    for path in sorted((REPO / "k8s").rglob("*.yaml")):
        assert_secrets_only_by_reference(path.read_text())


@pytest.mark.parametrize("set_arg", [
    f"hfToken.token={TOKEN}",
    f"apiKey.value={API_KEY}",
    f"vllm.extraEnv.HF_TOKEN={TOKEN}",
    f"fetch.extraEnv.HUGGING_FACE_HUB_TOKEN={TOKEN}",
    f"vllm.extraEnv.VLLM_API_KEY={API_KEY}",
    f"fetch.extraEnv.TPSERVE_API_KEY={API_KEY}",
    f"vllm.extraArgs.api-key={API_KEY}",
    f"podAnnotations.token={TOKEN}",
])
def test_a_secret_given_inline_is_refused_and_never_echoed(render_error, set_arg):
    stderr = render_error("--set", set_arg, *WITH_SECRETS)

    assert stderr.startswith("Error: ")
    assert TOKEN not in stderr and API_KEY not in stderr
