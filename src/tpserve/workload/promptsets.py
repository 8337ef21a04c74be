"""Prompt sets for the load test.

The built-in suite holds 59 prompts, the same count as the reference experiment's run, written for
tpserve and varied in length and task (explanation, code, lists, rewriting, arithmetic, dialogue).
With fixed-length outputs (``max_tokens`` + ``ignore_eos``) their text matters only through its
input length, so the suite is a realistic mix of prompt sizes rather than a quality test.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from tpserve.fetch.errors import LoadTestError
from tpserve.workload.requesttypes import RequestSpec

BUILTIN_PROMPTS: tuple[str, ...] = (
    "Explain tensor parallelism to a new engineer in three sentences.",
    "Write a Python function that returns the n-th Fibonacci number iteratively.",
    "List five things to check before restarting a production database.",
    "What is the difference between latency and throughput?",
    "Summarize the plot of a heist film in which nothing goes wrong.",
    "Translate 'the cache was stale' into French, German and Spanish.",
    "Give a haiku about GPUs waiting for data.",
    "Why does a larger batch size usually raise tokens per second but also raise latency?",
    "Write a SQL query that finds the ten customers with the highest total order value.",
    "Describe how a key-value cache speeds up autoregressive decoding.",
    "Draft a polite email asking a colleague to review a pull request by Friday.",
    "What are the trade-offs between pipeline parallelism and tensor parallelism?",
    "Convert 72 degrees Fahrenheit to Celsius and show the steps.",
    "Name three sorting algorithms and their average time complexity.",
    "Write a bash one-liner that counts lines in all .py files under a directory.",
    "Tell a short story about a lighthouse keeper who learns to code.",
    "Explain what a Kubernetes readiness probe is and why it differs from a liveness probe.",
    "Rewrite this sentence in plain English: 'Utilization of the aforementioned methodology is contraindicated.'",
    "What is 17 multiplied by 23? Show your reasoning.",
    "Give four tips for writing clear commit messages.",
    "Explain the role of NCCL in multi-GPU training and inference.",
    "Write a limerick about a model that ran out of memory.",
    "Compare HTTP/1.1 keep-alive with HTTP/2 multiplexing.",
    "What does fp16 mean, and why do language models use it for inference?",
    "Outline a one-week study plan for learning linear algebra basics.",
    "Write a JavaScript function that debounces another function.",
    "Describe the water cycle for a ten-year-old.",
    "What questions should you ask before choosing a GPU type for serving a 70-billion-parameter model?",
    "Explain what shared memory (/dev/shm) is used for in containers running NCCL.",
    "List the planets of the solar system in order from the sun.",
    "Write a regular expression that matches an ISO 8601 date like 2024-05-17.",
    "Why can an odd number of GPUs fail for a model with 64 attention heads?",
    "Give a recipe for a simple tomato soup.",
    "Explain the difference between a process and a thread.",
    "Write a dialogue between a load balancer and an overloaded server.",
    "What is Little's law and how does it relate request rate, latency and concurrency?",
    "Summarize the main idea of the PageRank algorithm.",
    "Write a Go function that reverses a slice of integers in place.",
    "Describe three ways to reduce the cold-start time of a large model server.",
    "What is the capital of Australia, and why is it not Sydney?",
    "Explain what the softmax function does in one paragraph.",
    "List the steps to roll back a bad deployment on Kubernetes.",
    "Write a short motivational note for a team after a failed launch.",
    "Explain why measuring only the mean latency can hide problems.",
    "How does a persistent volume claim differ from a persistent volume?",
    "Write a Python class for a thread-safe counter.",
    "Describe the smell of rain to someone who has never experienced it.",
    "What is a p99 latency, and why do service level objectives use it?",
    "Give an example of a prompt that would produce a very long answer.",
    "Explain how rotary position embeddings encode token positions.",
    "Write a Rust function that checks whether a string is a palindrome.",
    "What is the difference between weights, activations and the KV cache in GPU memory?",
    "Suggest five names for a coffee shop run by robots.",
    "Explain continuous batching in LLM serving.",
    "Write instructions for tying a bowline knot.",
    "What is an all-reduce, and when does tensor parallelism need one?",
    "Describe a good on-call handover note.",
    "Compute the number of seconds in a leap year.",
    "Explain why the same benchmark should be repeated several times before comparing results.",
)


def builtin_specs(max_tokens: int) -> list[RequestSpec]:
    """The built-in suite as request specs, each asking for exactly MAX_TOKENS output tokens."""
    return [
        RequestSpec(prompt=text, max_tokens=max_tokens, prompt_id=f"builtin-{i:02d}")
        for i, text in enumerate(BUILTIN_PROMPTS)
    ]


def load_jsonl(path: str | Path, max_tokens: int, endpoint: str = "completions") -> list[RequestSpec]:
    """Prompts from a JSONL file: one object per line with "prompt" (text) or "messages" (chat), and
    optionally "max_tokens" and "id". Every bad line is reported with its number; nothing is skipped.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise LoadTestError(f"prompt file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadTestError(f"cannot read prompt file {path}: {exc}") from exc
    specs, problems = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            specs.append(_spec_from_line(line, number, max_tokens, endpoint))
        except _BadLine as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise LoadTestError(f"prompt file {path} has bad lines: {shown}")
    if not specs:
        raise LoadTestError(f"prompt file {path} holds no prompts: write one JSON object per line, "
                            'e.g. {"prompt": "Hello"}')
    return specs


class _BadLine(Exception):
    """One line of a prompt file that cannot become a request."""


def _spec_from_line(line: str, number: int, max_tokens: int, endpoint: str) -> RequestSpec:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadLine(f"not JSON ({exc.msg})") from None
    if not isinstance(record, dict):
        raise _BadLine("not a JSON object")
    prompt, messages = record.get("prompt"), record.get("messages")
    if messages is not None:
        if endpoint != "chat":
            raise _BadLine('has "messages", which only --endpoint chat can send')
        if not (isinstance(messages, list) and messages and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in messages)):
            raise _BadLine('"messages" must be a non-empty list of {"role": ..., "content": ...}')
    elif not isinstance(prompt, str) or not prompt.strip():
        raise _BadLine('needs a non-empty "prompt" string (or "messages" for chat)')
    tokens = record.get("max_tokens", max_tokens)
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1:
        raise _BadLine(f'"max_tokens" must be a positive integer, got {tokens!r}')
    return RequestSpec(prompt=prompt or "", max_tokens=tokens, prompt_id=str(record.get("id", f"line-{number}")),
                       messages=tuple(messages or ()))


