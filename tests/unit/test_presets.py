"""``--workload note|throughput|chat``: the workload presets, and the options that override them."""

import re

import pytest

from tests.conftest import REPO
from tpserve.fetch.errors import ConfigError
from tpserve.measure.runner import Load
from tpserve.presets import CHAT_FILE, PRESETS, workload_preset


def test_each_preset_is_the_workload_its_table_row_says():
    note, throughput = workload_preset("note"), workload_preset("throughput")
    assert (note.prompt_set, note.num_requests, note.max_tokens, note.concurrency) == ("builtin", 59, 256, 59)
    assert (throughput.prompt_set, throughput.random_input_len, throughput.num_requests, throughput.max_tokens,
            throughput.concurrency) == ("random", 512, 1000, 256, 256)


def test_without_a_preset_the_options_start_from_the_notes_workload_as_the_sweep_did():
    assert workload_preset(None) == Load(num_requests=59, max_tokens=256, concurrency=59, prompt_set="builtin")


def test_chat_sends_every_line_of_its_file_to_the_chat_endpoint_64_at_a_time(tmp_path):
    chat = tmp_path / "chat.jsonl"
    chat.write_text('{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}\n' * 3 + "\n")
    load = workload_preset("chat", prompt_file=chat)
    assert (load.prompt_set, load.prompt_file, load.endpoint, load.num_requests, load.concurrency) == (
        "file", chat, "chat", 3, 64)
    assert PRESETS["chat"].prompt_file == CHAT_FILE == REPO / "src" / "tpserve" / "data" / "chat.jsonl"


def test_explicit_options_override_the_preset(tmp_path):
    load = workload_preset("throughput", num_requests=100, concurrency=32, random_input_len=128, max_tokens=None)
    assert (load.num_requests, load.concurrency, load.random_input_len, load.max_tokens) == (100, 32, 128, 256)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    assert workload_preset("note", prompt_set="file", prompt_file=prompts).num_requests == 2
    assert workload_preset("chat", prompt_file=prompts, num_requests=7).num_requests == 7


@pytest.mark.parametrize("name, options, message", [
    ("chatty", {}, "--workload must be one of note, throughput, chat, got 'chatty'"),
    ("note", {"prompt_set": "file"}, "--prompt-set file needs --prompt-file PATH (JSONL, one request per line)"),
    ("throughput", {"prompt_file": "x.jsonl"}, ("--prompt-file is read only with --prompt-set file (this workload's "
                                               "is random)")),
    ("chat", {"prompt_file": "/no/such/chat.jsonl"}, ("cannot read the prompt file /no/such/chat.jsonl: No such file "
                                                     "or directory; pass --prompt-file PATH")),
])
def test_a_workload_that_cannot_be_sent_is_refused_in_one_line(name, options, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        workload_preset(name, **options)


def test_an_empty_prompt_file_is_refused(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match="holds no requests"):
        workload_preset("chat", prompt_file=tmp_path / "empty.jsonl")
