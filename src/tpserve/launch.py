"""``tpserve serve``: turn one configuration into the vLLM OpenAI server's command line and run it.

The command is exec'd, so vLLM replaces tpserve as the process (PID 1 in a container) and receives
SIGTERM directly for a graceful shutdown.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tpserve import machine, settings
from tpserve.fetch import cache, preflight
from tpserve.fetch.errors import CacheError, ConfigError, ModelConfigError
from tpserve.fetch.modelconfig import parameter_count

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
# vLLM 0.26 picks FlashInfer's all-reduce + RMSNorm fusion at TP > 1, which needs NVLink multicast
# (fabric memory); on hosts without it CUDA-graph capture dies with an illegal memory access.
FUSION_OFF = '{"pass_config": {"fuse_allreduce_rms": false}}'
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")

# Flags tpserve sets from its own options; passing them again as extra args would be ambiguous.
OWNED_FLAGS = {
    "--model": "--model",
    "--served-model-name": "--served-model-name",
    "--tensor-parallel-size": "--tensor-parallel-size",
    "-tp": "--tensor-parallel-size",
    "--pipeline-parallel-size": "--pipeline-parallel-size",
    "-pp": "--pipeline-parallel-size",
    "--gpu-memory-utilization": "--gpu-memory-utilization",
    "--revision": "--revision",
    "--max-model-len": "--max-model-len",
    "--dtype": "--dtype",
    "--host": "--host",
    "--port": "--port",
}


@dataclass(frozen=True)
class ServeConfig:
    """Everything ``tpserve serve`` needs to launch vLLM."""

    model: str
    revision: str = "main"
    served_model_name: str = ""
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    allreduce_fusion: bool = True
    dtype: str = "auto"
    host: str = "0.0.0.0"
    port: int = 8000
    extra_args: tuple[str, ...] = field(default_factory=tuple)
    settings: str = settings.DEFAULT_PROFILE
    # The flags the settings profile resolved to on the serving host (resolve_settings), the user's left out.
    settings_args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def name(self) -> str:
        """The name clients see at /v1/models: the served name, else the model as given."""
        return self.served_model_name or self.model


def parse_extra_args(text: str) -> tuple[str, ...]:
    """Split extra vLLM arguments given as one string (``TPSERVE_EXTRA_ARGS``) the way a shell would."""
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        # The text is not echoed: it may hold a secret (an --api-key that validate() would refuse).
        raise ConfigError(f"cannot split the extra vLLM arguments (--extra-args, TPSERVE_EXTRA_ARGS): {exc}; "
                          "check the quoting") from exc


def validate(config: ServeConfig) -> None:
    """Reject settings vLLM would only fail on after minutes of loading."""
    problems = []
    if not config.model.strip():
        problems.append("no model: pass --model (a Hugging Face repo id or a local folder) or set TPSERVE_MODEL")
    if config.tensor_parallel_size < 1:
        problems.append(f"--tensor-parallel-size must be at least 1, got {config.tensor_parallel_size}")
    if config.pipeline_parallel_size < 1:
        problems.append(f"--pipeline-parallel-size must be at least 1, got {config.pipeline_parallel_size}")
    if config.gpu_memory_utilization is not None and not 0 < config.gpu_memory_utilization <= 1:
        problems.append(f"--gpu-memory-utilization must be within (0, 1], got {config.gpu_memory_utilization}")
    if config.max_model_len is not None and config.max_model_len < 1:
        problems.append(f"--max-model-len must be at least 1, got {config.max_model_len}")
    if config.dtype not in DTYPES:
        problems.append(f"--dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    if not 1 <= config.port <= 65535:
        problems.append(f"--port must be within 1..65535, got {config.port}")
    if (problem := settings.check_profile(config.settings)) is not None:
        problems.append(problem)
    for arg in config.extra_args:
        flag = arg.split("=", 1)[0]
        if flag in OWNED_FLAGS:
            problems.append(f"{flag} is set by tpserve: use tpserve serve {OWNED_FLAGS[flag]}, not an extra argument")
        elif flag == "--api-key":
            problems.append("--api-key on the command line shows in process listings and logs: "
                            "set the VLLM_API_KEY environment variable (from a Secret) instead")
        elif flag == "--compilation-config" and not config.allreduce_fusion:
            problems.append("--no-allreduce-fusion sets vLLM's --compilation-config: put "
                            '"pass_config": {"fuse_allreduce_rms": false} inside your own instead')
    if problems:
        raise ConfigError("; ".join(problems))


# vLLM's --shutdown-timeout unless given after `--`: after SIGTERM, running requests may finish for this long.
# vLLM's own default, 0, aborts them, and vLLM 0.32 then left a server hung in 1 of 5 runs (docs/reliability.md).
DEFAULT_DRAIN_S = 30


def vllm_argv(config: ServeConfig, python: str = sys.executable) -> list[str]:
    """The exact command that serves CONFIG with vLLM's OpenAI-compatible server."""
    argv = [
        python, "-m", VLLM_MODULE,
        "--model", config.model,
        "--served-model-name", config.name,
        "--tensor-parallel-size", str(config.tensor_parallel_size),
        "--pipeline-parallel-size", str(config.pipeline_parallel_size),
        "--dtype", config.dtype,
        "--host", config.host,
        "--port", str(config.port),
    ]
    if config.max_model_len is not None:
        argv += ["--max-model-len", str(config.max_model_len)]
    if config.gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(config.gpu_memory_utilization)]
    if not config.allreduce_fusion:
        argv += ["--compilation-config", FUSION_OFF]
    if not any(arg.split("=", 1)[0] == "--shutdown-timeout" for arg in config.extra_args):
        argv += ["--shutdown-timeout", str(DEFAULT_DRAIN_S)]
    return argv + list(config.settings_args) + list(config.extra_args)


