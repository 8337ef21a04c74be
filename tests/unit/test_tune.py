"""``tpserve tune``: coordinate search over layouts and settings, its budget, and tune.json — on a fake backend."""

import itertools
import json
import re
import shlex

import pytest

from tests.conftest import tpserve
from tests.unit.fakebackend import FakeBackend, fake_campaign
from tpserve.axes import Axis
from tpserve.fetch.errors import ConfigError
from tpserve.measure.points import Point
from tpserve.tune import Budget, final_line, tune, write_summary
from tpserve.tune import summary as tune_summary

SEQS = {"default": 100.0, "4": 180.0, "8": 240.0}  # output tok/s of one GPU at each max-num-seqs
CACHE = {"default": 1.0, "auto": 1.0, "fp8": 1.25}


def figures(point: Point):
    """Deterministic figures: TP 2 gives 1.5 × one GPU (less per GPU); max-num-seqs 8 is fastest but its TTFT is over
    200 ms; fp8 KV cache gives 1.25 ×."""
    settings = dict(point.settings)
    seqs, cache = settings.get("max-num-seqs", "default"), settings.get("kv-cache-dtype", "default")
    tok_s = SEQS[seqs] * CACHE[cache] * (1.5 if point.tensor == 2 else 1.0)
    ttft = {"default": 50.0, "4": 80.0, "8": 400.0}[seqs]
    return tok_s, ttft, 5.0


AXES = [Axis("max-num-seqs", ("4", "8")), Axis("kv-cache-dtype", ("auto", "fp8"))]


BUDGET = Budget(max_ttft_ms=200.0)


def search(tmp_path, backend, budget=BUDGET, layouts="1,2", settings_axes=AXES, max_runs=None, **options):
    return tune(fake_campaign(tmp_path, backend, layouts=layouts, settings_axes=settings_axes, **options), budget,
                max_runs=max_runs)


def written_summary(tmp_path, backend, result, layouts="1,2"):
    """RESULT's tune.json, as the search of LAYOUTS × AXES over BACKEND writes it, read back."""
    campaign = fake_campaign(tmp_path, backend, layouts=layouts, settings_axes=AXES)
    return json.loads(write_summary(campaign, tune_summary(campaign, result, BUDGET, None)).read_text())


def test_the_search_starts_layouts_then_each_axis_from_the_best_and_never_restarts_a_candidate(tmp_path):
    backend = FakeBackend(figures)
    result = search(tmp_path, backend, repeats=2)
    assert backend.started == ["tp1x1", "tp2x1", "tp1x1-max-num-seqs=4", "tp1x1-max-num-seqs=8",
                               "tp1x1-max-num-seqs=4-kv-cache-dtype=auto", "tp1x1-max-num-seqs=4-kv-cache-dtype=fp8"]
    assert (result.server_starts, result.runs) == (6, 12)
    assert result.winner.point.label == "tp1x1-max-num-seqs=4-kv-cache-dtype=fp8"
    assert result.winner.tok_s_per_gpu == 180.0 * 1.25
    assert result.defaults.point.label == "tp1x1" and result.ratio_to_defaults == pytest.approx(2.25)
    assert final_line(result, Budget(200.0)) == (
        "winner: tp1x1-max-num-seqs=4-kv-cache-dtype=fp8, 225.0 output tok/s per GPU = 2.25 × vLLM's defaults "
        "(tp1x1, 100.0); TTFT p50 80.0 ms, TPOT p50 5.00 ms; 6 server starts, 12 runs")


