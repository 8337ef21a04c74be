"""tpserve's per-size vLLM settings: which flags ``tpserve serve``, the chart and ``tpserve plan`` add.

A settings profile turns a model's size and its GPUs' memory into vLLM flags:

- ``tuned`` (the default): the entry of :data:`TABLE` for the model's size class and GPU memory class,
  settings that change how fast vLLM serves, never what it answers; nothing where no entry fits
  (CPU, GPUs below every class, a model whose parameters cannot be counted);
- ``fp8``: ``tuned`` plus :data:`TABLE`'s fp8 flags (fp8 KV cache, fp8 weights quantized at load), which
  change the numerics and so the outputs; opt-in only;
- ``vllm``: no flag added, vLLM's own defaults.

A flag the user gives (after ``--``, in ``--extra-args`` or ``TPSERVE_EXTRA_ARGS``, in the chart's
``vllm.extraArgs``) always wins: the profile leaves it out. :data:`TABLE` is the only copy of the
values; the chart reads it from ``charts/vllm/files/settings.json``, which ``tools/sync_chart_files.py``
writes from it. ``docs/settings.md`` explains each entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from tpserve.fetch.errors import ConfigError

PROFILES = ("tuned", "fp8", "vllm")
DEFAULT_PROFILE = "tuned"
GiB = 1 << 30

# The one table of tuned settings. An entry holds models of more than parameters_b[0] and at most
# parameters_b[1] billion parameters (None: no upper bound), counted by modelconfig.parameter_count from
# config.json, on GPUs of at least min_gpu_memory_gib each (the smallest visible GPU's memory (what nvidia-smi reports: an H100 80GB shows 79.6 GiB, an H200 140.4 GiB). Flags are vLLM flags
# without their dashes, values as strings.
# An entry holds only settings measured faster than vLLM's defaults *without changing the outputs*. The
# first tuning session (results/20261130-h200x2-tune, 2 × H200) measured the fp8 combination below and
# no output-preserving setting on its own, so there is no tuned entry yet: `tuned` adds nothing until one
# is measured (docs/performance.md says what to measure next).
TABLE = MappingProxyType({
    "entries": (),
    # What the fp8 profile adds: on 2 × H200 (vLLM 0.26.0, Llama-2-7b shape, 1,000 prompts of 512 in / 256 out,
    # 256 in flight) one TP 1 server with these flags and 16,384 batched tokens gave 1.28 × the output tok/s of
    # one with vLLM's defaults beside it on the other GPU (second session), and 1.50 × the per-GPU output of one
    # TP 2 server with vLLM's defaults in the third (see MEASURED). The KV cache in fp8 (e4m3, scales 1.0 unless
    # the checkpoint has its own) halves its bytes per token; "quantization": "fp8" quantizes the 16-bit weights
    # to fp8 as they load. Both change the numerics: outputs differ from the 16-bit model's (not measured here:
    # no real weights can be loaded on the machines this was built on).
    # The profile added --max-num-batched-tokens 16384 until 2026-12-01: on one H200, vLLM's own 8,192 gave
    # 1.00 ×, 1.02 × and 1.02 × its output in three side-by-side comparisons over two sessions, with a median TTFT
    # of 556 against 931 ms, 625 against 1,213 ms and 783 against 1,054 ms (results/20261201-h200x1-tune,
    # results/20261201b-h200x1-tune), so it was dropped. 70b was measured only with 16,384 (MEASURED says so).
    # vLLM's own attention kernel on Hopper (FlashAttention 3) stays: Triton's and FlashInfer's were slower
    # with these flags (results/20261130c-h200x2-tune), and one split per sequence changed nothing
    # (results/20261201b-h200x1-tune).
    "fp8_kv_cache": MappingProxyType({"kv-cache-dtype": "fp8"}),
    "fp8_weights": MappingProxyType({"quantization": "fp8"}),
    "fp8_measured_in": ("results/20261130c-h200x2-tune and results/20261201b-h200x1-tune, 7b shape; "
                        "results/20261130b-h200x2-tune, 70b shape"),
})

# The layouts and profiles measured to serve the most output tok/s per GPU, what `tpserve plan` reports as
# measured. Each is held against vLLM's defaults at the model's tensor-parallel layout on the same GPUs and
# workload, measured in the same device session unless "baseline_in" names another. Figures are medians of
# the runs in measured_in (lab/benchmarks/tune_summary.py prints them); the workload's requests in flight are
# the load on the whole layout (one GPU serving all of it for "most per GPU" at TP 1).
_SESSION = {"min_gpu_memory_gib": 130, "defaults_tensor": 2, "baseline_in": None,
            "workload": "1,000 random prompts, 512 in / 256 out, 256 in flight"}
# The third session's (the second's gave 7,846 / 7,159 / 6,134 against a TP 2 baseline of 4,715: 1.66 × /
# 1.52 × / 1.30 ×; the one-GPU figures agree within 2 %, the TP 2 baseline rose 13 %).
_7B = _SESSION | {"parameters_b": (0, 15), "machine": "2 × H200, vLLM 0.26.0, Llama-2-7b shape",
                  "measured_in": "results/20261130c-h200x2-tune", "defaults_output_tok_s_per_gpu": 5317}
# "measured_with": flags the row was measured with beyond what its profile adds today; "note": what else to know.
_BATCH_16K = "--max-num-batched-tokens 16384"
MEASURED = (
    MappingProxyType(_7B | {"what": "most per GPU", "tensor": 1, "replicas": 1, "profile": "fp8",
                            "output_tok_s_per_gpu": 7965, "ttft_ms": 1044, "tpot_ms": 27.4, "measured_with": _BATCH_16K,
                            "note": "without it, on one H200 in a later session: 8,070 output tok/s, TTFT p50 625 ms "
                                    "(1.02 × and 0.52 × the same with it; results/20261201b-h200x1-tune)"}),
    MappingProxyType(_7B | {"what": "on both GPUs", "tensor": 1, "replicas": 2, "profile": "fp8",
                            "output_tok_s_per_gpu": 7204, "ttft_ms": 676, "tpot_ms": 14.8, "measured_with": _BATCH_16K}),
    MappingProxyType(_7B | {"what": "outputs unchanged (no fp8)", "tensor": 1, "replicas": 1, "profile": "vllm",
                            "output_tok_s_per_gpu": 6175, "ttft_ms": 702, "tpot_ms": 38.2}),
    MappingProxyType(_SESSION | {"parameters_b": (15, 80), "machine": "2 × H200, vLLM 0.26.0, Llama-2-70b shape",
                                 "measured_in": "results/20261130b-h200x2-tune",
                                 "what": "most per GPU", "tensor": 2, "replicas": 1, "profile": "fp8",
                                 "output_tok_s_per_gpu": 1863, "ttft_ms": 4833, "tpot_ms": 49.2, "measured_with": _BATCH_16K,
                                 # 70b with vLLM's defaults did not fit in the second session's device time.
                                 "defaults_output_tok_s_per_gpu": 1268, "baseline_in": "results/20261130-h200x2-tune"}),
)

# vLLM's short spellings of flags a profile may set.
_ALIASES = {"-q": "--quantization"}


@dataclass(frozen=True)
class Entry:
    """One row of :data:`TABLE`: flags for models of more than MIN_PARAMETERS_B and at most MAX_PARAMETERS_B
    billion parameters (None: no limit) on GPUs of at least MIN_GPU_MEMORY_GIB, why, and where measured."""

    min_parameters_b: float
    max_parameters_b: float | None
    min_gpu_memory_gib: float
    flags: Mapping[str, str]
    why: str
    measured_in: str

    @property
    def label(self) -> str:
        if self.max_parameters_b is None:
            size = f"> {self.min_parameters_b:g} B"
        elif self.min_parameters_b == 0:
            size = f"≤ {self.max_parameters_b:g} B"
        else:
            size = f"{self.min_parameters_b:g}–{self.max_parameters_b:g} B"
        return f"{size} parameters on ≥ {self.min_gpu_memory_gib:g} GiB GPUs"

    def holds(self, parameters: int, gpu_memory_bytes: int) -> bool:
        return (self.min_parameters_b * 1e9 < parameters
                and (self.max_parameters_b is None or parameters <= self.max_parameters_b * 1e9)
                and gpu_memory_bytes >= self.min_gpu_memory_gib * GiB)


def entries(table: Mapping = TABLE) -> tuple[Entry, ...]:
    return tuple(Entry(*row["parameters_b"], row["min_gpu_memory_gib"], dict(row["flags"]), row["why"],
                       row["measured_in"]) for row in table["entries"])


def find_entry(parameters: int, gpu_memory_bytes: int, table: Mapping = TABLE) -> Entry | None:
    """The entry for a model of PARAMETERS on GPUs of GPU_MEMORY_BYTES each (of the largest GPU class the
    GPUs reach, when classes overlap); None when no entry holds them."""
    fitting = [entry for entry in entries(table) if entry.holds(parameters, gpu_memory_bytes)]
    return max(fitting, key=lambda entry: entry.min_gpu_memory_gib) if fitting else None


@dataclass(frozen=True)
class Choice:
    """What a profile adds for one model on one machine: its flags (``--name`` → value) and why, in a line."""

    profile: str
    flags: Mapping[str, str]
    reason: str

    def args(self, user_args: Sequence[str] = ()) -> list[str]:
        """The flags as vLLM arguments, but those USER_ARGS give already: the user's value wins."""
        given = {flag_name(arg) for arg in user_args if arg.startswith("-")}
        return [part for name, value in self.flags.items() if name not in given for part in (name, value)]