# Flags a run's layout records in fields of their own, or that say only where the server listens or how it stops.
_LAYOUT_FIELDS = {"--model", "--served-model-name", "--tensor-parallel-size", "--pipeline-parallel-size",
                  "--host", "--port", "--shutdown-timeout"}
# What vLLM does without the flag; tpserve passes these explicitly.
_VLLM_DEFAULTS = {"--dtype": "auto"}


def vllm_flags(config: ServeConfig) -> dict[str, str | bool]:
    """Every flag CONFIG gives vLLM that differs from vLLM's default, but those of _LAYOUT_FIELDS.

    A switch (``--enforce-eager``) maps to True; ``--flag=value`` and ``--flag value`` to the value.
    """
    return {name: value for name, value in flags_of(vllm_argv(config)[3:]).items()
            if name not in _LAYOUT_FIELDS and _VLLM_DEFAULTS.get(name) != value}


def flags_of(args: Sequence[str]) -> dict[str, str | bool]:
    """vLLM command-line ARGS by flag: a switch (``--enforce-eager``) maps to True, ``--flag=value`` and
    ``--flag value`` to the value."""
    flags: dict[str, str | bool] = {}
    i = 0
    while i < len(args):
        if "=" in args[i]:
            name, value = args[i].split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("-"):
            name, value = args[i], args[i + 1]
            i += 2
        else:
            name, value = args[i], True
            i += 1
        flags[name] = value
    return flags


# How vLLM starts its engine process. Spawned (what vLLM's CLI picks), the engine imports vLLM and torch a second
# time: 19.0-26.5 s of a 53.1-70.1 s new-pod start of 7b on an H100; forked, the engine started in 1.5-1.9 s and the
# pod was ready in 36.1 s, serving as fast (results/20261206c-h100x1-fork). vLLM itself goes back to spawn where
# fork is unsafe (CUDA already initialised, Ray). Fork is set for one GPU only, the layout measured; more GPUs keep
# vLLM's spawn.
ENGINE_START = "VLLM_WORKER_MULTIPROC_METHOD"


def env_added(config: ServeConfig, env=os.environ) -> dict[str, str]:
    """The variables tpserve sets for vLLM on top of ENV: never the hub (the weights are already verified on
    disk), and a forked engine on one GPU unless ENV names a start method."""
    added = {"HF_HUB_OFFLINE": "1"}
    if config.tensor_parallel_size * config.pipeline_parallel_size == 1 and ENGINE_START not in env:
        added[ENGINE_START] = "fork"
    return added


def vllm_env(config: ServeConfig, env=os.environ) -> dict[str, str]:
    """vLLM's whole environment: ENV with env_added over it."""
    return {**env, **env_added(config, env)}


