"""lab/benchmarks/profile_summary.py ties each GPU kernel of a torch profiler trace to the engine step that launched it
and splits the steps' GPU time by kernel family. The trace here is written by hand in the format torch's profiler
writes (Chrome trace events: CPU ranges, CUDA runtime launches and kernels joined by correlation ids); the script's
reading of a real one from an H200 is in results/20261201-h200x1-tune (the trace itself is not in git)."""

import gzip
import json

import pytest

from lab.benchmarks import profile_summary as ps

ATTENTION = "void cutlass::device_kernel<flash::enable_sm90_or_later<flash::FlashAttnFwdSm90<...>>>"
GEMM = "void cutlass::device_kernel<vllm::cutlass_3x_gemm_sm90_fp8<cutlass::float_e4m3_t, ...>>"
FUSED = "triton_red_fused__to_copy_abs_clamp_cutlass_scaled_mm_div_fused_add_rms_norm_max_mul_reciprocal_1"


def step_name(context: int, context_tokens: int, requests: int, kv_tokens: int) -> str:
    return (f"execute_{context_tokens + requests}_context_{context}(sq{context_tokens}sk{context_tokens}sqsq0sqsk0)"
            f"_generation_{requests}(sq{requests}sk{kv_tokens}sqsq{requests}sqsk{kv_tokens})")


class Trace:
    def __init__(self):
        self.events = [{"ph": "M", "name": "process_name", "args": {"name": "python"}}]
        self.correlation = 0

    def step(self, name: str, start: float, end: float) -> None:
        self.events.append({"ph": "X", "cat": "user_annotation", "name": name, "ts": start, "dur": end - start})

    def launch(self, at: float, kernels: list[tuple[str, float, float]]) -> None:
        """One launch at AT on the CPU (a kernel, or a CUDA-graph replay of several) and its kernels on the GPU."""
        self.correlation += 1
        self.events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "ts": at, "dur": 5,
                            "args": {"correlation": self.correlation}})
        for name, start, duration in kernels:
            self.events.append({"ph": "X", "cat": "kernel", "name": name, "ts": start, "dur": duration,
                                "args": {"correlation": self.correlation}})

    def write(self, folder):
        with gzip.open(folder / "rank0.123.pt.trace.json.gz", "wt") as handle:
            json.dump({"traceEvents": self.events}, handle)


@pytest.fixture
def trace(tmp_path):
    t = Trace()
    # Three decode-only steps of 4 sequences, 10 µs of CPU each, their graphs' kernels later on the GPU; attention
    # takes 100 µs + 1 µs per token of context.
    for i, kv in enumerate((1000, 2000, 3000)):
        start = 100 * i
        t.step(step_name(0, 0, 4, kv), start, start + 10)
        gpu = 1000 + 4000 * i
        t.launch(start + 2, [(ATTENTION, gpu, 100 + kv), (GEMM, gpu + 100 + kv, 50), (FUSED, gpu + 150 + kv, 10)])
    # A step with 512 prompt tokens: a GEMM and attention, launched one by one.
    t.step(step_name(1, 512, 3, 900), 400, 420)
    t.launch(405, [(GEMM, 13000, 600)])
    t.launch(410, [(ATTENTION, 13700, 200)])
    # A kernel launched between steps (e.g. the sampler), overlapping nothing.
    t.launch(450, [("_gumbel_sample_kernel", 13950, 50)])
    t.write(tmp_path)
    return ps.read_trace(tmp_path)


def test_kernels_belong_to_the_step_that_launched_them(trace):
    steps, outside, kernels = ps.steps_of(trace)
    assert [(s.kind, len(s.kernels)) for s in steps] == [("decode only", 3)] * 3 + [("with prompt tokens", 2)]
    assert [k["name"] for k in outside] == ["_gumbel_sample_kernel"]
    assert len(kernels) == 12
    assert steps[0].generation_kv_tokens == 1000 and steps[3].context_tokens == 512
    assert steps[3].gpu_span() == 900  # from the GEMM's start at 13,000 to attention's end at 13,900


def test_the_split_the_read_rate_and_the_fit(trace):
    result = ps.summary(trace, kv_bytes_per_token=1000)
    decode = result["kinds"]["decode only"]
    assert decode["steps"] == 3
    assert decode["split_us_per_step"] == {"attention": 2100, "matmul": 50, "fused elementwise": 10}
    assert decode["generation_kv_tokens_per_step"] == 2000
    # 2,000 tokens × 1,000 bytes in 2,100 µs
    assert decode["kv_read_bytes_per_s"] == pytest.approx(2000 * 1000 / 2100e-6)
    assert decode["attention_fit_us_per_step"] == pytest.approx(100)
    assert decode["attention_fit_us_per_kv_token"] == pytest.approx(1)
    assert decode["attention_fit_bytes_per_s"] == pytest.approx(1000 / 1e-6)
    prompt = result["kinds"]["with prompt tokens"]
    assert prompt["split_us_per_step"] == {"matmul": 600, "attention": 200}
    assert "attention_fit_us_per_step" not in prompt
    # the window runs from the first kernel (1,000) to the last (14,000); kernels never overlap here
    assert result["window_us"] == 13000
    assert result["busy_us"] == 3 * 60 + 1100 + 2100 + 3100 + 600 + 200 + 50
    assert result["outside_steps_us"] == 50


def test_busy_time_counts_overlapping_kernels_once():
    kernels = [{"ts": 0, "dur": 10}, {"ts": 5, "dur": 10}, {"ts": 30, "dur": 5}, {"ts": 31, "dur": 1}]
    assert ps.busy(kernels) == 20


def test_no_fit_without_a_spread_of_context():
    steps = [ps.Step("s", 0, 1, 0, 0, 4, 4, 1000, [{"name": ATTENTION, "ts": 0, "dur": 5}]) for _ in range(5)]
    assert ps.attention_fit(steps, 1000) == {}


def test_a_cpu_trace_and_a_folder_without_one(tmp_path):
    cpu = Trace()
    cpu.step(step_name(0, 0, 4, 100), 0, 10)
    cpu.events.append({"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 1, "dur": 3})
    cpu.write(tmp_path)
    assert "no GPU kernels" in ps.report(ps.summary(ps.read_trace(tmp_path), None))
    with pytest.raises(SystemExit, match="no torch profiler trace"):
        ps.read_trace(tmp_path / "missing")
