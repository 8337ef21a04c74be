"""The chart's `helm test` client (charts/vllm/files/check/check_tokens.py) against a small stdlib server.

The server speaks the three endpoints the client reads as vLLM does: /v1/models, /metrics (Prometheus text,
token counters split over label sets) and streamed /v1/completions ending with a usage chunk and [DONE].
Each test changes one thing about it and pins the client's exit status and one-line reason.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import REPO, run
from tests.exposition import AWKWARD_LABEL_VALUES, python_with_prometheus_client_alone

SCRIPT = REPO / "charts" / "vllm" / "files" / "check" / "check_tokens.py"
MODEL = "tpserve-test/tiny-llama"
PROMPT_TOKENS = 7


def load_client():
    spec = importlib.util.spec_from_file_location("check_tokens", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_tokens"] = module
    spec.loader.exec_module(module)
    return module


client = load_client()


@dataclass
class FakeVLLM:
    """What the server does; counters grow by what it streams, plus ``extra_generation`` (another client);
    ``metrics_text``, when set, is what /metrics answers instead."""

    models: list[str] = field(default_factory=lambda: [MODEL])
    api_key: str = ""
    extra_generation: int = 0
    extra_prompt: int = 0
    fail_request: int | None = None
    usage: bool = True
    metrics_text: str = ""
    generation: int = 0
    prompt: int = 0
    bodies: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def handler_for(fake: FakeVLLM):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorized(self) -> bool:
            if fake.api_key and self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                self._send(401, b'{"error": "Unauthorized"}')
                return False
            return True

        def do_GET(self):
            if self.path == "/metrics":
                half = fake.generation // 2
                text = ("# HELP vllm:generation_tokens_total Number of generation tokens processed.\n"
                        "# TYPE vllm:generation_tokens_total counter\n"
                        f'vllm:generation_tokens_total{{engine="0",model_name="{MODEL}"}} {half}.0\n'
                        f'vllm:generation_tokens_total{{engine="1",model_name="{MODEL}"}} {fake.generation - half}.0\n'
                        f'vllm:prompt_tokens_total{{engine="0",model_name="{MODEL}"}} {fake.prompt}.0\n')
                self._send(200, (fake.metrics_text or text).encode(), "text/plain; version=0.0.4")
            elif self.path == "/v1/models" and self._authorized():
                self._send(200, json.dumps({"object": "list", "data": [{"id": m} for m in fake.models]}).encode())

        def do_POST(self):
            if not self._authorized():
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with fake.lock:
                fake.bodies.append(body)
                number = len(fake.bodies) - 1
            if number == fake.fail_request:
                self._send(500, b'{"error": "engine dead"}')
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for _ in range(body["max_tokens"]):
                chunk = {"choices": [{"index": 0, "text": " tok", "finish_reason": None}], "usage": None}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            with fake.lock:
                fake.generation += body["max_tokens"] + fake.extra_generation
                fake.prompt += PROMPT_TOKENS + fake.extra_prompt
            if fake.usage:
                usage = {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": body["max_tokens"],
                         "total_tokens": PROMPT_TOKENS + body["max_tokens"]}
                self.wfile.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")

    return Handler


@pytest.fixture
def server():
    """``server(fake)`` -> the base URL of a running FakeVLLM."""
    started = []

    def start(fake: FakeVLLM) -> str:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        started.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in started:
        httpd.shutdown()
        httpd.server_close()


def check(host: str, model: str = MODEL, api_key: str = "", requests: int = 16) -> dict:
    return client.check(host, model, requests=requests, concurrency=4, max_tokens=32, run_time_s=60,
                        api_key=api_key)


def test_sixteen_streamed_requests_whose_tokens_match_the_counters_pass(server):
    fake = FakeVLLM()
    summary = check(server(fake))
    assert summary["status"] == "ok"
    assert (summary["completed"], summary["failed"]) == (16, 0)
    assert summary["client_completion_tokens"] == summary["server_generation_tokens"] == 16 * 32
    assert summary["client_prompt_tokens"] == summary["server_prompt_tokens"] == 16 * PROMPT_TOKENS
    assert summary["p50_ttft_ms"] is not None and summary["output_throughput"] > 0
    assert len(fake.bodies) == 16
    assert {(b["model"], b["max_tokens"], b["stream"], b["ignore_eos"]) for b in fake.bodies} == {(MODEL, 32, True,
                                                                                                   True)}
    assert all(b["stream_options"] == {"include_usage": True} for b in fake.bodies)


def test_more_generated_tokens_than_the_client_counted_is_a_mismatch(server):
    summary = check(server(FakeVLLM(extra_generation=1)))
    assert summary["status"] == ("token mismatch: the client counted 512 completion tokens, "
                                 "vllm:generation_tokens_total grew by 528 (another client on this server?)")


def test_a_prompt_counter_that_grew_differently_is_a_mismatch(server):
    summary = check(server(FakeVLLM(extra_prompt=2)))
    assert summary["status"] == ("token mismatch: the client counted 112 prompt tokens, "
                                 "vllm:prompt_tokens_total grew by 144 (another client on this server?)")


def test_one_failed_request_fails_the_check_naming_it(server):
    summary = check(server(FakeVLLM(fail_request=3)))
    # Which request the server answers fourth depends on the threads; the message names the client's index.
    assert re.fullmatch(r'1 of 16 requests failed; request \d+: HTTP 500: \{"error": "engine dead"\}',
                        summary["status"]), summary["status"]
    assert (summary["completed"], summary["failed"]) == (15, 1)


def test_a_stream_without_usage_fails(server):
    summary = check(server(FakeVLLM(usage=False)), requests=1)
    assert summary["status"] == ("1 of 1 requests failed; request 0: the stream had no usage chunk "
                                 "(the server ignored stream_options.include_usage)")


def test_a_model_the_server_does_not_list_fails_before_any_request(server):
    fake = FakeVLLM(models=["other/model"])
    host = server(fake)
    summary = check(host)
    assert summary["status"] == (f"the server at {host} serves ['other/model'], not '{MODEL}': "
                                 "set model.servedName (or model.name) to a name it lists")
    assert fake.bodies == []


def test_the_api_key_is_sent_as_a_bearer_token_and_a_missing_one_is_named(server):
    host = server(FakeVLLM(api_key="secret"))
    assert check(host, api_key="secret")["status"] == "ok"
    assert check(host)["status"] == f'{host}/v1/models answered HTTP 401: {{"error": "Unauthorized"}}'


def test_an_unreachable_server_is_named(port):
    assert check(f"http://127.0.0.1:{port}")["status"].startswith(f"cannot reach http://127.0.0.1:{port}/v1/models: ")


@pytest.mark.parametrize("value", AWKWARD_LABEL_VALUES)
def test_counters_are_read_whatever_their_label_values_hold(value):
    text = (f'vllm:generation_tokens_total{{engine="0",model_name="{value}"}} 7.0\n'
            f'vllm:prompt_tokens_total{{engine="0",model_name="{value}"}} 3.0 1700000000000\n# EOF\n')
    assert client.counter_totals(text) == {client.GENERATION_TOKENS: 7.0, client.PROMPT_TOKENS: 3.0}


def test_metrics_that_are_not_prometheus_text_fail_the_check_naming_the_url(server):
    host = server(FakeVLLM(metrics_text='vllm:generation_tokens_total{engine="0" 7.0\n'))
    assert check(host)["status"].startswith(f"{host}/metrics is not Prometheus text (")


@pytest.mark.parametrize(("text", "seconds"), [("10m", 600), ("90s", 90), ("1h30m", 5400)])
def test_run_time_reads_helm_durations(text, seconds):
    assert client.seconds(text) == seconds


def test_the_script_runs_on_the_standard_library_and_prometheus_client_alone_and_writes_its_summary(
        server, tmp_path):
    host = server(FakeVLLM(api_key="secret"))
    results = tmp_path / "helm-test.json"
    done = run(*python_with_prometheus_client_alone(tmp_path), str(SCRIPT), "--host", host, "--model", MODEL, "--requests", "8",
               "--concurrency", "2", "--max-tokens", "4", "--run-time", "1m",
               env={"TPSERVE_API_KEY": "secret", "TPSERVE_RESULTS_JSON": str(results)}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"helm test passed: 8/8 requests to {MODEL}; completion tokens client 32 = "
                                  f"server 32; prompt tokens client 56 = server 56; ")
    assert json.loads(results.read_text())["status"] == "ok"


def test_a_failed_check_exits_1_with_its_reason_on_one_line(server, tmp_path):
    host = server(FakeVLLM(extra_generation=1))
    results = tmp_path / "helm-test.json"
    done = run(*python_with_prometheus_client_alone(tmp_path), str(SCRIPT), "--host", host, "--model", MODEL,
               "--requests", "2", "--max-tokens", "4", env={"TPSERVE_RESULTS_JSON": str(results)}, timeout=60)
    assert done.returncode == 1
    assert done.stderr == ("helm test failed: token mismatch: the client counted 8 completion tokens, "
                           "vllm:generation_tokens_total grew by 10 (another client on this server?)\n")
    assert json.loads(results.read_text())["failed"] == 0


def test_an_image_whose_python_lacks_prometheus_client_fails_the_check_naming_the_fix(server):
    """-I -S: the standard library alone, as in an image that is not vLLM's."""
    done = run(sys.executable, "-I", "-S", str(SCRIPT), "--host", server(FakeVLLM()), "--model", MODEL,
               "--requests", "2", "--max-tokens", "4", timeout=60)
    assert done.returncode == 1
    assert done.stderr == ("helm test failed: this image's python3 cannot import prometheus_client, which every "
                           "vLLM image has: serve a vLLM image or set tests.runner=locust\n")
