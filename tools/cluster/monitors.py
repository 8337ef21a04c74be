"""What the Prometheus Operator makes of the monitoring objects a chart renders: a ServiceMonitor becomes scrape
jobs, a PrometheusRule becomes a rule file. Pure functions over the objects, as the API server returns them.

The scrape jobs follow the Operator's own generator (prometheus-operator `pkg/prometheus/promcfg.go`, the
Endpoints discovery role it uses by default): the same job names, the same relabeling to the target labels
``namespace``, ``service``, ``pod``, ``container``, ``endpoint`` and ``job``, so that a query written for an
Operator-run Prometheus (the chart's ``vllm.metricQuery``) selects the same series here. A ServiceMonitor field
this translator does not know is refused by name rather than dropped: a silently ignored TLS setting or
relabeling would scrape something other than what the object asks for.
"""

from __future__ import annotations

import re
from pathlib import Path

# The fields translated below; anything else in a ServiceMonitor is refused (MonitorError names it).
SPEC_FIELDS = {"selector", "endpoints", "namespaceSelector", "jobLabel"}
ENDPOINT_FIELDS = {"port", "path", "interval", "scrapeTimeout", "scheme", "honorLabels"}
SELECTOR_FIELDS = {"matchLabels"}


class MonitorError(Exception):
    """A monitoring object this translator cannot render faithfully; the message names the field."""


def _label_name(key: str) -> str:
    """A Kubernetes label key as Prometheus's service discovery names it (``app.kubernetes.io/name`` ->
    ``app_kubernetes_io_name``)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _refuse_unknown(where: str, found: dict, known: set[str]) -> None:
    unknown = sorted(set(found) - known)
    if unknown:
        raise MonitorError(f"{where} sets {', '.join(unknown)}, which tools/cluster/monitors.py does not translate; "
                           f"it translates only {', '.join(sorted(known))}: drop the field or extend the translator")


def namespaces(monitor: dict) -> list[str] | None:
    """The namespaces whose Endpoints the monitor selects; None: every namespace (``namespaceSelector.any``)."""
    selector = monitor["spec"].get("namespaceSelector") or {}
    if selector.get("any"):
        return None
    return list(selector.get("matchNames") or [monitor["metadata"]["namespace"]])


def scrape_jobs(monitor: dict, kubeconfig: Path) -> list[dict]:
    """One scrape job per endpoint of MONITOR (a ServiceMonitor), discovering targets through the API server
    that KUBECONFIG reaches, as the Operator generates them."""
    meta, spec = monitor["metadata"], monitor["spec"]
    where = f"ServiceMonitor {meta['namespace']}/{meta['name']}"
    _refuse_unknown(f"{where} spec", spec, SPEC_FIELDS)
    _refuse_unknown(f"{where} spec.selector", spec["selector"], SELECTOR_FIELDS)
    discovery = {"role": "endpoints", "kubeconfig_file": str(kubeconfig)}
    selected = namespaces(monitor)
    if selected is not None:
        discovery["namespaces"] = {"names": selected}
    jobs = []
    for index, endpoint in enumerate(spec["endpoints"]):
        _refuse_unknown(f"{where} spec.endpoints[{index}]", endpoint, ENDPOINT_FIELDS)
        if "port" not in endpoint:
            raise MonitorError(f"{where} spec.endpoints[{index}] names no port: set port to the Service port's name")
        job = {"job_name": f"serviceMonitor/{meta['namespace']}/{meta['name']}/{index}",
               "honor_labels": bool(endpoint.get("honorLabels", False)),
               "kubernetes_sd_configs": [discovery],
               "metrics_path": endpoint.get("path", "/metrics"),
               "scheme": endpoint.get("scheme", "http"),
               "relabel_configs": _relabelings(spec, endpoint["port"])}
        if "interval" in endpoint:
            job["scrape_interval"] = endpoint["interval"]
        if "scrapeTimeout" in endpoint:
            job["scrape_timeout"] = endpoint["scrapeTimeout"]
        jobs.append(job)
    return jobs


def _relabelings(spec: dict, port: str) -> list[dict]:
    """The Operator's relabeling for a ServiceMonitor endpoint, in its order: keep the Services the selector
    matches and the endpoint port of that name, then set the target labels."""
    keep_service = [
        {"action": "keep", "regex": f"({value});true",
         "source_labels": [f"__meta_kubernetes_service_label_{_label_name(key)}",
                           f"__meta_kubernetes_service_labelpresent_{_label_name(key)}"]}
        for key, value in sorted(spec["selector"].get("matchLabels", {}).items())]
    target_kind = ["__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name"]
    job_from = spec.get("jobLabel")
    return [
        {"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"},
        *keep_service,
        {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": port},
        {"source_labels": target_kind, "separator": ";", "regex": "Node;(.*)", "replacement": "${1}",
         "target_label": "node"},
        {"source_labels": target_kind, "separator": ";", "regex": "Pod;(.*)", "replacement": "${1}",
         "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
        *([{"source_labels": [f"__meta_kubernetes_service_label_{_label_name(job_from)}"], "target_label": "job",
            "regex": "(.+)", "replacement": "${1}"}] if job_from else []),
        {"target_label": "endpoint", "replacement": port},
    ]


def rule_file(rule: dict) -> tuple[str, dict]:
    """The file name and content the Operator mounts for RULE (a PrometheusRule): its spec's groups, in a file
    named namespace-name-uid.yaml."""
    meta = rule["metadata"]
    name = f"{meta['namespace']}-{meta['name']}-{meta.get('uid', 'no-uid')}.yaml"
    return name, {"groups": rule["spec"].get("groups", [])}


def config(monitors: list[dict], kubeconfig: Path, rule_dir: Path, evaluation_interval: str) -> dict:
    """A whole Prometheus configuration: the Operator's defaults (30 s scrapes unless a monitor says otherwise),
    every monitor's jobs, the rule files of RULE_DIR."""
    jobs = [job for monitor in monitors for job in scrape_jobs(monitor, kubeconfig)]
    return {"global": {"scrape_interval": "30s", "evaluation_interval": evaluation_interval},
            "rule_files": [str(rule_dir / "*.yaml")],
            "scrape_configs": jobs}
