"""``tpserve sweep --on kubernetes`` up to the calls it makes: the helm command it runs (rendered by the
real helm binary) and the rollout wait (the real kubernetes client against a fake API server on
127.0.0.1, the cluster being unreachable here)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client

from tests.chart.conftest import CHART, container
from tpserve.fetch.errors import ConfigError, ServerNotHealthyError
from tpserve.measure.kubernetes import fullname, helm_argv, kubernetes_backend, wait_rolled_out
from tpserve.measure.points import Point


def test_each_layout_is_one_helm_upgrade_with_tensor_and_replicas_last(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("v.yaml").write_text("model:\n  name: x\n")
    argv = helm_argv("sweep7b", Path("charts/vllm"), "bench", Point(2, 2), values=[Path("v.yaml")],
                     sets=["model.name=meta-llama/Llama-2-7b-chat-hf"])
    assert argv == ["helm", "upgrade", "--install", "sweep7b", "charts/vllm", "--namespace", "bench",
                    "--values", "v.yaml", "--set", "model.name=meta-llama/Llama-2-7b-chat-hf",
                    "--set", "vllm.settings=vllm", "--set", "parallelism.tensor=2", "--set", "replicaCount=2"]
    with pytest.raises(ConfigError, match="--set takes KEY=VALUE, got 'oops'"):
        helm_argv("r", Path("c"), "n", Point(1), sets=["oops"])


SEVEN_B = ["model.name=meta-llama/Llama-2-7b-chat-hf", "model.attentionHeads=32", "model.kvHeads=32",
           "model.layers=32", "model.parameterBillions=6.74", "model.hiddenSize=4096"]


@pytest.mark.parametrize("tensor, replicas", [(1, 1), (2, 2), (4, 1)])
def test_the_chart_deploys_what_the_sweep_asks_for(render, tensor, replicas):
    argv = helm_argv("sweep7b", CHART, "bench", Point(tensor, replicas),
                     sets=[*SEVEN_B, "cache.accessMode=ReadWriteMany"])  # replicas share the cache claim
    objects = render("sweep7b", *argv[7:])  # helm template with exactly the upgrade's values
    deployment = objects["Deployment"]
    assert deployment["metadata"]["name"] == fullname("sweep7b") == "sweep7b-vllm"
    assert deployment["spec"]["replicas"] == replicas
    assert container(deployment)["resources"]["limits"]["nvidia.com/gpu"] == tensor
    assert objects["Service"]["metadata"]["name"] == "sweep7b-vllm"


SETTINGS = (("max-num-seqs", "512"), ("kv-cache-dtype", "fp8"), ("async-scheduling", "off"),
            ("enable-prefix-caching", "on"), ("block-size", "default"), ("gpu-memory-utilization", "0.95"),
            ("max-model-len", "4096"), ("dtype", "bfloat16"))


def server_args(render, argv: list[str]) -> list[str]:
    return container(render("sweep7b", *argv[7:])["Deployment"])["args"]


def test_a_points_settings_reach_the_server_as_the_chart_renders_them(render):
    args = server_args(render, helm_argv("sweep7b", CHART, "bench", Point(1, 1, SETTINGS), sets=SEVEN_B))
    for flag in ("--max-num-seqs=512", "--kv-cache-dtype=fp8", "--no-async-scheduling", "--enable-prefix-caching"):
        assert args.count(flag) == 1, flag
    assert args[args.index("--gpu-memory-utilization") + 1] == "0.95"
    assert args[args.index("--max-model-len") + 1] == "4096"
    assert args[args.index("--dtype") + 1] == "bfloat16"
    assert not [a for a in args if "block-size" in a]  # default: left to vLLM
    # vLLM's defaults plus exactly the point's settings: no profile on top. tpserve's image reads the profile.
    argv = helm_argv("sweep7b", CHART, "bench", Point(1), sets=[*SEVEN_B, "image.tpserve=true"])
    env = {e["name"]: e.get("value") for e in container(render("sweep7b", *argv[7:])["Deployment"])["env"]}
    assert env["TPSERVE_SETTINGS"] == "vllm"


# The GPUs' memory and the model's size: what the fp8 profile needs to add its flags.
SEEN_FP8 = ["gpu.memoryGiB=140.4", "model.parameterBillions=6.74"]


def test_a_profile_the_values_choose_is_kept(render, tmp_path):
    values = tmp_path / "fp8.yaml"
    values.write_text("vllm:\n  settings: fp8\n")
    argv = helm_argv("sweep7b", CHART, "bench", Point(1, 1, (("max-num-seqs", "512"),)), values=[values],
                     sets=SEEN_FP8 + SEVEN_B)
    assert "vllm.settings=vllm" not in argv
    args = server_args(render, argv)
    assert "--kv-cache-dtype=fp8" in args and "--max-num-seqs=512" in args


@pytest.mark.parametrize("tensor, fusion_sets, expected", [
    (2, [], {"cudagraph_mode": "FULL_DECODE_ONLY", "pass_config": {"fuse_allreduce_rms": False}}),
    (2, ["vllm.allreduceFusion=true"], {"cudagraph_mode": "FULL_DECODE_ONLY"}),
    (1, [], {"cudagraph_mode": "FULL_DECODE_ONLY"}),
])
def test_a_cudagraph_mode_is_the_one_compilation_config_holding_the_charts_fusion_switch_too(
        render, tensor, fusion_sets, expected):
    point = Point(tensor, 1, (("cudagraph-mode", "FULL_DECODE_ONLY"),))
    args = server_args(render, helm_argv("sweep7b", CHART, "bench", point, sets=SEVEN_B + fusion_sets))
    configs = [a for a in args if a.startswith("--compilation-config")]
    assert len(configs) == 1 and "--compilation-config" not in args  # one, as --compilation-config=JSON
    assert json.loads(configs[0].partition("=")[2]) == expected


def test_a_run_records_the_points_settings_as_its_layouts_vllm_flags():
    from tpserve.measure.kubernetes import point_flags

    assert point_flags(Point(1, 1, SETTINGS)) == {
        "--max-num-seqs": "512", "--kv-cache-dtype": "fp8", "--no-async-scheduling": True,
        "--enable-prefix-caching": True, "--gpu-memory-utilization": "0.95", "--max-model-len": "4096",
        "--dtype": "bfloat16"}
    cudagraph = point_flags(Point(2, 1, (("cudagraph-mode", "PIECEWISE"),)))
    assert cudagraph == {"--compilation-config": '{"cudagraph_mode": "PIECEWISE"}'}


@pytest.mark.parametrize("values_text, sets, axis, message", [
    ("vllm:\n  extraArgs:\n    max-num-seqs: 256\n", [], "max-num-seqs=default,512",
     "--vllm max-num-seqs is an axis but the chart values already set vllm.extraArgs.max-num-seqs: drop one of them"),
    ("", ["vllm.extraArgs.no-async-scheduling=true"], "async-scheduling=on,off",
     "--vllm async-scheduling is an axis but the chart values already set vllm.extraArgs.no-async-scheduling"),
    ("vllm:\n  gpuMemoryUtilization: 0.9\n", [], "gpu-memory-utilization=0.8,0.95",
     "--vllm gpu-memory-utilization is an axis but the chart values already set vllm.gpuMemoryUtilization"),
    ("", ["vllm.dtype=auto"], "dtype=default,bfloat16",
     "--vllm dtype is an axis but the chart values already set vllm.dtype"),
    ("vllm:\n  extraArgs:\n    compilation-config: {}\n", [], "cudagraph-mode=default,PIECEWISE",
     "--vllm cudagraph-mode is an axis but the chart values already set vllm.extraArgs.compilation-config"),
])
def test_an_axis_the_chart_values_already_set_is_refused_before_any_release(tmp_path, values_text, sets, axis,
                                                                            message):
    from tpserve.axes import parse_axes
    from tpserve.measure.kubernetes import check_axes

    values = tmp_path / "v.yaml"
    values.write_text(values_text)
    with pytest.raises(ConfigError) as caught:
        check_axes(parse_axes([axis]), [values], sets)
    assert str(caught.value).startswith(message)
    check_axes(parse_axes(["max-num-batched-tokens=default,16384"]), [values], sets)  # another key is fine


@pytest.mark.parametrize("command", ["sweep", "tune"])
@pytest.mark.parametrize("args, message", [
    (["-f", "CLASH", "--vllm", "max-num-seqs=default,512"],
     "--vllm max-num-seqs is an axis but the chart values already set vllm.extraArgs.max-num-seqs: drop one of them"),
    (["--serve-arg=--no-allreduce-fusion", "--vllm", "max-num-seqs=default,512"],
     ("tpserve serve arguments are for local servers: on Kubernetes the chart's values (-f, --set) configure the "
      "server")),
    (["--dummy-weights", "--vllm", "max-num-seqs=default,512"],
     "dummy weights are for local servers: on Kubernetes set vllm.extraArgs.load-format=dummy"),
])
def test_sweep_and_tune_on_kubernetes_refuse_what_cannot_reach_the_release_in_one_line(tmp_path, command, args,
                                                                                      message):
    from tests.conftest import tpserve

    clash = tmp_path / "v.yaml"
    clash.write_text("vllm:\n  extraArgs:\n    max-num-seqs: 256\n")
    args = [str(clash) if arg == "CLASH" else arg for arg in args]
    done = tpserve(command, "meta-llama/Llama-2-7b-chat-hf", "--on", "kubernetes", *args,
                   "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["sweep", "tune"])
@pytest.mark.parametrize("args, message", [
    (["--on", "cloud"], "must be local or kubernetes, got 'cloud'"),
    (["--load-in-cluster", "2"], "runs the load as Kubernetes Jobs: add --on kubernetes"),
    (["--on", "kubernetes", "--load-in-cluster", "2", "--prompt-set", "file", "--prompt-file", "PROMPTS"],
     "the chart's loadtest Jobs have no prompt file: use the builtin or random prompt set"),
    (["--on", "kubernetes", "--load-in-cluster", "-1"], "must be 0 or more, got -1"),
    (["--on", "kubernetes", "--load-in-cluster", "9", "--concurrency", "8"],
     "9 workers need a --concurrency of at least 9"),
])
def test_where_the_points_run_is_checked_the_same_way_by_sweep_and_tune(tmp_path, command, args, message):
    from tests.conftest import tpserve

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hello"}\n')
    args = [str(prompts) if arg == "PROMPTS" else arg for arg in args]
    done = tpserve(command, "meta-llama/Llama-2-7b-chat-hf", *args, "--vllm", "max-num-seqs=default,512",
                   "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert message in " ".join(done.stderr.split()), done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["sweep", "tune"])
def test_sweep_and_tune_on_kubernetes_outside_a_checkout_say_to_pass_the_chart(tmp_path, command):
    from tests.conftest import tpserve

    done = tpserve(command, "meta-llama/Llama-2-7b-chat-hf", "--on", "kubernetes", "--vllm", "max-num-seqs=default,512",
                   "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2
    assert "no Helm chart at charts/vllm: pass --chart PATH to tpserve's chart" in " ".join(done.stderr.split())
    assert not (tmp_path / "out").exists()


def test_the_tune_winner_on_kubernetes_is_the_helm_command_that_deploys_it(tmp_path):
    from tests.unit.fakebackend import FakeBackend, fake_campaign
    from tests.unit.test_tune import AXES, BUDGET, search
    from tests.unit.test_tune import figures as tune_figures
    from tpserve.measure.kubernetes import deploying
    from tpserve.tune import summary as tune_summary

    backend = FakeBackend(tune_figures)
    result = search(tmp_path, backend)
    values = tmp_path / "7b.yaml"
    values.write_text("gpu:\n  memoryGiB: 140.4\n")
    campaign = fake_campaign(tmp_path, backend, layouts=[Point(1), Point(2)], settings_axes=AXES,
                             serving=deploying("llama7b", CHART, "bench", [values], SEVEN_B))

    summary = tune_summary(campaign, result, BUDGET, None)
    winner = summary["winner"]
    assert "serve" not in winner
    assert winner["deploy"] == (
        f"helm upgrade --install llama7b {CHART} --namespace bench --values {values} "
        "--set model.name=meta-llama/Llama-2-7b-chat-hf --set model.attentionHeads=32 --set model.kvHeads=32 "
        "--set model.layers=32 --set model.parameterBillions=6.74 --set model.hiddenSize=4096 --set vllm.settings=vllm --set-json 'vllm.extraArgs.max-num-seqs=\"4\"' "
        "--set-json 'vllm.extraArgs.kv-cache-dtype=\"fp8\"' --set parallelism.tensor=1 --set replicaCount=1")


def test_a_release_named_after_the_chart_keeps_its_name():
    assert fullname("vllm-bench") == "vllm-bench"


def deployment(generation, observed, replicas, ready, updated, message=""):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "sweep7b-vllm", "namespace": "bench", "generation": generation},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}},
            "status": {"observedGeneration": observed, "replicas": replicas, "readyReplicas": ready,
                       "updatedReplicas": updated,
                       "conditions": [{"type": "Available", "status": "False", "message": message}] if message else []}}


@pytest.fixture
def api_server():
    """A fake Kubernetes API answering the deployment status reads with a scripted sequence."""
    state = {"answers": [], "paths": []}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            state["paths"].append(self.path)
            body = json.dumps(state["answers"].pop(0) if len(state["answers"]) > 1 else state["answers"][0]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield state, client.AppsV1Api(client.ApiClient(configuration))
    server.shutdown()


def test_the_wait_lasts_until_the_new_pods_are_all_ready(api_server):
    state, apps = api_server
    state["answers"] = [deployment(2, 1, 2, 2, 0), deployment(2, 2, 2, 1, 2), deployment(2, 2, 2, 2, 2)]
    ticks = iter(range(100))
    waited = wait_rolled_out(apps, "sweep7b-vllm", "bench", timeout_s=60, poll_s=0, clock=lambda: next(ticks),
                             sleep=lambda s: None)
    assert waited == 3  # one clock reading at the start, one after each of the three reads
    assert state["paths"] == ["/apis/apps/v1/namespaces/bench/deployments/sweep7b-vllm/status"] * 3


def test_a_rollout_that_never_gets_ready_times_out_with_the_reason(api_server):
    state, apps = api_server
    state["answers"] = [deployment(1, 1, 1, 0, 1, message="Deployment does not have minimum availability.")]
    ticks = iter(range(0, 1000, 30))
    with pytest.raises(ServerNotHealthyError, match=(
            "deployment bench/sweep7b-vllm was not ready after 60 s: 0/1 ready, 1/1 updated \\(Available=False: "
            "Deployment does not have minimum availability.\\); see kubectl -n bench describe deployment")):
        wait_rolled_out(apps, "sweep7b-vllm", "bench", timeout_s=60, poll_s=0, clock=lambda: next(ticks),
                        sleep=lambda s: None)


def test_a_helm_failure_is_a_failed_layout_with_helms_words():
    class Done:
        returncode, stderr = 1, "Error: INSTALLATION FAILED: values don't meet the specifications"

    backend = kubernetes_backend("r", CHART, "n", run=lambda *a, **k: Done(), apps_api=object())
    with pytest.raises(ServerNotHealthyError, match="helm failed for tp4x1: Error: INSTALLATION FAILED"), \
            backend(Point(4)):
        pass


def test_the_sweep_waits_for_the_deployment_the_name_overrides_give(tmp_path):
    values = tmp_path / "v.yaml"
    values.write_text("nameOverride: llm\n")
    asked = []

    class Api:
        def read_namespaced_deployment_status(self, name, namespace):
            asked.append(name)
            raise ServerNotHealthyError("stop here")

    class Done:
        returncode = 0

    for sets, expected in (([], "r-llm"), (["fullnameOverride=serving"], "serving")):
        backend = kubernetes_backend("r", CHART, "n", values=[values], sets=sets, run=lambda *a, **k: Done(),
                                     apps_api=Api())
        with pytest.raises(ServerNotHealthyError, match="stop here"), backend(Point(1)):
            pass
        assert asked[-1] == expected


@pytest.mark.parametrize("values_text, sets, expected", [
    ("", ["model.name=tpserve-test/tiny-llama"], "tpserve-test/tiny-llama"),
    ("model:\n  name: org/from-file\n", [], "org/from-file"),
    ("model:\n  name: org/x\n  servedName: short\n", [], "short"),
    ("", [], "meta-llama/Llama-2-7b-chat-hf"),
])
def test_the_load_on_kubernetes_asks_for_the_name_the_chart_serves_under(tmp_path, values_text, sets, expected):
    """Found on the real cluster: the load asked for the folder-style name 'tiny-llama' while the release
    served 'tpserve-test/tiny-llama' (model.name), and every point failed."""
    from tpserve.commands._measuring import served_name_for

    values = tmp_path / "v.yaml"
    values.write_text(values_text)
    assert served_name_for("kubernetes", "meta-llama/Llama-2-7b-chat-hf", "", [values], sets) == expected
    assert served_name_for("kubernetes", "m", "given", [values], sets) == "given"
    assert served_name_for("local", "/models/llama-2-7b", "", [], []) == "llama-2-7b"


def test_a_served_name_with_a_slash_names_one_record_file_not_a_folder():
    from tpserve.measure.runner import file_stem

    assert file_stem("tpserve-test/tiny-llama") == "tpserve-test--tiny-llama" and file_stem("tiny") == "tiny"
