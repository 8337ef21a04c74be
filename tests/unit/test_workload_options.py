import itertools
import json
import statistics
from types import SimpleNamespace

import pytest

from tpserve.fetch.errors import LoadTestError
from tpserve.workload.distributed import share
from tpserve.workload.metrics import lateness_ms
from tpserve.workload.options import build_plan, build_specs, context_error, options_error, plan_and_specs
from tpserve.workload.pacing import PoissonPacer
from tpserve.workload.promptsets import load_jsonl, random_specs
from tpserve.workload.requesttypes import RequestResult, RunPlan
from tpserve.workload.runstate import RunState, build_record


def options(**overrides):
    base = {"num_requests": 10, "max_tokens": 16, "max_error_rate": 0.0, "request_rate": 0.0, "warmup_requests": 0,
                "prompt_set": "builtin", "prompt_file": "", "random_input_len": 32, "host": "http://127.0.0.1:1",
                "endpoint": "completions", "seed": 7, "temperature": 0.0, "num_users": 4, "model": "", "api_key": "",
                "request_timeout": 300.0, "layout": ""}
    return SimpleNamespace(**{**base, **overrides})


@pytest.mark.parametrize("overrides, message", [
    ({"num_requests": -1}, "--num-requests must be 0 or more, got -1"),
    ({"max_tokens": 0}, "--max-tokens must be at least 1, got 0"),
    ({"max_error_rate": 2}, "--max-error-rate must be within [0, 1], got 2"),
    ({"request_rate": -3}, "--request-rate must be 0 (closed loop) or more, got -3"),
    ({"warmup_requests": -1}, "--warmup-requests must be 0 or more, got -1"),
    ({"request_timeout": 0}, "--request-timeout must be above 0, got 0"),
    ({"prompt_set": "random", "random_input_len": 1}, "--random-input-len must be at least 2, got 1"),
    ({"prompt_set": "file"}, "--prompt-set file needs --prompt-file PATH"),
    ({"prompt_file": "x.jsonl"}, "--prompt-file is read only with --prompt-set file"),
    ({"prompt_set": "random", "num_requests": 0}, "--prompt-set random needs --num-requests"),
    ({"host": ""}, "no server address: pass --host http://HOST:PORT"),
    ({"host": None}, "no server address: pass --host http://HOST:PORT"),
    ({"host": "127.0.0.1:8123"}, "--host 127.0.0.1:8123 has no scheme: pass --host http://127.0.0.1:8123 (or https://)"),
    ({"host": "ftp://x:1"}, "--host ftp://x:1 has scheme 'ftp': the server speaks http:// or https://"),
    ({"host": "http://"}, "--host http:// has no host name: pass --host http://HOST:PORT"),
    ({"layout": "[]"}, '--layout takes "model" and "device_kind"'),
])
def test_invalid_options_are_rejected_with_the_fix(overrides, message):
    assert options_error(options(**overrides)).startswith(message)


def test_usable_options_pass():
    assert options_error(options()) is None


CONTEXT_HINT = "or serve a longer context (vLLM's --max-model-len, the chart's vllm.maxModelLen)"


@pytest.mark.parametrize("input_len, max_tokens", [(5000, 256), (2048, 1), (1793, 256), (2, 2047)])
def test_random_prompts_and_output_beyond_the_servers_context_are_refused_naming_both_lengths(input_len, max_tokens):
    error = context_error(options(prompt_set="random", random_input_len=input_len, max_tokens=max_tokens), 2048)
    assert error == (
        f"random prompts of {input_len} tokens (--random-input-len) and {max_tokens} output tokens (--max-tokens) "
        f"need {input_len + max_tokens} tokens of context, more than the server's max_model_len of 2048 "
        f"(GET /v1/models): keep --random-input-len + --max-tokens within 2048, {CONTEXT_HINT}")


@pytest.mark.parametrize("input_len, max_tokens", [(1792, 256), (2, 16), (2047, 1)])
def test_random_prompts_that_fit_the_context_with_their_output_pass(input_len, max_tokens):
    assert context_error(options(prompt_set="random", random_input_len=input_len, max_tokens=max_tokens), 2048) is None


