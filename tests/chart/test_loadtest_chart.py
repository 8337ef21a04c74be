"""The chart's loadtest section (a Locust master Job, a worker Job, the master's headless Service), rendered
by the real helm: what the objects say, Kubernetes' own schemas, and checkov and trivy finding nothing."""

from __future__ import annotations

import http.server
import socket
import sys
import threading

import pytest
import yaml

from tests.chart.conftest import CHART
from tests.chart.test_matrix import NEWEST_KUBERNETES, OLDEST_KUBERNETES
from tests.chart.test_scanners import WAIVERS, checkov, checkov_scan, failed_ids, trivy, trivy_ignorefile  # noqa: F401
from tests.chart.test_validation import problems
from tests.conftest import run
from tpserve.workload.options import parse_layout
from tpserve.workload.runrecord import Layout

ON = ("--set", "loadtest.enabled=true")


def documents(text: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def by_kind_and_name(text: str) -> dict[tuple[str, str], dict]:
    """The rendered objects by (kind, name): the master's Job and Service share a name."""
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in documents(text)}


MASTER, WORKER = "llama70b-vllm-loadtest-1-master", "llama70b-vllm-loadtest-1-worker"


def pod(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def test_the_loadtest_is_off_by_default(render_text):
    assert not [doc for doc in documents(render_text("llama70b")) if "loadtest" in doc["metadata"]["name"]]


def test_the_master_waits_for_every_worker_headless_against_the_releases_service(render_text):
    objects = by_kind_and_name(render_text("llama70b", *ON, "--set", "loadtest.workers=3", "--set", "loadtest.users=12"))
    master = objects["Job", MASTER]
    assert master["spec"]["backoffLimit"] == 0
    (container,) = pod(master)["containers"]
    assert container["image"] == "tpserve-loadtest:0.1.0"
    assert container["args"] == ["--headless", "--master", "--master-bind-port", "5557", "--expect-workers", "3",
                                 "--expect-workers-max-wait", "600", "--users", "12", "--spawn-rate", "12",
                                 "--run-time", "30m", "--host", "http://llama70b-vllm:8000"]
    env = {var["name"]: var["value"] for var in container["env"]}
    assert env["TPSERVE_MODEL"] == "meta-llama/Llama-2-70b-chat-hf" and env["TPSERVE_PRINT_RESULTS"] == "true"
    assert env["TPSERVE_NUM_REQUESTS"] == "64" and env["TPSERVE_MAX_ERROR_RATE"] == "0"
    assert parse_layout(env["TPSERVE_LAYOUT"]) == Layout("meta-llama/Llama-2-70b-chat-hf", "GPU (Kubernetes)", 4, 1, 1)


def test_the_workers_reach_the_master_through_its_headless_service_and_are_never_replaced(render_text):
    objects = by_kind_and_name(render_text("llama70b", *ON))
    worker, service = objects["Job", WORKER], objects["Service", MASTER]
    assert (worker["spec"]["completions"], worker["spec"]["parallelism"], worker["spec"]["backoffLimit"]) == (2, 2, 0)
    (container,) = pod(worker)["containers"]
    assert container["args"] == ["--worker", "--master-host", "llama70b-vllm-loadtest-1-master", "--master-port", "5557"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["ports"] == [{"name": "locust", "port": 5557, "targetPort": "locust", "protocol": "TCP"}]
    master_labels = objects["Job", MASTER]["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= master_labels.items()
    assert not service["spec"]["selector"].items() <= worker["spec"]["template"]["metadata"]["labels"].items()


def test_every_loadtest_pod_waits_for_the_server_runs_non_root_read_only_and_is_admitted_by_its_policy(
        render_text):
    objects = by_kind_and_name(render_text("llama70b", *ON, "--set", "networkPolicy.namespaces.apps=true",
                                           "--set", "apiKey.secretName=vllm-key"))
    admitted = objects["NetworkPolicy", "llama70b-vllm"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]
    server = objects["Service", "llama70b-vllm"]
    for job in (objects["Job", MASTER], objects["Job", WORKER]):
        spec = pod(job)
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert admitted.items() <= labels.items() and not server["spec"]["selector"].items() <= labels.items()
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "capabilities": {"drop": ["ALL"]}}
        (wait,) = spec["initContainers"]
        assert wait["command"][-1] == "http://llama70b-vllm:8000/health"
        assert wait["securityContext"] == container["securityContext"]
        key = next(var for var in container["env"] if var["name"] == "TPSERVE_API_KEY")
        assert key["valueFrom"]["secretKeyRef"] == {"name": "vllm-key", "key": "api-key", "optional": False}


def test_every_loadtest_job_has_a_deadline_and_is_cleaned_up_after_a_day_by_default(render_text):
    for name in (MASTER, WORKER):
        spec = by_kind_and_name(render_text("llama70b", *ON))["Job", name]["spec"]
        assert (spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (10800, 86400)
        wait = pod({"spec": spec})["initContainers"][0]
        assert wait["command"][-2] == "7200"
    changed = by_kind_and_name(render_text(
        "llama70b", *ON, "--set", "loadtest.activeDeadlineSeconds=5000", "--set", "loadtest.ttlSecondsAfterFinished=60",
        "--set", "loadtest.serverWaitSeconds=600", "--set", "loadtest.runTime=1h"))["Job", MASTER]["spec"]
    assert (changed["activeDeadlineSeconds"], changed["ttlSecondsAfterFinished"]) == (5000, 60)
    assert pod({"spec": changed})["initContainers"][0]["command"][-2] == "600"


def test_a_deadline_shorter_than_the_wait_and_the_run_is_refused_with_the_sum(render_error):
    assert problems(render_error(*ON, "--set", "loadtest.activeDeadlineSeconds=3600", "--set",
                                 "loadtest.serverWaitSeconds=1200", "--set", "loadtest.runTime=1h30m")) == [(
        "loadtest.activeDeadlineSeconds=3600 would stop the run before it can end: loadtest.serverWaitSeconds=1200, "
        "the master's wait for its workers (600 s) and loadtest.runTime=1h30m (5400 s) take up to 7200 s; raise it "
        "above that or shorten them")]


def wait_for_server(render_text, url: str, seconds: int):
    """The master's init container, run here against URL with a wait of SECONDS."""
    job = by_kind_and_name(render_text("llama70b", *ON, "--set", f"loadtest.serverWaitSeconds={seconds}"))["Job", MASTER]
    command = pod(job)["initContainers"][0]["command"]
    assert command[0] == "python3"
    return run(sys.executable, *command[1:-1], url, timeout=120)


def test_the_wait_for_the_server_gives_up_after_its_bound_with_a_clear_message(render_text):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/health"
        done = wait_for_server(render_text, url, 2)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"the server at {url} did not answer within 2 s (loadtest.serverWaitSeconds): check the release's "
        "server pods (kubectl get pods -l app.kubernetes.io/instance=llama70b), then run again with another "
        "loadtest.run")


def test_the_wait_for_the_server_ends_as_soon_as_it_answers(render_text):
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        done = wait_for_server(render_text, f"http://127.0.0.1:{server.server_address[1]}/health", 7200)
        server.shutdown()
    assert done.returncode == 0, done.stderr


def test_each_run_gets_its_own_jobs_so_a_new_run_replaces_the_finished_ones(render_text):
    names = {doc["metadata"]["name"] for doc in documents(render_text("llama70b", *ON, "--set", "loadtest.run=tp2x1-3"))
             if doc["kind"] == "Job"}
    assert names == {"llama70b-vllm-loadtest-tp2x1-3-master", "llama70b-vllm-loadtest-tp2x1-3-worker"}


def test_fewer_users_or_requests_than_workers_are_refused_with_the_fix(render_error):
    assert problems(render_error(*ON, "--set", "loadtest.workers=4", "--set", "loadtest.users=3",
                                 "--set", "loadtest.numRequests=2")) == [
        ("loadtest.users (3) is below loadtest.workers (4): each worker needs at least one user; raise users or "
         "lower workers"),
        ("loadtest.numRequests (2) is below loadtest.workers (4): each worker sends its share of the requests; "
         "send more or use fewer workers")]


@pytest.mark.parametrize("setting, message", [
    ("loadtest.worker=2", "- at '/loadtest': additional properties 'worker' not allowed"),
    ("loadtest.promptSet=file", "- at '/loadtest/promptSet': value must be one of 'builtin', 'random'"),
])
def test_a_mistyped_or_impossible_loadtest_value_is_refused_by_the_schema(render_error, setting, message):
    assert message in render_error(*ON, "--set", setting)


def test_the_documented_set_loadtest_run_2_names_a_new_run(render_text):
    """helm --set reads 2 as a number; the docs and NOTES write it so."""
    objects = by_kind_and_name(render_text("llama70b", *ON, "--set", "loadtest.run=2"))
    assert ("Job", "llama70b-vllm-loadtest-2-master") in objects and ("Job", "llama70b-vllm-loadtest-2-worker") in objects
    labels = objects["Job", "llama70b-vllm-loadtest-2-master"]["spec"]["template"]["metadata"]["labels"]
    assert labels["tpserve.io/loadtest-run"] == "2"


@pytest.mark.parametrize("kubernetes", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
def test_the_loadtest_objects_pass_kubernetes_validate_strict(render_text, tmp_path, kubernetes):
    path = tmp_path / "loadtest.yaml"
    kept = [doc for doc in documents(render_text("llama70b", *ON)) if doc["kind"] != "ServiceMonitor"]
    path.write_text(yaml.safe_dump_all(kept))
    checked = run(sys.executable, "-m", "kubernetes_validate", "--strict", "-k", kubernetes, str(path), timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "WARN" not in checked.stdout + checked.stderr
    assert checked.stdout.count("INFO") == len(kept) and len(kept) >= 8, checked.stdout


def test_checkov_finds_nothing_in_the_loadtest_objects_beyond_the_waivers(checkov, tools, tmp_path, render_text):  # noqa: F811
    rendered = tmp_path / "rendered"
    rendered.mkdir()
    (rendered / "loadtest.yaml").write_text(render_text("llama70b", *ON))
    report = checkov_scan(checkov, tools, tmp_path, "kubernetes", rendered, "--skip-check",
                          ",".join(WAIVERS["checkov"]), quiet=False)
    assert failed_ids(report) == set(), report["results"]["failed_checks"]
    scanned = {check["resource"] for check in report["results"]["passed_checks"]}
    assert {"Job.default.llama70b-vllm-loadtest-1-master", "Job.default.llama70b-vllm-loadtest-1-worker"} <= scanned
    assert report["returncode"] == 0


def test_trivy_finds_nothing_in_the_loadtest_templates_beyond_the_waivers(tmp_path, trivy_ignorefile):  # noqa: F811
    status, results = trivy(tmp_path, trivy_ignorefile, "--helm-set", "loadtest.enabled=true")
    assert {"templates/loadtest-master-job.yaml", "templates/loadtest-worker-job.yaml"} <= set(results)
    for target, result in results.items():
        assert result["MisconfSummary"]["Failures"] == 0, result["Misconfigurations"]
        assert result["MisconfSummary"]["Successes"] > 0, f"no trivy check ran on {target}"
    assert status == 0


def test_the_master_admits_only_its_own_runs_workers_on_the_locust_port(render_text):
    objects = by_kind_and_name(render_text("llama70b", *ON))
    policy = objects["NetworkPolicy", MASTER]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= \
        objects["Job", MASTER]["spec"]["template"]["metadata"]["labels"].items()
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "locust", "protocol": "TCP"}]
    assert rule["from"][0]["podSelector"]["matchLabels"] == {
        key: value for key, value in objects["Job", WORKER]["spec"]["template"]["metadata"]["labels"].items()
        if key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
                   "tpserve.io/loadtest-run")}
    without = by_kind_and_name(render_text("llama70b", *ON, "--set", "networkPolicy.enabled=false"))
    assert ("NetworkPolicy", MASTER) not in without and ("Job", MASTER) in without


def test_the_notes_wait_as_long_as_the_jobs_may_run_and_say_when_their_results_go(tools):
    done = tools.helm_run("install", "llama70b", str(CHART), "--dry-run", *ON, "--set", "loadtest.run=2",
                          "--set", "loadtest.ttlSecondsAfterFinished=3600")
    assert done.returncode == 0, done.stderr
    notes = done.stdout.split("NOTES:", 1)[1]
    assert "kubectl wait --for=condition=complete --timeout=10800s job/llama70b-vllm-loadtest-2-master" in notes
    assert ("The run's Jobs and their logs are deleted 3600 s after they finish (loadtest.ttlSecondsAfterFinished): "
            "turn loadtest.enabled off once you have the results, or a later upgrade runs this run again.") in notes
