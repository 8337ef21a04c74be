"""The load test's command-line options (each also a ``TPSERVE_*`` variable) and what they build.

Locust parses them (``events.init_command_line_parser``); :func:`plan_and_specs` turns them into a
:class:`RunPlan` and the prompts to send, or a one-line :class:`LoadTestError`.
"""

from __future__ import annotations

import json
import random

from tpserve.workload.promptsets import builtin_specs, load_jsonl, random_specs
from tpserve.workload.requesttypes import RequestSpec, RunPlan
from tpserve.workload.runrecord import Layout
from tpserve.workload.serverapi import ServerTokenizer

ENDPOINTS = ("completions", "chat")
PROMPT_SETS = ("builtin", "random", "file")


def add_options(parser) -> None:
    add = parser.add_argument  # Locust's own add_argument (web-UI flags) lives on the parser, not on groups
    add("--model", env_var="TPSERVE_MODEL", default="",
        help="Model id the server must list at /v1/models (default: the only one it lists)")
    add("--endpoint", env_var="TPSERVE_ENDPOINT", default="completions", choices=ENDPOINTS,
        help="Stream /v1/completions or /v1/chat/completions")
    add("--prompt-set", env_var="TPSERVE_PROMPT_SET", default="builtin", choices=PROMPT_SETS,
        help="builtin: 59 written prompts; random: unique prompts of --random-input-len tokens; "
             "file: --prompt-file")
    add("--prompt-file", env_var="TPSERVE_PROMPT_FILE", default="",
        help='JSONL, one {"prompt": ...} or {"messages": [...]} per line, optional "max_tokens"')
    add("--random-input-len", env_var="TPSERVE_RANDOM_INPUT_LEN", type=int, default=128,
        help="Prompt tokens of each random prompt (special tokens included)")
    add("--num-requests", env_var="TPSERVE_NUM_REQUESTS", type=int, default=59,
        help="Send exactly this many measured requests, then stop (0: run until --run-time)")
    add("--max-tokens", env_var="TPSERVE_MAX_TOKENS", type=int, default=128,
        help="Output tokens per request; ignore_eos makes every completion this long")
    add("--temperature", env_var="TPSERVE_TEMPERATURE", type=float, default=0.0,
        help="Sampling temperature sent with every request")
    add("--request-rate", env_var="TPSERVE_REQUEST_RATE", type=float, default=0.0,
        help="Poisson arrivals at this many requests/s (0: closed loop, each user back to back)")
    add("--warmup-requests", env_var="TPSERVE_WARMUP_REQUESTS", type=int, default=0,
        help="Requests sent first and left out of every figure")
    add("--seed", env_var="TPSERVE_SEED", type=int, default=-1,
        help="Seed for random prompts and arrivals (default: a new one per run, recorded in the run record)")
    add("--request-timeout", env_var="TPSERVE_REQUEST_TIMEOUT", type=float, default=300.0,
        help="Seconds a request may wait for the server's next bytes before it fails")
    add("--max-error-rate", env_var="TPSERVE_MAX_ERROR_RATE", type=float, default=0.0,
        help="Exit non-zero when more than this fraction of requests fail")
    add("--api-key", env_var="TPSERVE_API_KEY", default="", is_secret=True,
        help="Bearer token for servers started with an API key (prefer the env variable)")
    add("--results-json", env_var="TPSERVE_RESULTS_JSON", default="",
        help="Write the run's summary (vllm bench serve key names) to this file")
    add("--records-jsonl", env_var="TPSERVE_RECORDS_JSONL", default="",
        help="Write one JSON line per request to this file")
    add("--print-results", env_var="TPSERVE_PRINT_RESULTS", action="store_true", default=False,
        help="Also print the run's results JSON to standard output as one marked line, for runs whose files "
             "nobody can reach (a Kubernetes Job): `tpserve loadtest-results LOG` writes it back to a file")
    add("--layout", env_var="TPSERVE_LAYOUT", default="",
        help='What serves the run, recorded in its results for tpserve report: JSON with "model", '
             '"device_kind", and optionally "tensor_parallel_size", "pipeline_parallel_size", "replicas"')


def options_error(options, need_host: bool = True) -> str | None:
    """The first problem with the options, in words that name the fix; None when they are usable.

    NEED_HOST false leaves the server address out (the web UI asks for it when a run starts).
    """
    layout_problem = layout_error(options.layout)
    checks = (
        (options.num_requests < 0, f"--num-requests must be 0 or more, got {options.num_requests}"),
        (options.max_tokens < 1, f"--max-tokens must be at least 1, got {options.max_tokens}"),
        (not 0 <= options.max_error_rate <= 1, f"--max-error-rate must be within [0, 1], got {options.max_error_rate}"),
        (options.request_rate < 0, f"--request-rate must be 0 (closed loop) or more, got {options.request_rate}"),
        (options.request_timeout <= 0, f"--request-timeout must be above 0, got {options.request_timeout}"),
        (options.warmup_requests < 0, f"--warmup-requests must be 0 or more, got {options.warmup_requests}"),
        (options.prompt_set == "random" and options.random_input_len < 2,
         f"--random-input-len must be at least 2, got {options.random_input_len}"),
        (options.prompt_set == "file" and not options.prompt_file, "--prompt-set file needs --prompt-file PATH"),
        (options.prompt_set != "file" and bool(options.prompt_file),
         "--prompt-file is read only with --prompt-set file"),
        (options.prompt_set == "random" and options.num_requests == 0,
         "--prompt-set random needs --num-requests: each request gets its own unique prompt"),
        (layout_problem is not None, layout_problem),
    )
    if need_host:
        checks += _host_checks(options.host)
    return next((message for failed, message in checks if failed), None)


