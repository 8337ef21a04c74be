"""Settings profiles: the table lookup, what ``tpserve serve`` adds, and that the user's own flag always wins."""

import json
import shlex
from dataclasses import replace

import pytest

from tests.conftest import tpserve
from tests.unit.conftest import gpus_of
from tpserve import catalog, launch, settings
from tpserve.commandlines import served_layout
from tpserve.commands.serve import serve_config
from tpserve.fetch.errors import ConfigError
from tpserve.launch import ServeConfig

GiB = 1 << 30
H200, H100, A100_40 = 140.4, 79.6, 39.6  # GiB, as nvidia-smi reports each card's memory.total
TABLE = {
    "entries": (
        {"parameters_b": (0, 15), "min_gpu_memory_gib": 70, "flags": {"max-num-seqs": "512"},
         "why": "small", "measured_in": "results/a"},
        {"parameters_b": (15, None), "min_gpu_memory_gib": 70, "flags": {"max-num-seqs": "256"},
         "why": "large", "measured_in": "results/b"},
        {"parameters_b": (0, 15), "min_gpu_memory_gib": 130, "flags": {"max-num-seqs": "1024"},
         "why": "small on big cards", "measured_in": "results/c"},
    ),
    "fp8_kv_cache": {"kv-cache-dtype": "fp8"},
    "fp8_weights": {"quantization": "fp8"},
}


# The fp8 profile as shipped: the combination measured on H200s (results/20261130c-h200x2-tune), without the
# 16,384 batched tokens it had until results/20261201b-h200x1-tune.
FP8 = {"--kv-cache-dtype": "fp8", "--quantization": "fp8"}


@pytest.mark.parametrize(("billions", "gib", "why"), [
    (6.7, H100, "small"), (15, H100, "small"), (15.1, H100, "large"), (69, H200, "large"),
    (6.7, H200, "small on big cards"), (70, H200, "large"),
])
def test_the_entry_is_picked_by_size_class_and_the_largest_gpu_class_the_cards_reach(billions, gib, why):
    assert settings.find_entry(int(billions * 1e9), int(gib * GiB), TABLE).why == why


def test_gpus_below_every_class_get_no_entry():
    assert settings.find_entry(int(6.7e9), int(A100_40 * GiB), TABLE) is None


def test_the_shipped_table_has_no_tuned_entry_until_one_is_measured_and_fp8_is_the_measured_combination():
    assert settings.entries() == ()
    tuned = settings.choose("tuned", int(6.7e9), int(H200 * GiB))
    assert tuned.flags == {}
    assert tuned.reason == "settings tuned, no tuned settings for 6.7 B parameters on GPUs of 140.4 GiB"
    fp8 = settings.choose("fp8", int(6.7e9), int(H200 * GiB))
    assert fp8.flags == FP8
    assert fp8.reason.endswith("change the outputs (measured in: results/20261130c-h200x2-tune and "
                               "results/20261201b-h200x1-tune, 7b shape; results/20261130b-h200x2-tune, 70b shape)")


def test_on_cpu_no_profile_adds_a_flag():
    for profile in settings.PROFILES:
        choice = settings.choose(profile, int(6.7e9), None, TABLE)
        assert choice.flags == {}
    assert settings.choose("tuned", int(6.7e9), None).reason == (
        "settings tuned: nvidia-smi sees no NVIDIA GPU, no flag added (vLLM's defaults)")


def test_the_vllm_profile_adds_nothing_even_where_tuned_settings_exist():
    choice = settings.choose("vllm", int(6.7e9), int(H200 * GiB), TABLE)
    assert (choice.flags, choice.reason) == ({}, "settings vllm: vLLM's own defaults, no flag added")


def test_fp8_is_tuned_plus_an_fp8_kv_cache_and_fp8_weights_and_says_it_changes_outputs():
    choice = settings.choose("fp8", int(69e9), int(H100 * GiB), TABLE)
    assert choice.flags == {"--max-num-seqs": "256", "--kv-cache-dtype": "fp8", "--quantization": "fp8"}
    assert choice.reason == ("settings fp8, > 15 B parameters on ≥ 70 GiB GPUs: large (measured in: results/b); "
                             "fp8 KV cache and fp8 weights change the outputs (measured in: not measured)")


def test_a_model_whose_parameters_cannot_be_counted_gets_no_tuned_flags():
    choice = settings.choose("tuned", None, int(H200 * GiB), TABLE)
    assert (choice.flags, choice.reason) == (
        {}, "settings tuned, no tuned settings: the model's parameters cannot be counted from its config.json")


@pytest.mark.parametrize("bad", ["fast", "Tuned", ""])
def test_an_unknown_profile_is_refused_naming_the_three(bad):
    with pytest.raises(ConfigError, match=f"^--settings must be one of tuned, fp8, vllm \\(TPSERVE_SETTINGS\\), "
                                          f"got {bad!r}$"):
        launch.validate(ServeConfig(model="m", settings=bad))


@pytest.mark.parametrize(("user", "added"), [
    (["--max-num-batched-tokens", "4096"], ["--quantization", "fp8"]),
    (["--max-num-batched-tokens=4096"], ["--quantization", "fp8"]),
    (["--max_num_batched_tokens", "4096"], ["--quantization", "fp8"]),
    (["-q", "awq"], ["--max-num-batched-tokens", "16384"]),
])
def test_a_flag_the_user_gives_in_any_spelling_is_left_out_of_the_profile(user, added):
    choice = settings.Choice("fp8", {"--max-num-batched-tokens": "16384", "--quantization": "fp8"}, "")
    assert choice.args(user) == added


