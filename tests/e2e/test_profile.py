"""A real vLLM server's profile, as ``lab/gpu/tune_on_host.py`` takes it and ``lab/benchmarks/profile_summary.py``
reads it: the profiler is armed by ``--profiler-config`` through ``tpserve serve``, started and stopped over
HTTP, and every engine step in its trace carries the scheduled tokens that the summary splits the steps by.
On CPU the trace holds no GPU kernels, so what is checked here is the contract with vLLM: the step names."""

import requests

from lab.benchmarks import profile_summary
from lab.gpu.tune_on_host import Session, profiler_flags
from lab.gpu.tune_phases import THROUGHPUT, Phase
from tests.e2e.conftest import MODEL_NAME, healthy_server
from tpserve.shapes import TINY_LLAMA

PROMPTS = ["The harbour master counted seven boats before the storm arrived in the bay",
           "Quantum tunnelling lets particles cross barriers they could not climb classically",
           "A recipe for sourdough needs patience, flour, water, salt and a lively starter",
           "The committee postponed its vote on the bridge until the engineers reported back"]


def test_a_profiled_window_names_each_step_with_its_prompt_and_decode_tokens(tiny_model, tmp_path):
    session = Session(tmp_path, 0.0, cpu=True, load=THROUGHPUT)
    phase = Phase("profiled", TINY_LLAMA.name, 1, ((),), profile=(0, 0))  # from /start_profile to /stop_profile
    flags = profiler_flags(session, phase)
    with healthy_server(tiny_model, tmp_path, vllm_args=[*flags, "--no-enable-prefix-caching"]) as server:
        requests.post(server.url + "/start_profile", timeout=60).raise_for_status()
        prompt_tokens = 0
        for prompt in PROMPTS:
            response = requests.post(server.url + "/v1/completions", timeout=600, json={
                "model": MODEL_NAME, "prompt": prompt, "max_tokens": 8, "ignore_eos": True, "temperature": 0})
            response.raise_for_status()
            usage = response.json()["usage"]
            assert usage["completion_tokens"] == 8
            prompt_tokens += usage["prompt_tokens"]
        requests.post(server.url + "/stop_profile", timeout=600).raise_for_status()

    trace = profile_summary.read_trace(tmp_path / "profile" / "profiled")
    names = [e["name"] for e in trace["traceEvents"]
             if e.get("cat") == "user_annotation" and e["name"].startswith("execute_")]
    steps = [profile_summary.parse_step(name, 0, 1) for name in names]
    assert steps and None not in steps, f"step names the summary cannot read: {names[:5]}"
    # Every prompt token was scheduled once, in steps with prompt tokens; the other 7 of each request's 8 output
    # tokens came from decode steps, whose context the detailed annotation counts.
    assert sum(s.context_tokens for s in steps) == prompt_tokens
    assert sum(s.generation_tokens for s in steps) == len(PROMPTS) * 7
    assert all(s.generation_kv_tokens is not None for s in steps)
    assert any(s.kind == "decode only" and s.generation_kv_tokens > 0 for s in steps)
    summary = profile_summary.summary(trace, kv_bytes_per_token=1024)
    assert summary == {"kernels": 0}  # a CPU server: operators, no GPU kernels
