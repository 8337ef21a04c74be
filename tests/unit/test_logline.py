"""A run record through a log and back (--print-results, tpserve loadtest-results), and --layout."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import REPO, tpserve
from tpserve.fetch.errors import LoadTestError
from tpserve.workload import runrecord
from tpserve.workload.logline import records_from_log, results_line
from tpserve.workload.options import parse_layout
from tpserve.workload.runrecord import Layout

RECORD = runrecord.load(REPO / "results" / "20261126T103826Z-demo.json")


def test_a_record_printed_amid_locust_log_lines_comes_back_equal():
    log = f"[12:00:01] INFO/locust.main: Starting\n{results_line(RECORD)}\n[12:00:09] INFO/locust.main: Shutting down\n"
    assert records_from_log(log) == [RECORD]
    assert "\n" not in results_line(RECORD)


def test_a_log_without_a_record_says_how_one_gets_there():
    with pytest.raises(LoadTestError, match=re.escape(
            "master.log holds no results record: the load test prints one when it ends with --print-results "
            "(TPSERVE_PRINT_RESULTS=true); did the run finish?")):
        records_from_log("[12:00:01] ERROR: connection refused\n", "master.log")


def test_a_record_cut_short_is_refused_naming_its_line():
    with pytest.raises(LoadTestError, match=re.escape(
            "line 2 of master.log holds a results record cut short (no end marker): take the whole log")):
        records_from_log("start\n" + results_line(RECORD)[:200] + "\n", "master.log")


@pytest.mark.parametrize("text, layout", [
    ("", None),
    ('{"model": "m", "device_kind": "NVIDIA H200"}', Layout("m", "NVIDIA H200")),
    ('{"model": "m", "device_kind": "CPU (Kubernetes)", "tensor_parallel_size": 2, "replicas": 3}',
     Layout("m", "CPU (Kubernetes)", 2, 1, 3)),
])
def test_the_layout_option_is_the_runs_layout(text, layout):
    assert parse_layout(text) == layout


@pytest.mark.parametrize("text, message", [
    ("{model: m}", "--layout must be JSON, got '{model: m}' (Expecting property name enclosed in double quotes)"),
    ('{"model": "m"}', ('--layout takes "model" and "device_kind", and optionally "tensor_parallel_size", '
                       '"pipeline_parallel_size" and "replicas"; got \'{"model": "m"}\'')),
])
def test_a_layout_that_is_not_one_is_refused_with_what_it_takes(text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_layout(text)


def test_tpserve_loadtest_results_writes_every_record_of_a_log_for_tpserve_report(tmp_path):
    second = replace(RECORD, layout=None)
    log = tmp_path / "master.log"
    log.write_text(f"one\n{results_line(RECORD)}\ntwo\n{results_line(second)}\n")
    done = tpserve("loadtest-results", str(log), "--out", str(tmp_path / "lt.json"))
    assert done.returncode == 0, done.stderr
    assert runrecord.load(tmp_path / "lt.json") == RECORD and runrecord.load(tmp_path / "lt-2.json") == second
    assert f"{tmp_path / 'lt.json'}: 59/59 ok, " in done.stderr
    assert "(no layout: tpserve report needs one; run the master with --layout)" in done.stderr
    assert json.loads((tmp_path / "lt.json").read_text())["tpserve_schema_version"] == 2


def test_tpserve_loadtest_results_json_lists_each_file_with_what_its_line_says(tmp_path):
    second = replace(RECORD, layout=None)
    log = tmp_path / "master.log"
    log.write_text(f"{results_line(RECORD)}\n{results_line(second)}\n")
    text = tpserve("loadtest-results", str(log), "--out", str(tmp_path / "text.json"))
    done = tpserve("loadtest-results", str(log), "--out", str(tmp_path / "lt.json"), "--json")
    assert done.returncode == 0, done.stderr
    written = json.loads(done.stdout)
    assert [item["path"] for item in written] == [str(tmp_path / "lt.json"), str(tmp_path / "lt-2.json")]
    for item, record in zip(written, (RECORD, second), strict=True):
        assert runrecord.load(Path(item["path"])) == record
        assert item["layout"] == json.loads(Path(item["path"]).read_text())["layout"]
        name = tmp_path / Path(item["path"]).name.replace("lt", "text")
        assert (f"{name}: {item['completed']}/{item['num_prompts']} ok, {item['output_throughput']:.1f} output "
                f"tok/s, tokens {item['token_check']}") in text.stderr
    assert written[1]["layout"] is None and written[0]["layout"]["tensor_parallel_size"] == 1


def test_tpserve_loadtest_results_reads_standard_input_and_says_when_there_is_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tpserve", "loadtest-results", "-", "--out", str(tmp_path / "x.json")],
                          input="no record here\n", capture_output=True, text=True, cwd=REPO, check=False)
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: standard input holds no results record: the load test prints one when it "
                                   "ends with --print-results (TPSERVE_PRINT_RESULTS=true); did the run finish?")
    assert not (tmp_path / "x.json").exists()
