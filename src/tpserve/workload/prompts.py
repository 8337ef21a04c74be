"""Prompt sets for the load test.

The built-in suite holds 59 prompts, the same count as the reference experiment's run, written for
tpserve and varied in length and task (explanation, code, lists, rewriting, arithmetic, dialogue).
With fixed-length outputs (``max_tokens`` + ``ignore_eos``) their text matters only through its
input length, so the suite is a realistic mix of prompt sizes rather than a quality test.
"""

from __future__ import annotations

from tpserve.workload.records import RequestSpec

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
