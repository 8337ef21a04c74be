import json

import pytest

from tpserve.errors import ConfigError
from tpserve.report import check_same_workload, load_runs, markdown, parse_prices, plot, rows


def run(tok_s, tensor=1, replicas=1, model="m", gpu="NVIDIA H200, 143771 MiB, 580", ttft=100.0, tpot=5.0,
        **plan):
    return {"model_id": model, "endpoint": "/v1/completions", "output_throughput": tok_s,
            "median_ttft_ms": ttft, "median_tpot_ms": tpot,
            "plan": {"prompt_set": "builtin (59 prompts)", "max_tokens": 256, "num_requests": 59,
                     "concurrency": 59, "request_rate": 0.0, "temperature": 0.0} | plan,
            "sweep": {"tensor": tensor, "replicas": replicas}, "machine": {"gpus": [gpu] if gpu else [], "cpu": "X"}}


def write(tmp_path, name, document):
    path = tmp_path / name
    path.write_text(json.dumps(document))
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
    with pytest.raises(ConfigError, match="x.json is not a load-test report"):
        load_runs([write(tmp_path, "x.json", {"hello": 1})])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no load-test reports found"):
        load_runs([tmp_path / "empty"])


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
    table = rows([(None, run(10.0, gpu=None)), (None, run(15.0, replicas=2, gpu=None))])
    assert {r.device for r in table} == {"CPU (X)"}
    assert plot(table, tmp_path / "p.png").stat().st_size > 10_000
