"""``tpserve startup``: where a server's time to ready went, phase by phase, from its log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def startup(
    log: Annotated[Path, typer.Argument(help="The server's log (.gz read as is), from its first line.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the phases as JSON.")] = False,
) -> None:
    """Split a vLLM server's start into phases (tpserve's checks, imports, weights, torch.compile, KV cache,
    CUDA graphs, warm-up, first /health 200) with each one's seconds and share of the time to ready.

    Times come from each line's `kubectl logs --timestamps` prefix where there is one (sub-second, and the
    only way to time the first /health 200), else from vLLM's own whole-second stamps. Example:

        kubectl logs --timestamps deploy/vllm > server.log && tpserve startup server.log
    """
    from tpserve.startup import read_startup, table

    result = read_startup(log)
    typer.echo(json.dumps(result.to_json(), indent=2) if as_json else table(result), nl=as_json)
