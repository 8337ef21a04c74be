"""``tpserve sweep --vllm``: the grid of layouts × settings, labels, refusals, and where the settings land."""

import json
import re
import shlex
from dataclasses import replace

import pytest

from tests.unit.fakebackend import FakeBackend, fake_campaign
from tpserve.axes import command_args, parse_axes
from tpserve.commandlines import serve_command_of
from tpserve.commands._measuring import local_serve_config
from tpserve.commands.serve import serve_config
from tpserve.fetch.errors import ConfigError
from tpserve.measure.local import point_config, replica_config, serve_line
from tpserve.measure.points import Point, cross_with_settings, parse_grid
from tpserve.report import load_runs, markdown, rows
from tpserve.sweep import run_sweep


def test_the_grid_is_every_layout_times_every_combination_of_the_axes_with_readable_labels():
    axes = parse_axes(["max-num-seqs=default,512", "kv-cache-dtype=auto,fp8"])
    points = cross_with_settings(parse_grid("1,2"), axes)
    assert [p.label for p in points] == [
        "tp1x1-kv-cache-dtype=auto", "tp1x1-kv-cache-dtype=fp8",
        "tp1x1-max-num-seqs=512-kv-cache-dtype=auto", "tp1x1-max-num-seqs=512-kv-cache-dtype=fp8",
        "tp2x1-kv-cache-dtype=auto", "tp2x1-kv-cache-dtype=fp8",
        "tp2x1-max-num-seqs=512-kv-cache-dtype=auto", "tp2x1-max-num-seqs=512-kv-cache-dtype=fp8"]
    assert points[0].settings == (("max-num-seqs", "default"), ("kv-cache-dtype", "auto"))


def test_without_axes_the_grid_and_labels_are_the_layouts_as_before():
    assert [p.label for p in cross_with_settings(parse_grid("1,2", "1,2"), [])] == ["tp1x1", "tp1x2", "tp2x1", "tp2x2"]


@pytest.mark.parametrize("settings, serve, vllm", [
    ((("max-num-seqs", "default"),), [], []),
    ((("max-num-seqs", "512"),), [], ["--max-num-seqs=512"]),
    ((("async-scheduling", "on"), ("enable-prefix-caching", "off")), [],
     ["--async-scheduling", "--no-enable-prefix-caching"]),
    ((("gpu-memory-utilization", "0.95"), ("max-model-len", "4096")),
     ["--gpu-memory-utilization=0.95", "--max-model-len=4096"], []),
    ((("cudagraph-mode", "FULL_DECODE_ONLY"),), [], ["--compilation-config", '{"cudagraph_mode": "FULL_DECODE_ONLY"}']),
])
def test_each_kind_of_setting_becomes_the_argument_that_sets_it(settings, serve, vllm):
    assert command_args(settings) == (serve, vllm)


def test_every_server_measures_vllms_defaults_plus_its_settings_unless_a_profile_is_chosen():
    point = Point(1, 1, (("max-num-seqs", "512"),))
    default = serve_command_of(replica_config(local_serve_config("/m", "m", [])[0], point, 8100))
    assert default[default.index("--settings") + 1] == "vllm" and default[-2:] == ["--", "--max-num-seqs=512"]
    chosen = serve_command_of(replica_config(local_serve_config("/m", "m", ["--settings=tuned"])[0], point, 8100))
    assert chosen[chosen.index("--settings") + 1] == "tuned" and "vllm" not in chosen[chosen.index("serve"):]


def test_a_search_winners_serve_line_reads_back_as_the_configuration_its_point_was_measured_with():
    base, cache_dir = local_serve_config("/models/tiny", "tiny", ["--no-allreduce-fusion", "--max-model-len=1024"])
    point = Point(2, 1, (("max-num-seqs", "4"), ("cudagraph-mode", "PIECEWISE"), ("gpu-memory-utilization", "0.8")))
    argv = shlex.split(serve_line(base, point, cache_dir))
    assert argv[:2] == ["tpserve", "serve"]
    assert serve_config(argv[2:]) == (point_config(base, point), cache_dir)
    assert point_config(base, point) == replace(replica_config(base, point, 8100), host=base.host, port=base.port)


