"""The Locust file against the real vLLM server: every request succeeds and tokens add up."""

import json
import subprocess
import time

import pytest

from tests.conftest import REPO, free_port, run
from tests.e2e.conftest import MODEL_NAME, counters, get_json
from tpserve.commandlines import loadtest_command, loadtest_worker_command
from tpserve.workload.servermetrics import GENERATION_TOKENS, PROMPT_TOKENS


def locust(server, tmp_path, *args):
    return run(*loadtest_command(server.url, run_time_s=300, results_json=tmp_path / "run.json",
                                 records_jsonl=tmp_path / "records.jsonl", extra=args), timeout=400)


def test_vllm_serves_the_name_tpserve_gave_it(vllm_server):
    assert [m["id"] for m in get_json(vllm_server.url + "/v1/models")["data"]] == [MODEL_NAME]


def test_every_request_succeeds_and_client_tokens_equal_the_servers_counter(vllm_server, tmp_path):
    before = counters(vllm_server)
    done = locust(vllm_server, tmp_path, "-u", "4", "-r", "4", "--num-requests", "12", "--max-tokens", "24")
    after = counters(vllm_server)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    assert (report["completed"], report["failed"]) == (12, 0)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 12 and all(r["completion_tokens"] == 24 and r["error"] is None for r in records)
    client_tokens = sum(r["completion_tokens"] for r in records)
    assert client_tokens == 12 * 24 == after[GENERATION_TOKENS] - before[GENERATION_TOKENS]
    assert sum(r["prompt_tokens"] for r in records) == after[PROMPT_TOKENS] - before[PROMPT_TOKENS]
    assert report["token_check"]["status"] == "ok"
    assert report["model_id"] == MODEL_NAME and report["provenance"]["server_version"]
    assert report["tpserve_schema_version"] == 2 and report["endpoint_type"] == "openai"
    assert report["max_concurrency"] == 4 and report["request_rate"] == "inf" and report["max_concurrent_requests"] >= 1
    assert report["output_throughput"] > 0 and report["median_ttft_ms"] > 0


def test_a_load_test_aimed_at_the_wrong_model_stops_before_sending_naming_both(vllm_server, tmp_path):
    before = counters(vllm_server)
    done = locust(vllm_server, tmp_path, "-u", "1", "-r", "1", "--num-requests", "3",
                  "--model", "meta-llama/Llama-2-70b-chat-hf")
    assert done.returncode == 2
    assert (f"serves ['{MODEL_NAME}'], not 'meta-llama/Llama-2-70b-chat-hf'") in done.stderr
    assert counters(vllm_server) == before
    assert not (tmp_path / "run.json").exists()


@pytest.mark.parametrize("input_len, max_tokens", [(5000, 16), (2000, 100)])
def test_random_prompts_beyond_the_servers_context_stop_before_sending_naming_both_lengths(
        vllm_server, tmp_path, input_len, max_tokens):
    assert get_json(vllm_server.url + "/v1/models")["data"][0]["max_model_len"] == 2048
    before = counters(vllm_server)
    done = locust(vllm_server, tmp_path, "-u", "1", "-r", "1", "--num-requests", "3", "--prompt-set", "random",
                  "--random-input-len", str(input_len), "--max-tokens", str(max_tokens))
    assert done.returncode == 2, done.stdout + done.stderr
    assert (f"random prompts of {input_len} tokens (--random-input-len) and {max_tokens} output tokens "
            f"(--max-tokens) need {input_len + max_tokens} tokens of context, more than the server's max_model_len "
            "of 2048 (GET /v1/models)") in done.stderr
    assert counters(vllm_server) == before
    assert not (tmp_path / "run.json").exists()


def test_a_refused_connection_is_a_clear_error_not_a_crash(tmp_path, port):
    done = run(*loadtest_command(f"http://127.0.0.1:{port}", users=1, run_time_s=30), timeout=60)
    assert done.returncode == 2
    assert f"cannot reach http://127.0.0.1:{port}/v1/models" in done.stderr
    assert "Traceback" not in done.stderr


def test_chat_streams_are_measured_and_add_up_too(vllm_server, tmp_path):
    before = counters(vllm_server)
    done = locust(vllm_server, tmp_path, "-u", "3", "-r", "3", "--endpoint", "chat", "--num-requests", "6",
                  "--max-tokens", "12")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["endpoint"] == "/v1/chat/completions" and report["completed"] == 6
    assert counters(vllm_server)[GENERATION_TOKENS] - before[GENERATION_TOKENS] == 6 * 12


