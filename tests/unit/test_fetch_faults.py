"""``tpserve fetch`` as a process meets faults: stopped by a signal mid-file, a disk that fills up, files
damaged after the download. The hub stand-in (``lab/hubfake``) serves real bytes to the real
huggingface_hub client and holds a download mid-file, so each fault lands at a known point: the tests wait
for that point, never for a time.

Whatever happens, the manifest (the completion marker) must never claim a complete cache, serving must
refuse the folder naming what is missing, and the next fetch must complete it.
"""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from lab.hubfake import fixture_files
from tests.conftest import REPO as ROOT
from tests.conftest import tpserve
from tpserve.fetch import cache
from tpserve.fetch.errors import CacheDamagedError, CacheIncompleteError

REPO = "tiny-org/tiny-llama"
WEIGHTS = bytes(range(256)) * 16384  # 4 MiB: large enough to be mid-file when the stand-in holds it
FILES = fixture_files("tiny-llama") | {"model.safetensors": WEIGHTS}
HELD_AFTER = 2**20
DEADLINE_S = 300
STOPPED = (" stopped the download of tiny-org/tiny-llama; run tpserve fetch tiny-org/tiny-llama --revision main "
           "again: it resumes, keeping the files that finished\n")


@pytest.fixture
def sha(hub):
    return hub.publish(REPO, FILES)


@pytest.fixture
def cache_dir(tmp_path):
    return tmp_path / "models"


