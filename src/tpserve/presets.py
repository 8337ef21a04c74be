"""Workload presets, the named loads of ``tpserve sweep`` and ``tpserve tune`` (``--workload NAME``).

========== ==================================== ============== ========== ===================================
name       prompts                              output tokens  in flight  why
========== ==================================== ============== ========== ===================================
note       the 59 built-in prompts, once each   256            59 (all)   the reference note's experiment
throughput 1,000 random prompts of 512 tokens   256            256        keeps the GPUs busy: tok/s per GPU
chat       every line of data/chat.jsonl        per line       64         mixed lengths, /v1/chat/completions
           (multi-turn conversations)           (256 if none)
========== ==================================== ============== ========== ===================================

An option given on the command line (``--num-requests``, ``--max-tokens``, ``--concurrency``,
``--prompt-set``, ``--random-input-len``, ``--prompt-file``) overrides the preset's value. Without
``--workload`` the options start from ``note``'s values, the sweep's defaults before presets existed.
"""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

from tpserve.data import CHAT_FILE
from tpserve.fetch.errors import ConfigError
from tpserve.measure.runner import Load

PRESETS: dict[str, Load] = {
    "note": Load(num_requests=59, max_tokens=256, concurrency=59, prompt_set="builtin"),
    "throughput": Load(num_requests=1000, max_tokens=256, concurrency=256, prompt_set="random",
                       random_input_len=512),
    "chat": Load(num_requests=0, max_tokens=256, concurrency=64, prompt_set="file", prompt_file=CHAT_FILE,
                 endpoint="chat"),
}


def workload_preset(name: str | None, **explicit) -> Load:
    """The preset NAME (``note`` when None) with the EXPLICIT options that are not None put over it.

    A prompt file's requests are all sent once: the number of requests is its number of lines, unless
    ``num_requests`` is given.
    """
    if name is not None and name not in PRESETS:
        raise ConfigError(f"--workload must be one of {', '.join(PRESETS)}, got {name!r}")
    unknown = set(explicit) - {f.name for f in fields(Load)}
    if unknown:
        raise TypeError(f"not load options: {sorted(unknown)}")
    load = replace(PRESETS[name or "note"], **{key: value for key, value in explicit.items() if value is not None})
    if load.prompt_set == "file":
        if load.prompt_file is None:
            raise ConfigError("--prompt-set file needs --prompt-file PATH (JSONL, one request per line)")
        if explicit.get("prompt_set") == "file" or load.num_requests == 0:
            load = replace(load, num_requests=explicit.get("num_requests") or _lines(load.prompt_file))
    elif explicit.get("prompt_file") is not None:
        raise ConfigError(f"--prompt-file is read only with --prompt-set file (this workload's is {load.prompt_set})")
    return load


def _lines(path: Path) -> int:
    try:
        count = sum(1 for line in Path(path).read_text().splitlines() if line.strip())
    except OSError as exc:
        raise ConfigError(f"cannot read the prompt file {path}: {exc.strerror}; pass --prompt-file PATH") from None
    if count == 0:
        raise ConfigError(f"the prompt file {path} holds no requests")
    return count
