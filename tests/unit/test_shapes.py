import json

import pytest
from transformers import AutoTokenizer

from tpserve.errors import ShapeError
from tpserve.shapes import TINY_LLAMA, LlamaShape, write_model_folder


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return write_model_folder(TINY_LLAMA, tmp_path_factory.mktemp("models") / "tiny-llama")


def test_the_folder_holds_a_llama_config_and_a_32k_tokenizer(tiny_folder):
    config = json.loads((tiny_folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["vocab_size"] == 32000
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    assert len(tokenizer) == 32000
    ids = tokenizer("Hello world").input_ids
    assert ids[0] == tokenizer.bos_token_id == 1


def test_the_tokenizer_carries_a_llama2_chat_template(tiny_folder):
    tokenizer = AutoTokenizer.from_pretrained(tiny_folder)
    text = tokenizer.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], tokenize=False)
    assert text == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]"


def test_an_existing_folder_of_the_same_shape_is_reused(tiny_folder):
    before = (tiny_folder / "tokenizer.json").stat().st_mtime_ns
    write_model_folder(TINY_LLAMA, tiny_folder)
    assert (tiny_folder / "tokenizer.json").stat().st_mtime_ns == before


def test_a_folder_holding_another_shape_is_refused(tiny_folder):
    other = LlamaShape("other", 64, 128, 1, 2, 2)
    with pytest.raises(ShapeError, match="already holds a different model \\(shape 'tiny-llama'\\)"):
        write_model_folder(other, tiny_folder)