def test_candidates_over_the_budget_or_slower_are_dropped_with_the_reason_in_tune_json(tmp_path):
    backend = FakeBackend(figures, serve_args=("--no-allreduce-fusion",))
    result = search(tmp_path, backend)
    summary = written_summary(tmp_path, backend, result)
    why = {c["label"]: (c["status"], c["reason"]) for c in summary["candidates"]}
    best = "225.0 of tp1x1-max-num-seqs=4-kv-cache-dtype=fp8 (axis kv-cache-dtype)"
    assert why == {
        "tp1x1": ("dropped", "slower: 100.0 output tok/s per GPU vs 180.0 of tp1x1-max-num-seqs=4 (axis max-num-seqs)"),
        "tp2x1": ("dropped", "slower: 75.0 output tok/s per GPU vs 100.0 of tp1x1 (layouts)"),
        "tp1x1-max-num-seqs=4": ("dropped", f"slower: 180.0 output tok/s per GPU vs {best}"),
        "tp1x1-max-num-seqs=8": ("dropped", "over budget: TTFT p50 400.0 ms > 200 ms"),
        "tp1x1-max-num-seqs=4-kv-cache-dtype=auto": ("dropped", f"slower: 180.0 output tok/s per GPU vs {best}"),
        "tp1x1-max-num-seqs=4-kv-cache-dtype=fp8": ("winner", "the most output tok/s per GPU within the budget"),
    }
    # As measured: vLLM's defaults plus the winner's settings, no tpserve profile on top, no dummy weights.
    serve = shlex.split(summary["winner"]["serve"])
    assert serve[:4] == ["tpserve", "serve", "--model", "/models/tiny"]
    assert serve[serve.index("--"):] == ["--", "--max-num-seqs=4", "--kv-cache-dtype=fp8"]
    assert {"--settings": "vllm", "-tp": "1"}.items() <= dict(itertools.pairwise(serve)).items()
    assert "--no-allreduce-fusion" in serve and "dummy" not in serve
    assert (summary["server_starts"], summary["runs"], summary["grid_server_starts"]) == (6, 6, 18)
    assert summary["axes"] == {"max-num-seqs": ["default", "4", "8"], "kv-cache-dtype": ["default", "auto", "fp8"]}
    assert summary["ratio_to_defaults"] == pytest.approx(2.25) and summary["defaults"]["label"] == "tp1x1"
    run = json.loads((tmp_path / "tiny-tp1x1-max-num-seqs=4-kv-cache-dtype=fp8-run1.json").read_text())
    assert run["layout"]["vllm_flags"] == {"--compilation-config": '{"pass_config": {"fuse_allreduce_rms": false}}',
                                           "--load-format": "dummy", "--max-num-seqs": "4", "--kv-cache-dtype": "fp8"}
    assert run["context"]["tune_phase"] == "axis kv-cache-dtype"


def test_the_layouts_are_compared_per_gpu_so_one_gpu_can_beat_two(tmp_path):
    result = search(tmp_path, FakeBackend(lambda p: (100.0 if p.tensor == 1 else 150.0, 50.0, 5.0)),
                    settings_axes=[Axis("max-num-seqs", ("4",))])
    assert result.winner.point.label == "tp1x1" and result.ratio_to_defaults == 1.0
    assert [c.reason for c in result.candidates if c.point.label == "tp2x1"] == [
        "slower: 75.0 output tok/s per GPU vs 100.0 of tp1x1 (layouts)"]


def test_the_run_budget_stops_the_search_before_a_candidate_that_would_pass_it(tmp_path):
    backend = FakeBackend(figures)
    result = search(tmp_path, backend, max_runs=7, repeats=2)
    assert backend.started == ["tp1x1", "tp2x1", "tp1x1-max-num-seqs=4"] and result.runs == 6
    assert result.stopped == "the run budget (7 runs) was spent"
    assert result.winner.point.label == "tp1x1-max-num-seqs=4"
    assert [(c.point.label, c.reason) for c in result.candidates if c.status == "not measured"] == [
        ("tp1x1-max-num-seqs=8", "the run budget (7 runs) was spent")]


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(143)])
def test_an_interrupted_search_returns_what_it_measured_and_its_summary_is_still_written(tmp_path, stop):
    def interrupted_at_seqs_8(point: Point):
        if dict(point.settings).get("max-num-seqs") == "8":
            raise stop
        return figures(point)

    backend = FakeBackend(interrupted_at_seqs_8)
    result = search(tmp_path, backend, layouts="1")
    assert result.interrupted is stop and result.runs == 2
    assert backend.started == ["tp1x1", "tp1x1-max-num-seqs=4", "tp1x1-max-num-seqs=8"]
    assert result.stopped == "interrupted while measuring tp1x1-max-num-seqs=8"
    assert result.winner.point.label == "tp1x1-max-num-seqs=4"
    summary = written_summary(tmp_path, backend, result, layouts="1")
    assert summary["stopped"] == result.stopped and summary["winner"]["label"] == "tp1x1-max-num-seqs=4"
    assert [(c["label"], c["status"]) for c in summary["candidates"]] == [
        ("tp1x1", "dropped"), ("tp1x1-max-num-seqs=4", "winner"), ("tp1x1-max-num-seqs=8", "not measured")]


