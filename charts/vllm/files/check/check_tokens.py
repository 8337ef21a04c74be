"""`helm test`'s check of a vLLM server: N streamed completions, their tokens compared with /metrics.

The chart ships this file in its ConfigMap and the test pod runs it with the serving image's own python3
(vllm/vllm-openai or tpserve's image, whose python3 is the one vLLM is installed in), so it uses the
standard library and prometheus_client, which vLLM requires, to read /metrics. It exits 1 with one line
saying why on any failed request, on a server that does not list the model, or when the tokens the client
counted differ from the growth of vLLM's counters; otherwise it prints a one-line summary and exits 0.
TPSERVE_API_KEY, when set, is sent as a bearer token; TPSERVE_RESULTS_JSON, when set, names a file the
summary is also written to as JSON, whatever the outcome.

    python3 check_tokens.py --host http://vllm:8000 --model ORG/NAME --requests 16 --concurrency 4 \
        --max-tokens 32 --run-time 10m
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

GENERATION_TOKENS = "vllm:generation_tokens_total"
PROMPT_TOKENS = "vllm:prompt_tokens_total"
_DURATION = re.compile(r"(\d+)([smh])")
PROMPTS = (
    "Explain in two sentences what a Kubernetes Service does.",
    "Write a short poem about a GPU that never sleeps.",
    "List three reasons to pin a container image by digest.",
    "What does fp16 mean, and why do language models use it for inference?",
)
HTTP_TIMEOUT_S = 30


class CheckFailed(Exception):
    """Why the check failed, in one line."""


@dataclass(frozen=True)
class Result:
    """One streamed request: its usage, its time to first token, or why it failed."""

    index: int
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_s: float | None = None
    error: str = ""


def seconds(duration: str) -> int:
    """A duration as Helm values write it (10m, 1h30m, 90s) in seconds."""
    if not duration or _DURATION.sub("", duration):
        raise argparse.ArgumentTypeError(f"{duration!r} is not a duration like 90s, 10m or 1h30m")
    return sum(int(n) * {"s": 1, "m": 60, "h": 3600}[unit] for n, unit in _DURATION.findall(duration))


def counter_totals(exposition: str) -> dict[str, float]:
    """Each token counter summed over its label sets; a name the server does not export is absent.

    prometheus_client is imported here so that an image without it fails the check with a reason, not a
    traceback; ValueError: the text is not Prometheus exposition.
    """
    try:
        from prometheus_client.parser import text_string_to_metric_families
    except ImportError as error:
        raise CheckFailed("this image's python3 cannot import prometheus_client, which every vLLM image has: "
                          "serve a vLLM image or set tests.runner=locust") from error
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in (GENERATION_TOKENS, PROMPT_TOKENS):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


def _request(url: str, api_key: str, body: dict | None = None, timeout: float = HTTP_TIMEOUT_S):
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    return urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=timeout)


def _get(host: str, path: str, api_key: str) -> bytes:
    url = host.rstrip("/") + path
    try:
        with _request(url, api_key) as response:
            return response.read()
    except urllib.error.HTTPError as exc:
        raise CheckFailed(f"{url} answered HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise CheckFailed(f"cannot reach {url}: {getattr(exc, 'reason', exc)}; is the server running?") from exc


def served_models(host: str, api_key: str) -> list[str]:
    return [entry["id"] for entry in json.loads(_get(host, "/v1/models", api_key)).get("data", [])]


def server_counters(host: str, api_key: str) -> dict[str, float]:
    url = host.rstrip("/") + "/metrics"
    try:
        return counter_totals(_get(host, "/metrics", api_key).decode())
    except ValueError as error:
        raise CheckFailed(f"{url} is not Prometheus text ({error}): is --host a vLLM server?") from error


def stream_one(host: str, model: str, api_key: str, index: int, max_tokens: int, deadline: float) -> Result:
    """One streamed completion; a failure is a Result with error set, never an exception."""
    left = deadline - time.monotonic()
    if left <= 0:
        return Result(index, error="not sent: --run-time passed first")
    body = {"model": model, "prompt": PROMPTS[index % len(PROMPTS)], "max_tokens": max_tokens,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    start, first, usage, done = time.monotonic(), None, None, False
    try:
        with _request(host.rstrip("/") + "/v1/completions", api_key, body, timeout=left) as response:
            for raw in response:
                line = raw.decode().strip()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    done = True
                    break
                event = json.loads(data)
                if event.get("error"):
                    return Result(index, error=f"the stream reported an error: {event['error']}")
                if first is None and any(choice.get("text") for choice in event.get("choices") or ()):
                    first = time.monotonic()
                usage = event.get("usage") or usage
    except urllib.error.HTTPError as exc:
        return Result(index, error=f"HTTP {exc.code}: {exc.read()[:200].decode(errors='replace')}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Result(index, error=f"{exc.__class__.__name__}: {getattr(exc, 'reason', exc)}")
    if not done:
        return Result(index, error="the stream ended before data: [DONE]")
    if usage is None:
        return Result(index, error="the stream had no usage chunk (the server ignored stream_options.include_usage)")
    return Result(index, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                  None if first is None else first - start)


def check(host: str, model: str, requests: int, concurrency: int, max_tokens: int, run_time_s: int,
          api_key: str = "") -> dict:
    """Run the check; the summary, whose "status" is "ok" or the one-line reason it failed."""
    summary: dict = {"status": "", "host": host, "model": model, "requests": requests, "completed": 0,
                     "failed": 0}
    try:
        models = served_models(host, api_key)
        if model not in models:
            raise CheckFailed(f"the server at {host} serves {models or 'no model'}, not {model!r}: "
                              "set model.servedName (or model.name) to a name it lists")
        before = server_counters(host, api_key)
        if GENERATION_TOKENS not in before:
            raise CheckFailed(f"{host}/metrics has no {GENERATION_TOKENS}: the token check needs vLLM's counters")
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(lambda i: stream_one(host, model, api_key, i, max_tokens, start + run_time_s),
                                    range(requests)))
        duration = time.monotonic() - start
        after = server_counters(host, api_key)
        failed = [result for result in results if result.error]
        ttfts = sorted(result.ttft_s for result in results if result.ttft_s is not None)
        client_completion = sum(result.completion_tokens for result in results)
        client_prompt = sum(result.prompt_tokens for result in results)
        server_generation = round(after.get(GENERATION_TOKENS, 0.0) - before[GENERATION_TOKENS])
        server_prompt = (round(after[PROMPT_TOKENS] - before[PROMPT_TOKENS])
                         if PROMPT_TOKENS in before and PROMPT_TOKENS in after else None)
        summary.update(completed=requests - len(failed), failed=len(failed),
                       client_completion_tokens=client_completion, client_prompt_tokens=client_prompt,
                       server_generation_tokens=server_generation, server_prompt_tokens=server_prompt,
                       duration_s=round(duration, 3), output_throughput=round(client_completion / duration, 1),
                       p50_ttft_ms=round(ttfts[len(ttfts) // 2] * 1000, 1) if ttfts else None)
        if failed:
            raise CheckFailed(f"{len(failed)} of {requests} requests failed; request {failed[0].index}: "
                              f"{failed[0].error}")
        if server_generation != client_completion:
            raise CheckFailed(f"token mismatch: the client counted {client_completion} completion tokens, "
                              f"{GENERATION_TOKENS} grew by {server_generation} (another client on this server?)")
        if server_prompt is not None and server_prompt != client_prompt:
            raise CheckFailed(f"token mismatch: the client counted {client_prompt} prompt tokens, "
                              f"{PROMPT_TOKENS} grew by {server_prompt} (another client on this server?)")
        summary["status"] = "ok"
    except CheckFailed as exc:
        summary["status"] = str(exc)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True, help="the server's base URL, e.g. http://vllm:8000")
    parser.add_argument("--model", required=True, help="the served model name, which /v1/models must list")
    parser.add_argument("--requests", type=int, default=16, help="how many requests to send")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    parser.add_argument("--max-tokens", type=int, default=32, help="output tokens of every request (ignore_eos)")
    parser.add_argument("--run-time", type=seconds, default="10m", help="the whole run's bound, e.g. 10m")
    args = parser.parse_args(argv)
    summary = check(args.host, args.model, args.requests, args.concurrency, args.max_tokens, args.run_time,
                    os.environ.get("TPSERVE_API_KEY", ""))
    path = os.environ.get("TPSERVE_RESULTS_JSON")
    if path:
        with open(path, "w") as out:
            json.dump(summary, out, indent=2)
    if summary["status"] != "ok":
        print(f"helm test failed: {summary['status']}", file=sys.stderr)
        return 1
    prompt = summary["server_prompt_tokens"]
    print(f"helm test passed: {summary['completed']}/{summary['requests']} requests to {summary['model']}; "
          f"completion tokens client {summary['client_completion_tokens']} = server "
          f"{summary['server_generation_tokens']}; prompt tokens client {summary['client_prompt_tokens']} = server "
          f"{'not exported' if prompt is None else prompt}; {summary['duration_s']:.1f} s, "
          f"{summary['output_throughput']} output tok/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
