"""``tpserve sweep --on kubernetes``: each point as a Helm release of ``charts/vllm``.

For a point the sweep runs ``helm upgrade --install`` with ``parallelism.tensor``, ``replicaCount`` and the
point's vLLM settings (:func:`settings_values`), waits with the kubernetes client until the Deployment's new
pods are all ready, and reaches the Service through ``kubectl port-forward`` (the Service spreads the load
over the replicas). Like a local sweep, a point measures vLLM's defaults plus exactly its own settings: the
release gets ``vllm.settings=vllm`` unless the chart values choose a profile themselves.
"""

from __future__ import annotations

import itertools
import json
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

from tpserve import axes
from tpserve.fetch.errors import ConfigError, ServerNotHealthyError
from tpserve.launch import FUSION_OFF, flags_of
from tpserve.measure import incluster
from tpserve.measure.incluster import InClusterLoad
from tpserve.measure.points import Point
from tpserve.measure.runner import Backend, Servers, Serving
from tpserve.workload import runrecord
from tpserve.workload.runrecord import Layout, RunRecord

CHART_NAME = "vllm"
# Settings that are chart values of their own (the chart refuses them in vllm.extraArgs), by axis key.
CHART_VALUES = {"gpu-memory-utilization": "vllm.gpuMemoryUtilization", "max-model-len": "vllm.maxModelLen",
                "dtype": "vllm.dtype"}


def fullname(release: str, name_override: str = "", fullname_override: str = "") -> str:
    """The chart's object names for RELEASE (its ``vllm.fullname`` helper, values nameOverride and
    fullnameOverride included), so the sweep waits for and forwards to the objects helm made. A Service needs a
    DNS-1035 label, so dots become dashes and a release name that starts with a digit goes after the chart's."""
    if fullname_override:
        return fullname_override[:63].rstrip("-")
    chart = (name_override or CHART_NAME)[:63].rstrip("-")
    release = release.replace(".", "-")
    if release[:1].isdigit():
        name = f"{chart}-{release}"
    else:
        name = release if chart in release else f"{release}-{chart}"
    return name[:63].rstrip("-")


def given_values(values: Sequence[Path], sets: Sequence[str]) -> dict:
    """The chart values that VALUES files then ``--set KEY=VALUE`` items give (later wins), nested as helm
    nests them; values a ``--set`` gives stay strings. Only what the user wrote, not the chart's defaults."""
    given: dict = {}

    def merge(into: dict, update: dict) -> None:
        for key, value in update.items():
            if isinstance(value, dict) and isinstance(into.get(key), dict):
                merge(into[key], value)
            else:
                into[key] = value

    for path in values:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a values file holds a map of chart values")
        merge(given, loaded)
    for item in sets:
        key, _, value = item.partition("=")
        *parents, leaf = key.split(".")
        nested: dict = {leaf: value}
        for parent in reversed(parents):
            nested = {parent: nested}
        merge(given, nested)
    return given


def _lookup(given: dict, dotted: str):
    """The value at DOTTED (``vllm.settings``) in GIVEN, or None."""
    node = given
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def served_name(model: str, values: Sequence[Path], sets: Sequence[str]) -> str:
    """The name the release serves the model under, as the chart decides it (model.servedName, else
    model.name) from VALUES files then --set items; MODEL where they set neither."""
    given = given_values(values, sets)
    return str(_lookup(given, "model.servedName") or _lookup(given, "model.name") or model)


def name_overrides(values: Sequence[Path], sets: Sequence[str]) -> dict[str, str]:
    """nameOverride and fullnameOverride as helm resolves them from VALUES files then --set items (later
    wins), as keyword arguments of ``fullname``."""
    given = given_values(values, sets)
    return {"name_override": str(given.get("nameOverride") or ""),
            "fullname_override": str(given.get("fullnameOverride") or "")}


def check_axes(settings_axes: Sequence[axes.Axis], values: Sequence[Path], sets: Sequence[str]) -> None:
    """Refuse an axis the chart values already set: every point would carry the user's value, so no point
    would measure the axis' values (``default`` included) as named."""
    given = given_values(values, sets)
    extra = _lookup(given, "vllm.extraArgs") or {}
    for axis in settings_axes:
        if axis.key in CHART_VALUES:
            # Even at its default: helm applies --set after --set-json, so a given value would win over the point's.
            if _lookup(given, CHART_VALUES[axis.key]) is not None:
                raise ConfigError(f"--vllm {axis.key} is an axis but the chart values already set "
                                  f"{CHART_VALUES[axis.key]}: drop one of them")
            continue
        flags = ["compilation-config"] if axis.key == axes.CUDAGRAPH_MODE else [axis.key, f"no-{axis.key}"]
        for flag in flags:
            if flag in extra:
                raise ConfigError(f"--vllm {axis.key} is an axis but the chart values already set "
                                  f"vllm.extraArgs.{flag}: drop one of them")


