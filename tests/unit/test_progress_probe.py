"""The chart's liveness probe (charts/vllm/files/check/progress_probe.py) run against a small stdlib server.

The server answers /health with a scripted status and /metrics with Prometheus text in vLLM 0.26.0's
names and labels (tests/data/vllm-0.26.0-metrics.txt). The probe runs as the kubelet runs it, a
subprocess of a python3 that has the standard library and prometheus_client alone (a vLLM image's), with its
clock given by --now: time passes between runs by a number, never by sleeping.
"""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import REPO, free_port, run
from tests.exposition import AWKWARD_LABEL_VALUES, python_with_prometheus_client_alone

SCRIPT = REPO / "charts" / "vllm" / "files" / "check" / "progress_probe.py"
T0 = 1_800_000_000.0


@dataclass
class FakeVLLM:
    """What the server answers: /health's status, the running gauge and token counters (metrics False: no
    /metrics), under MODEL_NAME; ``metrics_text``, when set, is what /metrics answers instead."""

    health: int = 200
    running: int = 0
    generation: int = 0
    prompt: int = 0
    metrics: bool = True
    model_name: str = "org/m"
    metrics_text: str = ""


def exposition(fake: FakeVLLM) -> str:
    """Two engines' samples, as a data-parallel server exports them, with the comments vLLM writes."""
    labels = tuple(f'{{engine="{engine}",model_name="{fake.model_name}"}}' for engine in "01")
    split = (lambda total: (total // 2, total - total // 2))
    lines = ["# HELP vllm:num_requests_running Number of requests in model execution batches.",
             "# TYPE vllm:num_requests_running gauge"]
    lines += [f"vllm:num_requests_running{label} {n}.0" for label, n in zip(labels, split(fake.running))]
    lines += ["# TYPE vllm:prompt_tokens_total counter"]
    lines += [f"vllm:prompt_tokens_total{label} {n}.0" for label, n in zip(labels, split(fake.prompt))]
    lines += [f"vllm:prompt_tokens_created{label} 1.7e+09" for label in labels]
    lines += ["# TYPE vllm:generation_tokens_total counter"]
    lines += [f"vllm:generation_tokens_total{label} {n}.0" for label, n in zip(labels, split(fake.generation))]
    lines += ['vllm:request_success_total{engine="0",finished_reason="stop",model_name="org/m"} 3.0']
    return fake.metrics_text or "\n".join(lines) + "\n"


@pytest.fixture
def fake():
    """A running FakeVLLM, changed by the test between probe runs; its URL is ``fake.url``."""
    state = FakeVLLM()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            if self.path == "/health":
                status, body = state.health, b""
            elif self.path == "/metrics" and state.metrics:
                status, body = 200, exposition(state).encode()
            else:
                status, body = 404, b"not found"
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def probe(tmp_path):
    """``probe(url, at=seconds after T0, stall=..., unhealthy=...)`` -> the finished probe process."""
    python = python_with_prometheus_client_alone(tmp_path)

    def run_probe(url: str, at: float, stall: float = 180, unhealthy: float = 300):
        return run(*python, str(SCRIPT), "--state", str(tmp_path / "probe.json"), "--url", url,
                   "--unhealthy-seconds", str(unhealthy), "--stall-seconds", str(stall), "--now", str(T0 + at),
                   timeout=120)

    run_probe.state = tmp_path / "probe.json"
    return run_probe


def passes(result) -> bool:
    return result.returncode == 0 and result.stderr == "" and result.stdout.count("\n") == 1


def test_a_healthy_idle_server_passes_however_long_nothing_is_counted(fake, probe):
    for at in (0, 30, 1000, 1030):
        assert passes(probe(fake.url, at)), at


def test_running_requests_whose_tokens_grow_pass(fake, probe):
    fake.running = 64
    for at in range(0, 600, 30):
        fake.generation += 100
        result = probe(fake.url, at)
        assert passes(result), result.stderr
    assert result.stdout == f"healthy; 64 running, {fake.generation} tokens\n"


def test_prompt_tokens_alone_count_as_progress(fake, probe):
    fake.running = 1
    for at in range(0, 600, 30):
        fake.prompt += 4000
        assert passes(probe(fake.url, at))


def test_running_requests_with_frozen_counters_fail_only_after_stall_seconds(fake, probe):
    fake.running, fake.generation, fake.prompt = 64, 5000, 700
    for at in range(0, 181, 30):
        assert passes(probe(fake.url, at))
    assert probe(fake.url, 180).stdout == "healthy; 64 running, no new tokens for 180 s of 180 s\n"
    failed = probe(fake.url, 210)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == ("vLLM engine stalled: no prompt or generation token counted for 210 s while "
                             "vllm:num_requests_running is 64 (more than --stall-seconds 180)\n")
    assert probe(fake.url, 240).returncode == 1


@pytest.mark.parametrize("value", AWKWARD_LABEL_VALUES)
def test_a_stall_is_seen_whatever_the_label_values_hold(fake, probe, value):
    fake.running, fake.generation, fake.model_name = 2, 10, value
    assert probe(fake.url, 0).stdout == "healthy; 2 running, 10 tokens\n"
    assert probe(fake.url, 181).stderr.startswith("vLLM engine stalled: ")


def test_a_stalled_server_that_moves_again_passes_at_once(fake, probe):
    fake.running, fake.generation = 2, 10
    assert passes(probe(fake.url, 0))
    assert probe(fake.url, 200).returncode == 1
    fake.generation += 1
    assert passes(probe(fake.url, 230))
    assert passes(probe(fake.url, 400))


def test_a_stall_that_ends_because_the_requests_finished_or_failed_is_not_a_stall(fake, probe):
    fake.running, fake.generation = 3, 10
    assert passes(probe(fake.url, 0))
    fake.running = 0
    assert passes(probe(fake.url, 170))
    fake.running = 3
    assert passes(probe(fake.url, 200))
    assert probe(fake.url, 371).returncode == 1


def test_stall_seconds_zero_turns_the_stall_check_off(fake, probe):
    fake.running, fake.generation = 64, 10
    for at in (0, 200, 400):
        result = probe(fake.url, at, stall=0)
        assert passes(result)
    assert result.stdout == "healthy; stall check off\n"


def test_a_failing_health_fails_only_after_unhealthy_seconds(fake, probe):
    assert passes(probe(fake.url, 0))
    fake.health = 503
    for at in range(30, 301, 30):
        result = probe(fake.url, at)
        assert passes(result)
    assert result.stdout == "/health not 200 for 300 s of 300 s; last: HTTP 503\n"
    failed = probe(fake.url, 330)
    assert failed.returncode == 1
    assert failed.stderr == "vLLM /health has not answered 200 for 330 s (more than --unhealthy-seconds 300); " \
                            "last: HTTP 503\n"
    fake.health = 200
    assert passes(probe(fake.url, 360))


def test_a_server_that_does_not_answer_fails_after_unhealthy_seconds_naming_why(probe):
    url = f"http://127.0.0.1:{free_port()}"
    assert passes(probe(url, 0, unhealthy=60))
    failed = probe(url, 61, unhealthy=60)
    assert failed.returncode == 1
    assert failed.stderr == "vLLM /health has not answered 200 for 61 s (more than --unhealthy-seconds 60); " \
                            "last: [Errno 111] Connection refused\n"


def test_unreadable_metrics_with_a_healthy_server_pass_with_no_stall_decision(fake, probe):
    fake.running, fake.generation, fake.metrics = 64, 10, False
    for at in (0, 200, 400):
        result = probe(fake.url, at)
        assert passes(result)
    assert result.stdout == "healthy; /metrics unreadable, no stall decision\n"


def test_metrics_that_are_not_prometheus_text_make_no_stall_decision(fake, probe):
    fake.running, fake.generation = 64, 10
    fake.metrics_text = 'vllm:num_requests_running{engine="0" 64.0\n'
    for at in (0, 200, 400):
        result = probe(fake.url, at)
        assert passes(result)
    assert result.stdout == "healthy; /metrics unreadable, no stall decision\n"


def test_an_image_whose_python_lacks_prometheus_client_makes_no_stall_decision(fake, tmp_path):
    """-I -S: the standard library alone, as in an image that is not vLLM's; the server must not be restarted
    for that."""
    fake.running, fake.generation = 64, 10
    for at in (0, 200, 400):
        result = run(sys.executable, "-I", "-S", str(SCRIPT), "--state", str(tmp_path / "probe.json"), "--url",
                     fake.url, "--unhealthy-seconds", "300", "--stall-seconds", "180", "--now", str(T0 + at))
        assert passes(result), result.stderr
    assert result.stdout == "healthy; python3 cannot import prometheus_client, no stall decision\n"


@pytest.mark.parametrize("garbage", ["", "{not json", "[]", '{"checked_at": "soon"}', '{"checked_at": NaN}',
                                     "\x00\xff"])
def test_a_garbage_state_file_is_replaced_by_a_fresh_one(fake, probe, garbage):
    probe.state.write_text(garbage)
    fake.running, fake.generation = 1, 5
    assert passes(probe(fake.url, 0))
    assert json.loads(probe.state.read_text()) == {"checked_at": T0, "healthy_at": T0, "progressed_at": T0,
                                                   "tokens": 5.0}


def test_a_state_left_by_an_earlier_container_is_not_held_against_the_new_one(fake, probe):
    """The emptyDir outlives a container restart; the new server's first probe comes a whole load later."""
    fake.running, fake.generation = 4, 0
    assert passes(probe(fake.url, 0))
    assert probe(fake.url, 200).returncode == 1
    assert passes(probe(fake.url, 200 + 301))


def test_a_state_folder_that_cannot_be_written_fails_naming_the_option(fake, tmp_path):
    result = run(sys.executable, str(SCRIPT), "--state", str(tmp_path / "missing" / "probe.json"), "--url", fake.url,
                 "--unhealthy-seconds", "300", "--stall-seconds", "180")
    assert result.returncode == 1
    assert result.stderr == (f"cannot write the probe's state {tmp_path / 'missing' / 'probe.json'}: "
                             "No such file or directory; give --state a file in a writable folder\n")


def test_a_negative_budget_is_refused_by_the_command_line(fake, tmp_path):
    result = run(sys.executable, str(SCRIPT), "--state", str(tmp_path / "probe.json"), "--url", fake.url,
                 "--unhealthy-seconds", "300", "--stall-seconds", "-1")
    assert result.returncode == 2
    assert "argument --stall-seconds: '-1' is not a number of seconds >= 0" in result.stderr


def test_only_metric_names_that_vllm_0_26_exports_are_read():
    recorded = (REPO / "tests" / "data" / "vllm-0.26.0-metrics.txt").read_text().splitlines()
    text = SCRIPT.read_text()
    for name in ("vllm:num_requests_running", "vllm:prompt_tokens_total", "vllm:generation_tokens_total"):
        assert name in text and name in recorded
