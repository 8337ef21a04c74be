"""``tpserve sweep --on kubernetes --load-in-cluster``: the chart's loadtest objects, rendered by the real helm,
created, waited on, read and deleted by the real kubernetes client against a fake API server on 127.0.0.1
(no cluster is reachable here). What the Locust master prints is a real run record."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from tests.chart.conftest import CHART
from tests.conftest import REPO
from tpserve.fetch.errors import LoadTestError
from tpserve.measure import incluster
from tpserve.measure.campaign import Campaign
from tpserve.measure.incluster import Apis, InClusterLoad
from tpserve.measure.kubernetes import kubernetes_backend
from tpserve.measure.points import Point
from tpserve.measure.runner import Load
from tpserve.sweep import run_sweep
from tpserve.workload import runrecord
from tpserve.workload.logline import results_line

RECORD = runrecord.load(REPO / "results" / "20261126T103826Z-demo.json")
LOAD = InClusterLoad(workers=3, users=6, num_requests=12, max_tokens=32, prompt_set="builtin", random_input_len=128,
                     warmup_requests=0, run_time_s=600)


class FakeCluster:
    """Answers the calls tpserve makes; Jobs end as JOB_STATES says, the master's log is LOG."""

    def __init__(self, job_states: list[dict], log: str):
        self.job_states, self.log, self.calls, self.bodies = job_states, log, [], {}

    def answer(self, method: str, path: str, query: dict, body: dict | None) -> tuple[int, object]:
        self.calls.append((method, path))
        if method == "POST":
            self.bodies[path, body["metadata"]["name"]] = body
            return 201, body
        if method == "DELETE":
            return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}}
        if re.fullmatch(r"/apis/batch/v1/namespaces/\w+/jobs/[\w-]+/status", path):
            state = self.job_states.pop(0) if len(self.job_states) > 1 else self.job_states[0]
            return 200, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": path.split("/")[-2]},
                         "status": state}
        if path.endswith("/pods") and query.get("labelSelector"):
            job = query["labelSelector"][0].removeprefix("job-name=")
            return 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {},
                         "items": [{"metadata": {"name": f"{job}-x7k2p"}}]}
        if path.endswith("/log"):
            return 200, self.log
        if path.endswith("/status") and "/deployments/" in path:
            return 200, {"apiVersion": "apps/v1", "kind": "Deployment",
                         "metadata": {"name": path.split("/")[-2], "generation": 1},
                         "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                                  "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}},
                         "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}


@pytest.fixture
def cluster():
    """A FakeCluster behind an HTTP server, and the Apis of the real client pointed at it."""
    fake = FakeCluster([{}], "")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def handle_one(self, method):
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, answer = fake.answer(method, url.path, parse_qs(url.query), body)
            data = answer.encode() if isinstance(answer, str) else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(answer, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.handle_one("GET")

        def do_POST(self):
            self.handle_one("POST")

        def do_DELETE(self):
            self.handle_one("DELETE")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_address[1]}"
    api = client.ApiClient(configuration)
    yield fake, Apis(client.CoreV1Api(api), client.BatchV1Api(api), client.NetworkingV1Api(api)), \
        client.AppsV1Api(api)
    server.shutdown()


@pytest.fixture
def helm(tools):
    """subprocess.run with the pinned helm's isolated environment."""
    def run(argv, capture_output, text, check):
        return subprocess.run([str(tools.helm), *argv[1:]], env=tools.env, capture_output=capture_output, text=text,
                              check=check)
    return run


def rendered(helm, *sets: str) -> list[dict]:
    argv = ["helm", "template", "sweep7b", str(CHART), "--namespace", "bench"]
    for item in [*sets, *LOAD.sets("tp1x1-1", 7)]:
        argv += ["--set", item]
    return incluster.render(argv, helm)


def no_wait(ticks=range(100000)):
    clock = iter(ticks)
    return {"poll_s": 0, "clock": lambda: next(clock), "sleep": lambda s: None}


