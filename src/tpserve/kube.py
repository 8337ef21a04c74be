"""``tpserve sweep --on kubernetes``: each layout as a Helm release of ``charts/vllm``.

For a point the sweep runs ``helm upgrade --install`` with ``parallelism.tensor`` and ``replicaCount``,
waits with the kubernetes client until the Deployment's new pods are all ready, and reaches the
Service through ``kubectl port-forward`` (the Service spreads the load over the replicas).
"""

from __future__ import annotations

import itertools
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from tpserve import kubeload
from tpserve.errors import ConfigError, ServerNotHealthyError
from tpserve.kubeload import InClusterLoad
from tpserve.sweep import Backend, Point, Servers
from tpserve.workload import runrecord
from tpserve.workload.runrecord import Layout, RunRecord

CHART_NAME = "vllm"


def fullname(release: str, name_override: str = "", fullname_override: str = "") -> str:
    """The chart's object names for RELEASE (its ``vllm.fullname`` helper, values nameOverride and
    fullnameOverride included), so the sweep waits for and forwards to the objects helm made."""
    if fullname_override:
        return fullname_override[:63].rstrip("-")
    chart = (name_override or CHART_NAME)[:63].rstrip("-")
    name = release if chart in release else f"{release}-{chart}"
    return name[:63].rstrip("-")


def name_overrides(values: Sequence[Path], sets: Sequence[str]) -> dict[str, str]:
    """nameOverride and fullnameOverride as helm resolves them from VALUES files then --set items (later
    wins), as keyword arguments of ``fullname``."""
    found = {"nameOverride": "", "fullnameOverride": ""}
    for path in values:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        found.update({key: str(loaded[key] or "") for key in found if key in loaded})
    for item in sets:
        key, _, value = item.partition("=")
        if key in found:
            found[key] = value
    return {"name_override": found["nameOverride"], "fullname_override": found["fullnameOverride"]}


def helm_argv(release: str, chart: Path, namespace: str, point: Point, values: Sequence[Path] = (),
              sets: Sequence[str] = (), helm: str = "helm") -> list[str]:
    """The exact helm command that deploys POINT (later --set wins, so the layout comes last)."""
    return [helm, "upgrade", "--install", release, str(chart), "--namespace", namespace,
            *_point_values(point, values, sets)]


def _point_values(point: Point, values: Sequence[Path], sets: Sequence[str]) -> list[str]:
    """The chart values of POINT as helm arguments: VALUES files, SETS, then the layout."""
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
    argv = []
    for path in values:
        argv += ["--values", str(path)]
    for item in sets:
        argv += ["--set", item]
    return argv + ["--set", f"parallelism.tensor={point.tensor}", "--set", f"replicaCount={point.replicas}"]


def rollout_done(deployment) -> tuple[bool, str]:
    """Whether a Deployment's current spec is fully rolled out and ready, and if not, why."""
    status, spec = deployment.status, deployment.spec
    wanted = spec.replicas if spec.replicas is not None else 1
    if (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return False, "the controller has not seen the new spec yet"
    updated, ready = status.updated_replicas or 0, status.ready_replicas or 0
    if updated < wanted or ready < wanted or (status.replicas or 0) > wanted:
        reasons = "; ".join(f"{c.type}={c.status}: {c.message}" for c in status.conditions or [] if c.message)
        return False, f"{ready}/{wanted} ready, {updated}/{wanted} updated" + (f" ({reasons})" if reasons else "")
    return True, f"{ready}/{wanted} ready"


def wait_rolled_out(apps_api, name: str, namespace: str, timeout_s: float, poll_s: float = 5.0,
                    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> float:
    """Poll the Deployment until :func:`rollout_done`; return the seconds it took."""
    started = clock()
    while True:
        done, why = rollout_done(apps_api.read_namespaced_deployment_status(name, namespace))
        waited = clock() - started
        if done:
            return waited
        if waited >= timeout_s:
            raise ServerNotHealthyError(
                f"deployment {namespace}/{name} was not ready after {timeout_s:.0f} s: {why}; "
                f"see kubectl -n {namespace} describe deployment {name}")
        sleep(poll_s)


def _wait_port(port: int, process: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerNotHealthyError(f"kubectl port-forward exited with status {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise ServerNotHealthyError(f"kubectl port-forward did not open port {port} within {timeout_s:.0f} s")


def kubernetes_backend(release: str, chart: Path, namespace: str, *, model: str = "", values: Sequence[Path] = (),
                       sets: Sequence[str] = (), port: int = 8100, timeout_s: float = 3600,
                       in_cluster: InClusterLoad | None = None, apps_api=None, load_apis=None,
                       run=subprocess.run, helm: str = "helm", kubectl: str = "kubectl") -> Backend:
    """Deploy each point with helm and yield the port-forwarded Service URL.

    The layout names MODEL and the release; the GPUs' kind and vLLM's flags are in the chart's values,
    which the sweep does not read, except nameOverride and fullnameOverride for the objects' name.
    With IN_CLUSTER the load runs in the cluster instead, as the chart's loadtest Jobs
    (:mod:`tpserve.kubeload`, through LOAD_APIS, a :class:`tpserve.kubeload.Apis`); nothing is forwarded.
    """

    @contextmanager
    def start(point: Point) -> Iterator[Servers]:
        argv = helm_argv(release, chart, namespace, point, values, sets, helm)
        done = run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServerNotHealthyError(f"helm failed for {point.label}: {done.stderr.strip()[-500:]}")
        api = apps_api or _apps_api()
        name = fullname(release, **name_overrides(values, sets))
        wait_rolled_out(api, name, namespace, timeout_s)
        layout = Layout(model, f"GPU (Kubernetes release {namespace}/{release})", point.tensor,
                        replicas=point.replicas)
        if in_cluster is not None:
            template = [helm, "template", release, str(chart), "--namespace", namespace,
                        *_point_values(point, values, sets)]
            yield Servers([f"http://{name}.{namespace}.svc"], layout,
                          measure=_in_cluster_measure(in_cluster, template, namespace, point,
                                                      load_apis or kubeload.cluster_apis(), run))
            return
        forward = subprocess.Popen([kubectl, "port-forward", "--namespace", namespace, f"svc/{name}",
                                    f"{port}:8000"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _wait_port(port, forward)
            yield Servers([f"http://127.0.0.1:{port}"], layout)
        finally:
            forward.terminate()
            forward.wait(timeout=10)

    return start


def _in_cluster_measure(in_cluster: InClusterLoad, template_argv: Sequence[str], namespace: str, point: Point,
                        load_apis, run):
    """Measure one run of POINT as the chart's loadtest Jobs, rendered by TEMPLATE_ARGV (``helm template`` with
    the release's values) and the run's own loadtest values."""
    runs = itertools.count(1)

    def measure(urls, model, load, work: Path, seed: int) -> RunRecord:
        run_name = f"{point.label}-{next(runs)}"
        template = [*template_argv, *(part for item in in_cluster.sets(run_name, seed) for part in ("--set", item))]
        objects = kubeload.render(template, run)
        record = kubeload.run_in_cluster(objects, namespace, load_apis, timeout_s=in_cluster.run_time_s + 900)
        runrecord.write(work / "master.json", record)
        return record

    return measure


def _apps_api():
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.AppsV1Api()