@pytest.mark.parametrize("prompt_set", ["builtin", "file"])
def test_an_output_length_that_leaves_no_room_for_a_prompt_is_refused(prompt_set):
    assert context_error(options(prompt_set=prompt_set, max_tokens=2048), 2048) == (
        "--max-tokens 2048 leaves no room for a prompt in the server's max_model_len of 2048 (GET /v1/models): "
        f"ask for fewer output tokens, {CONTEXT_HINT}")
    assert context_error(options(prompt_set=prompt_set, max_tokens=2000), 2048) is None


def test_a_server_that_reports_no_context_length_is_not_checked():
    assert context_error(options(prompt_set="random", random_input_len=5000), None) is None


def test_the_web_ui_leaves_the_host_to_the_start_form():
    assert options_error(options(host=""), need_host=False) is None


def test_a_jsonl_file_gives_prompts_messages_and_per_line_lengths(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "hi", "max_tokens": 5, "id": "a"}\n\n'
                    '{"messages": [{"role": "user", "content": "yo"}]}\n')
    first, second = load_jsonl(path, 16, endpoint="chat")
    assert (first.prompt, first.max_tokens, first.prompt_id) == ("hi", 5, "a")
    assert first.chat_messages() == [{"role": "user", "content": "hi"}]
    assert second.chat_messages() == [{"role": "user", "content": "yo"}] and second.prompt_id == "line-3"


def test_every_bad_line_of_a_prompt_file_is_named(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\nnot json\n[1]\n{"prompt": ""}\n{"prompt": "x", "max_tokens": 0}\n'
                    '{"messages": [{"role": "user", "content": "m"}]}\n')
    with pytest.raises(LoadTestError) as caught:
        load_jsonl(path, 16)
    message = str(caught.value)
    for fragment in ("line 2: not JSON", "line 3: not a JSON object", 'line 4: needs a non-empty "prompt"',
                     'line 5: "max_tokens" must be a positive integer, got 0',
                     'line 6: has "messages", which only --endpoint chat can send'):
        assert fragment in message


@pytest.mark.parametrize("content, message", [("", "holds no prompts"), ("\n\n", "holds no prompts")])
def test_an_empty_prompt_file_is_refused(tmp_path, content, message):
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(LoadTestError, match=message):
        load_jsonl(path, 16)


def test_a_missing_prompt_file_is_named(tmp_path):
    with pytest.raises(LoadTestError, match="prompt file .*missing.jsonl does not exist"):
        load_jsonl(tmp_path / "missing.jsonl", 16)


class CharTokenizer:
    """A tokenizer where every character is a token and one BOS token is added, as Llama's does."""

    def count(self, text, special=True):
        return len(text) + (1 if special else 0)

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_random_prompts_have_exactly_the_asked_length_and_unique_prefixes():
    specs = random_specs(CharTokenizer(), range(20), 33, 8, seed=1)
    assert all(CharTokenizer().count(s.prompt) == 33 for s in specs)
    assert len({s.prompt[:4] for s in specs}) == 20
    assert specs == random_specs(CharTokenizer(), range(20), 33, 8, seed=1)
    assert specs != random_specs(CharTokenizer(), range(20), 33, 8, seed=2)


@pytest.mark.parametrize("prompt_set", ["builtin", "random"])
def test_workers_together_send_exactly_what_one_process_would(monkeypatch, prompt_set):
    monkeypatch.setattr("tpserve.workload.options.ServerTokenizer", lambda *a: CharTokenizer())
    opts = options(prompt_set=prompt_set, num_requests=7)
    plan = build_plan(opts, "m")
    (whole, _) = build_specs(opts, plan)
    shards = [build_specs(opts, plan, workers=3, index=i)[0] for i in range(3)]
    sent = {}
    for index, specs in enumerate(shards):
        count = share(7, 3, index)
        for j in range(count):
            sent[index + 3 * j] = specs[j % len(specs)]
    assert [sent[k] for k in range(7)] == [whole[k % len(whole)] for k in range(7)]


