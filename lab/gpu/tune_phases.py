"""What a GPU tuning session measures (``lab/gpu/tune_on_host.py`` runs it): the phases, in order, for a
host with two or more GPUs, for a host with one, and for the CPU rehearsal, with the vLLM flags they compare.

Each list puts the next session's phases first; their predictions are written before they run in the last
session's results README (now results/20261201b-h200x1-tune/README.md), and each results folder's ``tune.json``
keeps the phases as they ran.
"""

from __future__ import annotations

from dataclasses import dataclass

from tpserve.launch import flags_of
from tpserve.measure.runner import Load
from tpserve.plan import kv_cache_bytes_per_token
from tpserve.shapes import TINY_LLAMA, find_shape

# The throughput-bound workload: 1,000 random prompts of 512 tokens, 256 out, 256 in flight.
THROUGHPUT = Load(num_requests=1000, max_tokens=256, concurrency=256, prompt_set="random", random_input_len=512,
                  run_timeout_s=900)
# FlashAttention 3 reads an fp8 KV cache only for bfloat16 models (Llama-2's config says float16).
FP8 = ["--dtype", "bfloat16", "--kv-cache-dtype", "fp8", "--quantization", "fp8"]
BIG_BATCH = ["--max-num-batched-tokens", "16384"]
KV_FP8 = ["--dtype", "bfloat16", "--kv-cache-dtype", "fp8"]
W_FP8 = ["--dtype", "bfloat16", "--quantization", "fp8"]
STREAM_10 = ["--stream-interval", "10"]
BLOCK_128 = ["--block-size", "128"]  # vLLM's KV cache pages hold 16 tokens by default on CUDA
BATCH_32K = ["--max-num-batched-tokens", "32768"]
# Attention kernels other than vLLM's pick on Hopper (FlashAttention 3); both were slower for Llama-2-7b in the
# third session (results/20261130c-h200x2-tune).
TRITON = ["--attention-backend", "TRITON_ATTN"]
FLASHINFER = ["--attention-backend", "FLASHINFER", "--attention-config", '{"disable_flashinfer_q_quantization": true}']
# FlashAttention 3 splits a decoding sequence's context over up to 32 thread blocks under CUDA graphs (vLLM's
# bound); one split leaves 256 sequences × 32 heads = 8,192 blocks, plenty for 132 SMs, and no combine kernel.
SPLITS_1 = ["--attention-config", '{"flash_attn_max_num_splits_for_cuda_graph": 1}']
# `tpserve tune` on one GPU (one_gpu_phases), under a loose latency budget: the second one-GPU session ran the first
# (results/20261201b-h200x1-tune); the second covers the axes that no session has run.
TUNE_ONE_GPU = ("--serve-arg=--dtype=bfloat16", "--vllm", "kv-cache-dtype=default,fp8", "--vllm",
                "quantization=default,fp8", "--vllm", "max-num-batched-tokens=default,16384", "--vllm",
                "cudagraph-mode=default,PIECEWISE", "--max-ttft-ms", "5000", "--max-tpot-ms", "60", "--budget-runs", "5")
TUNE_ONE_GPU_REST = ("--vllm", "gpu-memory-utilization=default,0.95", "--vllm", "max-num-seqs=default,256", "--vllm",
                     "async-scheduling=default,off", "--max-ttft-ms", "5000", "--max-tpot-ms", "60", "--budget-runs", "4")
# A replica's settings resolved when its phase starts: the one-GPU settings of the same shape that gave the most
# output per GPU so far in this session (each-full runs, median over runs and clients).
BEST = ("@best-one-gpu",)
MODES = ("shared", "each-share", "each-full")
# A profile's window: engine steps after /start_profile before the profiler starts (past the first prompts'
# prefill), then the steps it records.
PROFILE_STEPS = (200, 120)


