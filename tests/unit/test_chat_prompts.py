"""tpserve/data/chat.jsonl, the chat preset's prompts: they load, their lengths are mixed, and their generator made them."""

import statistics
import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from tests.conftest import REPO
from tpserve.shapes import TINY_LLAMA, write_model_folder
from tpserve.workload.promptsets import load_jsonl

CHAT = REPO / "src" / "tpserve" / "data" / "chat.jsonl"
GENERATOR = REPO / "tools" / "make_chat_prompts.py"


@pytest.fixture(scope="module")
def specs():
    return load_jsonl(CHAT, max_tokens=64, endpoint="chat")


@pytest.fixture(scope="module")
def prompt_tokens(specs, tmp_path_factory):
    """Each conversation's prompt length as vLLM counts it: the chat template applied, then tokenized."""
    folder = write_model_folder(TINY_LLAMA, tmp_path_factory.mktemp("models") / TINY_LLAMA.name)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = [tokenizer.apply_chat_template(spec.chat_messages(), tokenize=False, add_generation_prompt=True)
             for spec in specs]
    return [len(tokenizer(text, add_special_tokens=False).input_ids) for text in texts]


def test_the_chat_prompts_load_as_200_chat_requests_each_with_its_own_length(specs):
    assert len(specs) == 200
    assert all(spec.messages for spec in specs)
    assert all('"max_tokens": ' in line for line in CHAT.read_text().splitlines())
    assert len({spec.max_tokens for spec in specs}) > 100


def test_every_conversation_alternates_user_and_assistant_and_ends_with_the_user(specs):
    for spec in specs:
        roles = [m["role"] for m in spec.messages if m["role"] != "system"]
        assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]
        assert all(m["role"] == "system" for m in spec.messages[: len(spec.messages) - len(roles)])


def test_conversations_mix_single_questions_long_histories_and_system_prompts(specs):
    turns = [len(spec.messages) for spec in specs]
    assert sum(t == 1 for t in turns) >= 20
    assert sum(t >= 9 for t in turns) >= 20
    assert 50 <= sum(spec.messages[0]["role"] == "system" for spec in specs) <= 150


def test_prompt_lengths_spread_from_a_few_dozen_to_about_two_thousand_tokens_with_a_long_tail(prompt_tokens):
    ordered = sorted(prompt_tokens)
    median, p90 = statistics.median(ordered), ordered[int(0.9 * len(ordered))]
    assert ordered[0] <= 30
    assert ordered[-1] >= 1800
    assert 200 <= median <= 400
    assert p90 >= 3 * median
    assert statistics.fmean(ordered) > 1.3 * median


def test_output_lengths_run_from_16_to_512_tokens_with_a_long_tail(specs):
    lengths = sorted(spec.max_tokens for spec in specs)
    assert lengths[0] == 16
    assert lengths[-1] == 512
    assert statistics.fmean(lengths) > 1.3 * statistics.median(lengths)


def test_every_prompt_and_its_answer_fit_the_tiny_models_context(specs, prompt_tokens):
    assert max(p + spec.max_tokens for p, spec in zip(prompt_tokens, specs, strict=True)) <= 2048


def test_the_generator_writes_the_committed_file_byte_for_byte(tmp_path):
    out = tmp_path / "chat.jsonl"
    subprocess.run([sys.executable, str(GENERATOR), "--out", str(out)], check=True, capture_output=True, timeout=120)
    assert out.read_bytes() == CHAT.read_bytes()


def test_the_generators_check_names_the_fix_when_the_file_differs(tmp_path):
    stale = tmp_path / "chat.jsonl"
    stale.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    done = subprocess.run([sys.executable, str(GENERATOR), "--check", "--out", str(stale)], check=False,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"{stale} is not what tools/make_chat_prompts.py writes: "
                                   "run it and commit the file")
