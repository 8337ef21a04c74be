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
from tpserve.errors import ConfigError, ServerNotHealthyError
from tpserve.kube import fullname, helm_argv, kubernetes_backend, wait_rolled_out
from tpserve.sweep import Point


def test_each_layout_is_one_helm_upgrade_with_tensor_and_replicas_last():
    argv = helm_argv("sweep7b", Path("charts/vllm"), "bench", Point(2, 2), values=[Path("v.yaml")],
                     sets=["model.name=meta-llama/Llama-2-7b-chat-hf"])
    assert argv == ["helm", "upgrade", "--install", "sweep7b", "charts/vllm", "--namespace", "bench",
                    "--values", "v.yaml", "--set", "model.name=meta-llama/Llama-2-7b-chat-hf",
                    "--set", "parallelism.tensor=2", "--set", "replicaCount=2"]
    with pytest.raises(ConfigError, match="--set takes KEY=VALUE, got 'oops'"):
        helm_argv("r", Path("c"), "n", Point(1), sets=["oops"])


@pytest.mark.parametrize("tensor, replicas", [(1, 1), (2, 2), (4, 1)])
def test_the_chart_deploys_what_the_sweep_asks_for(render, tensor, replicas):
    argv = helm_argv("sweep7b", CHART, "bench", Point(tensor, replicas),
                     sets=["model.name=meta-llama/Llama-2-7b-chat-hf", "model.attentionHeads=32", "model.kvHeads=32",
                           "cache.accessMode=ReadWriteMany"])  # replicas share the cache claim
    objects = render("sweep7b", *argv[7:])  # helm template with exactly the upgrade's values
    deployment = objects["Deployment"]
    assert deployment["metadata"]["name"] == fullname("sweep7b") == "sweep7b-vllm"
    assert deployment["spec"]["replicas"] == replicas
    assert container(deployment)["resources"]["limits"]["nvidia.com/gpu"] == tensor
    assert objects["Service"]["metadata"]["name"] == "sweep7b-vllm"


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
