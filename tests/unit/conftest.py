"""Fixtures for tests that talk to the (fake) Hugging Face hub through the real huggingface_hub."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from huggingface_hub import constants

from lab.hubfake import HubFake


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[HubFake]:
    """A fake hub on 127.0.0.1 that huggingface_hub uses as its endpoint, with HF_HOME and tokens isolated.

    huggingface_hub reads its environment once, at import, into ``constants``: the variables are set
    for anything that reads them later and the constants are patched for this process.
    """
    fake = HubFake().start()
    home = tmp_path / "hf-home"
    settings = {
        "HF_ENDPOINT": fake.url,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "0",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_ENABLE_HF_TRANSFER", "HTTP_PROXY",
                 "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", fake.url)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        fake.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def no_gpu_unless_a_test_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings profiles read the visible GPUs' memory (nvidia-smi): unit tests see none, on any host,
    unless they set one with :func:`gpus_of`."""
    monkeypatch.setattr("tpserve.machine.visible_gpu_memory_bytes", lambda env=None: None)


def gpus_of(monkeypatch: pytest.MonkeyPatch, gib: float) -> None:
    """Make every visible GPU GIB GiB large for settings profiles (an H200 reports 140.4 GiB)."""
    monkeypatch.setattr("tpserve.machine.visible_gpu_memory_bytes", lambda env=None: int(gib * 2**30))
