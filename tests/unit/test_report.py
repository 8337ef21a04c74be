import json
from dataclasses import MISSING, fields, replace

import pytest

from tpserve.fetch.errors import ConfigError
from tpserve.report import check_same_workload, load_runs, markdown, parse_prices, plot, rows
from tpserve.workload.metrics import Metrics
from tpserve.workload.requesttypes import RunPlan
from tpserve.workload.runrecord import Layout, Provenance, RunRecord, TokenCheck

PLAN = RunPlan(host="http://127.0.0.1:8100", model="m", max_tokens=256, num_requests=59, concurrency=59,
               prompt_set="builtin (59 prompts)")


def run(tok_s, tensor=1, replicas=1, model="m", device="NVIDIA H200", ttft=100.0, tpot=5.0, **plan):
    zero = {f.name: 0 for f in fields(Metrics) if f.default is MISSING}
    return RunRecord(workload=replace(PLAN, model=model, **plan),
                     metrics=Metrics(**zero | {"output_throughput": tok_s, "median_ttft_ms": ttft,
                                               "median_tpot_ms": tpot}),
                     token_check=TokenCheck("ok"), provenance=Provenance("2026-11-26T10:00:00+00:00", ""),
                     layout=Layout(model, device, tensor, replicas=replicas))


def write(tmp_path, name, document):
    path = tmp_path / name
    path.write_text(json.dumps(document.to_json() if isinstance(document, RunRecord) else document))
    return path


def test_repeats_of_a_layout_become_one_row_with_spread_and_per_gpu_figures(tmp_path):
    for i, tok_s in enumerate((100.0, 110.0, 120.0)):
        write(tmp_path, f"a{i}.json", run(tok_s, tensor=4))
    write(tmp_path, "b.json", run(50.0))
    (four, one) = sorted(rows(load_runs([tmp_path])), key=lambda r: -r.devices)
    assert (four.runs, four.mean_tok_s, four.stdev_tok_s, four.tok_s_per_device) == (3, 110.0, 10.0, 27.5)
    assert (one.devices, one.device) == (1, "NVIDIA H200")


def test_runs_of_different_workloads_are_refused_naming_the_difference(tmp_path):
    write(tmp_path, "a.json", run(1.0))
    write(tmp_path, "b.json", run(1.0, max_tokens=64))
    with pytest.raises(ConfigError, match="a.json and b.json measured different workloads \\(max_tokens 256 vs 64\\)"):
        check_same_workload(load_runs([tmp_path]))


def test_a_file_that_is_not_a_report_is_named(tmp_path):
    with pytest.raises(ConfigError, match="x.json is not a run record"):
        load_runs([write(tmp_path, "x.json", {"hello": 1})])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no run records found"):
        load_runs([tmp_path / "empty"])


def test_folders_are_searched_recursively_skipping_other_json_and_records_of_parts(tmp_path):
    write(tmp_path, "benchmark.json", {"benchmark": "client_headroom"})
    (tmp_path / "sweep" / "work" / "tp1x1-run1").mkdir(parents=True)
    write(tmp_path / "sweep", "failures.json", [])
    write(tmp_path / "sweep", "a.json", run(1.0))
    write(tmp_path / "sweep" / "work" / "tp1x1-run1", "replica0.json", replace(run(1.0), layout=None))
    assert [path.name for path, _ in load_runs([tmp_path])] == ["a.json"]


def test_a_run_that_does_not_say_what_served_it_is_refused_with_what_to_do(tmp_path):
    path = write(tmp_path, "locust.json", replace(run(1.0), layout=None))
    with pytest.raises(ConfigError, match="locust.json does not say what served it .*measure with tpserve sweep"):
        load_runs([path])
    with pytest.raises(ConfigError, match="no run records found \\(1 found do not say what served them\\)"):
        load_runs([tmp_path])


def test_cost_per_million_tokens_uses_the_price_of_the_matching_gpu_kind():
    (row,) = rows([(None, run(1000.0, tensor=4))])
    # 4 GPUs × $3.6/h = $14.4/h for 3.6M tokens/h → $4 per million
    assert row.cost_per_million(3.6) == pytest.approx(4.0)
    text = markdown([row], {"max_tokens": 256}, parse_prices(["h200=3.6"]))
    assert "| 4.000 |" in text and "Cheapest per output token: m on 4 × NVIDIA H200 (TP 4 × 1), $4.000" in text


@pytest.mark.parametrize("item", ["h200", "h200=abc", "=3", "h200=-1"])
def test_a_bad_price_is_refused_with_the_form_to_use(item):
    with pytest.raises(ConfigError, match="--price takes KIND=USD_PER_GPU_HOUR"):
        parse_prices([item])


def test_the_answers_pick_the_best_layout_per_gpu_and_within_a_latency_budget():
    table = rows([(None, run(3000.0, tensor=1, tpot=30.0)), (None, run(8000.0, tensor=4, tpot=8.0))])
    text = markdown(table, {}, {}, tpot_budget_ms=10)
    assert "Most tok/s per GPU: m on 1 × NVIDIA H200 (TP 1 × 1), 3,000.0 tok/s per GPU." in text
    assert "Most tok/s per GPU within TPOT p50 ≤ 10 ms: m on 4 × NVIDIA H200 (TP 4 × 1), 2,000.0." in text
    assert "No layout of m met TTFT p50 ≤ 1 ms." in markdown(table, {}, {}, ttft_budget_ms=1)


def test_cpu_runs_are_labelled_with_the_cpu_and_plotted(tmp_path):
    table = rows([(None, run(10.0, device="CPU (X)")), (None, run(15.0, replicas=2, device="CPU (X)"))])
    assert {r.device for r in table} == {"CPU (X)"}
    assert plot(table, tmp_path / "p.png").stat().st_size > 10_000
