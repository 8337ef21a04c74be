"""``tpserve serve`` and ``tpserve fetch`` as users run them: the launch is checked before vLLM starts."""

import json
import shlex
import shutil

import pytest

from lab.hubfake import fixture_files
from tests.conftest import tpserve
from tpserve import launch
from tpserve.fetch import cache
from tpserve.fetch.errors import CacheError, CacheMismatchError, ConfigError
from tpserve.launch import FUSION_OFF, ServeConfig

FILES = fixture_files("tiny-llama")
REPO = "tiny-org/tiny-llama"


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "cache"


@pytest.fixture
def fetched(hub, cache_dir):
    hub.publish(REPO, FILES)
    manifest = cache.fetch(REPO, "main", cache_dir, progress=False)
    return cache.model_path(cache_dir, REPO, manifest.resolved_sha)


@pytest.fixture(autouse=True)
def roomy_shm(monkeypatch):
    monkeypatch.setattr("tpserve.fetch.preflight.shm_bytes", lambda path: 16 << 30)


GPUS = {"CUDA_VISIBLE_DEVICES": "0,1,2,3"}


def test_a_cached_repo_is_served_from_its_verified_folder_under_its_repo_id(fetched, cache_dir):
    argv = launch.prepare(ServeConfig(model=REPO, tensor_parallel_size=2), cache_dir, GPUS)
    assert argv[argv.index("--model") + 1] == str(fetched)
    assert argv[argv.index("--served-model-name") + 1] == REPO


def test_a_repo_that_was_never_fetched_is_refused_with_the_fetch_command(hub, cache_dir):
    with pytest.raises(CacheError, match=(
            f"tiny-org/other@main is not in the model cache at {cache_dir}: run tpserve fetch tiny-org/other "
            f"--revision main --cache-dir {cache_dir} first")):
        launch.prepare(ServeConfig(model="tiny-org/other"), cache_dir, GPUS)


def test_a_stale_cache_holding_a_smaller_model_under_the_big_ones_name_is_refused_naming_both(
        hub, fetched, cache_dir):
    """The reference note's mistake: a cache served Llama-2-7b while 70b was asked for."""
    big = cache_dir / cache.repo_folder("tiny-org/big-llama") / fetched.name
    shutil.copytree(fetched, big)
    with pytest.raises(CacheMismatchError, match="holds tiny-org/tiny-llama, not tiny-org/big-llama"):
        launch.prepare(ServeConfig(model="tiny-org/big-llama", revision=fetched.name), cache_dir, GPUS)


def test_a_weight_file_damaged_after_fetch_is_named_before_launch(fetched, cache_dir):
    with (fetched / "model.safetensors").open("ab") as weights:
        weights.write(b"\0")
    with pytest.raises(CacheError, match="was changed after its fetch: .*model.safetensors"):
        launch.prepare(ServeConfig(model=REPO), cache_dir, GPUS)


def test_a_tp_that_does_not_divide_the_cached_models_heads_is_rejected(fetched, cache_dir):
    with pytest.raises(ConfigError, match=(
            "tiny-org/tiny-llama has 4 attention heads and 2 KV heads, which tensor parallel 3 cannot split "
            "evenly: use one of 1, 2, 4")):
        launch.prepare(ServeConfig(model=REPO, tensor_parallel_size=3), cache_dir, GPUS)


def test_more_gpus_than_visible_and_a_bad_tp_are_reported_together(fetched, cache_dir):
    with pytest.raises(ConfigError, match="cannot split evenly.*; tensor × pipeline parallel = 3 × 2 = 6 needs"):
        launch.prepare(ServeConfig(model=REPO, tensor_parallel_size=3, pipeline_parallel_size=2), cache_dir, GPUS)


def test_a_small_shm_is_rejected_before_a_multi_gpu_launch(fetched, cache_dir, monkeypatch):
    monkeypatch.setattr("tpserve.fetch.preflight.shm_bytes", lambda path: 64 << 20)
    with pytest.raises(ConfigError, match="/dev/shm is 64 MiB"):
        launch.prepare(ServeConfig(model=REPO, tensor_parallel_size=2), cache_dir, GPUS)
    assert launch.prepare(ServeConfig(model=REPO), cache_dir, {})  # one GPU needs no shm


