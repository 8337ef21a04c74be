"""vllm.settings: the chart adds the same flags as `tpserve serve`, from the same table, and the user's own wins."""

from __future__ import annotations

import json

import pytest

from tests.chart.conftest import CHART, container, env_of, load_tool
from tests.chart.test_multinode import TWO_NODES, server, templates
from tpserve import settings

GiB = 1 << 30
sync = load_tool("sync_chart_files")


def added_flags(args: list[str]) -> dict[str, str]:
    """The --name=value arguments after --shutdown-timeout N: the profile's, then vllm.extraArgs'."""
    after = args[args.index("--shutdown-timeout") + 2:]
    return dict(arg.split("=", 1) for arg in after if arg.startswith("--") and "=" in arg)


def server_args(render, *args: str) -> list[str]:
    return container(render("llama70b", *args)["Deployment"])["args"]


@pytest.mark.parametrize("profile", settings.PROFILES)
@pytest.mark.parametrize(("billions", "gib"), [(6.74, 79.6), (6.74, 140.4), (68.98, 140.4), (15, 80), (15.5, 80),
                                               (68.98, 39.6), (0, 140.4)])
def test_the_chart_adds_exactly_the_flags_tpserve_serve_would(render, profile, billions, gib):
    args = server_args(render, "--set", "model.name=example/shape", "--set", f"vllm.settings={profile}",
                       "--set", f"model.parameterBillions={billions}", "--set", f"gpu.memoryGiB={gib}")
    expected = settings.choose(profile, int(billions * 1e9) or None, int(gib * GiB)).flags
    assert added_flags(args) == expected


def test_with_the_gpu_memory_unknown_nothing_is_added(render):
    assert added_flags(server_args(render)) == {}
    assert added_flags(server_args(render, "--set", "vllm.settings=fp8")) == {}


def test_a_flag_in_extra_args_wins_over_the_profiles_in_either_spelling(render):
    for name in ("kv-cache-dtype", "kv_cache_dtype"):
        args = server_args(render, "--set", "gpu.memoryGiB=140.4", "--set", "vllm.settings=fp8",
                           "--set", f"vllm.extraArgs.{name}=auto")
        assert [arg for arg in args if "cache" in arg] == [f"--{name}=auto"]
        assert "--quantization=fp8" in args  # the profile's other flag stays


def test_leader_and_workers_get_the_profiles_flags_before_their_multinode_flags(render):
    lws = render("llama70b", *TWO_NODES, "--set", "gpu.memoryGiB=140.4")["LeaderWorkerSet"]
    expected = [f"{name}={value}" for name, value in settings.choose("tuned", int(68.98e9), int(140.4 * GiB)).flags.items()]
    for template in templates(lws):
        args = server(template)["args"]
        start = args.index("--shutdown-timeout") + 2
        assert args[start:start + len(expected)] == expected
        assert args[start + len(expected)] == "--nnodes"


def test_tpserves_image_gets_the_profile_as_tpserve_settings_and_picks_the_flags_itself(render):
    deployment = render("llama70b", "--set", "image.tpserve=true", "--set", "vllm.settings=fp8",
                        "--set", "gpu.memoryGiB=140.4")["Deployment"]
    assert env_of(container(deployment))["TPSERVE_SETTINGS"] == {"name": "TPSERVE_SETTINGS", "value": "fp8"}
    assert container(deployment)["args"] == ["--", "--shutdown-timeout=60"]


def test_an_unknown_profile_is_refused_by_the_schema(render_error):
    assert "at '/vllm/settings': value must be one of 'tuned', 'fp8', 'vllm'" in render_error(
        "--set", "vllm.settings=fast")


def test_the_charts_table_is_tpserves(tmp_path):
    assert sync.settings_difference() == []
    assert json.loads((CHART / "files" / "settings.json").read_text()) == settings.chart_table()
    stale = tmp_path / "settings.json"
    stale.write_text("{}\n")
    assert sync.settings_difference(stale) == [f"{stale} differs from {sync.SOURCE / 'settings.py'}"]


@pytest.mark.parametrize(("model", "gpus_per_node", "kind"), [("llama-2-70b", 8, "Deployment"),
                                                              ("llama-3.1-405b", 4, "LeaderWorkerSet")])
def test_the_chart_values_tpserve_plan_recommends_add_the_flags_it_recommends(render, model, gpus_per_node, kind):
    from tpserve.catalog import gpu_kind
    from tpserve.plan import find_model_config, make_plan
    from tpserve.recommend import recommend, settings_choice

    plan = make_plan(find_model_config(model), gpu_kind("h200"), gpus_per_node=gpus_per_node, context=4096)
    first = recommend(plan, find_model_config(model).serve_model, "fp8")[0]
    rendered = render("llama70b", *(arg for name, value in first.chart_values.items()
                                    for arg in ("--set", f"{name}={value}")))[kind]
    spec = rendered["spec"]["template"] if kind == "Deployment" else templates(rendered)[0]
    (vllm,) = spec["spec"]["containers"]
    assert added_flags(vllm["args"]) == settings_choice(plan, "fp8").flags != {}
    assert vllm["args"][vllm["args"].index("--dtype") + 1] == "bfloat16"  # what an fp8 KV cache needs on Hopper
