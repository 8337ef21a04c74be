"""``tpserve fetch --offline``: adopt a cache someone filled in Hugging Face hub layout, without the network.

The hub layout is made the way users make it, by huggingface_hub's own ``snapshot_download(cache_dir=...)``
against the fake hub; the fake is then stopped and sockets refused, so any request would fail the test.
"""

import hashlib
import json
import os
import socket

import pytest
from huggingface_hub import snapshot_download

from lab.hubfake import fixture_files
from tests.conftest import tpserve
from tpserve import launch
from tpserve.fetch import cache, prefilled
from tpserve.fetch.errors import CacheDamagedError, CacheIncompleteError, ConfigError

REPO = "tiny-org/tiny-llama"
FILES = fixture_files("tiny-llama")
FETCHED = sorted(name for name in FILES if name != "README.md")


@pytest.fixture
def hub_cache(tmp_path):
    return tmp_path / "claim" / "hf" / "hub"


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "claim" / "hf" / "tpserve"


def refuse(self, address):
    raise AssertionError(f"network touched: connect to {address}")


def prefill(hub, hub_cache, monkeypatch=None, files=FILES):
    """Publish FILES, fill HUB_CACHE with huggingface_hub as a user would, stop the hub, refuse sockets."""
    sha = hub.publish(REPO, files)
    snapshot_download(REPO, revision=sha, cache_dir=hub_cache)
    hub.requests.clear()
    hub.stop()
    if monkeypatch is not None:
        monkeypatch.setattr(socket.socket, "connect", refuse)
    return sha


def snapshot(hub_cache, sha):
    return hub_cache / "models--tiny-org--tiny-llama" / "snapshots" / sha


def test_hub_layout_filled_by_huggingface_hub_is_verified_and_adopted_without_the_network(
        hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch)
    assert (snapshot(hub_cache, sha) / "model.safetensors").is_symlink(), "the hub layout links into blobs/"

    manifest = prefilled.adopt(REPO, sha, cache_dir, hub_cache)

    folder = cache.model_path(cache_dir, REPO, sha)
    assert manifest.resolved_sha == sha and manifest.requested_revision == sha and manifest.source == "offline"
    assert [(f.path, f.size) for f in manifest.files] == [(name, len(FILES[name])) for name in FETCHED]
    assert all((folder / name).read_bytes() == FILES[name] for name in FETCHED)
    assert cache.verify(folder, repo_id=REPO, revision=sha) == manifest
    assert cache.fetch(REPO, sha, cache_dir, progress=False) == manifest, "a later fetch accepts it offline"
    served = launch.find_verified_model(launch.ServeConfig(model=REPO, revision=sha), cache_dir)
    assert served.path == folder and served.manifest == manifest, "tpserve serve accepts it"
    assert hub.requests == []


def test_adopting_again_finds_the_manifest_and_does_nothing(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch)
    first = prefilled.adopt(REPO, sha, cache_dir, hub_cache)

    assert prefilled.adopt(REPO, sha, cache_dir, hub_cache) == first


def test_the_cli_adopts_from_the_folder_given_and_says_so(hub, hub_cache, cache_dir):
    sha = prefill(hub, hub_cache)
    result = tpserve("fetch", REPO, "--revision", sha, "--offline", "--from", str(hub_cache),
                     "--cache-dir", str(cache_dir))

    assert result.returncode == 0, result.stderr
    assert f"verified offline from {snapshot(hub_cache, sha)}" in result.stdout
    assert hub.requests == []


def test_the_cli_refuses_a_branch_offline_in_one_line(hub_cache, cache_dir):
    result = tpserve("fetch", REPO, "--revision", "main", "--offline", "--from", str(hub_cache),
                     "--cache-dir", str(cache_dir))

    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "needs a 40-hex commit sha, not 'main'" in result.stderr