def settings_values(point: Point, values: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[str]:
    """Helm arguments that give the chart's server POINT's vLLM settings, as ``tpserve serve`` gets them in a
    local sweep (:func:`tpserve.axes.command_args`): ``vllm.settings=vllm`` unless the values choose a profile,
    the options the chart has values for, every other flag in ``vllm.extraArgs``.

    A CUDA-graph mode goes in ``vllm.extraArgs.compilation-config``; at TP > 1 with the chart's all-reduce
    fusion off, that JSON also holds the fusion's switch and ``vllm.allreduceFusion=true`` stops the chart
    from adding its own ``--compilation-config`` (vLLM takes one).
    """
    given = given_values(values, sets)
    argv = [] if _lookup(given, "vllm.settings") is not None else ["--set", "vllm.settings=vllm"]
    compilation: dict = {}
    for key, value in point.settings:
        if value == axes.DEFAULT:
            continue
        if key == axes.CUDAGRAPH_MODE:
            compilation["cudagraph_mode"] = value
        elif key in CHART_VALUES:
            argv += ["--set-json", f"{CHART_VALUES[key]}={_json_value(value)}"]
        elif value in axes.SWITCH_VALUES:
            argv += ["--set-json", f"vllm.extraArgs.{key if value == 'on' else 'no-' + key}=true"]
        else:
            argv += ["--set-json", f"vllm.extraArgs.{key}={json.dumps(value)}"]
    if compilation:
        fusion = str(_lookup(given, "vllm.allreduceFusion")).lower() == "true"
        if point.tensor > 1 and not fusion:
            compilation |= json.loads(FUSION_OFF)
            argv += ["--set", "vllm.allreduceFusion=true"]
        argv += ["--set-json", f"vllm.extraArgs.compilation-config={json.dumps(compilation)}"]
    return argv


def _json_value(text: str) -> str:
    """TEXT as JSON: a number where it is one (the chart renders whole numbers and fractions as such), else a
    string."""
    try:
        number = json.loads(text)
    except ValueError:
        return json.dumps(text)
    return text if isinstance(number, int | float) and not isinstance(number, bool) else json.dumps(text)


def helm_argv(release: str, chart: Path, namespace: str, point: Point, values: Sequence[Path] = (),
              sets: Sequence[str] = (), helm: str = "helm") -> list[str]:
    """The exact helm command that deploys POINT (later --set wins, so the layout comes last)."""
    return [helm, "upgrade", "--install", release, str(chart), "--namespace", namespace,
            *_point_values(point, values, sets)]


def deploy_line(release: str, chart: Path, namespace: str, point: Point, values: Sequence[Path] = (),
                sets: Sequence[str] = ()) -> str:
    """The helm command that deploys POINT as it was measured (``tpserve tune --on kubernetes``'s winner)."""
    return shlex.join(helm_argv(release, chart, namespace, point, values, sets))


def deploying(release: str, chart: Path, namespace: str, values: Sequence[Path] = (),
              sets: Sequence[str] = ()) -> Serving:
    """How a Kubernetes search's winner is served: ``("deploy", its helm command)`` (:func:`deploy_line`), the
    twin of :func:`tpserve.measure.local.serving`."""
    return lambda point: ("deploy", deploy_line(release, chart, namespace, point, values, sets))


def _point_values(point: Point, values: Sequence[Path], sets: Sequence[str]) -> list[str]:
    """The chart values of POINT as helm arguments: VALUES files, SETS, the point's settings, then the layout."""
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
    argv = []
    for path in values:
        argv += ["--values", str(path)]
    for item in sets:
        argv += ["--set", item]
    return argv + settings_values(point, values, sets) + ["--set", f"parallelism.tensor={point.tensor}",
                                                           "--set", f"replicaCount={point.replicas}"]


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
    (:mod:`tpserve.measure.incluster`, through LOAD_APIS, a :class:`tpserve.measure.incluster.Apis`); nothing is
    forwarded.
    """

    # The chart requests no GPU when gpu.resource is set empty (values-cpu.yaml): its servers run on CPUs.
    device = "CPU" if _lookup(given_values(values, sets), "gpu.resource") == "" else "GPU"

    @contextmanager
    def start(point: Point) -> Iterator[Servers]:
        argv = helm_argv(release, chart, namespace, point, values, sets, helm)
        done = run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ServerNotHealthyError(f"helm failed for {point.label}: {done.stderr.strip()[-500:]}")
        api = apps_api or _apps_api()
        name = fullname(release, **name_overrides(values, sets))
        wait_rolled_out(api, name, namespace, timeout_s)
        layout = Layout(model, f"{device} (Kubernetes release {namespace}/{release})", point.tensor,
                        replicas=point.replicas, vllm_flags=point_flags(point))
        if in_cluster is not None:
            # Only the loadtest objects are taken from it; the release's own objects passed the API check at install.
            template = [helm, "template", release, str(chart), "--namespace", namespace,
                        *_point_values(point, values, sets), "--set", "requireAPIs=false"]
            yield Servers([f"http://{name}.{namespace}.svc"], layout,
                          measure=_in_cluster_measure(in_cluster, template, namespace, point,
                                                      load_apis or incluster.cluster_apis(), run))
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


def point_flags(point: Point) -> dict[str, str | bool]:
    """The vLLM flags POINT's settings add, keyed as a local run record's layout keys them (``--max-num-seqs``)."""
    serve, vllm = axes.command_args(point.settings)
    return flags_of([*serve, *vllm])


def _in_cluster_measure(in_cluster: InClusterLoad, template_argv: Sequence[str], namespace: str, point: Point,
                        load_apis, run):
    """Measure one run of POINT as the chart's loadtest Jobs, rendered by TEMPLATE_ARGV (``helm template`` with
    the release's values) and the run's own loadtest values."""
    runs = itertools.count(1)

    def measure(urls, model, load, work: Path, seed: int) -> RunRecord:
        run_name = incluster.run_name(point.label, next(runs))
        template = [*template_argv, *(part for item in in_cluster.sets(run_name, seed) for part in ("--set", item))]
        objects = incluster.render(template, run)
        record = incluster.run_in_cluster(objects, namespace, load_apis, timeout_s=in_cluster.deadline_s)
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