# Pseudo-words for random prompts: plain ASCII syllables, so any tokenizer splits them into many tokens.
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]


class Tokenizer(Protocol):
    def count(self, text: str, special: bool = True) -> int: ...
    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


def random_specs(tokenizer: Tokenizer, indices: Iterable[int], input_len: int, max_tokens: int, seed: int = 0,
                 max_tries: int = 6) -> list[RequestSpec]:
    """Prompts of INPUT_LEN prompt tokens each (special tokens included, as the server counts), one per index.

    Each prompt starts with its own index, so no two share a prefix and the prefix cache cannot
    inflate the results; each is drawn from its own seed and index, so a run split over several
    processes sends exactly the prompts one process would. Text is cut at the token level and
    re-checked, since decode/encode can merge tokens.
    """
    indices = list(indices)
    if not indices or input_len < 2:
        raise LoadTestError(f"random prompts need at least 1 prompt of 2 tokens, got {len(indices)} × {input_len}")
    special = tokenizer.count("", special=True)
    specs = []
    for index in indices:
        rng = random.Random(seed * 1_000_003 + index)
        words = " ".join("".join(rng.choices(_SYLLABLES, k=rng.randint(1, 3))) for _ in range(input_len))
        ids = tokenizer.encode(f"{index}: {words}")
        target = input_len - special
        for _ in range(max_tries):
            text = tokenizer.decode(ids[:target])
            got = tokenizer.count(text)
            if got == input_len:
                break
            target += input_len - got
        else:
            raise LoadTestError(f"could not make a prompt of exactly {input_len} tokens (got {got}); "
                                "try another --random-input-len")
        specs.append(RequestSpec(prompt=text, max_tokens=max_tokens, prompt_id=f"random-{index}"))
    return specs
