"""The one place the two command lines tpserve runs are built: ``tpserve serve`` and the Locust load test.

``tpserve demo``, ``tpserve sweep``, the benchmarks and the tests start servers and load tests only
through :func:`serve_command` (:func:`serve_command_of` from a :class:`tpserve.launch.ServeConfig`) and
:func:`loadtest_command`, so an option is added or renamed here once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tpserve import launch
from tpserve.data import LOCUSTFILE as DEFAULT_LOCUSTFILE
from tpserve.workload.runrecord import Layout


def serve_command(model: str | Path, *, served_model_name: str = "", revision: str | None = None,
                  cache_dir: Path | None = None, tensor_parallel_size: int | None = None,
                  allreduce_fusion: bool = True, host: str | None = None, port: int | None = None,
                  max_model_len: int | None = None, serve_args: Sequence[str] = (), dry_run: bool = False,
                  vllm_args: Sequence[str] = (), python: str = sys.executable) -> list[str]:
    """``tpserve serve`` with these options; None leaves an option to tpserve's default.

    SERVE_ARGS are more ``tpserve serve`` options as given (``tpserve sweep --serve-arg``); VLLM_ARGS
    go after ``--``, to vLLM verbatim.
    """
    argv = [python, "-m", "tpserve", "serve", "--model", str(model)]
    argv += ["--revision", revision] if revision is not None else []
    argv += ["--cache-dir", str(cache_dir)] if cache_dir is not None else []
    argv += ["--served-model-name", served_model_name] if served_model_name else []
    argv += ["-tp", str(tensor_parallel_size)] if tensor_parallel_size is not None else []
    argv += [] if allreduce_fusion else ["--no-allreduce-fusion"]
    argv += ["--host", host] if host is not None else []
    argv += ["--port", str(port)] if port is not None else []
    argv += ["--max-model-len", str(max_model_len)] if max_model_len is not None else []
    argv += [*serve_args, *(["--dry-run"] if dry_run else [])]
    return argv + (["--", *vllm_args] if vllm_args else [])


def serve_command_of(config: launch.ServeConfig, *, cache_dir: Path | None = None,
                     python: str = sys.executable) -> list[str]:
    """The ``tpserve serve`` command that launches CONFIG, every option given, so that none is left to the
    ``TPSERVE_*`` variables the server inherits; CONFIG's ``extra_args`` go to vLLM after ``--``.

    Build the :class:`tpserve.launch.ServeConfig` first and its command line from it: what was served
    (:func:`served_layout`) is then read from the config, never from the command line.
    """
    options = (("--revision", config.revision), ("--served-model-name", config.served_model_name),
               ("-tp", config.tensor_parallel_size), ("-pp", config.pipeline_parallel_size),
               ("--max-model-len", config.max_model_len), ("--dtype", config.dtype),
               ("--gpu-memory-utilization", config.gpu_memory_utilization), ("--host", config.host),
               ("--port", config.port), ("--settings", config.settings), ("--extra-args", ""),
               ("--cache-dir", cache_dir))
    argv = [python, "-m", "tpserve", "serve", "--model", str(config.model)]
    argv += [part for flag, value in options if value is not None for part in (flag, str(value))]
    argv += ["--allreduce-fusion" if config.allreduce_fusion else "--no-allreduce-fusion"]
    return argv + (["--", *config.extra_args] if config.extra_args else [])


def served_layout(config: launch.ServeConfig, cache_dir: Path, device_kind: str, replicas: int = 1) -> Layout:
    """What a server launched with CONFIG serves.

    Its settings profile is resolved as the server resolves it (launch.resolve_settings: this host's GPUs,
    the model's config.json, read from CACHE_DIR for a repo id), so ``vllm_flags`` holds the flags it
    added. Call it on the host that runs the server; with no GPU visible nothing is added and the model is
    not read.
    """
    choice = launch.resolve_settings(config, lambda: launch.find_verified_model(config, cache_dir).config)
    config = launch.with_settings(config, choice)
    return Layout(config.model, device_kind, config.tensor_parallel_size, config.pipeline_parallel_size,
                  replicas, launch.vllm_flags(config))


def loadtest_command(host: str, *, users: int | None = None, spawn_rate: float | None = None,
                     locustfile: Path = DEFAULT_LOCUSTFILE, model: str = "", num_requests: int | None = None,
                     max_tokens: int | None = None, prompt_set: str | None = None, prompt_file: Path | None = None,
                     random_input_len: int | None = None, endpoint: str | None = None,
                     warmup_requests: int | None = None, seed: int | None = None, run_time_s: int | None = None,
                     only_summary: bool = False, results_json: Path | None = None,
                     records_jsonl: Path | None = None, extra: Sequence[str] = (),
                     python: str = sys.executable) -> list[str]:
    """The headless Locust load test against HOST; None leaves an option to the load test's default.

    USERS caps the requests in flight; they all start at once unless SPAWN_RATE says otherwise.
    EXTRA holds further Locust or load-test options as given (``--processes 2``, ``--csv PREFIX``).
    """
    argv = [python, "-m", "locust", "-f", str(locustfile), "--headless"]
    if users is not None:
        argv += ["-u", str(users), "-r", str(users if spawn_rate is None else spawn_rate)]
    argv += ["--host", host]
    options = (("--model", model or None), ("--num-requests", num_requests), ("--max-tokens", max_tokens),
               ("--prompt-set", prompt_set), ("--prompt-file", prompt_file),
               ("--random-input-len", random_input_len), ("--endpoint", endpoint),
               ("--warmup-requests", warmup_requests), ("--seed", seed),
               ("--run-time", None if run_time_s is None else f"{run_time_s}s"))
    argv += [part for flag, value in options if value is not None for part in (flag, str(value))]
    argv += ["--only-summary"] if only_summary else []
    argv += ["--results-json", str(results_json)] if results_json is not None else []
    argv += ["--records-jsonl", str(records_jsonl)] if records_jsonl is not None else []
    return argv + list(extra)


def loadtest_worker_command(master_host: str, *, master_port: int | None = None,
                            locustfile: Path = DEFAULT_LOCUSTFILE, python: str = sys.executable) -> list[str]:
    """A Locust worker of a distributed load test: it takes its share of the run from the master at
    MASTER_HOST (started with ``loadtest_command(..., extra=["--master", "--expect-workers", "N"])``)."""
    argv = [python, "-m", "locust", "-f", str(locustfile), "--worker", "--master-host", master_host]
    return argv + (["--master-port", str(master_port)] if master_port is not None else [])