def test_random_prompts_have_the_asked_length_warmup_is_excluded_and_poisson_lateness_reported(
        vllm_server, tmp_path):
    before = counters(vllm_server)
    done = locust(vllm_server, tmp_path, "-u", "4", "-r", "4", "--prompt-set", "random", "--random-input-len",
                  "40", "--num-requests", "8", "--warmup-requests", "2", "--request-rate", "20",
                  "--max-tokens", "10", "--seed", "5")
    after = counters(vllm_server)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "run.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["prompt_tokens"] for r in records] == [40] * 8
    assert report["warmup_requests_sent"] == 2 and report["num_prompts"] == 8
    assert report["token_check"]["status"] == "ok"  # counted from after the warm-up
    assert after[GENERATION_TOKENS] - before[GENERATION_TOKENS] == (8 + 2) * 10
    assert report["workload"]["mode"] == "8 requests, poisson 20 req/s, concurrency 4"
    assert "p99_send_lateness_ms" in report and report["request_rate"] == 20
    assert report["workload"]["seed"] == 5


def test_a_prompt_file_drives_the_run(vllm_server, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "One two three", "max_tokens": 5}\n{"prompt": "Four five"}\n')
    done = locust(vllm_server, tmp_path, "-u", "1", "-r", "1", "--prompt-set", "file", "--prompt-file",
                  str(prompts), "--num-requests", "4", "--max-tokens", "7")
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["completion_tokens"] for r in records] == [5, 7, 5, 7]


def test_an_empty_prompt_file_stops_the_run_with_a_clear_error(vllm_server, tmp_path):
    prompts = tmp_path / "empty.jsonl"
    prompts.write_text("")
    done = locust(vllm_server, tmp_path, "-u", "1", "-r", "1", "--prompt-set", "file", "--prompt-file",
                  str(prompts))
    assert done.returncode == 2
    assert f"prompt file {prompts} holds no prompts" in done.stderr and "Traceback" not in done.stderr


def test_two_worker_processes_send_the_run_once_and_the_master_merges_their_raw_records(vllm_server, tmp_path):
    before = counters(vllm_server)
    started = time.monotonic()
    done = locust(vllm_server, tmp_path, "--processes", "2", "-u", "4", "-r", "4", "--num-requests", "13",
                  "--max-tokens", "9", "--prompt-set", "random", "--random-input-len", "24", "--seed", "3",
                  "--warmup-requests", "2")
    took_s = time.monotonic() - started
    after = counters(vllm_server)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "run.json").read_text())
    assert report["workers"] == 2
    assert (report["num_prompts"], report["completed"], report["warmup_requests_sent"]) == (13, 13, 2)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert sorted(r["prompt_id"] for r in records) == sorted(f"random-{i}" for i in range(13))
    assert after[GENERATION_TOKENS] - before[GENERATION_TOKENS] == (13 + 2) * 9
    assert report["token_check"]["status"] == "ok"
    assert 0 < report["duration"] < took_s  # merged onto one clock: not stretched by the workers' clock offsets


def test_a_master_and_two_separate_worker_processes_give_one_merged_run_equal_to_the_servers_counter(
        vllm_server, tmp_path):
    master_port = free_port()
    before = counters(vllm_server)
    master_argv = loadtest_command(
        vllm_server.url, users=4, num_requests=11, max_tokens=7, run_time_s=300, results_json=tmp_path / "run.json",
        records_jsonl=tmp_path / "records.jsonl",
        extra=["--master", "--expect-workers", "2", "--expect-workers-max-wait", "300",
               "--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)])
    with (tmp_path / "master.log").open("w") as master_log:
        master = subprocess.Popen(master_argv, stdout=master_log, stderr=subprocess.STDOUT, cwd=REPO)
        workers = [subprocess.Popen(loadtest_worker_command("127.0.0.1", master_port=master_port),
                                    stdout=subprocess.DEVNULL, stderr=(tmp_path / f"worker{i}.log").open("w"), cwd=REPO)
                   for i in range(2)]
        try:
            status = master.wait(timeout=400)
            worker_statuses = [worker.wait(timeout=120) for worker in workers]
        finally:
            for process in (master, *workers):
                if process.poll() is None:
                    process.kill()
                    process.wait()
    after = counters(vllm_server)
    assert status == 0, (tmp_path / "master.log").read_text()[-3000:]
    assert worker_statuses == [0, 0], [(tmp_path / f"worker{i}.log").read_text()[-1500:] for i in range(2)]
    report = json.loads((tmp_path / "run.json").read_text())
    assert (report["workers"], report["num_prompts"], report["completed"], report["failed"]) == (2, 11, 11, 0)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert len(records) == 11 and all(r["completion_tokens"] == 7 for r in records)
    assert report["token_check"]["status"] == "ok"
    assert report["token_check"]["client_completion_tokens"] == 11 * 7 == \
        after[GENERATION_TOKENS] - before[GENERATION_TOKENS]
    assert report["token_check"]["client_prompt_tokens"] == after[PROMPT_TOKENS] - before[PROMPT_TOKENS]
