"""``tpserve demo``'s output, text and JSON, over a committed demo run: the run itself (real vLLM on CPU) is
tests/e2e/test_demo.py's."""

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from tpserve import demo
from tpserve.cli import app
from tpserve.workload import runrecord

RESULTS = REPO / "results" / "20261126T103826Z-demo.json"


@pytest.fixture
def committed_run(monkeypatch):
    """The demo as if it had just measured the committed run: the server and the load test are not this test's."""
    monkeypatch.setattr(demo, "run_demo", lambda options, say: (runrecord.load(RESULTS), RESULTS))


def test_the_demos_json_holds_the_run_record_its_table_shows(committed_run):
    text = CliRunner().invoke(app, ["demo"])
    done = CliRunner().invoke(app, ["demo", "--json"])
    assert done.exit_code == 0 and text.exit_code == 0, done.output
    shown = json.loads(done.stdout)
    assert set(shown) == {"results", "record"} and shown["results"] == str(RESULTS)
    assert runrecord.from_document(shown["record"]) == runrecord.load(RESULTS)
    record = shown["record"]
    for value in (f"{record['completed']} / {record['failed']}", f"{record['output_throughput']:.1f}",
                  f"{record['median_ttft_ms']:.1f} / {record['p99_ttft_ms']:.1f}"):
        assert value in text.stdout