def test_random_prompts_are_split_into_measured_and_distinct_warmup_prompts(monkeypatch):
    monkeypatch.setattr("tpserve.workload.options.ServerTokenizer", lambda *a: CharTokenizer())
    plan, specs, warmup = plan_and_specs(options(prompt_set="random", warmup_requests=3), "m")
    assert (len(specs), len(warmup)) == (10, 3)
    assert not {s.prompt for s in specs} & {w.prompt for w in warmup}
    assert plan.prompt_set == "random (32 input tokens)" and plan.seed == 7


def test_a_run_without_seed_gets_a_fresh_one_that_the_plan_records():
    first, _, _ = plan_and_specs(options(seed=-1), "m")
    second, _, _ = plan_and_specs(options(seed=-1), "m")
    assert first.seed != second.seed


def test_poisson_sends_start_now_and_average_the_asked_rate():
    pacer = PoissonPacer(rate=50.0, seed=3)
    times = [pacer.next_send_time(100.0) for _ in range(5000)]
    assert times[0] == 100.0 and times == sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.05)
    assert statistics.pstdev(gaps) == pytest.approx(1 / 50, rel=0.08)  # exponential: sd = mean


def test_warmup_requests_come_first_and_stay_out_of_the_figures():
    plan = RunPlan(host="h", model="m", max_tokens=4, num_requests=2, warmup_requests=2)
    state = RunState(plan, load := [_spec("a"), _spec("b")], warmup_specs=[_spec("w")])
    assert [state.next_warmup().prompt_id for _ in range(2)] == ["w", "w"] and state.next_warmup() is None
    assert not state.warmed_up
    for _ in range(2):
        state.record(_result(), warmup=True)
    assert state.warmed_up
    assert [state.next_spec() for _ in range(3)] == [load[0], load[1], None]
    for _ in range(2):
        state.record(_result())
    record = build_record(state, {})
    assert record.metrics.num_prompts == 2 and record.warmup_requests_sent == 2


def test_paced_runs_report_how_late_sends_left():
    assert lateness_ms([]) == {}
    summary = lateness_ms([0.001, 0.002, 0.010])
    assert summary["mean_send_lateness_ms"] == pytest.approx(13 / 3)
    assert summary["max_send_lateness_ms"] == pytest.approx(10.0)


def test_the_mode_says_how_the_load_was_offered():
    assert RunPlan("h", "m", 1, 59, concurrency=8).mode == "59 requests, closed loop, concurrency 8"
    assert RunPlan("h", "m", 1, 0, request_rate=2.5, concurrency=4).mode == "timed, poisson 2.5 req/s, concurrency 4"


def _spec(name):
    from tpserve.workload.requesttypes import RequestSpec

    return RequestSpec(prompt=name, max_tokens=4, prompt_id=name)


def _result():
    return RequestResult("p", 0.0, 1.0, ttft=0.1, latency=1.0, completion_tokens=4, max_tokens=4)


def test_report_names_the_chat_endpoint():
    state = RunState(RunPlan("h", "m", 4, 1, endpoint="chat"), [_spec("a")])
    state.issued = 1
    state.record(_result())
    document = json.loads(json.dumps(build_record(state, {}).to_json()))
    assert (document["endpoint"], document["endpoint_type"]) == ("/v1/chat/completions", "openai-chat")


def test_requests_are_shared_evenly_between_workers_first_ones_taking_the_rest():
    from tpserve.workload.distributed import share

    assert [share(13, 4, i) for i in range(4)] == [4, 3, 3, 3]
    assert sum(share(1000, 7, i) for i in range(7)) == 1000
    with pytest.raises(ValueError, match="outside 0..3"):
        share(10, 4, 4)


def test_worker_records_are_moved_onto_the_masters_clock():
    from tpserve.workload.distributed import to_master_clock

    record = _result().to_json() | {"send_time": 10.0, "finish_time": 11.0}
    (moved,) = to_master_clock([record], worker_offset=1000.5, master_offset=1000.0)
    assert (moved.send_time, moved.finish_time, moved.latency) == (10.5, 11.5, 1.0)