def test_a_local_folder_is_served_as_is_and_its_manifest_names_it(fetched, cache_dir, tmp_path):
    argv = launch.prepare(ServeConfig(model=str(fetched)), cache_dir, GPUS)
    assert argv[argv.index("--served-model-name") + 1] == REPO
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text(json.dumps(json.loads(FILES["config.json"])))
    argv = launch.prepare(ServeConfig(model=str(plain)), cache_dir, GPUS)
    assert argv[argv.index("--served-model-name") + 1] == str(plain)


def test_a_folder_without_config_json_is_refused(tmp_path, cache_dir):
    with pytest.raises(ConfigError, match=f"{tmp_path} has no config.json"):
        launch.prepare(ServeConfig(model=str(tmp_path)), cache_dir, GPUS)


def test_allreduce_fusion_can_be_switched_off_for_hosts_without_nvlink_multicast(fetched, cache_dir):
    argv = launch.prepare(ServeConfig(model=REPO, tensor_parallel_size=4, allreduce_fusion=False), cache_dir, GPUS)
    assert argv[-4:] == ["--compilation-config", FUSION_OFF, "--shutdown-timeout", "30"]
    assert json.loads(FUSION_OFF) == {"pass_config": {"fuse_allreduce_rms": False}}
    with pytest.raises(ConfigError, match="put \"pass_config\": {\"fuse_allreduce_rms\": false} inside your own"):
        launch.validate(ServeConfig(model=REPO, allreduce_fusion=False, extra_args=("--compilation-config", "{}")))


def test_an_api_key_flag_is_refused_in_favour_of_the_environment():
    with pytest.raises(ConfigError, match="set the VLLM_API_KEY environment variable"):
        launch.validate(ServeConfig(model="m", extra_args=("--api-key=secret",)))