@dataclass(frozen=True)
class Phase:
    name: str
    shape: str
    tensor: int
    settings: tuple[tuple[str, ...], ...]  # vLLM flags per replica (one entry per replica)
    min_rounds: int = 1
    max_rounds: int = 1
    start_s: float = 300  # what a cold start is expected to take, to decide whether the phase still fits
    round_s: float = 90
    modes: tuple[str, ...] = ("shared",)  # how each round loads the servers (MODES; tune_on_host.py says how)
    clients: tuple[str, ...] = ("loadtest", "bench")
    optional: bool = False  # no time is held back for it
    # Tried once with the same layout when the servers fail to start with SETTINGS (e.g. a kernel the host lacks).
    fallback: tuple[tuple[str, ...], ...] = ()
    # (steps skipped, steps recorded) of one profiled load-test run after the rounds; () for none
    profile: tuple[int, int] = ()
    workloads: tuple[str, ...] = ()  # named workloads (tpserve.presets) run once each with the load test
    extra_s: float = 0  # what the profile and the named workloads are expected to take
    # `tpserve tune`'s own arguments (axes, budget): the phase runs the product's search on the session's
    # workload, one server start per candidate, instead of serving SETTINGS; its whole run is START_S.
    tune_cli: tuple[str, ...] = ()

    @property
    def needed_s(self) -> float:
        return self.start_s + self.min_rounds * self.round_s + self.extra_s

    @property
    def replicas(self) -> int:
        return len(self.settings)

    def __post_init__(self) -> None:
        unknown = set(self.modes) - set(MODES)
        if unknown or ("shared" in self.modes and len(set(self.settings)) > 1):
            raise ValueError(f"{self.name}: modes {self.modes} (known: {MODES}; 'shared' needs one setting)")
        if (self.profile or self.workloads) and self.replicas > 1:
            raise ValueError(f"{self.name}: a profile or a named workload runs on a one-server phase")
        if self.tune_cli and (self.profile or self.workloads or self.replicas > 1 or self.fallback):
            raise ValueError(f"{self.name}: a tpserve tune phase has no settings, profile, workloads or fallback")