COMPLETE = {"active": 0, "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}
FAILED = {"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}


def test_the_run_creates_the_charts_objects_waits_for_the_master_reads_its_record_and_deletes_everything(
        cluster, helm):
    fake, apis, _ = cluster
    fake.job_states = [{"active": 1}, {"active": 1}, COMPLETE]
    fake.log = f"[2026-11-30] master: ready\n{results_line(RECORD)}\n[2026-11-30] shutting down\n"
    record = incluster.run_in_cluster(rendered(helm), "bench", apis, timeout_s=60, **no_wait())
    assert record == RECORD
    name = "sweep7b-vllm-loadtest-tp1x1-1"
    created = [call for call in fake.calls if call[0] == "POST"]
    assert created == [("POST", "/apis/networking.k8s.io/v1/namespaces/bench/networkpolicies"),
                       ("POST", "/api/v1/namespaces/bench/services"),
                       ("POST", "/apis/batch/v1/namespaces/bench/jobs"), ("POST", "/apis/batch/v1/namespaces/bench/jobs")]
    assert fake.calls.count(("GET", f"/apis/batch/v1/namespaces/bench/jobs/{name}-master/status")) == 3
    assert ("GET", f"/api/v1/namespaces/bench/pods/{name}-master-x7k2p/log") in fake.calls
    assert [call for call in fake.calls if call[0] == "DELETE"] == [
        ("DELETE", f"/apis/batch/v1/namespaces/bench/jobs/{name}-worker"),
        ("DELETE", f"/apis/batch/v1/namespaces/bench/jobs/{name}-master"),
        ("DELETE", f"/api/v1/namespaces/bench/services/{name}-master"),
        ("DELETE", f"/apis/networking.k8s.io/v1/namespaces/bench/networkpolicies/{name}-master")]
    master = fake.bodies["/apis/batch/v1/namespaces/bench/jobs", f"{name}-master"]
    args = master["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--expect-workers") + 1] == "3" and args[args.index("--users") + 1] == "6"


def test_the_runs_jobs_end_when_the_sweep_stops_waiting_for_them(helm):
    jobs = [obj for obj in rendered(helm) if obj["kind"] == "Job"]
    assert len(jobs) == 2
    for job in jobs:
        assert job["spec"]["activeDeadlineSeconds"] == LOAD.deadline_s == 300 + 600 + LOAD.run_time_s
        assert job["spec"]["template"]["spec"]["initContainers"][0]["command"][-2] == "300"


def test_a_failed_master_without_a_record_is_an_error_with_its_last_log_line_and_nothing_is_left(cluster, helm):
    fake, apis, _ = cluster
    fake.job_states = [FAILED]
    fake.log = "[2026-11-30] tpserve: the server lists ['other'], not 'meta-llama/Llama-2-70b-chat-hf'\n"
    with pytest.raises(LoadTestError, match=re.escape(
            "the load-test Job bench/sweep7b-vllm-loadtest-tp1x1-1-master failed: the log of pod "
            "bench/sweep7b-vllm-loadtest-tp1x1-1-master-x7k2p holds no results record: the load test prints one "
            "when it ends with --print-results (TPSERVE_PRINT_RESULTS=true); did the run finish? — its last line: "
            "[2026-11-30] tpserve: the server lists ['other'], not 'meta-llama/Llama-2-70b-chat-hf'")):
        incluster.run_in_cluster(rendered(helm, "networkPolicy.enabled=false"), "bench", apis, timeout_s=60,
                                **no_wait())
    assert len([call for call in fake.calls if call[0] == "DELETE"]) == 3


def test_a_master_that_never_ends_times_out_naming_the_job(cluster, helm):
    fake, apis, _ = cluster
    fake.job_states = [{"active": 1}]
    with pytest.raises(LoadTestError, match="the load-test Job bench/sweep7b-vllm-loadtest-tp1x1-1-master had not "
                                            "ended after 60 s; see kubectl -n bench describe job"):
        incluster.run_in_cluster(rendered(helm), "bench", apis, timeout_s=60, **no_wait(range(0, 1000, 30)))
    assert len([call for call in fake.calls if call[0] == "DELETE"]) == 4


def test_a_failed_run_that_printed_its_record_is_returned_with_its_problems(cluster, helm):
    fake, apis, _ = cluster
    fake.job_states = [FAILED]
    fake.log = results_line(RECORD) + "\n"
    assert incluster.run_in_cluster(rendered(helm), "bench", apis, timeout_s=60, **no_wait()) == RECORD


def test_the_sweep_measures_each_run_in_the_cluster_with_the_layouts_values_and_records_the_layout(
        cluster, helm, tmp_path):
    fake, apis, apps = cluster
    fake.job_states = [COMPLETE]
    fake.log = results_line(RECORD) + "\n"
    argvs = []

    def run(argv, **kwargs):
        argvs.append(argv)
        if argv[1] == "upgrade":
            return subprocess.CompletedProcess(argv, 0, "", "")
        return helm(argv, **kwargs)

    backend = kubernetes_backend("sweep7b", CHART, "bench", model="meta-llama/Llama-2-7b-chat-hf",
                                 sets=["model.name=meta-llama/Llama-2-7b-chat-hf", "model.attentionHeads=32",
                                       "model.kvHeads=32", "model.layers=32", "model.parameterBillions=6.74",
                                       "model.hiddenSize=4096"],
                                 in_cluster=InClusterLoad.of(Load(num_requests=12, concurrency=6), 3),
                                 apps_api=apps, load_apis=apis, run=run)
    result = run_sweep(Campaign("meta-llama/Llama-2-7b-chat-hf", "7b", (Point(2),), (), Load(), backend, tmp_path,
                                repeats=2, progress=lambda text, done: None))
    assert result.failures == [] and [path.name for path in result.runs] == ["7b-tp2x1-run1.json", "7b-tp2x1-run2.json"]
    templates = [argv for argv in argvs if argv[1] == "template"]
    assert "loadtest.run=tp2x1-1" in templates[0] and "loadtest.workers=3" in templates[0]
    assert "loadtest.run=tp2x1-2" in templates[1] and "loadtest.seed=1000" in templates[1]
    assert "parallelism.tensor=2" in templates[0] and "model.name=meta-llama/Llama-2-7b-chat-hf" in templates[0]
    saved = runrecord.load(result.runs[0])
    assert saved.layout.tensor_parallel_size == 2 and saved.layout.device_kind == "GPU (Kubernetes release bench/sweep7b)"
    assert saved.metrics == RECORD.metrics and (tmp_path / "work" / "tp2x1-run1" / "master.json").is_file()
    assert not any("port-forward" in str(argv) for argv in argvs)


@pytest.mark.parametrize("label", ["tp1x1", "tp1x1-max-num-seqs=32", "tp8x2-kv-cache-dtype=fp8_e4m3-max-num-seqs=512",
                                   "TP2x1-Enable-Prefix-Caching"])
def test_every_points_run_name_is_one_the_chart_takes_and_tells_the_point_apart(helm, label):
    names = {incluster.run_name(label, repeat) for repeat in (1, 2, 10)}
    assert len(names) == 3
    for name in names:
        argv = ["helm", "template", "sweep7b", str(CHART), "--namespace", "bench"]
        for item in LOAD.sets(name, 7):
            argv += ["--set", item]
        jobs = [o["metadata"]["name"] for o in incluster.render(argv, helm) if o["kind"] == "Job"]
        assert jobs == [f"sweep7b-vllm-loadtest-{name}-master", f"sweep7b-vllm-loadtest-{name}-worker"]
    assert incluster.run_name(label, 1) != incluster.run_name(label + "0", 1)


def test_a_layout_without_settings_keeps_its_label_as_the_run_name():
    assert incluster.run_name("tp2x1", 3) == "tp2x1-3"
