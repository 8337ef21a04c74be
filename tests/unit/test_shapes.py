import json
import re

import pytest
from transformers import AutoConfig, AutoTokenizer

from tests.conftest import tpserve
from tpserve.catalog import MODELS
from tpserve.fetch.errors import ShapeError
from tpserve.shapes import (
    LLAMA2_7B,
    LLAMA2_70B,
    SHAPES,
    TINY_LLAMA,
    TOKEN_IDS,
    LlamaShape,
    find_shape,
    tokenizer_fidelity,
    write_model_folder,
)


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


@pytest.fixture(scope="module")
def catalog_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog-shapes")
    return {name: write_model_folder(SHAPES[name], root / name) for name in ("llama-3.1-8b", "mistral-7b")}


def test_every_catalog_model_is_a_shape_beside_the_tiny_llama():
    assert set(SHAPES) == {"tiny-llama", *MODELS}


def test_the_llama_2_shapes_tests_and_benchmarks_import_are_the_catalog_entries():
    assert (LLAMA2_7B.name, LLAMA2_70B.name) == ("llama-2-7b", "llama-2-70b")
    expected = {**MODELS["llama-2-70b"].hf_config(), **TOKEN_IDS, "tpserve_shape": "llama-2-70b"}
    assert LLAMA2_70B.config() == expected


def test_a_larger_vocabulary_stays_in_config_json_while_the_tokenizer_keeps_32k(catalog_folders):
    folder = catalog_folders["llama-3.1-8b"]
    assert json.loads((folder / "config.json").read_text()) == SHAPES["llama-3.1-8b"].config()
    config = AutoConfig.from_pretrained(folder)
    assert (config.vocab_size, config.num_key_value_heads) == (128256, 8)
    assert config.rope_scaling["rope_type"] == "llama3"
    assert (config.bos_token_id, config.eos_token_id) == (1, 2)
    assert len(AutoTokenizer.from_pretrained(folder)) == 32000


def test_the_shipped_tokenizer_is_mistral_v1_itself(catalog_folders):
    """Mistral-7B-v0.1 encodes "Hello world" as 1, 22557, 1526 (Llama-2's tokenizer gives 1, 15043, 3186)."""
    tokenizer = AutoTokenizer.from_pretrained(catalog_folders["mistral-7b"])
    assert tokenizer("Hello world").input_ids == [1, 22557, 1526]


@pytest.mark.parametrize("name, fidelity", [
    ("mistral-7b", "exact: the model's own tokenizer (Mistral v1, 32,000 entries)"),
    ("mixtral-8x7b", "exact: the model's own tokenizer (Mistral v1, 32,000 entries)"),
    ("llama-2-70b", ("stand-in of the same size: Mistral v1's 32,000 entries with the same special ids as "
                     "the model's own (Llama-2 SentencePiece, 32,000 entries), but other pieces, so a text's "
                     "token count differs by a few percent")),
    ("qwen2.5-72b", ("stand-in: Mistral v1's 32,000 entries use ids below 32,000 of the model's 152,064-row "
                     "embedding, which config.json keeps so the embedding and lm_head cost what they really "
                     "cost; the model's own (Qwen2 byte-level BPE, 151,665 entries in a 152,064-row "
                     "embedding) splits text into other, fewer tokens")),
    ("tiny-llama", "its own: this shape exists only in tpserve, with this tokenizer"),
])
def test_each_shape_says_how_its_tokenizer_compares_with_the_models_own(name, fidelity):
    assert tokenizer_fidelity(SHAPES[name]) == fidelity


def test_an_unknown_shape_lists_the_known_ones():
    with pytest.raises(ShapeError, match=re.escape(
            "unknown shape 'llama-2-65b': tpserve has tiny-llama, llama-2-7b, llama-2-13b, llama-2-70b, "
            "llama-3.1-8b, llama-3.1-70b, llama-3.1-405b, mistral-7b, mixtral-8x7b, qwen2.5-7b, "
            "qwen2.5-72b")):
        find_shape("llama-2-65b")


def test_the_shapes_command_reuses_a_folder_of_its_shape_and_says_how_to_serve_it(catalog_folders):
    folder = catalog_folders["mistral-7b"]
    done = tpserve("shapes", "mistral-7b", str(folder))
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"{folder}: mistral-7b, 7,241,732,096 parameters (dummy weights); tokenizer exact: the model's own "
        "tokenizer (Mistral v1, 32,000 entries)\n"
        f"serve it: tpserve serve --model {folder} -- --load-format dummy\n")


def test_the_shapes_commands_json_holds_what_its_lines_say(catalog_folders):
    folder = catalog_folders["llama-3.1-8b"]
    text = tpserve("shapes", "llama-3.1-8b", str(folder))
    done = tpserve("shapes", "llama-3.1-8b", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert set(shown) == {"folder", "shape", "parameters", "tokenizer", "serve"}
    assert text.stdout == (f"{shown['folder']}: {shown['shape']}, {shown['parameters']:,} parameters (dummy weights); "
                           f"tokenizer {shown['tokenizer']}\nserve it: {shown['serve']}\n")
    assert (shown["folder"], shown["shape"]) == (str(folder), "llama-3.1-8b")


def test_the_shapes_command_refuses_an_unknown_shape_in_one_line(tmp_path):
    done = tpserve("shapes", "gpt-5", str(tmp_path / "gpt-5"))
    assert done.returncode == 1
    assert done.stderr.startswith("error: unknown shape 'gpt-5': tpserve has tiny-llama, llama-2-7b")
    assert not (tmp_path / "gpt-5").exists()
