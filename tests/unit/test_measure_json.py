"""``tpserve sweep --json`` and ``tpserve tune --json``: the outcome as one JSON document on stdout, for scripts,
while progress and errors stay on stderr."""

import json

from tests.conftest import tpserve
from tests.unit.fakebackend import FakeBackend, fake_campaign
from tpserve.axes import parse_axes
from tpserve.sweep import run_sweep, summary

# More devices than any host has: the point fails before a server starts, so the commands run here in seconds.
TOO_MANY = "4096"


def test_the_sweep_summary_names_its_folder_every_run_file_and_every_failed_point(tmp_path):
    campaign = fake_campaign(tmp_path, FakeBackend(lambda p: (100.0, 50.0, 5.0), failing={"tp2x1": "no room"}),
                             layouts="1,2", repeats=2)
    document = json.loads(json.dumps(summary(campaign, run_sweep(campaign))))
    assert document["out"] == str(tmp_path) and document["failures_file"] == str(tmp_path / "failures.json")
    assert document["runs"] == [str(tmp_path / f"tiny-tp1x1-run{repeat}.json") for repeat in (1, 2)]
    assert [(f["label"], f["error"]) for f in document["failures"]] == [("tp2x1", "no room — ValueError: vLLM says no")]
    assert document["failures"] == json.loads((tmp_path / "failures.json").read_text())


def test_the_sweep_json_is_the_only_thing_on_stdout_and_the_error_stays_on_stderr(tmp_path):
    out = tmp_path / "sweep"
    done = tpserve("sweep", str(tmp_path), "--tensor", TOO_MANY, "--repeats", "1", "--out", str(out), "--json",
                   timeout=300)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert (document["out"], document["runs"]) == (str(out), [])
    assert [f["label"] for f in document["failures"]] == [f"tp{TOO_MANY}x1"]
    assert document["failures"][0]["error"].startswith(f"tp{TOO_MANY}x1 needs {TOO_MANY} devices but ")
    assert done.stderr.strip().splitlines()[-1].startswith("error: no point could be measured: ")


def test_the_tune_json_is_tune_json_with_its_folder_and_file_and_the_error_stays_on_stderr(tmp_path):
    out = tmp_path / "tune"
    done = tpserve("tune", str(tmp_path), "--vllm", "max-num-seqs=4", "--tensor", TOO_MANY, "--out", str(out),
                   "--json", timeout=300)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert (document.pop("out"), document.pop("file")) == (str(out), str(out / "tune.json"))
    assert document == json.loads((out / "tune.json").read_text())
    assert (document["winner"], document["ratio_to_defaults"]) == (None, None)
    assert [(c["label"], c["status"]) for c in document["candidates"]] == [(f"tp{TOO_MANY}x1", "failed")]
    assert document["axes"] == {axis.key: list(axis.values) for axis in parse_axes(["max-num-seqs=default,4"])}
    assert done.stderr.strip().splitlines()[-1].startswith("error: no candidate could be measured")
