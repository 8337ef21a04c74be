"""The local backend: each replica of a point is ``tpserve serve`` on this host, on its own devices —
``CUDA_VISIBLE_DEVICES`` on a GPU host, pinned CPU cores (``VLLM_CPU_OMP_THREADS_BIND``) without GPUs."""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

from tpserve import axes
from tpserve.commandlines import serve_command_of, served_layout
from tpserve.fetch.errors import ConfigError
from tpserve.fetch.preflight import visible_gpus
from tpserve.launch import ServeConfig
from tpserve.machine import describe_machine, device_kind
from tpserve.measure.points import Point
from tpserve.measure.runner import Backend, Servers, Serving
from tpserve.server import LocalServer, cpu_env


def device_groups(point: Point, devices: Sequence[str]) -> list[list[str]]:
    """Disjoint device lists, one per replica, each TENSOR long; refused when there are too few."""
    if point.devices > len(devices):
        raise ConfigError(f"{point.label} needs {point.devices} devices but {len(devices)} are available "
                          f"({','.join(devices) or 'none'})")
    return [list(devices[i * point.tensor:(i + 1) * point.tensor]) for i in range(point.replicas)]


def available_devices() -> tuple[str, list[str]]:
    """("gpu", ids) when NVIDIA GPUs are visible, else ("cpu", core ids) to pin vLLM's CPU threads."""
    gpus = visible_gpus()
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [d.strip() for d in visible.split(",")] if visible else [str(i) for i in range(gpus)]
        return "gpu", ids
    return "cpu", [str(core) for core in sorted(os.sched_getaffinity(0))]


def exact_settings(serve_args: Sequence[str]) -> list[str]:
    """SERVE_ARGS with ``--settings vllm`` first unless they choose a settings profile themselves."""
    if any(arg == "--settings" or arg.startswith("--settings=") for arg in serve_args):
        return list(serve_args)
    return ["--settings", "vllm", *serve_args]


# Point settings that are options of tpserve serve (tpserve.axes.SERVE_OPTIONS): their ServeConfig field and type.
SERVE_FIELDS = {"gpu-memory-utilization": ("gpu_memory_utilization", float), "max-model-len": ("max_model_len", int),
                "dtype": ("dtype", str)}


def point_config(base: ServeConfig, point: Point, vllm_args: Sequence[str] = ()) -> ServeConfig:
    """The :class:`tpserve.launch.ServeConfig` that serves POINT: BASE (the sweep's own ``tpserve serve``
    options, :func:`exact_settings` applied) with the point's tensor-parallel size and settings. VLLM_ARGS go
    to vLLM verbatim, before the point's own vLLM flags (:func:`tpserve.axes.command_args`).
    """
    serve_args, point_vllm_args = axes.command_args(point.settings, [] if base.allreduce_fusion
                                                    else ["--no-allreduce-fusion"])
    options = {}
    for arg in serve_args:
        if arg == "--no-allreduce-fusion":
            continue
        key, _, value = arg.removeprefix("--").partition("=")
        name, kind = SERVE_FIELDS[key]
        try:
            options[name] = kind(value)
        except ValueError:
            raise ConfigError(f"--vllm {key}={value}: {key} takes a {kind.__name__}, got {value!r}") from None
    return replace(base, tensor_parallel_size=point.tensor,
                   allreduce_fusion=base.allreduce_fusion or "--no-allreduce-fusion" not in serve_args,
                   extra_args=(*base.extra_args, *vllm_args, *point_vllm_args), **options)


def replica_config(base: ServeConfig, point: Point, port: int, vllm_args: Sequence[str] = ()) -> ServeConfig:
    """One replica of POINT (:func:`point_config`), on PORT here. The replica's command line
    (:func:`tpserve.commandlines.serve_command_of`) and its run records' layout
    (:func:`tpserve.commandlines.served_layout`) are both made from it."""
    return replace(point_config(base, point, vllm_args), host="127.0.0.1", port=port)


def serve_line(base: ServeConfig, point: Point, cache_dir: Path | None = None) -> str:
    """The ``tpserve serve`` command that serves POINT (one replica of it) for good: its :func:`point_config`
    with every option spelled out (:func:`tpserve.commandlines.serve_command_of`), without what only the
    measuring adds (``--dummy-weights``, the replica's local host and port)."""
    argv = serve_command_of(point_config(base, point), cache_dir=cache_dir)
    return shlex.join(["tpserve", *argv[argv.index("serve"):]])


def serving(base: ServeConfig, cache_dir: Path | None = None) -> Serving:
    """How a local search's winner is served: ``("serve", its tpserve serve command)`` (:func:`serve_line`)."""
    return lambda point: ("serve", serve_line(base, point, cache_dir))


def local_backend(base: ServeConfig, cache_dir: Path, *, base_port: int, logs: Path, vllm_args: Sequence[str] = (),
                  env: dict | None = None, health_timeout_s: float = 900) -> Backend:
    """Replicas of ``tpserve serve`` on this host, each on its own GPUs (or CPU cores).

    BASE is the sweep's ``tpserve serve`` configuration (model, served name, ``--serve-arg`` options) and
    CACHE_DIR its model cache; VLLM_ARGS go to vLLM verbatim. Each replica runs :func:`replica_config`.
    """
    kind, devices = available_devices()
    device = device_kind(describe_machine())

    @contextmanager
    def start(point: Point) -> Iterator[Servers]:
        groups = device_groups(point, devices)
        with ExitStack() as stack:
            servers = []
            for i, group in enumerate(groups):
                replica_env = {**(env or os.environ)}
                if kind == "gpu":
                    replica_env["CUDA_VISIBLE_DEVICES"] = ",".join(group)
                else:
                    replica_env = cpu_env(env=replica_env) | {"VLLM_CPU_OMP_THREADS_BIND": ",".join(group)}
                port = base_port + i
                config = replica_config(base, point, port, vllm_args)
                server = LocalServer(serve_command_of(config, cache_dir=cache_dir), port=port,
                                     log_path=logs / f"{point.label}-replica{i}.log", env=replica_env)
                stack.enter_context(server)
                servers.append(server)
            for server in servers:
                server.wait_healthy(health_timeout_s)
            yield Servers([server.url for server in servers],
                          served_layout(config, cache_dir, device, replicas=point.replicas))
            for server in servers:
                server.check_alive()

    return start
