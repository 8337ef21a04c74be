"""``tpserve shapes``: a model folder of a real architecture for vLLM's --load-format dummy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def shapes(
    name: Annotated[str, typer.Argument(help="A catalog model (e.g. llama-2-70b) or tiny-llama.")],
    directory: Annotated[Path, typer.Argument(help="Folder to write; one holding the same shape is reused.")],
) -> None:
    """Write a model folder of a real architecture for vLLM's --load-format dummy: nothing to download.

    The folder holds the model's published config.json and the 32,000-token Mistral v1 tokenizer,
    which is exact for mistral-7b and mixtral-8x7b. The Llama-2 shapes get a tokenizer of their size
    and special ids with other pieces; Llama-3.1 and Qwen2.5 keep their own vocab_size, so embedding
    and lm_head cost what they really cost, and the tokenizer uses ids below 32,000 only
    (docs/shapes.md). Example:

        tpserve shapes llama-2-70b models/llama-2-70b
        tpserve serve --model models/llama-2-70b -- --load-format dummy
    """
    from tpserve.fetch.modelconfig import parameter_count
    from tpserve.shapes import find_shape, tokenizer_fidelity, write_model_folder

    shape = find_shape(name)
    folder = write_model_folder(shape, directory)
    typer.echo(f"{folder}: {shape.name}, {parameter_count(shape.config()):,} parameters (dummy weights); "
               f"tokenizer {tokenizer_fidelity(shape)}")
    typer.echo(f"serve it: tpserve serve --model {folder} -- --load-format dummy")
