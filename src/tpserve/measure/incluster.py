"""The load of ``tpserve sweep --on kubernetes --load-in-cluster``: the chart's ``loadtest`` Jobs, run by tpserve.

For each measurement the chart is rendered by ``helm template`` with the release's own values and the run's
``loadtest.*``; its loadtest objects (the master Job, the worker Job, the master's headless Service and, with
networkPolicy.enabled, its NetworkPolicy), picked by their component label, are exactly what
``--set loadtest.enabled=true`` installs, and are created through the kubernetes client. tpserve
waits for the master Job to end, reads the run record the master printed to its log
(:mod:`tpserve.workload.logline`), and deletes the objects again.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import yaml

from tpserve.fetch.errors import LoadTestError
from tpserve.workload.logline import records_from_log
from tpserve.workload.runrecord import RunRecord

COMPONENTS = ("loadtest-master", "loadtest-worker")
# The sweep starts a run only once the server has rolled out, so its Jobs wait for /health briefly.
SERVER_WAIT_S = 300
# The longest loadtest.run the chart takes (its Jobs' names carry it).
RUN_NAME_LENGTH = 16


@dataclass(frozen=True)
class InClusterLoad:
    """One in-cluster run: WORKERS Locust workers, with the sweep's load options."""

    workers: int
    users: int
    num_requests: int
    max_tokens: int
    prompt_set: str
    random_input_len: int
    warmup_requests: int
    run_time_s: int

    @classmethod
    def of(cls, load, workers: int) -> InClusterLoad:
        """The sweep's LOAD (a :class:`tpserve.measure.runner.Load`) over WORKERS in-cluster workers."""
        return cls(workers=workers, users=load.concurrency, num_requests=load.num_requests,
                   max_tokens=load.max_tokens, prompt_set=load.prompt_set, random_input_len=load.random_input_len,
                   warmup_requests=load.warmup_requests, run_time_s=load.run_timeout_s)

    @property
    def deadline_s(self) -> int:
        """How long the run's Jobs may take: the wait for the (already rolled out) server, the master's 600 s wait
        for its workers, and the run itself; tpserve waits as long for the master."""
        return SERVER_WAIT_S + 600 + self.run_time_s

    def sets(self, run: str, seed: int) -> list[str]:
        """The chart values that describe this run (``--set`` items)."""
        values = {"enabled": "true", "run": run, "workers": self.workers, "users": self.users,
                  "numRequests": self.num_requests, "maxTokens": self.max_tokens, "promptSet": self.prompt_set,
                  "randomInputLen": self.random_input_len, "warmupRequests": self.warmup_requests, "seed": seed,
                  "runTime": f"{self.run_time_s}s", "serverWaitSeconds": SERVER_WAIT_S,
                  "activeDeadlineSeconds": self.deadline_s}
        return [f"loadtest.{key}={value}" for key, value in values.items()]


def run_name(label: str, number: int) -> str:
    """The loadtest.run of the NUMBERth run of the point LABEL: the chart's Jobs carry it, so it is 1 to 16 lowercase
    letters, digits and '-'. A label with settings (``tp1x1-max-num-seqs=32``) is longer, or has other characters:
    it is cut, with 4 hex digits of its hash so that two points never share a name."""
    suffix = f"-{number}"
    base = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
    room = RUN_NAME_LENGTH - len(suffix)
    if base != label or len(base) > room:
        digest = hashlib.sha256(label.encode()).hexdigest()[:4]
        base = f"{base[:room - len(digest) - 1].rstrip('-')}-{digest}"
    return base + suffix


