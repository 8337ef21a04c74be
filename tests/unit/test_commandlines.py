"""The two command lines tpserve runs are built in one place, and build what the callers built by hand before.

Each ``OLD_*`` list is the command a caller assembled itself before :mod:`tpserve.commandlines`
existed, copied from that code with the same inputs.
"""

import sys
from pathlib import Path

import pytest

from tpserve.commandlines import (
    DEFAULT_LOCUSTFILE,
    loadtest_command,
    serve_command,
    serve_command_of,
    served_layout,
)
from tpserve.commands.serve import serve_config
from tpserve.launch import ServeConfig

PY = sys.executable
LOCUSTFILE = str(DEFAULT_LOCUSTFILE)


def options(argv: list[str]) -> list[tuple[str, str]]:
    """ARGV's options as (flag, value) pairs in sorted order: the same command whatever the order."""
    pairs, i = [], 0
    while i < len(argv):
        takes_value = i + 1 < len(argv) and not argv[i + 1].startswith("-")
        pairs.append((argv[i], argv[i + 1] if takes_value else ""))
        i += 2 if takes_value else 1
    return sorted(pairs)


@pytest.mark.parametrize("built, old", [
    # tpserve demo, before it built a ServeConfig (serve_command_of)
    (serve_command(Path("/c/models/tiny-llama"), served_model_name="tiny-llama", host="127.0.0.1", port=8000,
                   max_model_len=2048, vllm_args=["--load-format", "dummy"]),
     [PY, "-m", "tpserve", "serve", "--model", "/c/models/tiny-llama", "--served-model-name", "tiny-llama",
      "--host", "127.0.0.1", "--port", "8000", "--max-model-len", "2048", "--", "--load-format", "dummy"]),
    # sweep.local_backend, with --serve-arg and --dummy-weights, before it built a ServeConfig
    (serve_command("/m/7b", served_model_name="llama-2-7b", tensor_parallel_size=2, host="127.0.0.1", port=8101,
                   serve_args=["--no-allreduce-fusion"], vllm_args=["--load-format", "dummy"]),
     [PY, "-m", "tpserve", "serve", "--model", "/m/7b", "--served-model-name", "llama-2-7b", "-tp", "2",
      "--host", "127.0.0.1", "--port", "8101", "--no-allreduce-fusion", "--", "--load-format", "dummy"]),
    # tests/gpu/test_tensor_parallel.py
    (serve_command("/t/llama-2-70b", served_model_name="llama-2-70b", tensor_parallel_size=4,
                   allreduce_fusion=False, host="127.0.0.1", port=41000, max_model_len=4096,
                   vllm_args=["--load-format", "dummy"]),
     [PY, "-m", "tpserve", "serve", "--model", "/t/llama-2-70b", "--served-model-name", "llama-2-70b", "-tp", "4",
      "--no-allreduce-fusion", "--host", "127.0.0.1", "--port", "41000", "--max-model-len", "4096", "--",
      "--load-format", "dummy"]),
    # lab/benchmarks/serve_startup.py
    (serve_command("meta-llama/Llama-2-70b-chat-hf", revision="main", cache_dir=Path("/s/cache"),
                   tensor_parallel_size=4, allreduce_fusion=False, dry_run=True),
     [PY, "-m", "tpserve", "serve", "--model", "meta-llama/Llama-2-70b-chat-hf", "--revision", "main",
      "--cache-dir", "/s/cache", "-tp", "4", "--no-allreduce-fusion", "--dry-run"]),
])
def test_the_serve_command_is_exactly_what_each_caller_built_before(built, old):
    assert built == old


def test_the_load_test_command_of_a_sweep_replica_is_exactly_what_the_sweep_built_before():
    built = loadtest_command("http://127.0.0.1:8101", users=15, model="llama-2-7b", num_requests=15, max_tokens=256,
                             prompt_set="builtin", random_input_len=128, endpoint="completions", warmup_requests=0,
                             seed=1001, run_time_s=1200, only_summary=True, results_json=Path("/w/replica1.json"),
                             records_jsonl=Path("/w/replica1.jsonl"))
    assert built == [PY, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "15", "-r", "15", "--host",
                     "http://127.0.0.1:8101", "--model", "llama-2-7b", "--num-requests", "15", "--max-tokens", "256",
                     "--prompt-set", "builtin", "--random-input-len", "128", "--endpoint", "completions",
                     "--warmup-requests", "0", "--seed", "1001", "--run-time", "1200s", "--only-summary",
                     "--results-json", "/w/replica1.json", "--records-jsonl", "/w/replica1.jsonl"]