def start_fetch(cache_dir, *args):
    return subprocess.Popen([sys.executable, "-m", "tpserve", "fetch", REPO, "--cache-dir", str(cache_dir),
                             "--no-progress", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def fetch(cache_dir, *args):
    return tpserve("fetch", REPO, "--cache-dir", str(cache_dir), "--no-progress", *args, timeout=DEADLINE_S)


def serve_dry_run(cache_dir, revision):
    return tpserve("serve", "--model", REPO, "--revision", revision, "--cache-dir", str(cache_dir), "--dry-run",
                   timeout=DEADLINE_S)


def wait_for_the_small_files(cache_dir, sha):
    """Until every file but the held weights has arrived: what the fetch has left to do is then known."""
    folder = cache.model_path(cache_dir, REPO, sha)
    small = [name for name in FILES if name not in ("README.md", "model.safetensors")]
    deadline = time.monotonic() + DEADLINE_S
    while not all((folder / name).is_file() for name in small):
        assert time.monotonic() < deadline, f"the small files did not arrive in {folder}"
        time.sleep(0.05)


def assert_complete(cache_dir, sha):
    folder = cache.model_path(cache_dir, REPO, sha)
    cache.verify(folder, repo_id=REPO, revision=sha, hashes=True)
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert not (folder / cache.PENDING_NAME).exists()


@pytest.mark.parametrize("stop, status, said", [
    (signal.SIGKILL, -signal.SIGKILL, ""),
    (signal.SIGINT, 128 + signal.SIGINT, "error: SIGINT" + STOPPED),
    (signal.SIGTERM, 128 + signal.SIGTERM, "error: SIGTERM" + STOPPED),
], ids=["SIGKILL", "SIGINT", "SIGTERM"])
def test_a_fetch_stopped_mid_file_claims_nothing_serving_names_the_missing_file_and_a_rerun_completes_it(
        hub, sha, cache_dir, stop, status, said):
    hold = hub.hold("model.safetensors", after_bytes=HELD_AFTER)
    fetching = start_fetch(cache_dir)
    assert hold.reached.wait(DEADLINE_S), fetching.communicate()
    wait_for_the_small_files(cache_dir, sha)
    fetching.send_signal(stop)
    # The held connection never finishes: the process must end without waiting for it.
    _, stderr = fetching.communicate(timeout=DEADLINE_S)
    assert (fetching.returncode, stderr) == (status, said)

    folder = cache.model_path(cache_dir, REPO, sha)
    assert not (folder / cache.MANIFEST_NAME).exists()
    with pytest.raises(CacheIncompleteError, match=(
            f"^{folder} has no tpserve-manifest.json: its fetch did not finish "
            r"\(model.safetensors not downloaded yet\), or another tool wrote it; run tpserve fetch ")):
        cache.verify(folder)
    for revision in ("main", sha):
        refused = serve_dry_run(cache_dir, revision)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr == (
            f"error: {folder} has no tpserve-manifest.json: its fetch did not finish (model.safetensors not "
            f"downloaded yet), or another tool wrote it; run tpserve fetch {REPO} --revision {revision} to "
            "complete it\n")

    again = fetch(cache_dir)
    assert again.returncode == 0, again.stderr
    assert_complete(cache_dir, sha)
    assert serve_dry_run(cache_dir, "main").returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 8 MiB tmpfs: room for the 4 MiB model, and for a file that fills the rest."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; CI (.ci/run) runs as root")
    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill(disk):
    """Write a file until the disk is full; return it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as file, pytest.raises(OSError) as full:
        while True:
            file.write(b"\0" * 65536)
    assert full.value.errno == errno.ENOSPC
    return filler


def test_a_disk_that_fills_up_mid_download_gives_one_line_with_where_and_how_much_and_a_rerun_completes(
        hub, sha, small_disk):
    cache_dir = small_disk / "models"
    folder = cache.model_path(cache_dir, REPO, sha)
    hold = hub.hold("model.safetensors", after_bytes=HELD_AFTER)
    fetching = start_fetch(cache_dir)
    assert hold.reached.wait(DEADLINE_S), fetching.communicate()
    filler = fill(small_disk)
    hold.release.set()
    _, stderr = fetching.communicate(timeout=DEADLINE_S)

    assert fetching.returncode == 1
    needed = sum(len(content) for name, content in FILES.items() if name != "README.md")
    assert stderr == (f"error: no space left on the device of {folder}: {REPO} needs {needed / 1e6:.1f} MB more; "
                      f"free some space or choose another cache dir, then run tpserve fetch {REPO} --revision main "
                      "again to resume\n")
    assert not (folder / cache.MANIFEST_NAME).exists()

    filler.unlink()
    again = fetch(cache_dir)
    assert again.returncode == 0, again.stderr
    assert_complete(cache_dir, sha)


def test_a_disk_too_small_for_the_model_is_refused_before_downloading_and_a_rerun_on_a_larger_one_completes(
        hub, sha, small_disk):
    cache_dir = small_disk / "models"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 6 * 2**20)
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize

    refused = fetch(cache_dir)

    needed = sum(len(content) for name, content in FILES.items() if name != "README.md")
    folder = cache.model_path(cache_dir, REPO, sha)
    assert (refused.returncode, refused.stderr) == (1, (
        f"error: not enough space for {REPO} in {folder}: it needs {needed / 1e6:.1f} MB more, the disk has "
        f"{free / 1e6:.1f} MB free; free some space or choose another cache dir, then run tpserve fetch {REPO} "
        "--revision main\n"))
    assert hub.requests_for("GET", "/resolve/") == []
    filler.unlink()
    again = fetch(cache_dir)
    assert again.returncode == 0, again.stderr
    assert_complete(cache_dir, sha)


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage, problem", [
    (lambda path: path.write_bytes(path.read_bytes()[:100]), f"model.safetensors is 100 bytes, not {len(WEIGHTS)}"),
    (lambda path: path.unlink(), "model.safetensors is missing"),
], ids=["truncated", "deleted"])
def test_weights_cut_short_or_deleted_are_named_by_serve_with_the_fix_and_the_next_fetch_repairs_them(
        hub, sha, cache_dir, damage, problem):
    assert fetch(cache_dir).returncode == 0
    folder = cache.model_path(cache_dir, REPO, sha)
    damage(folder / "model.safetensors")

    refused = serve_dry_run(cache_dir, "main")
    assert (refused.returncode, refused.stderr) == (1, (
        f"error: {folder} was changed after its fetch: {problem}; run tpserve fetch {REPO} --revision {sha} "
        "again to repair\n"))
    hub.requests.clear()
    assert fetch(cache_dir, "--revision", sha).returncode == 0
    assert [r.path.rsplit("/", 1)[1] for r in hub.requests_for("GET", "/resolve/")] == ["model.safetensors"]
    assert_complete(cache_dir, sha)


def test_a_same_size_change_to_the_weights_passes_the_size_check_and_verify_hashes_finds_and_repairs_it(
        hub, sha, cache_dir):
    assert fetch(cache_dir).returncode == 0
    folder = cache.model_path(cache_dir, REPO, sha)
    flip_a_byte(folder / "model.safetensors")

    # Serving checks sizes only (hashing 140 GB would take minutes at every start): the flip goes unnoticed.
    assert serve_dry_run(cache_dir, sha).returncode == 0
    recorded = {entry.path: entry.sha256 for entry in cache.verify(folder).files}
    with pytest.raises(CacheDamagedError, match=(
            f"was changed after its fetch: model.safetensors does not hash to its sha256 "
            f"{recorded['model.safetensors']}; run tpserve fetch {REPO} --revision {sha} again to repair")):
        cache.verify(folder, hashes=True)

    hub.requests.clear()
    repaired = fetch(cache_dir, "--revision", sha, "--verify-hashes")
    assert repaired.returncode == 0, repaired.stderr
    assert [r.path.rsplit("/", 1)[1] for r in hub.requests_for("GET", "/resolve/")] == ["model.safetensors"]
    assert_complete(cache_dir, sha)


def test_verify_hashes_on_an_intact_pinned_cache_reads_the_disk_and_not_the_network(hub, sha, cache_dir):
    assert fetch(cache_dir).returncode == 0
    hub.requests.clear()

    again = fetch(cache_dir, "--revision", sha, "--verify-hashes")

    assert again.returncode == 0, again.stderr
    assert hub.requests == []
