"""Read vLLM's Prometheus counters, to check the client's token counts against the server's."""

from __future__ import annotations

import re

GENERATION_TOKENS = "vllm:generation_tokens_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")


def counter_totals(exposition: str, names: tuple[str, ...] = (GENERATION_TOKENS, PROMPT_TOKENS)) -> dict:
    """Sum each named counter over all its label sets in a Prometheus text exposition.

    A name that does not appear is absent from the result, so callers can tell "0" from "not exported".
    """
    totals: dict[str, float] = {}
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match and match["name"] in names:
            totals[match["name"]] = totals.get(match["name"], 0.0) + float(match["value"])
    return totals
