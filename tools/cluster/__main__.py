"""A single-node Kubernetes of real upstream parts, run as host processes, for trying the chart without GPUs.

    python tools/cluster build            # compile the parts from their pinned Go modules (cached)
    python tools/cluster build prometheus # an add-on the scale-out test runs (versions.ADDONS)
    python tools/cluster up               # build if needed, start the node, wait until it serves
    python tools/cluster up --addons prometheus  # ... and Prometheus beside it
    python tools/cluster monitor          # (re)load the cluster's ServiceMonitors and PrometheusRules into Prometheus
    python tools/cluster keda start|stop  # KEDA's operator and metrics API server beside the node (keda.py)
    python tools/cluster adapter start|stop  # or prometheus-adapter, serving the chart's HPA (adapter.py)
    python tools/cluster load IMAGE...    # copy podman images into the node's containerd
    python tools/cluster status
    python tools/cluster crd API...       # print the path of the CRD YAML serving each group/version/Kind
    python tools/cluster lws start|stop   # the LeaderWorkerSet controller beside the node (lws.py)
    python tools/cluster down             # stop and remove everything up made

The parts: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd (with Debian's runc and
CNI plugins), kubelet, kube-proxy (nftables), CoreDNS. Versions and addresses: versions.py. The node lives
on a dummy interface at 198.18.0.1; pods and Services get addresses in 198.18.0.0/15, and nothing the
cluster does leaves this machine. Needs root. The admin kubeconfig is .cache/cluster/kubeconfig.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import adapter
import build
import crds
import keda
import lws
import node
import prometheus
import start
from versions import ADDONS, CACHE, COMPONENTS, CRD_MODULES, KUBECONFIG, LOGS

TIMINGS = CACHE / "up-times.json"


def _known_addons(names: list[str]) -> None:
    unknown = sorted(set(names) - set(ADDONS))
    if unknown:
        raise node.ClusterError(f"no add-on {', '.join(unknown)}; the add-ons are {', '.join(sorted(ADDONS))}")


def command_build(args) -> int:
    _known_addons(args.addons)
    try:
        build.build_all({name: ADDONS[name] for name in args.addons} if args.addons else COMPONENTS, args.within)
    except build.BuildTimeout as error:
        print(f"tools/cluster: {error}", file=sys.stderr)
        return 3
    return 0


def command_up(args) -> int:
    _known_addons(args.addons)
    steps: dict[str, float] = {}
    begin = time.monotonic()
    folders = build.build_all()
    steps["build (or reuse) the parts"] = time.monotonic() - begin
    steps.update(start.up(folders, pv_count=args.volumes, pv_size=args.volume_size))
    if args.load:
        mark = time.monotonic()
        start.load_images(folders, args.load)
        steps["load images"] = time.monotonic() - mark
    if "prometheus" in args.addons:
        mark = time.monotonic()
        prometheus.monitor()
        steps["prometheus (build or reuse, ready)"] = time.monotonic() - mark
    steps["total"] = time.monotonic() - begin
    for step, seconds in steps.items():
        print(f"{step}: {seconds:.1f} s")
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(json.dumps({step: round(seconds, 1) for step, seconds in steps.items()}, indent=2) + "\n")
    print(f"cluster up: export KUBECONFIG={KUBECONFIG}")
    return 0


def command_load(args) -> int:
    folders = {component: build.bin_dir(component) for component in COMPONENTS}
    start.load_images(folders, args.images)
    return 0


def command_status(_args) -> int:
    for name in node.ORDER:
        pid = node.running(name)
        print(f"{name}: {f'running, pid {pid}' if pid else 'not running'}")
    for name in node.ADDON_PROCESSES:
        pid = node.running(name)
        if pid:
            print(f"{name}: running, pid {pid}")
    print(f"logs: {LOGS}")
    return 0 if all(node.running(name) for name in node.ORDER) else 1


def command_monitor(args) -> int:
    if not node.running("kube-apiserver"):
        raise node.ClusterError("no cluster is up: run `python tools/cluster up` first")
    for line in prometheus.monitor(args.evaluation_interval):
        print(line)
    print(f"prometheus ready at {prometheus.URL} (log: {prometheus.LOG})")
    return 0


def command_keda(args) -> int:
    if args.action == "stop":
        for line in keda.down(start.kubectl):
            print(f"removed {line}")
        return 0
    if not node.running("kube-apiserver"):
        raise node.ClusterError("no cluster is up: run `python tools/cluster up` first")
    if any(node.running(name) for name in keda.PROCESSES):
        raise node.ClusterError("KEDA is already running beside the node (`python tools/cluster keda stop` stops it)")
    if node.running(adapter.NAME):
        raise node.ClusterError("prometheus-adapter serves external.metrics.k8s.io and only one server can own it: "
                                "run python tools/cluster adapter stop first")
    folder, seconds = build.build("keda")
    steps = {"build (or reuse)": 0.0 if seconds is None else seconds, **keda.up(folder, start.kubectl, start.apply)}
    for step, seconds in steps.items():
        print(f"{step}: {seconds:.1f} s")
    return 0


def command_adapter(args) -> int:
    if args.action == "stop":
        for line in adapter.stop_adapter():
            print(f"removed {line}")
        return 0
    if not node.running("kube-apiserver"):
        raise node.ClusterError("no cluster is up: run `python tools/cluster up` first")
    for line in adapter.start_adapter():
        print(f"made {line}")
    return 0


def command_crd(args) -> int:
    for api in args.apis:
        print(crds.crd_file(api))
    return 0


def command_lws(args) -> int:
    done = lws.start_controller() if args.action == "start" else lws.stop_controller()
    for line in done:
        print(f"{'made' if args.action == 'start' else 'removed'} {line}")
    return 0


def command_down(_args) -> int:
    for line in node.down():
        print(f"removed {line}")
    KUBECONFIG.unlink(missing_ok=True)
    print("cluster down")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/cluster", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="compile the parts (cached)")
    build_parser.add_argument("addons", nargs="*", metavar="ADDON",
                              help=f"build these add-ons instead of the node's parts: {', '.join(sorted(ADDONS))}")
    build_parser.add_argument("--within", type=float, metavar="SECONDS",
                              help="stop compiling after SECONDS and exit 3 (what was compiled stays in Go's build cache)")
    build_parser.set_defaults(run=command_build)
    up = commands.add_parser("up", help="start the node (builds first when needed)")
    up.add_argument("--load", nargs="*", default=[], metavar="IMAGE", help="podman images to load once up")
    up.add_argument("--volumes", type=int, default=16,
                    help="local PersistentVolumes to make (default 16: their policy is Retain, so each claim the tests "
                         "delete keeps its volume until `down`, and both cluster tests share one cluster in CI)")
    up.add_argument("--volume-size", default="50Gi", help="each volume's capacity (default 50Gi)")
    up.add_argument("--addons", nargs="*", default=[], metavar="ADDON",
                    help=f"add-ons to start beside the node: {', '.join(sorted(ADDONS))}")
    up.set_defaults(run=command_up)
    load = commands.add_parser("load", help="copy podman images into the node's containerd")
    load.add_argument("images", nargs="+", metavar="IMAGE")
    load.set_defaults(run=command_load)
    commands.add_parser("status", help="which parts run").set_defaults(run=command_status)
    monitor = commands.add_parser(
        "monitor", help="start Prometheus (or reload it) with the cluster's ServiceMonitors and PrometheusRules, "
                        "as the Prometheus Operator would configure it")
    monitor.add_argument("--evaluation-interval", default=prometheus.EVALUATION_INTERVAL,
                         help=f"how often rules are evaluated (default {prometheus.EVALUATION_INTERVAL})")
    monitor.set_defaults(run=command_monitor)
    keda_parser = commands.add_parser("keda", help="start or stop KEDA's operator and metrics API server beside the node")
    keda_parser.add_argument("action", choices=("start", "stop"))
    keda_parser.set_defaults(run=command_keda)
    adapter_parser = commands.add_parser(
        "adapter", help="start or stop prometheus-adapter, the External metrics server of the chart's HPA "
                        "(autoscaling.engine=hpa); KEDA must be stopped first")
    adapter_parser.add_argument("action", choices=("start", "stop"))
    adapter_parser.set_defaults(run=command_adapter)
    crd = commands.add_parser("crd", help="download a custom resource's CRD from its pinned module, print its path")
    crd.add_argument("apis", nargs="+", metavar="API", choices=sorted(CRD_MODULES))
    crd.set_defaults(run=command_crd)
    controller = commands.add_parser("lws", help="start or stop the LeaderWorkerSet controller and its webhooks")
    controller.add_argument("action", choices=("start", "stop"))
    controller.set_defaults(run=command_lws)
    commands.add_parser("down", help="stop and remove everything up made").set_defaults(run=command_down)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except node.ClusterError as error:
        print(f"tools/cluster: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
