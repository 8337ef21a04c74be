"""The model cache against a fake hub, through the real huggingface_hub client (see ``lab/hubfake``)."""

import errno
import json
import os
import re
import shutil
from collections import namedtuple

import pytest
from huggingface_hub import constants, file_download
from huggingface_hub import utils as hf_utils

from lab.hubfake import DiskFile, fixture_files
from tpserve.fetch import cache
from tpserve.fetch import hub as hub_module
from tpserve.fetch.errors import (
    CacheDamagedError,
    CacheError,
    CacheIncompleteError,
    CacheMismatchError,
    ConfigError,
    DownloadInterruptedError,
    GatedModelError,
    ModelNotFoundError,
    NoSpaceError,
    RevisionNotFoundError,
    TokenRejectedError,
)

REPO = "tiny-org/tiny-llama"
FILES = fixture_files("tiny-llama")
FETCHED = sorted(name for name in FILES if name != "README.md")
TINY_LLAMA_PARAMETERS = 123_712  # 2 * 256 * 64 + 2 * (12,288 + 33,024 + 128) + 64


@pytest.fixture
def sha(hub):
    return hub.publish(REPO, FILES)


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "models"


def fetch(repo_id, revision, cache_dir, **kwargs):
    return cache.fetch(repo_id, revision, cache_dir, progress=False, **kwargs)


def downloaded(hub):
    """Names of the files the client downloaded (GET on /resolve/), in request order."""
    return [r.path.rsplit("/", 1)[1] for r in hub.requests_for("GET", "/resolve/")]


def test_fetch_writes_a_manifest_with_the_resolved_sha_and_sizes(hub, sha, cache_dir):
    manifest = fetch(REPO, "main", cache_dir)

    folder = cache_dir / "tiny-org--tiny-llama" / sha
    assert manifest.resolved_sha == sha and manifest.requested_revision == "main" and manifest.repo_id == REPO
    assert [(f.path, f.size) for f in manifest.files] == [(name, len(FILES[name])) for name in FETCHED]
    assert manifest.parameter_count == TINY_LLAMA_PARAMETERS
    assert cache.Manifest.from_json((folder / "tpserve-manifest.json").read_text()) == manifest
    assert json.loads((folder / "tpserve-manifest.json").read_text()).keys() == {
        "format", "repo_id", "requested_revision", "resolved_sha", "files", "config_sha256",
        "parameter_count", "created_at", "tpserve_version", "source"}
    assert all((folder / name).read_bytes() == FILES[name] for name in FETCHED)
    assert not (folder / "README.md").exists()
    asked = (f"/api/models/{REPO}/revision/main", f"/api/models/{REPO}/tree/{sha}", f"/{REPO}/resolve/{sha}/")
    assert all(r.path.startswith(asked) for r in hub.requests), "model info, tree and /resolve/ only: no Xet"


def test_a_second_fetch_of_a_cached_commit_makes_no_network_request(hub, sha, cache_dir):
    first = fetch(REPO, "main", cache_dir)
    hub.requests.clear()
    hub.stop()

    assert fetch(REPO, sha, cache_dir) == first
    assert hub.requests == []


def test_a_second_fetch_by_branch_name_only_asks_which_commit_the_branch_is(hub, sha, cache_dir):
    first = fetch(REPO, "main", cache_dir)
    hub.requests.clear()

    assert fetch(REPO, "main", cache_dir) == first
    assert [(r.method, r.path) for r in hub.requests] == [("GET", f"/api/models/{REPO}/revision/main")]


def test_a_fetch_by_another_name_of_the_same_commit_records_that_name(hub, sha, cache_dir):
    fetch(REPO, sha, cache_dir)
    again = fetch(REPO, "main", cache_dir)

    assert again.requested_revision == "main" and again.resolved_sha == sha
    assert cache.verify(cache.model_path(cache_dir, REPO, sha), repo_id=REPO, revision="main") == again