def render(template_argv: Sequence[str], run_command=subprocess.run) -> list[dict]:
    """The loadtest objects of ``helm template`` TEMPLATE_ARGV (which must set loadtest.enabled=true)."""
    done = run_command(list(template_argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LoadTestError(f"helm could not render the loadtest Jobs: {done.stderr.strip()[-500:]}")
    objects = [document for document in yaml.safe_load_all(done.stdout)
               if document and document["metadata"].get("labels", {}).get("app.kubernetes.io/component") in COMPONENTS]
    kinds = sorted(document["kind"] for document in objects)
    if kinds not in (["Job", "Job", "Service"], ["Job", "Job", "NetworkPolicy", "Service"]):
        raise LoadTestError(f"the chart rendered {kinds} for the load test, not a Service and two Jobs: "
                            "is it a chart with loadtest templates?")
    return objects


def job_outcome(job) -> str | None:
    """"succeeded", "failed", or None while the Job runs."""
    status = job.status
    for condition in status.conditions or []:
        if condition.status == "True" and condition.type in ("Complete", "Failed"):
            return "succeeded" if condition.type == "Complete" else "failed"
    if (status.failed or 0) > 0:
        return "failed"
    return None


@dataclass(frozen=True)
class Apis:
    """The kubernetes client's APIs the in-cluster load uses."""

    core: object
    batch: object
    networking: object

    def create(self, namespace: str, manifest: dict) -> None:
        create = {"Service": self.core.create_namespaced_service, "Job": self.batch.create_namespaced_job,
                  "NetworkPolicy": self.networking.create_namespaced_network_policy}[manifest["kind"]]
        create(namespace, manifest)

    def delete(self, namespace: str, kind: str, name: str) -> None:
        if kind == "Job":  # its pods too, in the background
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        elif kind == "Service":
            self.core.delete_namespaced_service(name, namespace)
        else:
            self.networking.delete_namespaced_network_policy(name, namespace)


def run_in_cluster(objects: Sequence[dict], namespace: str, apis: Apis, timeout_s: float, poll_s: float = 5.0,
                   clock: Callable[[], float] = time.monotonic,
                   sleep: Callable[[float], None] = time.sleep) -> RunRecord:
    """Create OBJECTS, wait for the master Job, and return the record its log holds; delete them after."""
    master = next(o["metadata"]["name"] for o in objects
                  if o["kind"] == "Job" and o["metadata"]["labels"]["app.kubernetes.io/component"] == COMPONENTS[0])
    # The master's Service and NetworkPolicy first, so the workers find it from their start.
    order = {"NetworkPolicy": 0, "Service": 1, "Job": 2}
    created: list[tuple[str, str]] = []
    try:
        for manifest in sorted(objects, key=lambda o: order[o["kind"]]):
            apis.create(namespace, manifest)
            created.append((manifest["kind"], manifest["metadata"]["name"]))
        outcome = _wait_for(apis.batch, master, namespace, timeout_s, poll_s, clock, sleep)
        return _master_record(apis.core, master, namespace, outcome)
    finally:
        for kind, name in reversed(created):
            apis.delete(namespace, kind, name)


def _wait_for(batch_api, job: str, namespace: str, timeout_s: float, poll_s: float, clock, sleep) -> str:
    started = clock()
    while True:
        outcome = job_outcome(batch_api.read_namespaced_job_status(job, namespace))
        if outcome:
            return outcome
        if clock() - started >= timeout_s:
            raise LoadTestError(f"the load-test Job {namespace}/{job} had not ended after {timeout_s:.0f} s; "
                                f"see kubectl -n {namespace} describe job {job}")
        sleep(poll_s)


def _master_record(core_api, job: str, namespace: str, outcome: str) -> RunRecord:
    pods = core_api.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    if not pods:
        raise LoadTestError(f"the load-test Job {namespace}/{job} {outcome} without a pod to read results from; "
                            f"see kubectl -n {namespace} describe job {job}")
    pod = pods[0].metadata.name
    log = core_api.read_namespaced_pod_log(pod, namespace, container="master")
    try:
        (record, *_) = records_from_log(log, f"the log of pod {namespace}/{pod}")
    except LoadTestError as exc:
        last = log.strip().splitlines()[-1] if log.strip() else "an empty log"
        raise LoadTestError(f"the load-test Job {namespace}/{job} {outcome}: {exc} — its last line: {last}") from None
    return record


def cluster_apis() -> Apis:
    """The APIs of the cluster tpserve runs in, or of the current kubeconfig context."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return Apis(client.CoreV1Api(), client.BatchV1Api(), client.NetworkingV1Api())
