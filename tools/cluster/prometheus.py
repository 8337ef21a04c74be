"""Prometheus as a host process beside the node, fed what the Prometheus Operator would feed it.

No Operator runs here. `monitor` reads every ServiceMonitor and PrometheusRule from the API server, translates
them (monitors.py), writes the configuration and rule files under STATE/prometheus and starts Prometheus, or asks
a running one to reload. It discovers targets through the API server with the admin kubeconfig and scrapes pods on
their pod IPs (the host routes to the pod bridge). It listens on the node's address, which pods reach too.
Its data lives in STATE (removed by `down`), its log in LOGS/prometheus.log.
"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

import build
import monitors
import node
import start
import yaml
from node import ClusterError
from versions import KUBECONFIG, LOGS, NODE_IP, STATE

NAME = "prometheus"
PORT = 9090
URL = f"http://{NODE_IP}:{PORT}"
HOME = STATE / "prometheus"
CONFIG = HOME / "prometheus.yml"
RULES = HOME / "rules"
LOG = LOGS / f"{NAME}.log"
# The Prometheus custom resource's default; tests pass a shorter one.
EVALUATION_INTERVAL = "30s"
# Generous: a busy 2-core machine replays its write-ahead log slowly; ready returns as soon as it is.
READY_TIMEOUT_S = 180
# The monitoring objects the Operator reads, as kubectl names them.
SERVICE_MONITORS = "servicemonitors.monitoring.coreos.com"
PROMETHEUS_RULES = "prometheusrules.monitoring.coreos.com"


def _objects(resource: str) -> list[dict]:
    """Every RESOURCE in every namespace; none while the cluster does not serve its CRD."""
    done = start.kubectl("get", resource, "--all-namespaces", "-o", "json", check=False)
    if done.returncode != 0:
        if "the server doesn't have a resource type" in done.stderr:
            return []
        raise ClusterError(f"kubectl get {resource} failed: {done.stderr.strip()}")
    return json.loads(done.stdout)["items"]


def write_config(evaluation_interval: str) -> list[str]:
    """The configuration and rule files for the cluster's monitoring objects now; what they hold, one line each."""
    service_monitors, rules = _objects(SERVICE_MONITORS), _objects(PROMETHEUS_RULES)
    shutil.rmtree(RULES, ignore_errors=True)
    RULES.mkdir(parents=True)
    written = []
    for rule in rules:
        name, content = monitors.rule_file(rule)
        (RULES / name).write_text(yaml.safe_dump(content, sort_keys=False))
        written.append(f"rule file {RULES / name}")
    config = monitors.config(service_monitors, KUBECONFIG, RULES, evaluation_interval)
    CONFIG.write_text(yaml.safe_dump(config, sort_keys=False))
    written += [f"scrape job {job['job_name']}" for job in config["scrape_configs"]]
    return written


def _ready() -> bool:
    try:
        with urllib.request.urlopen(f"{URL}/-/ready", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def _reload() -> None:
    request = urllib.request.Request(f"{URL}/-/reload", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60):
            pass
    except urllib.error.HTTPError as error:
        raise ClusterError(f"Prometheus refused its new configuration {CONFIG}: "
                           f"{error.read().decode(errors='replace').strip()}; see {LOG}") from error


def monitor(evaluation_interval: str = EVALUATION_INTERVAL) -> list[str]:
    """Load the cluster's ServiceMonitors and PrometheusRules into Prometheus, started (built first where needed)
    unless it runs; returns once it answers /-/ready. What it was given, one line each."""
    written = write_config(evaluation_interval)
    if node.running(NAME):
        _reload()
        return written
    folder, _ = build.build(NAME)
    (HOME / "data").mkdir(parents=True, exist_ok=True)
    node.start(NAME, [str(folder / NAME), f"--config.file={CONFIG}", f"--storage.tsdb.path={HOME / 'data'}",
                      f"--web.listen-address={NODE_IP}:{PORT}", "--web.enable-lifecycle"])
    alive = node.alive(NAME, "Prometheus")
    node.wait_until("Prometheus to answer /-/ready", lambda: alive() or _ready(), READY_TIMEOUT_S, LOG)
    return written


def promtool() -> Path:
    """The promtool built beside Prometheus (build it with `python tools/cluster build prometheus`)."""
    return build.bin_dir(NAME) / "promtool"