def phases(cpu: bool, gpus: int = 2) -> list[Phase]:
    """The session's phases: the CPU rehearsal's, a one-GPU host's, or those of a host with two or more GPUs."""
    if cpu:
        return [Phase("tiny-tp1-vllm-defaults", TINY_LLAMA.name, 1, ((),), 1, 3, 120, 60, profile=(2, 5),
                      workloads=("chat",)),
                Phase("tiny-tp1-pair", TINY_LLAMA.name, 1, ((), tuple(BIG_BATCH)), 1, 1, 120, 60,
                      modes=("each-full",)),
                Phase("tiny-tp1x2-best", TINY_LLAMA.name, 1, (BEST, BEST), 1, 1, 120, 60,
                      modes=("shared", "each-share")),
                Phase("tiny-tp1-fallback", TINY_LLAMA.name, 1, (("--no-such-flag",),), 1, 1, 120, 60,
                      clients=("loadtest",), fallback=((),)),
                Phase("tiny-tpserve-tune", TINY_LLAMA.name, 1, ((),), 1, 1, 300, 0,
                      tune_cli=("--vllm", "max-num-batched-tokens=default,512", "--budget-runs", "2"))]
    if gpus == 1:
        return one_gpu_phases()
    # Extra rounds of a phase are run only while the later phases' minimum still fits. The first phases are the
    # next session's (predictions in results/20261201b-h200x1-tune/README.md); the earlier sessions' follow, all
    # optional.
    fp8 = tuple(FP8)  # tpserve's fp8 profile, as tpserve serve --settings fp8 resolves it
    fp8_16k = tuple(FP8 + BIG_BATCH)  # the fp8 profile until 2026-12-01 (results/20261201b-h200x1-tune)
    return [
        # The issue's baseline, profiled once: where TP 2's step time goes, its all-reduces included.
        Phase("7b-tp2-vllm-defaults", "llama-2-7b", 2, ((),), 1, 2, 270, 80, profile=PROFILE_STEPS, extra_s=60),
        # The best one-GPU settings, each GPU with the whole load, side by side with the profile's former 16,384
        # batched tokens: the goal's ratio against the baseline above, in the same session.
        Phase("7b-tp1-pair-fp8-vs-fp8-batch16k", "llama-2-7b", 1, (fp8, fp8_16k), 1, 3, 170, 100,
              modes=("each-full",)),
        # 70b with defaults, then with the fp8 profile, in one session: its only comparison so far spans two.
        Phase("70b-tp2-vllm-defaults", "llama-2-70b", 2, ((),), 1, 1, 330, 120, clients=("loadtest",)),
        Phase("70b-tp2-fp8", "llama-2-70b", 2, (fp8,), 1, 1, 330, 100, clients=("loadtest",),
              fallback=(tuple(KV_FP8),)),
        Phase("7b-tp1x2-best", "llama-2-7b", 1, (BEST, BEST), 1, 2, 170, 170, modes=("shared", "each-full"),
              optional=True),
        Phase("70b-tp2-fp8-batch16k", "llama-2-70b", 2, (fp8_16k,), 1, 1, 330, 100, clients=("loadtest",),
              optional=True),
        # The second one-GPU session (results/20261201b-h200x1-tune): one split changed nothing (1.005 ×).
        Phase("7b-tp1-pair-fp8-vs-fp8-splits1", "llama-2-7b", 1, (fp8, fp8 + tuple(SPLITS_1)), 1, 1, 170, 100,
              modes=("each-full",), optional=True),
        Phase("7b-tp1-pair-kvfp8-vs-wfp8", "llama-2-7b", 1, (tuple(KV_FP8), tuple(W_FP8)), 1, 1, 150, 100,
              modes=("each-full",), optional=True),
        # The first one-GPU session measured these alone (results/20261201-h200x1-tune): no change from either.
        Phase("7b-tp1-pair-fp8-vs-fp8-block128", "llama-2-7b", 1, (fp8, fp8 + tuple(BLOCK_128)), 1, 1, 170, 100,
              modes=("each-full",), optional=True),
        Phase("7b-tp1-pair-fp8-vs-fp8-batch32k", "llama-2-7b", 1, (fp8, tuple(FP8 + BATCH_32K)), 1, 1,
              170, 100, modes=("each-full",), optional=True),
        # The third session's (results/20261130c-h200x2-tune): Triton's and FlashInfer's attention were both
        # slower than vLLM's FlashAttention 3 (with 16,384 batched tokens then).
        Phase("7b-tp1-pair-fp8-vs-fp8-triton", "llama-2-7b", 1, (fp8, fp8 + tuple(TRITON)), 1, 2, 170, 100,
              modes=("each-full",), optional=True),
        Phase("7b-tp1-pair-defaults-vs-triton", "llama-2-7b", 1, ((), tuple(TRITON)), 1, 1, 170, 100,
              modes=("each-full",), optional=True),
        Phase("7b-tp2-triton", "llama-2-7b", 2, (tuple(TRITON),), 1, 1, 270, 80, optional=True),
        # Run on its own (--only) after the phases above: "best" is the fp8 profile, the best one-GPU settings they
        # measured, fixed here because a run of its own has no earlier runs to take the best of. Its start took
        # 118 s with FlashInfer's kernels compiled on the host (results/20261130c-h200x2-tune/call2).
        Phase("7b-tp1-pair-fp8-flashinfer-vs-best", "llama-2-7b", 1, (fp8 + tuple(FLASHINFER), fp8), 1, 1, 150, 100,
              modes=("each-full",), optional=True),
        # Earlier sessions' phases (results/20261130b-h200x2-tune).
        Phase("7b-tp1x2-fp8-batch16k", "llama-2-7b", 1, (fp8_16k,) * 2, 1, 3, 150, 170,
              modes=("shared", "each-full"), optional=True),
        Phase("7b-tp1-pair-defaults-vs-fp8", "llama-2-7b", 1, ((), fp8), 1, 2, 150, 100, modes=("each-full",),
              optional=True),
        Phase("7b-tp1-pair-fp8-vs-fp8-stream10", "llama-2-7b", 1, (fp8, fp8 + tuple(STREAM_10)), 1, 1, 150, 100,
              modes=("each-full",), optional=True),
    ]