def check_profile(profile: str) -> str | None:
    """The problem with PROFILE as a sentence, or None when it is one of PROFILES."""
    if profile in PROFILES:
        return None
    return f"--settings must be one of {', '.join(PROFILES)} (TPSERVE_SETTINGS), got {profile!r}"


def choose(profile: str, parameters: int | None, gpu_memory_bytes: int | None, table: Mapping = TABLE) -> Choice:
    """The flags PROFILE adds for a model of PARAMETERS (None: not countable) on GPUs of GPU_MEMORY_BYTES
    each (None: no GPU visible)."""
    if (problem := check_profile(profile)) is not None:
        raise ConfigError(problem)
    if profile == "vllm":
        return Choice(profile, {}, "settings vllm: vLLM's own defaults, no flag added")
    if gpu_memory_bytes is None:
        return Choice(profile, {}, f"settings {profile}: nvidia-smi sees no NVIDIA GPU, no flag added (vLLM's defaults)")
    entry = None if parameters is None else find_entry(parameters, gpu_memory_bytes, table)
    flags = {} if entry is None else dict(entry.flags)
    if profile == "fp8":
        flags |= dict(table["fp8_kv_cache"]) | dict(table["fp8_weights"])
    flags = {f"--{name}": value for name, value in flags.items()}
    if entry is not None:
        why = f"{entry.label}: {entry.why} (measured in: {entry.measured_in})"
    elif parameters is None:
        why = "no tuned settings: the model's parameters cannot be counted from its config.json"
    else:
        why = (f"no tuned settings for {parameters / 1e9:.1f} B parameters on GPUs of "
               f"{gpu_memory_bytes / GiB:.1f} GiB")
    fp8 = (f"; fp8 KV cache and fp8 weights change the outputs (measured in: "
           f"{table.get('fp8_measured_in', 'not measured')})" if profile == "fp8" else "")
    return Choice(profile, flags, f"settings {profile}, {why}{fp8}")