def exec_vllm(argv: list[str], env: dict[str, str]) -> None:
    """Replace this process with vLLM. Returns only if the exec itself fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        raise ConfigError(f"cannot run {argv[0]}: {exc.strerror}; is vLLM installed in this Python?") from exc


@dataclass(frozen=True)
class ResolvedModel:
    """Where the weights to serve are, what they are, and the name clients should see."""

    path: Path
    name: str
    config: dict
    manifest: cache.Manifest | None = None


def find_verified_model(config: ServeConfig, cache_dir: Path) -> ResolvedModel:
    """Find the model on disk and prove it is the one asked for.

    A local folder is served as it is (its manifest, if it has one, is verified and names it); a
    repo id is served only from a verified cache entry for exactly that repo and revision, so a
    stale or different model can never answer under the requested name.
    """
    local = Path(config.model).expanduser()
    if local.is_dir():
        manifest = cache.verify(local) if (local / cache.MANIFEST_NAME).is_file() else None
        name = config.served_model_name or (manifest.repo_id if manifest else config.model)
        return ResolvedModel(local, name, _read_config(local), manifest)
    if looks_like_path(config.model):
        what = "is a file, not a folder" if local.exists() else "does not exist"
        raise ConfigError(f"model folder {config.model} {what} (resolved to {local.resolve()}): "
                          "pass a folder holding config.json and the weights, or a repo id ORG/NAME")
    found = cache.find_cached(config.model, config.revision, cache_dir)
    if found is None and cache.COMMIT_SHA.fullmatch(config.revision):
        pinned = cache.model_path(cache_dir, config.model, config.revision)
        if pinned.is_dir():
            cache.verify(pinned, repo_id=config.model, revision=config.revision)  # names what it holds
    if found is None and (started := cache.unfinished(config.model, cache_dir)) is not None:
        cache.verify(started, repo_id=config.model, revision=config.revision)  # names what has not arrived
    if found is None:
        raise CacheError(
            f"{config.model}@{config.revision} is not in the model cache at {cache_dir}: run "
            f"tpserve fetch {config.model} --revision {config.revision} --cache-dir {cache_dir} first",
            repo_id=config.model, revision=config.revision, path=str(cache_dir))
    manifest = cache.verify(found, repo_id=config.model, revision=config.revision)
    return ResolvedModel(found, config.name, _read_config(found), manifest)


def looks_like_path(model: str) -> bool:
    """True when MODEL is written as a path (./x, ../x, /x, ~/x, a/b/c, or an existing file), never a repo id."""
    return (model.startswith((".", "/", "~")) or model.count("/") > 1
            or Path(model).expanduser().is_file())


def _read_config(folder: Path) -> dict:
    path = folder / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{folder} has no config.json: point --model at a Hugging Face model folder") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def resolve_settings(config: ServeConfig, model_config: Callable[[], dict], env=os.environ) -> settings.Choice:
    """What CONFIG's settings profile adds on this host: its GPUs' memory (the smallest visible), and the
    parameters of the model whose config.json MODEL_CONFIG returns (read only when a GPU is visible).
    The flags CONFIG's extra arguments give are still in the choice; with_settings leaves them out."""
    gpu_memory = None if config.settings == "vllm" else machine.visible_gpu_memory_bytes(env)
    parameters = None
    if gpu_memory is not None:
        try:
            parameters = parameter_count(model_config())
        except ModelConfigError:
            parameters = None
    choice = settings.choose(config.settings, parameters, gpu_memory)
    if choice.flags.get("--kv-cache-dtype") == "fp8" and config.dtype == "auto":
        # FlashAttention 3, vLLM's attention on Hopper, reads an fp8 KV cache only for a bfloat16 model: a float16
        # one (Llama-2's config.json says so) fails at start with "For FP8 input, output must have dtype BF16".
        choice = replace(choice, flags={**choice.flags, "--dtype": "bfloat16"},
                         reason=choice.reason + "; the model runs in bfloat16, which an fp8 KV cache needs on Hopper")
    return choice


def with_settings(config: ServeConfig, choice: settings.Choice) -> ServeConfig:
    """CONFIG with CHOICE's flags to add, but those its extra arguments give: the user's value wins.

    ``--dtype`` is ``tpserve serve``'s own option: a profile sets it only where the user left it at auto.
    """
    args = choice.args(config.extra_args)
    if "--dtype" in args:
        at = args.index("--dtype")
        dtype = args[at + 1]
        del args[at:at + 2]
        if config.dtype == "auto":
            config = replace(config, dtype=dtype)
    return replace(config, settings_args=tuple(args))


def prepare(config: ServeConfig, cache_dir: Path, env=os.environ, say: Callable[[str], None] | None = None) -> list[str]:
    """Validate CONFIG, resolve and check its model and settings profile, and return the vLLM command to exec.

    SAY, when given, gets one line: the flags the settings profile added, and why.
    """
    validate(config)
    model = find_verified_model(config, cache_dir)
    tensor, pipeline = config.tensor_parallel_size, config.pipeline_parallel_size
    problems = preflight.check_heads(model.config, tensor, pipeline, model.name)
    problems += preflight.check_gpus(tensor, pipeline, preflight.visible_gpus(env))
    problems += preflight.check_shm(tensor, pipeline)
    if problems:
        raise ConfigError("; ".join(problems))
    choice = resolve_settings(config, lambda: model.config, env)
    if say is not None:
        added = shlex.join(choice.args(config.extra_args)) or "nothing"
        say(f"{choice.reason}; adds {added}")
    return vllm_argv(replace(with_settings(config, choice), model=str(model.path), served_model_name=model.name))