def test_an_interrupted_download_raises_a_clear_error_writes_no_manifest_and_a_rerun_resumes(
        hub, sha, cache_dir):
    hub.cut("model.safetensors", after_bytes=1000)
    message = (f"downloading {REPO} failed (.+); check the network and run tpserve fetch {REPO} "
               "--revision main again: it resumes, keeping the files that finished")
    with pytest.raises(DownloadInterruptedError, match=message):
        fetch(REPO, "main", cache_dir)

    folder = cache.model_path(cache_dir, REPO, sha)
    assert not (folder / "tpserve-manifest.json").exists()
    assert not (folder / "model.safetensors").exists()
    with pytest.raises(CacheIncompleteError, match="has no tpserve-manifest.json: its fetch did not finish"):
        cache.verify(folder)
    finished = {name for name in FETCHED if (folder / name).is_file()}
    hub.requests.clear()

    manifest = fetch(REPO, "main", cache_dir)
    assert sorted(downloaded(hub)) == sorted(set(FETCHED) - finished)
    assert cache.verify(folder, repo_id=REPO, revision="main") == manifest


def test_a_connection_dropped_mid_file_is_resumed_with_a_range_request(hub, sha, cache_dir, monkeypatch):
    """huggingface_hub resumes from the last whole chunk it wrote: chunks of 500 bytes make that byte 1000."""
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 500)
    monkeypatch.setattr(file_download.time, "sleep", lambda seconds: None)  # its pause before retrying
    hub.cut("model.safetensors", after_bytes=1000, reset=False)

    fetch(REPO, "main", cache_dir)

    gets = hub.requests_for("GET", "model.safetensors")
    assert [r.range for r in gets] == [None, "bytes=1000-"]
    weights = cache.model_path(cache_dir, REPO, sha) / "model.safetensors"
    assert weights.read_bytes() == FILES["model.safetensors"]


@pytest.mark.parametrize("name, damage, problem", [
    ("config.json", lambda path: path.write_bytes(path.read_bytes().replace(b"64", b"65", 1)),
     "config.json has changed"),
    ("model.safetensors", lambda path: path.write_bytes(path.read_bytes()[:100]),
     "model.safetensors is 100 bytes, not 4224"),
    ("tokenizer_config.json", lambda path: path.unlink(), "tokenizer_config.json is missing"),
])
def test_a_file_changed_on_disk_after_fetch_is_named_by_verify_and_repaired_by_fetch(
        hub, sha, cache_dir, name, damage, problem):
    fetch(REPO, "main", cache_dir)
    folder = cache.model_path(cache_dir, REPO, sha)
    damage(folder / name)

    message = f"{folder} was changed after its fetch: {problem}; run tpserve fetch {REPO} --revision {sha}"
    with pytest.raises(CacheDamagedError, match=re.escape(message)) as caught:
        cache.verify(folder, repo_id=REPO)
    assert caught.value.paths == (name,)
    hub.requests.clear()

    fetch(REPO, sha, cache_dir)
    assert downloaded(hub) == [name]
    assert (folder / name).read_bytes() == FILES[name]
    cache.verify(folder, repo_id=REPO, revision=sha)


def test_an_unreachable_hub_is_named_and_an_earlier_fetch_is_offered_by_its_sha(hub, sha, cache_dir):
    fetch(REPO, "main", cache_dir)
    hub.stop()

    with pytest.raises(DownloadInterruptedError, match=re.escape(
            f"cannot reach the hub at {hub.url} to resolve main of {REPO} (")) as caught:
        fetch(REPO, "main", cache_dir)
    assert str(caught.value).endswith(
        f"then run tpserve fetch {REPO} --revision main again; {cache.model_path(cache_dir, REPO, sha)} "
        f"holds an earlier fetch of main: pass --revision {sha} to use it without the network")
    with pytest.raises(DownloadInterruptedError, match=r"check the network \(and HF_ENDPOINT\), then run "
                       f"tpserve fetch {REPO} --revision v2.0 again$"):
        fetch(REPO, "v2.0", cache_dir)


def test_a_cache_holding_a_different_model_is_refused_naming_both(hub, sha, cache_dir):
    wider = FILES["config.json"].replace(b'"hidden_size": 64', b'"hidden_size": 128')
    bigger = {**FILES, "config.json": wider}
    bigger_sha = hub.publish("tiny-org/bigger-llama", bigger)
    fetch(REPO, "main", cache_dir)
    folder = cache.model_path(cache_dir, REPO, sha)

    with pytest.raises(CacheMismatchError, match=re.escape(
            f"{folder} holds {REPO}, not tiny-org/bigger-llama: refusing to serve a different model")):
        cache.verify(folder, repo_id="tiny-org/bigger-llama")

    impostor = cache.model_path(cache_dir, "tiny-org/bigger-llama", bigger_sha)
    shutil.copytree(folder, impostor)
    hub.requests.clear()
    with pytest.raises(CacheMismatchError, match=f"holds {REPO}, not tiny-org/bigger-llama"):
        fetch("tiny-org/bigger-llama", bigger_sha, cache_dir)
    with pytest.raises(CacheMismatchError, match=f"holds {REPO}, not tiny-org/bigger-llama"):
        fetch("tiny-org/bigger-llama", "main", cache_dir)
    assert downloaded(hub) == []