def test_a_cudagraph_mode_with_the_fusion_off_is_one_compilation_config_holding_both():
    serve, vllm = command_args((("cudagraph-mode", "PIECEWISE"),), ["--no-allreduce-fusion", "--max-model-len=1024"])
    assert serve == ["--max-model-len=1024"]
    assert vllm == ["--compilation-config",
                    '{"cudagraph_mode": "PIECEWISE", "pass_config": {"fuse_allreduce_rms": false}}']


@pytest.mark.parametrize("items, fixed, message", [
    (["max-num-seqs"], [], "--vllm takes KEY=V1,V2,... (e.g. max-num-seqs=256,512), got 'max-num-seqs'"),
    (["=1,2"], [], "--vllm takes KEY=V1,V2,... (e.g. max-num-seqs=256,512), got '=1,2'"),
    (["--max-num-seqs=1"], [], "--vllm --max-num-seqs=1: write the flag without dashes (max-num-seqs=...)"),
    (["max-num-seqs=256,"], [], "--vllm max-num-seqs=256,: a value is empty; list values separated by commas"),
    (["max-num-seqs="], [], "--vllm max-num-seqs=: a value is empty; list values separated by commas"),
    (["max-num-seqs=256,256"], [], "--vllm max-num-seqs=256,256: a value is listed twice"),
    (["max-num-seqs=1", "max-num-seqs=2"], [],
     "--vllm max-num-seqs is given twice: list all its values in one --vllm max-num-seqs=V1,V2"),
    (["tensor-parallel-size=1,2"], [], "--vllm tensor-parallel-size cannot be an axis: it is a layout axis: use --tensor"),
    (["data-parallel-size=2"], [], "--vllm data-parallel-size cannot be an axis: it is a layout axis: use --replicas"),
    (["port=8000"], [], "--vllm port cannot be an axis: the sweep sets the address (--base-port)"),
    (["served-model-name=x"], [], "--vllm served-model-name cannot be an axis: use --served-model-name"),
    (["compilation-config=x"], [], ("--vllm compilation-config cannot be an axis: its values are JSON: use the "
                                   "cudagraph-mode axis")),
    (["max-num-seqz=256"], [], "--vllm max-num-seqz is not a flag of vLLM "),
    (["max-num-seqs=many"], [], "--vllm max-num-seqs=many: vLLM refuses the value (invalid literal for int"),
    (["kv-cache-dtype=auto,fp9"], [], "--vllm kv-cache-dtype=fp9: vLLM accepts auto, bfloat16, float16, fp8, "),
    (["async-scheduling=true"], [], ("--vllm async-scheduling=true: --async-scheduling is a switch; its values are "
                                    "default, on or off")),
    (["max-num-seqs=on"], [], ("--vllm max-num-seqs=on: --max-num-seqs is not a switch; its values are default or "
                              "a value")),
    (["no-async-scheduling=on"], [], ("--vllm no-async-scheduling: name the switch itself and its values, "
                                     "async-scheduling=on,off")),
    (["cudagraph-mode=default,ALL"], [], ("--vllm cudagraph-mode: 'ALL' is not a cudagraph mode; use default or one "
                                         "of NONE, PIECEWISE, FULL, FULL_DECODE_ONLY, FULL_AND_PIECEWISE")),
    (["max-model-len=1024,2048"], ["--max-model-len=4096"], ("--vllm max-model-len is an axis but every point already "
                                                            "sets --max-model-len (--serve-arg or --dummy-weights)")),
    (["load-format=auto"], ["--load-format", "dummy"], ("--vllm load-format is an axis but every point already sets "
                                                      "--load-format")),
    (["enforce-eager=on,off"], ["--extra-args=--enforce-eager"], ("--vllm enforce-eager is an axis but every point "
                                                                 "already sets --enforce-eager")),
    (["cudagraph-mode=PIECEWISE"], ["--extra-args=--compilation-config {}"],
     "--vllm cudagraph-mode is an axis but every point already sets --compilation-config"),
])
def test_an_axis_that_cannot_be_measured_is_refused_in_one_line_before_any_server_starts(items, fixed, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        parse_axes(items, fixed)


def test_settings_land_in_every_run_records_vllm_flags_and_failed_points_are_recorded(tmp_path):
    axes = parse_axes(["max-num-seqs=default,4", "cudagraph-mode=default,PIECEWISE"])
    backend = FakeBackend(lambda p: (100.0 + 10 * len(p.label), 50.0, 5.0),
                          failing={"tp1x1-max-num-seqs=4-cudagraph-mode=PIECEWISE": "the server exited with status 1"},
                          serve_args=("--no-allreduce-fusion",))
    result = run_sweep(fake_campaign(tmp_path, backend, settings_axes=axes, repeats=2))
    assert backend.started == ["tp1x1", "tp1x1-cudagraph-mode=PIECEWISE", "tp1x1-max-num-seqs=4",
                               "tp1x1-max-num-seqs=4-cudagraph-mode=PIECEWISE"]
    assert [p.name for p in result.runs] == [
        "tiny-tp1x1-run1.json", "tiny-tp1x1-run2.json", "tiny-tp1x1-cudagraph-mode=PIECEWISE-run1.json",
        "tiny-tp1x1-cudagraph-mode=PIECEWISE-run2.json", "tiny-tp1x1-max-num-seqs=4-run1.json",
        "tiny-tp1x1-max-num-seqs=4-run2.json"]
    flags = {p.name: json.loads(p.read_text())["layout"]["vllm_flags"] for p in result.runs}
    assert flags["tiny-tp1x1-run1.json"] == {"--compilation-config": '{"pass_config": {"fuse_allreduce_rms": false}}',
                                             "--load-format": "dummy"}
    assert flags["tiny-tp1x1-cudagraph-mode=PIECEWISE-run1.json"] == {
        "--load-format": "dummy",
        "--compilation-config": '{"cudagraph_mode": "PIECEWISE", "pass_config": {"fuse_allreduce_rms": false}}'}
    assert flags["tiny-tp1x1-max-num-seqs=4-run2.json"] == {
        "--compilation-config": '{"pass_config": {"fuse_allreduce_rms": false}}', "--load-format": "dummy",
        "--max-num-seqs": "4"}
    (failure,) = json.loads((tmp_path / "failures.json").read_text())
    assert {key: failure[key] for key in ("label", "tensor", "replicas", "settings", "error")} == {
        "label": "tp1x1-max-num-seqs=4-cudagraph-mode=PIECEWISE", "tensor": 1, "replicas": 1,
        "settings": {"max-num-seqs": "4", "cudagraph-mode": "PIECEWISE"},
        "error": "the server exited with status 1 — ValueError: vLLM says no"}


def test_the_report_tells_points_apart_by_their_settings(tmp_path):
    run_sweep(fake_campaign(tmp_path, FakeBackend(lambda p: (200.0 if "seqs" in p.label else 100.0, 50.0, 5.0)),
                            settings_axes=parse_axes(["max-num-seqs=default,4"])))
    table = rows(load_runs([tmp_path]))
    assert [(row.mean_tok_s, row.settings_beside(table[0])) for row in table] == [(100.0, "—"),
                                                                                 (200.0, "--max-num-seqs=4")]
    text = markdown(table, {}, {})
    assert "| vLLM settings (vs first row) |" in text
    assert "| 1 (1 × 1) | --max-num-seqs=4 | 200.0 |" in text
    assert "- Most tok/s per GPU: tiny on 1 × fake device (TP 1 × 1) with --max-num-seqs=4, 200.0 tok/s per GPU." in text