def test_the_default_hub_cache_is_hf_hub_cache_else_hf_home_hub(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert prefilled.default_hub_cache() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert prefilled.default_hub_cache() == tmp_path / "elsewhere"


def test_a_branch_is_refused_because_it_cannot_be_resolved_without_the_hub(hub_cache, cache_dir):
    message = ("--offline needs a 40-hex commit sha, not 'main': a branch or tag cannot be resolved "
               "without the hub; look it up in ")
    with pytest.raises(ConfigError, match=message):
        prefilled.adopt(REPO, "main", cache_dir, hub_cache)


def test_a_missing_snapshot_names_the_folder_looked_in(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch)
    other = "0" * 40
    folder = snapshot(hub_cache, other)
    message = (f"no snapshot of {REPO} at {other} in {hub_cache}: {folder} does not exist \\(snapshots there: "
               f"{sha}\\); fill it with hf download {REPO} --revision {other} --cache-dir {hub_cache}")
    with pytest.raises(CacheIncompleteError, match=message):
        prefilled.adopt(REPO, other, cache_dir, hub_cache)


def test_a_snapshot_without_weights_is_refused(hub, hub_cache, cache_dir, monkeypatch):
    without_weights = {name: data for name, data in FILES.items() if name != "model.safetensors"}
    sha = prefill(hub, hub_cache, monkeypatch, files=without_weights)
    with pytest.raises(CacheIncompleteError, match=f"has no \\*.safetensors or \\*.bin weights .* in "
                                                   f"{snapshot(hub_cache, sha)}"):
        prefilled.adopt(REPO, sha, cache_dir, hub_cache)


def test_a_missing_config_is_named(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch)
    (snapshot(hub_cache, sha) / "config.json").unlink()
    with pytest.raises(CacheIncompleteError, match=f"config.json is missing from {snapshot(hub_cache, sha)}"):
        prefilled.adopt(REPO, sha, cache_dir, hub_cache)
    assert not (cache.model_path(cache_dir, REPO, sha) / cache.MANIFEST_NAME).exists()


def test_an_unparseable_config_is_refused(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch, files={**FILES, "config.json": b"{not json"})
    with pytest.raises(CacheDamagedError, match="config.json of tiny-org/tiny-llama at .* is not JSON"):
        prefilled.adopt(REPO, sha, cache_dir, hub_cache)


def sharded():
    shards = {"model-00001-of-00002.safetensors": FILES["model.safetensors"],
              "model-00002-of-00002.safetensors": FILES["model.safetensors"]}
    index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}
    files = {name: data for name, data in FILES.items() if name != "model.safetensors"}
    return {**files, **shards, "model.safetensors.index.json": json.dumps(index).encode()}


def test_every_shard_the_index_names_must_be_there(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch, files=sharded())
    (snapshot(hub_cache, sha) / "model-00002-of-00002.safetensors").unlink()
    message = (f"model-00002-of-00002.safetensors is missing from {snapshot(hub_cache, sha)} "
               "\\(model.safetensors.index.json names it\\)")
    with pytest.raises(CacheIncompleteError, match=message):
        prefilled.adopt(REPO, sha, cache_dir, hub_cache)


def test_a_sharded_snapshot_is_adopted(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch, files=sharded())
    manifest = prefilled.adopt(REPO, sha, cache_dir, hub_cache)
    assert {f.path for f in manifest.files} >= {"model-00001-of-00002.safetensors",
                                                "model-00002-of-00002.safetensors"}


def test_a_damaged_index_is_refused(hub, hub_cache, cache_dir, monkeypatch):
    damaged = {**sharded(), "model.safetensors.index.json": b'{"metadata": {}}'}
    sha = prefill(hub, hub_cache, monkeypatch, files=damaged)
    with pytest.raises(CacheDamagedError, match="model.safetensors.index.json of tiny-org/tiny-llama at .* "
                                                "has no weight_map"):
        prefilled.adopt(REPO, sha, cache_dir, hub_cache)


def test_a_dangling_symlink_names_the_file_and_its_blob(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch)
    blob = (snapshot(hub_cache, sha) / "model.safetensors").resolve()
    blob.unlink()
    with pytest.raises(CacheIncompleteError, match=f"model.safetensors is missing from .*: it links to "
                                                   f"{blob}, which does not exist"):
        prefilled.adopt(REPO, sha, cache_dir, hub_cache)


def test_an_empty_file_is_refused(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch)
    (snapshot(hub_cache, sha) / "generation_config.json").unlink()
    (snapshot(hub_cache, sha) / "generation_config.json").write_bytes(b"")
    with pytest.raises(CacheDamagedError, match="generation_config.json is empty"):
        prefilled.adopt(REPO, sha, cache_dir, hub_cache)


def test_a_weights_blob_whose_sha256_differs_from_its_name_is_refused(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch)
    blob = (snapshot(hub_cache, sha) / "model.safetensors").resolve()
    assert blob.name == hashlib.sha256(FILES["model.safetensors"]).hexdigest(), "LFS blobs are named by sha256"
    blob.write_bytes(b"x" * len(FILES["model.safetensors"]))
    with pytest.raises(CacheDamagedError, match="model.safetensors does not hash to its blob name"):
        prefilled.adopt(REPO, sha, cache_dir, hub_cache)


def test_where_hard_links_are_refused_relative_symlinks_stand_in(hub, hub_cache, cache_dir, monkeypatch):
    sha = prefill(hub, hub_cache, monkeypatch)

    def refuse_link(source, link):
        raise PermissionError(1, "Operation not permitted (fs.protected_hardlinks)")
    monkeypatch.setattr(prefilled.os, "link", refuse_link)
    manifest = prefilled.adopt(REPO, sha, cache_dir, hub_cache)

    folder = cache.model_path(cache_dir, REPO, sha)
    link = folder / "model.safetensors"
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.read_bytes() == FILES["model.safetensors"]
    assert cache.verify(folder, repo_id=REPO, revision=sha) == manifest
