"""The vLLM server's own endpoints the load test reads: models, counters, version, tokenizer."""

from __future__ import annotations

import requests

from tpserve.fetch.errors import LoadTestError
from tpserve.workload.servermetrics import counter_totals

HTTP_TIMEOUT_S = 10


def _get(host: str, path: str, headers: dict | None = None) -> requests.Response:
    url = host.rstrip("/") + path
    try:
        response = requests.get(url, headers=headers, timeout=HTTP_TIMEOUT_S)
    except requests.RequestException as exc:
        raise LoadTestError(f"cannot reach {url}: {exc.__class__.__name__}; is the server running?") from exc
    if response.status_code == 401:
        raise LoadTestError(
            f"the server at {host} refused the API key (HTTP 401 from {path}): check TPSERVE_API_KEY or --api-key"
            if headers else
            f"the server at {host} wants an API key (HTTP 401 from {path}): set TPSERVE_API_KEY or pass --api-key")
    if response.status_code != 200:
        raise LoadTestError(f"{url} answered HTTP {response.status_code}: {response.text[:200]}")
    return response


def _model_entries(host: str, headers: dict | None = None) -> list[dict]:
    return _get(host, "/v1/models", headers).json().get("data", [])


def served_models(host: str, headers: dict | None = None) -> list[str]:
    """The model ids the server lists at /v1/models."""
    return [entry["id"] for entry in _model_entries(host, headers)]


def max_model_len(host: str, model: str, headers: dict | None = None) -> int | None:
    """The context length, prompt and output together, the server reports for MODEL (vLLM's ``max_model_len`` in
    /v1/models), or None where it reports none."""
    for entry in _model_entries(host, headers):
        if entry["id"] == model and entry.get("max_model_len"):
            return int(entry["max_model_len"])
    return None


def check_served_model(host: str, wanted: str, headers: dict | None = None) -> str:
    """Check that the server serves WANTED (or, if empty, exactly one model) and return its id."""
    models = served_models(host, headers)
    if wanted:
        if wanted not in models:
            raise LoadTestError(
                f"the server at {host} serves {models or 'no model'}, not {wanted!r}: "
                "point the load test at the right server or pass --model with a listed name"
            )
        return wanted
    if len(models) != 1:
        raise LoadTestError(f"the server at {host} serves {models or 'no model'}; pass --model to choose one")
    return models[0]


def server_counters(host: str) -> dict[str, float]:
    """vLLM's prompt/generation token counters from /metrics (absent names mean "not exported")."""
    return counter_totals(_get(host, "/metrics").text)


def server_version(host: str) -> str:
    try:
        return str(_get(host, "/version").json().get("version", ""))
    except (LoadTestError, ValueError):
        return ""


class ServerTokenizer:
    """The served model's tokenizer through vLLM's /tokenize and /detokenize, so the client needs none."""

    def __init__(self, host: str, model: str, headers: dict | None = None) -> None:
        self.url = host.rstrip("/")
        self.model = model
        self.headers = headers

    def _post(self, path: str, body: dict) -> dict:
        try:
            response = requests.post(self.url + path, json={"model": self.model, **body}, headers=self.headers,
                                     timeout=HTTP_TIMEOUT_S)
        except requests.RequestException as exc:
            raise LoadTestError(f"cannot reach {self.url}{path}: {exc.__class__.__name__}") from exc
        if response.status_code != 200:
            raise LoadTestError(f"{self.url}{path} answered HTTP {response.status_code}: {response.text[:200]}; "
                                "random prompts need the server's tokenizer endpoints")
        return response.json()

    def count(self, text: str, special: bool = True) -> int:
        return int(self._post("/tokenize", {"prompt": text, "add_special_tokens": special})["count"])

    def encode(self, text: str) -> list[int]:
        return list(self._post("/tokenize", {"prompt": text, "add_special_tokens": False})["tokens"])

    def decode(self, ids: list[int]) -> str:
        return str(self._post("/detokenize", {"tokens": ids})["prompt"])