def sized_dtypes(flags: Mapping[str, str]) -> tuple[str, str]:
    """The weight and KV-cache dtypes (``tpserve plan``'s --dtype and --kv-dtype) that a profile's FLAGS
    make vLLM hold: fp8 for ``--quantization fp8`` and an fp8 ``--kv-cache-dtype``, else "auto"."""
    weights = "fp8" if flags.get("--quantization") == "fp8" else "auto"
    kv_cache = "fp8" if flags.get("--kv-cache-dtype", "").startswith("fp8") else "auto"
    return weights, kv_cache


def measured_best(parameters: int | None, gpu_memory_bytes: int | None) -> list[str]:
    """What :data:`MEASURED` holds for a model of PARAMETERS on GPUs of GPU_MEMORY_BYTES, one line each."""
    lines = []
    for row in MEASURED:
        low, high = row["parameters_b"]
        if (parameters is None or gpu_memory_bytes is None or not low * 1e9 < parameters
                or (high is not None and parameters > high * 1e9) or gpu_memory_bytes < row["min_gpu_memory_gib"] * GiB):
            continue
        ratio = row["output_tok_s_per_gpu"] / row["defaults_output_tok_s_per_gpu"]
        gpus = row["tensor"] * row["replicas"]
        baseline = (f"measured in another session, {row['baseline_in']}: not side by side" if row["baseline_in"]
                    else "same session")
        lines.append(f"measured, {row['what']}: {row['replicas']} × TP {row['tensor']}, the whole load on {gpus} "
                     f"GPU{'s' if gpus > 1 else ''}, with --settings "
                     f"{row['profile']}: {row['output_tok_s_per_gpu']:,} output tok/s per GPU, TTFT p50 "
                     f"{row['ttft_ms']:,} ms, TPOT p50 {row['tpot_ms']} ms = {ratio:.2f} × vLLM's defaults at "
                     f"TP {row['defaults_tensor']} ({row['defaults_output_tok_s_per_gpu']:,}, {baseline}); "
                     f"{row['machine']}, {row['workload']} ({row['measured_in']})"
                     + (f"; measured with {row['measured_with']} too, which --settings {row['profile']} no longer "
                        f"adds" if row.get("measured_with") else "") + (f"; {row['note']}" if row.get("note") else ""))
    return lines


def flag_name(arg: str) -> str:
    """``--max_num_seqs=8`` → ``--max-num-seqs``: a vLLM argument's flag as vLLM reads it (it takes
    underscores for dashes), short spellings expanded."""
    name = arg.split("=", 1)[0]
    name = _ALIASES.get(name, name)
    return "--" + name[2:].replace("_", "-") if name.startswith("--") else name


def chart_table(table: Mapping = TABLE) -> dict:
    """TABLE as plain data, for ``charts/vllm/files/settings.json``."""
    return {"entries": [{"min_parameters_b": entry.min_parameters_b, "max_parameters_b": entry.max_parameters_b,
                         "min_gpu_memory_gib": entry.min_gpu_memory_gib, "flags": dict(entry.flags),
                         "why": entry.why, "measured_in": entry.measured_in} for entry in entries(table)],
            "fp8": {**table["fp8_kv_cache"], **table["fp8_weights"]}}
