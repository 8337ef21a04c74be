"""``tpserve shapes``: a model folder of a real architecture for vLLM's --load-format dummy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def shapes(
    name: Annotated[str, typer.Argument(help="A catalog model (e.g. llama-2-70b) or tiny-llama.")],
    directory: Annotated[Path, typer.Argument(help="Folder to write; one holding the same shape is reused.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the folder as JSON: folder, shape, parameters, tokenizer (how it compares with the "
                       "model's own) and serve (the command that serves it).")] = False,
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
    parameters, tokenizer = parameter_count(shape.config()), tokenizer_fidelity(shape)
    serve = f"tpserve serve --model {folder} -- --load-format dummy"
    if as_json:
        typer.echo(json.dumps({"folder": str(folder), "shape": shape.name, "parameters": parameters,
                               "tokenizer": tokenizer, "serve": serve}, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{folder}: {shape.name}, {parameters:,} parameters (dummy weights); tokenizer {tokenizer}")
    typer.echo(f"serve it: {serve}")