def test_verify_takes_the_revision_as_its_name_or_its_sha_and_refuses_another(hub, sha, cache_dir):
    fetch(REPO, "main", cache_dir)
    folder = cache.model_path(cache_dir, REPO, sha)

    for revision in ("main", sha, sha[:12]):
        assert cache.verify(folder, repo_id=REPO, revision=revision).resolved_sha == sha
    with pytest.raises(CacheMismatchError, match=re.escape(
            f"holds {REPO} at {sha} (fetched as main), not revision v2.0; "
            f"run tpserve fetch {REPO} --revision v2.0")):
        cache.verify(folder, repo_id=REPO, revision="v2.0")


def test_a_moved_branch_is_fetched_into_a_new_folder_and_found_by_its_name(hub, sha, cache_dir):
    fetch(REPO, "main", cache_dir)
    newer = hub.publish(REPO, {**FILES, "generation_config.json": b'{"max_new_tokens": 64}\n'})

    assert fetch(REPO, "main", cache_dir).resolved_sha == newer
    assert cache.find_cached(REPO, "main", cache_dir) == cache.model_path(cache_dir, REPO, newer)
    assert cache.find_cached(REPO, sha, cache_dir) == cache.model_path(cache_dir, REPO, sha)
    assert cache.find_cached(REPO, "v2.0", cache_dir) is None
    assert cache.find_cached("tiny-org/other", "main", cache_dir) is None


def test_a_partial_cache_is_not_found(hub, sha, cache_dir):
    hub.cut("model.safetensors", after_bytes=10)
    with pytest.raises(DownloadInterruptedError):
        fetch(REPO, "main", cache_dir)
    assert cache.find_cached(REPO, sha, cache_dir) is None
    assert cache.find_cached(REPO, "main", cache_dir) is None


@pytest.mark.parametrize("error, repo_id, revision, token, message", [
    (GatedModelError, "tiny-org/gated-llama", "main", None, (
        "tiny-org/gated-llama is gated: set HF_TOKEN to a token of an account that accepted its terms at "
        "{url}/tiny-org/gated-llama, then run tpserve fetch tiny-org/gated-llama --revision main again")),
    (GatedModelError, "tiny-org/gated-llama", "main", "hf_not_granted", (
        "tiny-org/gated-llama is gated and the account of HF_TOKEN has no access yet: accept its terms at "
        "{url}/tiny-org/gated-llama (approval can take a while), then run tpserve fetch tiny-org/gated-llama "
        "--revision main again")),
    (ModelNotFoundError, "tiny-org/no-such-model", "main", None,
     "model tiny-org/no-such-model was not found on {url}: check the id, or set HF_TOKEN if it is private"),
    (RevisionNotFoundError, REPO, "no-such-branch", None, (
        f"{REPO} has no revision 'no-such-branch': pass a branch, tag or full commit sha from "
        f"{{url}}/{REPO}/commits/main")),
    (TokenRejectedError, REPO, "main", "hf_expired", (
        "the hub rejected HF_TOKEN (401 Unauthorized): it is invalid or expired; create a read token at "
        f"{{url}}/settings/tokens and set HF_TOKEN to it, then run tpserve fetch {REPO} --revision main "
        "again")),
])
def test_hub_refusals_give_one_line_that_says_what_to_do(hub, sha, cache_dir, error, repo_id, revision, token,
                                                         message):
    hub.publish("tiny-org/gated-llama", FILES, gated=True)
    hub.valid_tokens.add("hf_not_granted")

    with pytest.raises(error, match=f"^{re.escape(message.format(url=hub.url))}$") as caught:
        fetch(repo_id, revision, cache_dir, token=token)
    assert token is None or token not in str(caught.value)
    assert not list(cache_dir.glob("*/*/tpserve-manifest.json"))


