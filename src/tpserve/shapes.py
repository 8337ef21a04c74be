"""Model folders of real architectures that need no weight download.

vLLM serves such a folder with ``--load-format dummy``: it builds the architecture named in
``config.json`` and fills the weights randomly, so speed is that of the real model while nothing is
fetched from a hub. Every folder gets one tokenizer: the 32,000-token SentencePiece model that the
``mistral_common`` package ships (Mistral's v1 tokenizer, that of Mistral-7B-v0.1 and Mixtral-8x7B),
converted to a Hugging Face ``tokenizer.json``. It is exact for those two; the others keep their own
``vocab_size`` in config.json, so the embedding and lm_head cost what they really cost, and the
tokenizer stands in for theirs (see :func:`tokenizer_fidelity` and ``docs/shapes.md``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Protocol

from tpserve import catalog
from tpserve.catalog import CatalogModel
from tpserve.fetch.errors import ShapeError

TOKENIZER_RESOURCE = ("mistral_common", "data/tokenizer.model.v1")
VOCAB_SIZE = 32000
# The stand-in tokenizer's special tokens; every shape's config.json names these ids.
TOKEN_IDS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
# Catalog models whose own tokenizer is the one shipped (mistral_common's tokenizer.model.v1).
EXACT_TOKENIZER = frozenset({"mistral-7b", "mixtral-8x7b"})

# Llama-2 chat format; served with the tokenizer so /v1/chat/completions works on dummy models.
LLAMA2_CHAT_TEMPLATE = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
    "{% set messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ ' ' + message['content'] + ' ' + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)


@dataclass(frozen=True)
class LlamaShape:
    """The numbers that fix a Llama-architecture model's size and speed."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int = 4096
    vocab_size: int = VOCAB_SIZE

    def config(self) -> dict:
        """The Hugging Face ``config.json`` for this shape (fp16, Llama-2 conventions)."""
        return {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "vocab_size": self.vocab_size,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "tie_word_embeddings": False,
            **TOKEN_IDS,
            "torch_dtype": "float16",
            "tpserve_shape": self.name,
        }


class Shape(Protocol):
    """Anything :func:`write_model_folder` can write: a name and the config.json it stands for."""

    name: str

    def config(self) -> dict: ...


@dataclass(frozen=True)
class ModelShape:
    """A catalog model as a dummy-weight folder: its published config with the stand-in tokenizer's ids."""

    model: CatalogModel

    @property
    def name(self) -> str:
        return self.model.name

    def config(self) -> dict:
        return {**self.model.hf_config(), **TOKEN_IDS, "tpserve_shape": self.name}


# A Llama small enough for vLLM on two CPU cores: the demo's and the end-to-end tests' model.
TINY_LLAMA = LlamaShape(
    name="tiny-llama",
    hidden_size=128,
    intermediate_size=344,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=2048,
)

# Every catalog model; with dummy weights they run at the real models' speed.
SHAPES: dict[str, Shape] = {TINY_LLAMA.name: TINY_LLAMA,
                            **{name: ModelShape(model) for name, model in catalog.MODELS.items()}}
LLAMA2_7B = SHAPES["llama-2-7b"]
LLAMA2_70B = SHAPES["llama-2-70b"]


def find_shape(name: str) -> Shape:
    """The shape called NAME; an error listing the known ones otherwise."""
    try:
        return SHAPES[name.strip().lower()]
    except KeyError:
        raise ShapeError(f"unknown shape {name!r}: tpserve has {', '.join(SHAPES)}") from None


def tokenizer_fidelity(shape: Shape) -> str:
    """How the folder's tokenizer compares with the model's own, in a sentence."""
    if shape.name in EXACT_TOKENIZER:
        return "exact: the model's own tokenizer (Mistral v1, 32,000 entries)"
    model = catalog.MODELS.get(shape.name)
    if model is None:
        return "its own: this shape exists only in tpserve, with this tokenizer"
    vocab, own = int(model.config["vocab_size"]), f"the model's own ({model.tokenizer})"
    if vocab == VOCAB_SIZE:
        return (f"stand-in of the same size: Mistral v1's 32,000 entries with the same special ids as {own}, "
                "but other pieces, so a text's token count differs by a few percent")
    return (f"stand-in: Mistral v1's 32,000 entries use ids below 32,000 of the model's {vocab:,}-row "
            f"embedding, which config.json keeps so the embedding and lm_head cost what they really cost; "
            f"{own} splits text into other, fewer tokens")


def tokenizer_model_path() -> Path:
    """Where the installed ``mistral_common`` keeps the 32k SentencePiece model."""
    package, name = TOKENIZER_RESOURCE
    try:
        path = Path(str(resources.files(package).joinpath(name)))
    except ModuleNotFoundError as exc:
        raise ShapeError(
            "the tokenizer comes from the 'mistral_common' package, which is not installed; "
            "install tpserve with its cpu extra (pip install -e '.[cpu]')"
        ) from exc
    if not path.is_file():
        raise ShapeError(f"{package} is installed but has no {name}; reinstall mistral_common")
    return path


def write_tokenizer(directory: Path) -> None:
    """Convert the SentencePiece model to ``tokenizer.json`` + ``tokenizer_config.json`` in DIRECTORY."""
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch)
        shutil.copyfile(tokenizer_model_path(), source / "tokenizer.model")
        (source / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "LlamaTokenizer"}))
        tokenizer = AutoTokenizer.from_pretrained(source, add_bos_token=True)  # as Llama-2 does
        tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
        tokenizer.save_pretrained(directory)


def write_model_folder(shape: Shape, directory: Path) -> Path:
    """Write SHAPE's ``config.json`` and the tokenizer into DIRECTORY, ready for ``--load-format dummy``.

    The folder is built beside its destination and moved into place, so an interrupted write never
    leaves a half-made model behind. An existing folder of the same shape is reused as it is.
    """
    directory = Path(directory)
    config_path = directory / "config.json"
    if config_path.is_file() and (directory / "tokenizer.json").is_file():
        existing = json.loads(config_path.read_text())
        if existing == shape.config():
            return directory
        raise ShapeError(
            f"{directory} already holds a different model (shape {existing.get('tpserve_shape', '?')!r}); "
            "remove it or choose another folder"
        )
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        (staging / "config.json").write_text(json.dumps(shape.config(), indent=2) + "\n")
        (staging / "generation_config.json").write_text(
            json.dumps(TOKEN_IDS, indent=2) + "\n"
        )
        write_tokenizer(staging)
        if directory.exists():
            shutil.rmtree(directory)
        staging.rename(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory
