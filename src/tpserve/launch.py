"""``tpserve serve``: turn one configuration into the vLLM OpenAI server's command line and run it.

The command is exec'd, so vLLM replaces tpserve as the process (PID 1 in a container) and receives
SIGTERM directly for a graceful shutdown.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field

from tpserve.errors import ConfigError

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")

# Flags tpserve sets from its own options; passing them again as extra args would be ambiguous.
OWNED_FLAGS = {
    "--model": "--model",
    "--served-model-name": "--served-model-name",
    "--tensor-parallel-size": "--tensor-parallel-size",
    "-tp": "--tensor-parallel-size",
    "--max-model-len": "--max-model-len",
    "--dtype": "--dtype",
    "--host": "--host",
    "--port": "--port",
}


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``tpserve serve`` needs to launch vLLM."""

    model: str
    served_model_name: str = ""
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    dtype: str = "auto"
    host: str = "0.0.0.0"
    port: int = 8000
    extra_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        """The name clients see at /v1/models: the served name, else the model as given."""
        return self.served_model_name or self.model


def parse_extra_args(text: str) -> tuple[str, ...]:
    """Split extra vLLM arguments given as one string (``TPSERVE_EXTRA_ARGS``) the way a shell would."""
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(f"cannot split extra vLLM arguments {text!r}: {exc}; check the quoting") from exc


def validate(config: ServeConfig) -> None:
    """Reject settings vLLM would only fail on after minutes of loading."""
    problems = []
    if not config.model.strip():
        problems.append("no model: pass --model (a Hugging Face repo id or a local folder) or set TPSERVE_MODEL")
    if config.tensor_parallel_size < 1:
        problems.append(f"--tensor-parallel-size must be at least 1, got {config.tensor_parallel_size}")
    if config.max_model_len is not None and config.max_model_len < 1:
        problems.append(f"--max-model-len must be at least 1, got {config.max_model_len}")
    if config.dtype not in DTYPES:
        problems.append(f"--dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    if not 1 <= config.port <= 65535:
        problems.append(f"--port must be within 1..65535, got {config.port}")
    for arg in config.extra_args:
        flag = arg.split("=", 1)[0]
        if flag in OWNED_FLAGS:
            problems.append(f"{flag} is set by tpserve: use tpserve serve {OWNED_FLAGS[flag]}, not an extra argument")
    if problems:
        raise ConfigError("; ".join(problems))


def vllm_argv(config: ServeConfig, python: str = sys.executable) -> list[str]:
    """The exact command that serves CONFIG with vLLM's OpenAI-compatible server."""
    argv = [
        python, "-m", VLLM_MODULE,
        "--model", config.model,
        "--served-model-name", config.name,
        "--tensor-parallel-size", str(config.tensor_parallel_size),
        "--dtype", config.dtype,
        "--host", config.host,
        "--port", str(config.port),
    ]
    if config.max_model_len is not None:
        argv += ["--max-model-len", str(config.max_model_len)]
    return argv + list(config.extra_args)


def exec_vllm(argv: list[str]) -> None:
    """Replace this process with vLLM. Returns only if the exec itself fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execv(argv[0], argv)
    except OSError as exc:
        raise ConfigError(f"cannot run {argv[0]}: {exc.strerror}; is vLLM installed in this Python?") from exc