def one_gpu_phases() -> list[Phase]:
    """A host with one GPU: each setting alone on it, one after another, all with the whole throughput load.

    The first phase is the reference (tpserve's fp8 profile, the best one-GPU settings measured so far), run
    for up to 3 rounds of the two clients (the issue's instrument) while the later phases still fit; each later
    one changes one thing in it, or takes one of its parts alone. Predictions in
    results/20261201b-h200x1-tune/README.md. The TP 2 baseline needs two GPUs, so a one-GPU session compares
    with the reference and with vLLM's defaults on the same GPU. The one-GPU sessions ran earlier versions of
    this list (each results folder's ``tune.json`` holds every phase as it ran:
    results/20261201-h200x1-tune/call3, results/20261201b-h200x1-tune/call3).
    """
    fp8 = tuple(FP8)
    one = {"min_rounds": 1, "max_rounds": 1, "start_s": 130, "round_s": 100}
    profiled = {"profile": PROFILE_STEPS, "extra_s": 60}
    return [
        Phase("7b-tp1-fp8", "llama-2-7b", 1, (fp8,), 1, 3, 230, 100),
        # No bfloat16 KV cache was profiled yet: do its decode steps split like the fp8 cache's (attention 82 %)?
        Phase("7b-tp1-vllm-defaults", "llama-2-7b", 1, ((),), **one, **profiled),
        # tpserve tune over the axes no session has run, from vLLM's defaults: the KV cache's memory (0.95
        # against vLLM's 0.9), max-num-seqs 256 (the load's own) and asynchronous scheduling off.
        Phase("7b-tp1-tpserve-tune-rest", "llama-2-7b", 1, ((),), 1, 1, 620, 0, tune_cli=TUNE_ONE_GPU_REST),
        Phase("7b-tp1-fp8-batch16k", "llama-2-7b", 1, (tuple(FP8 + BIG_BATCH),), **one, optional=True),
        Phase("7b-tp1-fp8-splits1", "llama-2-7b", 1, (fp8 + tuple(SPLITS_1),), **one, optional=True),
        Phase("7b-tp1-fp8-batch32k", "llama-2-7b", 1, (tuple(FP8 + BATCH_32K),), **one, optional=True),
        Phase("7b-tp1-kvfp8", "llama-2-7b", 1, (tuple(KV_FP8),), **one, optional=True),
        Phase("7b-tp1-wfp8", "llama-2-7b", 1, (tuple(W_FP8),), **one, optional=True),
        Phase("7b-tp1-fp8-block128", "llama-2-7b", 1, (fp8 + tuple(BLOCK_128),), **one, optional=True),
        Phase("7b-tp1-tpserve-tune", "llama-2-7b", 1, ((),), 1, 1, 780, 0, tune_cli=TUNE_ONE_GPU, optional=True),
    ]


def kv_bytes_per_token(phase: Phase) -> int:
    """KV cache bytes per token of context over all of PHASE's model's layers, with its cache's data type
    (:func:`tpserve.plan.kv_cache_bytes_per_token`; any fp8 variant stores one byte a value)."""
    config = (TINY_LLAMA if phase.shape == TINY_LLAMA.name else find_shape(phase.shape)).config()
    cache = str(flags_of(phase.settings[0]).get("--kv-cache-dtype", "auto"))
    return kv_cache_bytes_per_token(config, "fp8" if cache.startswith("fp8") else "auto")