def parse_layout(text: str) -> Layout | None:
    """The --layout JSON as a Layout; None when empty. Raises ValueError naming what is wrong."""
    if not text:
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--layout must be JSON, got {text!r} ({exc.msg})") from None
    fields = {"model", "device_kind", "tensor_parallel_size", "pipeline_parallel_size", "replicas"}
    if not isinstance(document, dict) or not {"model", "device_kind"} <= set(document) or set(document) - fields:
        raise ValueError(f'--layout takes "model" and "device_kind", and optionally "tensor_parallel_size", '
                         f'"pipeline_parallel_size" and "replicas"; got {text!r}')
    return Layout(**document)


def layout_error(text: str) -> str | None:
    try:
        parse_layout(text)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def _host_checks(host: str | None) -> tuple:
    host = host or ""
    scheme, separator, rest = host.partition("://")
    return (
        (not host, "no server address: pass --host http://HOST:PORT"),
        (bool(host) and not separator,
         f"--host {host} has no scheme: pass --host http://{host} (or https://)"),
        (bool(separator) and scheme not in ("http", "https"),
         f"--host {host} has scheme {scheme!r}: the server speaks http:// or https://"),
        (bool(separator) and not rest.split("/")[0],
         f"--host {host} has no host name: pass --host http://HOST:PORT"),
    )


CONTEXT_HINT = "or serve a longer context (vLLM's --max-model-len, the chart's vllm.maxModelLen)"


def context_error(options, max_model_len: int | None) -> str | None:
    """Why the run's requests cannot fit the server's context MAX_MODEL_LEN (vLLM's max_model_len in
    /v1/models), or None: vLLM answers HTTP 400 to a request whose prompt and max_tokens together exceed it, so
    such a run would send every request only to fail them all. Built-in and file prompts have lengths known only
    after tokenizing; their output alone must leave room for one prompt token at least."""
    if not max_model_len:
        return None
    if options.prompt_set == "random":
        needed = options.random_input_len + options.max_tokens
        if needed > max_model_len:
            return (f"random prompts of {options.random_input_len} tokens (--random-input-len) and "
                    f"{options.max_tokens} output tokens (--max-tokens) need {needed} tokens of context, more than "
                    f"the server's max_model_len of {max_model_len} (GET /v1/models): keep --random-input-len + "
                    f"--max-tokens within {max_model_len}, {CONTEXT_HINT}")
    elif options.max_tokens >= max_model_len:
        return (f"--max-tokens {options.max_tokens} leaves no room for a prompt in the server's max_model_len of "
                f"{max_model_len} (GET /v1/models): ask for fewer output tokens, {CONTEXT_HINT}")
    return None


def headers(options) -> dict:
    return {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}


def build_plan(options, model: str, seed: int | None = None) -> RunPlan:
    """The run's plan from the options; a fresh seed unless one is given or set."""
    if seed is None:
        seed = options.seed if options.seed >= 0 else random.SystemRandom().randrange(2**31)
    return RunPlan(
        host=options.host, model=model, max_tokens=options.max_tokens, num_requests=options.num_requests,
        temperature=options.temperature, endpoint=options.endpoint, concurrency=options.num_users or 1,
        request_rate=options.request_rate, warmup_requests=options.warmup_requests, seed=seed,
        max_error_rate=options.max_error_rate, prompt_set=_describe_prompts(options),
    )


def build_specs(options, plan: RunPlan, workers: int = 1, index: int = 0) -> tuple[list[RequestSpec], list[RequestSpec]]:
    """Measured and warm-up prompts for worker INDEX of WORKERS (the whole set for one process).

    Request k of the run goes to worker k mod WORKERS, so the workers together send exactly what one
    process would, in the same order.
    """
    if options.prompt_set == "random":
        tokenizer = ServerTokenizer(options.host, plan.model, headers(options))
        # Warm-up prompts are extra unique prompts, so warming up leaves nothing in the prefix cache.
        measured = range(index, options.num_requests, workers)
        warmup = range(options.num_requests + index, options.num_requests + options.warmup_requests, workers)
        return (random_specs(tokenizer, measured, options.random_input_len, options.max_tokens, plan.seed),
                random_specs(tokenizer, warmup, options.random_input_len, options.max_tokens, plan.seed)
                if len(warmup) else [])
    if options.prompt_set == "file":
        specs = load_jsonl(options.prompt_file, options.max_tokens, options.endpoint)
    else:
        specs = builtin_specs(options.max_tokens)
    if workers > 1:
        specs = [specs[k % len(specs)] for k in range(index, index + workers * len(specs), workers)]
    return specs, specs


def plan_and_specs(options, model: str) -> tuple[RunPlan, list[RequestSpec], list[RequestSpec]]:
    """The plan, measured prompts and warm-up prompts of a run in one process."""
    plan = build_plan(options, model)
    return (plan, *build_specs(options, plan))


def _describe_prompts(options) -> str:
    if options.prompt_set == "random":
        return f"random ({options.random_input_len} input tokens)"
    if options.prompt_set == "file":
        return f"file {options.prompt_file}"
    return "builtin (59 prompts)"