def test_a_granted_token_fetches_a_gated_model_and_is_never_logged(hub, cache_dir, caplog):
    hub.publish("tiny-org/gated-llama", FILES, gated=True)
    hub.valid_tokens.add("hf_granted_secret")
    hub.repos["tiny-org/gated-llama"].granted.add("hf_granted_secret")
    caplog.set_level("DEBUG")

    fetch("tiny-org/gated-llama", "main", cache_dir, token="hf_granted_secret")

    assert {r.token for r in hub.requests} == {"hf_granted_secret"}
    assert "hf_granted_secret" not in caplog.text


def test_the_token_comes_only_from_the_caller_not_the_environment_or_a_login(hub, sha, cache_dir, monkeypatch,
                                                                             tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    (tmp_path / "hf-home").mkdir(exist_ok=True)
    (tmp_path / "hf-home" / "token").write_text("hf_from_login")

    fetch(REPO, "main", cache_dir)

    assert {r.token for r in hub.requests} == {None}


def test_safetensors_are_preferred_over_bin(hub, cache_dir):
    files = {**FILES, "pytorch_model.bin": b"pickle" * 100, "pytorch_model.bin.index.json": b"{}"}
    both = hub.publish("tiny-org/both-formats", files)

    manifest = fetch("tiny-org/both-formats", "main", cache_dir)

    assert [f.path for f in manifest.files] == FETCHED
    assert not hub.requests_for(contains=".bin")
    assert not (cache.model_path(cache_dir, "tiny-org/both-formats", both) / "pytorch_model.bin").exists()


@pytest.mark.parametrize("repo_files, selected", [
    (["config.json", "model.safetensors", "pytorch_model.bin", "README.md", ".gitattributes"],
     ["config.json", "model.safetensors"]),
    (["config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
      "pytorch_model.bin.index.json", "training_args.bin", "tokenizer.model"],
     ["config.json", "pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin",
      "pytorch_model.bin.index.json", "tokenizer.model"]),
    (["config.json", "consolidated.safetensors", "model-00001-of-00002.safetensors",
      "model-00002-of-00002.safetensors", "model.safetensors.index.json", "params.json"],
     ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
      "model.safetensors.index.json"]),
    (["config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
      "special_tokens_map.json", "chat_template.jinja", "onnx/model.safetensors",
      "original/consolidated.00.pth", "model.safetensors"],
     ["chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
      "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json"]),
])
def test_select_files_takes_config_tokenizer_and_one_weight_format(repo_files, selected):
    assert cache.select_files(repo_files) == selected


@pytest.mark.parametrize("files", [
    {"README.md": b"# nothing to serve\n", "model.safetensors": FILES["model.safetensors"]},
    {"config.json": FILES["config.json"], "original/consolidated.00.pth": b"weights"},
])
def test_a_repo_without_config_or_weights_is_refused_before_downloading(hub, cache_dir, files):
    hub.publish("tiny-org/not-a-model", files)
    with pytest.raises(CacheError, match="^tiny-org/not-a-model at main has no config.json with "
                       r"\*.safetensors or \*.bin weights beside it: tpserve serves Hugging Face"):
        fetch("tiny-org/not-a-model", "main", cache_dir)
    assert downloaded(hub) == []


class FullDisk:
    """A file whose every write fails the way a full disk does."""

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def tell(self):
        return 0


def test_a_full_disk_during_the_download_says_how_much_is_needed_and_where(hub, sha, cache_dir, monkeypatch):
    http_get = file_download.http_get
    monkeypatch.setattr(file_download, "http_get", lambda url, temp_file, **kwargs: http_get(url, FullDisk(),
                                                                                            **kwargs))
    folder = cache.model_path(cache_dir, REPO, sha)
    needed = sum(len(FILES[name]) for name in FETCHED)

    with pytest.raises(NoSpaceError, match=re.escape(
            f"no space left on the device of {folder}: {REPO} needs {needed} bytes more; free some space or "
            f"choose another cache dir, then run tpserve fetch {REPO} --revision main again to resume")
    ) as caught:
        fetch(REPO, "main", cache_dir)
    assert caught.value.needed_bytes == needed
    assert not (folder / "tpserve-manifest.json").exists()


