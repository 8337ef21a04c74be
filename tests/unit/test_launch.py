import shlex
import subprocess
import sys

import pytest

from tpserve.fetch.errors import ConfigError
from tpserve.launch import VLLM_MODULE, ServeConfig, parse_extra_args, validate, vllm_argv


def test_the_vllm_command_carries_every_setting_and_extra_args_last():
    config = ServeConfig(model="meta-llama/Llama-2-70b-chat-hf", tensor_parallel_size=4, max_model_len=4096,
                         dtype="float16", port=9000, extra_args=("--enforce-eager",))
    assert vllm_argv(config, python="py") == [
        "py", "-m", VLLM_MODULE, "--model", "meta-llama/Llama-2-70b-chat-hf",
        "--served-model-name", "meta-llama/Llama-2-70b-chat-hf", "--tensor-parallel-size", "4",
        "--pipeline-parallel-size", "1", "--dtype", "float16", "--host", "0.0.0.0", "--port", "9000", "--max-model-len", "4096",
        "--shutdown-timeout", "30", "--enforce-eager",
    ]


@pytest.mark.parametrize("given", [("--shutdown-timeout", "120"), ("--shutdown-timeout=0",)])
def test_a_drain_given_after_the_double_dash_replaces_the_default_and_is_passed_once(given):
    argv = vllm_argv(ServeConfig(model="m", extra_args=given), python="py")
    assert [arg for arg in argv if arg.startswith("--shutdown-timeout")] == [given[0]]
    assert argv[-len(given):] == list(given)


def test_the_drain_is_not_part_of_a_runs_layout():
    from tpserve.launch import vllm_flags
    assert vllm_flags(ServeConfig(model="m", extra_args=("--enforce-eager",))) == {"--enforce-eager": True}


def test_the_served_name_defaults_to_the_model_so_clients_can_tell_what_they_hit():
    assert ServeConfig(model="org/m").name == "org/m"
    assert ServeConfig(model="org/m", served_model_name="m").name == "m"


@pytest.mark.parametrize("config, message", [
    (ServeConfig(model=""), "no model: pass --model"),
    (ServeConfig(model="m", tensor_parallel_size=0), "--tensor-parallel-size must be at least 1, got 0"),
    (ServeConfig(model="m", max_model_len=0), "--max-model-len must be at least 1, got 0"),
    (ServeConfig(model="m", dtype="fp7"), "--dtype must be one of auto, half"),
    (ServeConfig(model="m", port=70000), "--port must be within 1..65535, got 70000"),
    (ServeConfig(model="m", extra_args=("--tensor-parallel-size=2",)),
     "--tensor-parallel-size is set by tpserve: use tpserve serve --tensor-parallel-size"),
    (ServeConfig(model="m", extra_args=("-tp", "2")), "-tp is set by tpserve"),
])
def test_bad_settings_are_rejected_with_the_fix(config, message):
    with pytest.raises(ConfigError, match=message):
        validate(config)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError, match="no model.*; --port must be"):
        validate(ServeConfig(model="", port=0))


def test_extra_args_string_is_split_like_a_shell_and_bad_quoting_is_explained():
    assert parse_extra_args("""--compilation-config '{"pass_config": {"x": false}}'""") == (
        "--compilation-config", '{"pass_config": {"x": false}}')
    with pytest.raises(ConfigError, match="check the quoting"):
        parse_extra_args("--x 'unclosed")


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tpserve", *args], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def test_dry_run_prints_the_exact_command_from_flags_env_and_passthrough(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "num_attention_heads": 8}')
    env = {"PATH": "/usr/bin:/bin", "TPSERVE_MODEL": str(tmp_path), "TPSERVE_TENSOR_PARALLEL_SIZE": "2",
           "TPSERVE_EXTRA_ARGS": "--enforce-eager", "CUDA_VISIBLE_DEVICES": "0,1"}
    done = run_cli("serve", "--port", "8123", "--dry-run", "--", "--load-format", "dummy", env=env)
    assert done.returncode == 0, done.stderr
    argv = shlex.split(done.stdout)
    assert argv[1:3] == ["-m", VLLM_MODULE]
    assert argv[argv.index("--model") + 1] == str(tmp_path)
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--port") + 1] == "8123"
    assert argv[-3:] == ["--enforce-eager", "--load-format", "dummy"]


def test_cli_turns_config_errors_into_one_line_and_status_2():
    done = run_cli("serve", "--model", "m", "-tp", "0", "--dry-run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: --tensor-parallel-size must be at least 1, got 0"]
    assert "Traceback" not in done.stderr