def test_a_candidate_that_fails_to_start_is_recorded_and_the_search_goes_on(tmp_path):
    backend = FakeBackend(figures, failing={"tp1x1-max-num-seqs=4": "the server exited with status 1"})
    result = search(tmp_path, backend, layouts="1")
    failed = [c for c in result.candidates if c.status == "failed"]
    assert [(c.point.label, c.reason) for c in failed] == [
        ("tp1x1-max-num-seqs=4", "failed: the server exited with status 1 — ValueError: vLLM says no")]
    assert result.winner.point.label == "tp1x1-kv-cache-dtype=fp8"


def test_with_no_candidate_within_budget_there_is_no_winner_and_the_closest_is_named(tmp_path):
    result = search(tmp_path, FakeBackend(figures), budget=Budget(max_ttft_ms=10.0, max_tpot_ms=4.0), layouts="1",
                    settings_axes=[Axis("max-num-seqs", ("4",))])
    assert result.winner is None
    assert final_line(result, Budget(10.0, 4.0)) == (
        "no candidate was within the budget (2 server starts, 2 runs); the closest, tp1x1, was TTFT p50 50.0 ms > "
        "10 ms, TPOT p50 5.0 ms > 4 ms")


def test_vllms_defaults_are_a_candidate_even_when_no_axis_lists_default(tmp_path):
    backend = FakeBackend(figures)
    search(tmp_path, backend, layouts="1", settings_axes=[Axis("max-num-seqs", ("4",))])
    assert backend.started == ["tp1x1", "tp1x1-max-num-seqs=4"]


@pytest.mark.parametrize("options, message", [
    ({"settings_axes": []}, "tune needs at least one setting to try: add --vllm KEY=V1,V2 (e.g. max-num-seqs=256,512)"),
    ({"max_runs": 1, "repeats": 2}, ("--budget-runs must be at least --repeats (2) so that one candidate can be "
                                    "measured, got 1")),
    ({"repeats": 0}, "--repeats must be at least 1, got 0"),
])
def test_a_search_that_cannot_run_is_refused_before_any_server_starts(tmp_path, options, message):
    backend = FakeBackend(figures)
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        search(tmp_path, backend, **options)
    assert backend.started == []


@pytest.mark.parametrize("budget, message", [
    ({"max_ttft_ms": 0}, "--max-ttft-ms must be above 0 ms, got 0"),
    ({"max_tpot_ms": -5}, "--max-tpot-ms must be above 0 ms, got -5"),
])
def test_a_budget_of_zero_or_less_is_refused(budget, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
        Budget(**budget)


@pytest.mark.parametrize("args, message", [
    (["--budget-runs", "0", "--vllm", "max-num-seqs=4"], "error: --budget-runs must be at least 1, got 0"),
    (["--workload", "fast", "--vllm", "max-num-seqs=4"], ("error: --workload must be one of note, throughput, chat, "
                                                         "got 'fast'")),
    (["--max-tpot-ms", "0", "--vllm", "max-num-seqs=4"], "error: --max-tpot-ms must be above 0 ms, got 0"),
])
def test_bad_tune_options_are_one_line_errors(tmp_path, args, message):
    done = tpserve("tune", str(tmp_path), "--out", str(tmp_path / "out"), *args)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("status, printed", [(130, "aborted\n"), (3, ""), (None, "")])
def test_the_exit_status_the_app_returns_is_tpserves_own(monkeypatch, capsys, status, printed):
    """Not standalone, typer returns 130 after Ctrl-C (and a typer.Exit's code) instead of exiting with it."""
    from tpserve import cli

    monkeypatch.setattr(cli, "app", lambda standalone_mode: status)
    if status is None:
        cli.main()
    else:
        with pytest.raises(SystemExit) as exited:
            cli.main()
        assert exited.value.code == status
    assert capsys.readouterr().err == printed


def test_a_typer_that_raises_abort_after_ctrl_c_exits_130_too(monkeypatch, capsys):
    import typer

    from tpserve import cli

    def aborted(standalone_mode):
        raise typer.Abort()

    monkeypatch.setattr(cli, "app", aborted)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 130 and capsys.readouterr().err == "aborted\n"