def test_a_download_that_cannot_fit_is_refused_before_it_starts(hub, sha, cache_dir, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(cache.shutil, "disk_usage", lambda path: usage(10**12, 10**12 - 1000, 1000))

    with pytest.raises(NoSpaceError, match=re.escape(
            f"not enough space for {REPO} in {cache.model_path(cache_dir, REPO, sha)}: it needs 4934 bytes "
            "more, the disk has 1000 bytes free")):
        fetch(REPO, "main", cache_dir)
    assert downloaded(hub) == []


@pytest.mark.parametrize("progress", [True, False])
def test_progress_bars_are_huggingface_hubs_own_and_off_only_for_that_download(
        hub, sha, cache_dir, monkeypatch, progress):
    seen = []

    def snapshot_download(*args, **kwargs):
        seen.append(hf_utils.are_progress_bars_disabled())
        return real_snapshot_download(*args, **kwargs)

    real_snapshot_download = hub_module.snapshot_download
    monkeypatch.setattr(hub_module, "snapshot_download", snapshot_download)
    before = hf_utils.are_progress_bars_disabled()

    cache.fetch(REPO, "main", cache_dir, progress=progress)

    assert seen == [before or not progress]
    assert hf_utils.are_progress_bars_disabled() == before


def test_the_download_runs_at_most_four_files_at_once(hub, sha, cache_dir, monkeypatch):
    seen = []

    def snapshot_download(*args, **kwargs):
        seen.append(kwargs.get("max_workers"))
        return real_snapshot_download(*args, **kwargs)

    real_snapshot_download = hub_module.snapshot_download
    monkeypatch.setattr(hub_module, "snapshot_download", snapshot_download)

    fetch(REPO, "main", cache_dir)

    assert seen == [hub_module.FETCH_WORKERS] and hub_module.FETCH_WORKERS == 4


def test_weights_in_lfs_are_checked_by_size_and_never_read_whole_after_the_download(
        hub, sha, cache_dir, monkeypatch):
    hashed = []

    def git_blob_id(path):
        hashed.append(path.name)
        return real_git_blob_id(path)

    real_git_blob_id = cache._git_blob_id
    monkeypatch.setattr(cache, "_git_blob_id", git_blob_id)
    monkeypatch.setattr(cache.Path, "read_bytes", lambda path: pytest.fail(f"{path.name} read whole"))

    fetch(REPO, "main", cache_dir)

    assert sorted(hashed) == [name for name in FETCHED if not name.endswith(".safetensors")]


def test_weights_the_stand_in_streams_from_disk_arrive_whole(hub, cache_dir, tmp_path):
    weights = tmp_path / "served.safetensors"
    weights.write_bytes(FILES["model.safetensors"])
    sha = hub.publish(REPO, FILES | {"model.safetensors": DiskFile.of(weights)})

    manifest = fetch(REPO, "main", cache_dir)

    assert manifest.resolved_sha == sha
    assert (cache.model_path(cache_dir, REPO, sha) / "model.safetensors").read_bytes() == FILES["model.safetensors"]


def test_a_git_blob_id_is_gits_own(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"hello\nworld\n")
    assert cache._git_blob_id(path) == "94954abda49de8615a048f8d2e64b5de848e27a1"  # git hash-object


def test_verify_of_a_folder_without_a_manifest_says_to_fetch(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CacheIncompleteError, match=re.escape(
            f"{tmp_path} has no tpserve-manifest.json: its fetch did not finish, or another tool wrote it; "
            f"run tpserve fetch {REPO} --revision main to complete it")):
        cache.verify(tmp_path, repo_id=REPO, revision="main")
    with pytest.raises(CacheIncompleteError, match="nowhere does not exist: run tpserve fetch MODEL"):
        cache.verify(tmp_path / "nowhere")


@pytest.mark.parametrize("repo_id, revision, message", [
    ("not a repo", "main", "'not a repo' is not a Hugging Face repo id"),
    ("org/../etc", "main", "is not a Hugging Face repo id"),
    ("org/a--b", "main", "is not a Hugging Face repo id"),
    (REPO, " ", "no revision"),
])
def test_bad_names_are_rejected_before_any_request(tmp_path, repo_id, revision, message):
    with pytest.raises(ConfigError, match=message):
        cache.fetch(repo_id, revision, tmp_path)