def test_fetch_then_serve_dry_run_from_the_command_line(hub, cache_dir):
    sha = hub.publish(REPO, FILES)
    done = tpserve("fetch", REPO, "--cache-dir", str(cache_dir), "--no-progress", timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{REPO}@main = {sha}: 5 files")
    done = tpserve("serve", "--model", REPO, "--cache-dir", str(cache_dir), "-tp", "2", "--no-allreduce-fusion",
                   "--dry-run", "--", "--enforce-eager", env={**_env(), **GPUS}, timeout=120)
    assert done.returncode == 0, done.stderr
    argv = shlex.split(done.stdout)
    assert argv[argv.index("--model") + 1] == str(cache.model_path(cache_dir, REPO, sha))
    assert argv[-5:] == ["--compilation-config", FUSION_OFF, "--shutdown-timeout", "30", "--enforce-eager"]


def test_fetch_and_serve_dry_run_print_as_json_what_their_lines_say(hub, cache_dir):
    sha = hub.publish(REPO, FILES)
    done = tpserve("fetch", REPO, "--cache-dir", str(cache_dir), "--no-progress", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    fetched = json.loads(done.stdout)
    text = tpserve("fetch", REPO, "--cache-dir", str(cache_dir), "--no-progress", timeout=120).stdout
    assert fetched == {"repo_id": REPO, "requested_revision": "main", "resolved_sha": sha,
                       "path": str(cache.model_path(cache_dir, REPO, sha)), "files": 5,
                       "bytes": fetched["bytes"], "parameters": fetched["parameters"], "verified_offline_from": None}
    params = f"{fetched['parameters'] / 1e9:.1f}B parameters, " if fetched["parameters"] else ""
    folder = cache.model_path(cache_dir, REPO, sha)
    assert text == (f"{REPO}@main = {sha}: 5 files, {fetched['bytes'] / 2**30:.2f} GiB, {params}"
                    f"at {fetched['path']}\n")
    assert fetched["bytes"] == sum(len(data) for name, data in FILES.items() if (folder / name).is_file())

    serve = ("serve", "--model", REPO, "--cache-dir", str(cache_dir), "-tp", "2", "--dry-run")
    shown = tpserve(*serve, "--json", "--", "--enforce-eager", env={**_env(), **GPUS}, timeout=120)
    assert shown.returncode == 0, shown.stderr
    text = tpserve(*serve, "--", "--enforce-eager", env={**_env(), **GPUS}, timeout=120).stdout
    assert json.loads(shown.stdout) == {"argv": shlex.split(text), "env": {"HF_HUB_OFFLINE": "1"}}
    assert "--enforce-eager" in shlex.split(text)


def test_serve_json_without_dry_run_is_refused_naming_the_fix(fetched):
    done = tpserve("serve", "--model", str(fetched), "--json")
    assert done.returncode == 2
    assert "--json" in done.stderr and "prints the --dry-run command as JSON: add --dry-run" in done.stderr


def test_serve_from_the_command_line_turns_a_refusal_into_one_line(hub, cache_dir):
    done = tpserve("serve", "--model", "tiny-org/absent", "--cache-dir", str(cache_dir), "--dry-run",
                   env=_env(), timeout=120)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: tiny-org/absent@main is not in the model cache")


def test_fetch_of_a_missing_model_is_one_actionable_line(hub, cache_dir):
    done = tpserve("fetch", "tiny-org/absent", "--cache-dir", str(cache_dir), "--no-progress", timeout=120)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and "tiny-org/absent" in line


def _env():
    import os

    return dict(os.environ)


def test_vllm_runs_offline_because_its_weights_are_already_verified_on_disk():
    env = launch.vllm_env(ServeConfig(model="m", tensor_parallel_size=2), {"HF_HUB_OFFLINE": "0", "PATH": "/bin"})
    assert env == {"HF_HUB_OFFLINE": "1", "PATH": "/bin"}


def test_on_one_gpu_the_engine_is_forked_unless_the_environment_names_a_start_method():
    one = ServeConfig(model="m")
    assert launch.vllm_env(one, {})["VLLM_WORKER_MULTIPROC_METHOD"] == "fork"
    assert launch.vllm_env(one, {"VLLM_WORKER_MULTIPROC_METHOD": "spawn"})["VLLM_WORKER_MULTIPROC_METHOD"] == "spawn"
    assert launch.env_added(one, {"VLLM_WORKER_MULTIPROC_METHOD": "spawn"}) == {"HF_HUB_OFFLINE": "1"}


@pytest.mark.parametrize("layout", [{"tensor_parallel_size": 2}, {"pipeline_parallel_size": 2}])
def test_with_more_than_one_gpu_the_engine_start_stays_vllms_own(layout):
    assert "VLLM_WORKER_MULTIPROC_METHOD" not in launch.vllm_env(ServeConfig(model="m", **layout), {})


@pytest.mark.parametrize("model", ["./no/such/folder", "no/such/folder", "/no/such", "~/no-such-model", "../no-such-model-folder"])
def test_a_model_folder_that_does_not_exist_is_named_as_a_missing_folder(model, cache_dir):
    with pytest.raises(ConfigError, match=f"^model folder {model} does not exist \\(resolved to .*\\): pass a folder"):
        launch.prepare(ServeConfig(model=model), cache_dir, GPUS)


def test_a_file_given_as_the_model_is_named_as_a_file(tmp_path, cache_dir):
    config = tmp_path / "config.json"
    config.write_text("{}")
    with pytest.raises(ConfigError, match=f"^model folder {config} is a file, not a folder"):
        launch.prepare(ServeConfig(model=str(config)), cache_dir, GPUS)


def test_serve_names_the_missing_folder_in_one_line(cache_dir):
    done = tpserve("serve", "--model", "./no/such/folder", "--cache-dir", str(cache_dir), "--dry-run")
    assert done.returncode != 0
    assert "model folder ./no/such/folder does not exist" in done.stderr
    assert "Traceback" not in done.stderr and "repo id:" not in done.stderr