@pytest.mark.parametrize("built, old", [
    # demo.locust_argv
    (loadtest_command("http://127.0.0.1:8000", users=8, locustfile=Path("loadtest/prompts.py"), model="tiny-llama",
                      num_requests=59, max_tokens=64, run_time_s=600, only_summary=True,
                      results_json=Path(".cache/demo/load.json")),
     [PY, "-m", "locust", "-f", "loadtest/prompts.py", "--headless", "-u", "8", "-r", "8", "--host",
      "http://127.0.0.1:8000", "--model", "tiny-llama", "--num-requests", "59", "--max-tokens", "64",
      "--run-time", "600s", "--results-json", ".cache/demo/load.json", "--only-summary"]),
    # lab/benchmarks/vs_vllm_bench.py, built-in prompts
    (loadtest_command("http://127.0.0.1:8031", users=8, max_tokens=64, num_requests=59, warmup_requests=8, seed=3,
                      run_time_s=1200, only_summary=True, results_json=Path("/s/tpserve-1.json"), prompt_set="file",
                      prompt_file=Path("/s/prompts.jsonl")),
     [PY, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "8", "-r", "8", "--host", "http://127.0.0.1:8031",
      "--prompt-set", "file", "--prompt-file", "/s/prompts.jsonl", "--max-tokens", "64", "--num-requests", "59",
      "--warmup-requests", "8", "--seed", "3", "--run-time", "1200s", "--results-json", "/s/tpserve-1.json",
      "--only-summary"]),
    # lab/benchmarks/client_headroom.py, the probe run
    (loadtest_command("http://127.0.0.1:8041", users=1, run_time_s=600, results_json=Path("/s/probe.json"),
                      only_summary=True, prompt_set="file", prompt_file=Path("/s/probes.jsonl"), num_requests=100,
                      max_tokens=8, records_jsonl=Path("/s/records.jsonl")),
     [PY, "-m", "locust", "-f", LOCUSTFILE, "--headless", "-u", "1", "-r", "1", "--host", "http://127.0.0.1:8041",
      "--run-time", "600s", "--results-json", "/s/probe.json", "--only-summary", "--prompt-set", "file",
      "--prompt-file", "/s/probes.jsonl", "--num-requests", "100", "--max-tokens", "8", "--records-jsonl",
      "/s/records.jsonl"]),
])
def test_the_load_test_command_holds_the_same_options_each_caller_gave_before(built, old):
    assert built[:6] == old[:6] and options(built[6:]) == options(old[6:])


def test_users_start_together_unless_a_spawn_rate_is_given():
    assert loadtest_command("h", users=4)[6:10] == ["-u", "4", "-r", "4"]
    assert loadtest_command("h", users=4, spawn_rate=2)[6:10] == ["-u", "4", "-r", "2"]
    assert "-u" not in loadtest_command("h")


def test_the_layout_of_a_serve_config_names_every_vllm_flag_off_vllms_defaults(tmp_path):
    config = ServeConfig("/m/7b", served_model_name="x", tensor_parallel_size=2, allreduce_fusion=False,
                         host="127.0.0.1", port=8100, max_model_len=1024, dtype="bfloat16",
                         extra_args=("--load-format", "dummy", "--enforce-eager"))
    layout = served_layout(config, tmp_path, "NVIDIA H200", replicas=2)
    assert (layout.model, layout.tensor_parallel_size, layout.replicas, layout.device_count) == ("/m/7b", 2, 2, 4)
    assert layout.vllm_flags == {"--dtype": "bfloat16", "--max-model-len": "1024",
                                 "--compilation-config": '{"pass_config": {"fuse_allreduce_rms": false}}',
                                 "--load-format": "dummy", "--enforce-eager": True}


def test_the_serve_command_of_a_config_launches_that_config_whatever_the_serve_variables_say(monkeypatch):
    variables = {"TPSERVE_PIPELINE_PARALLEL_SIZE": "2", "TPSERVE_EXTRA_ARGS": "--enforce-eager",
                 "TPSERVE_DTYPE": "half", "TPSERVE_SERVED_MODEL_NAME": "other", "TPSERVE_SETTINGS": "fp8",
                 "TPSERVE_ALLREDUCE_FUSION": "false", "TPSERVE_CACHE_DIR": "/elsewhere"}
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    config = ServeConfig("/m/7b", tensor_parallel_size=2, max_model_len=1024, extra_args=("--load-format", "dummy"))
    argv = serve_command_of(config, cache_dir=Path("/c"))
    assert serve_config(argv[argv.index("serve") + 1:]) == (config, Path("/c"))