@pytest.fixture
def model_of(tmp_path):
    def write(name: str):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(catalog.find_model(name).hf_config()))
        return folder
    return write


def test_serve_adds_the_fp8_flags_runs_the_model_in_bfloat16_and_says_so(model_of, tmp_path, monkeypatch):
    gpus_of(monkeypatch, H200)
    lines = []
    config = ServeConfig(model=str(model_of("llama-2-7b")), settings="fp8")
    argv = launch.prepare(config, tmp_path, {}, say=lines.append)
    assert all(argv[argv.index(name) + 1] == value for name, value in FP8.items())
    assert argv[argv.index("--dtype") + 1] == "bfloat16" and argv.count("--dtype") == 1
    assert lines[0].endswith("; the model runs in bfloat16, which an fp8 KV cache needs on Hopper; adds "
                             + " ".join(f"{name} {value}" for name, value in FP8.items()) + " --dtype bfloat16")


def test_a_dtype_the_user_chose_stays_under_the_fp8_profile(model_of, tmp_path, monkeypatch):
    gpus_of(monkeypatch, H200)
    config = ServeConfig(model=str(model_of("llama-2-7b")), settings="fp8", dtype="float16")
    argv = launch.prepare(config, tmp_path, {})
    assert argv[argv.index("--dtype") + 1] == "float16" and argv.count("--dtype") == 1


@pytest.mark.parametrize("how", ["after --", "--extra-args", "TPSERVE_EXTRA_ARGS"])
def test_the_users_value_wins_over_the_profiles_wherever_it_is_given(how, model_of, tmp_path, monkeypatch):
    gpus_of(monkeypatch, H200)
    model = str(model_of("llama-2-70b"))
    name = "--max-num-batched-tokens"
    user = [f"{name}=123"]
    args = ["--model", model, "--cache-dir", str(tmp_path), "--settings", "fp8"]
    if how == "after --":
        args += ["--", *user]
    elif how == "--extra-args":
        args += ["--extra-args", shlex.join(user)]
    else:
        monkeypatch.setenv("TPSERVE_EXTRA_ARGS", shlex.join(user))
    config, cache_dir = serve_config(args)
    argv = launch.prepare(config, cache_dir, {})
    assert [arg for arg in argv if arg.startswith(name)] == [f"{name}=123"]


def test_the_profile_comes_from_tpserve_settings_and_vllm_adds_nothing(model_of, tmp_path, monkeypatch):
    gpus_of(monkeypatch, H200)
    monkeypatch.setenv("TPSERVE_SETTINGS", "vllm")
    config, cache_dir = serve_config(["--model", str(model_of("llama-2-7b"))])
    assert config.settings == "vllm"
    assert launch.prepare(config, cache_dir, {}) == launch.vllm_argv(config)


def test_the_layout_of_a_served_config_records_the_flags_its_profile_added(model_of, tmp_path, monkeypatch):
    config = ServeConfig(str(model_of("llama-2-70b")), tensor_parallel_size=2, settings="fp8",
                         extra_args=("--load-format", "dummy"))
    no_gpu = served_layout(config, tmp_path, "NVIDIA H200")
    assert no_gpu.vllm_flags == {"--load-format": "dummy"}  # no GPU: nothing added
    gpus_of(monkeypatch, H200)
    fp8 = served_layout(config, tmp_path, "NVIDIA H200")
    assert fp8.vllm_flags == {**FP8, "--dtype": "bfloat16", "--load-format": "dummy"}
    defaults = served_layout(replace(config, settings="vllm"), tmp_path, "NVIDIA H200")
    assert defaults.vllm_flags == {"--load-format": "dummy"}


def test_a_bad_profile_on_the_command_line_is_one_line_and_exit_2(model_of):
    done = tpserve("serve", "--model", str(model_of("llama-2-7b")), "--settings", "fast", "--dry-run", timeout=120)
    assert (done.returncode, done.stderr.strip().splitlines()) == (
        2, ["error: --settings must be one of tuned, fp8, vllm (TPSERVE_SETTINGS), got 'fast'"])


QUERY = "0, GPU-aaaa1111, 143771\n1, GPU-bbbb2222, 81559\n"


@pytest.mark.parametrize(("visible", "mib"), [
    (None, 81559), ("0", 143771), ("1", 81559), ("GPU-aaaa1111", 143771), ("GPU-bbbb", 81559), ("0,1", 81559),
])
def test_the_gpu_class_is_that_of_the_smallest_gpu_cuda_visible_devices_names(visible, mib):
    from tpserve.machine import smallest_gpu_memory

    assert smallest_gpu_memory(QUERY, visible) == mib << 20


def test_no_gpu_lines_mean_no_gpu_class():
    from tpserve.machine import smallest_gpu_memory

    assert smallest_gpu_memory("", None) is None
    assert smallest_gpu_memory("No devices were found\n", None) is None


@pytest.mark.parametrize("flags, dtypes", [
    (FP8, ("fp8", "fp8")),
    ({}, ("auto", "auto")),
    ({"--kv-cache-dtype": "fp8_e4m3"}, ("auto", "fp8")),
    ({"--quantization": "fp8", "--max-num-seqs": "512"}, ("fp8", "auto")),
])
def test_the_dtypes_a_plan_sizes_follow_the_profiles_flags(flags, dtypes):
    assert settings.sized_dtypes(flags) == dtypes
