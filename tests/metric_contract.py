"""The metric contract: every vLLM metric name the product reads or tells users to read must be exported.

:func:`metric_names` is the one scanner: a regex over text, with a histogram's ``_bucket``, ``_sum`` and
``_count`` series mapped to the histogram's name, so ``rate(vllm:e2e_request_latency_seconds_bucket[5m])``
counts as a use of ``vllm:e2e_request_latency_seconds``. :func:`product_texts` gathers what it scans (the
chart's files, tpserve's code, README, docs/, k8s/, the Locust file, the Dockerfiles) and the chart
rendered with every values file of its matrix and every ``*.enabled`` switch of values.yaml turned on, so a
name added anywhere there (a ServiceMonitor rule, an autoscaling trigger, a dashboard) is checked without
changing this module. :func:`contract_problems` says which used names a server does not export.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import yaml

from tests.conftest import REPO

# vllm:[a-z_:]+ would cut vllm:e2e_request_latency_seconds at the digit: Prometheus names allow digits after
# the first character.
METRIC = re.compile(r"(?<![\w-])vllm:[a-z_:][a-z0-9_:]*")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
RECORDED_0_26 = REPO / "tests" / "data" / "vllm-0.26.0-metrics.txt"
# Names vLLM renamed: old -> new, for messages that name the fix.
RENAMED = {
    "vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
    "vllm:gpu_prefix_cache_queries_total": "vllm:prefix_cache_queries_total",
    "vllm:gpu_prefix_cache_hits_total": "vllm:prefix_cache_hits_total",
    "vllm:time_per_output_token_seconds": "vllm:inter_token_latency_seconds",
}
# Where the product reads metric names or tells users to: folders (every text file below) and files.
SCANNED = ("charts/vllm", "src/tpserve", "docs", "k8s", "loadtest", "docker", "README.md")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".json", ".tpl", ".txt", ".toml", ""}


def base_name(name: str) -> str:
    """NAME without a histogram series suffix; other names as they are."""
    name = name.rstrip(":")
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name


def metric_names(text: str) -> set[str]:
    """Every vLLM metric name in TEXT, histogram series mapped to the histogram's name."""
    return {base_name(match) for match in METRIC.findall(text)}


def exported_names(exposition: str) -> set[str]:
    """The names a Prometheus text exposition (or a recorded list of its names) offers to queries."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line.strip() and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line.strip(), maxsplit=1)[0])
    return {base_name(name) for name in names if name.startswith("vllm:")}


def source_files(repo: Path = REPO) -> Iterator[Path]:
    for entry in SCANNED:
        path = repo / entry
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for candidate in candidates:
            if candidate.suffix in TEXT_SUFFIXES and "__pycache__" not in candidate.parts:
                yield candidate


def enabled_switches(values: dict, prefix: str = "") -> list[str]:
    """Every ``X.enabled`` key of the chart's values, as a dotted path."""
    found = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            found += enabled_switches(value, path + ".")
        elif key == "enabled" and isinstance(value, bool):
            found.append(path)
    return found


# What a switch refuses to render without (the chart's own validation says so): the least that satisfies it.
SWITCH_NEEDS = {
    "autoscaling.enabled": ("cache.accessMode=ReadWriteMany",),
    "gateway.enabled": ("gateway.endpointPicker.name=vllm-epp", "gateway.parentRefs.inference-gateway.namespace=gateway"),
}
SCALE_OUT_VALUES = REPO / "tests" / "chart" / "scale-out-values.yaml"


def chart_renderings(chart: Path) -> dict[str, tuple[str, ...]]:
    """helm template arguments of every rendering scanned: the defaults, each matrix values file, and each
    ``*.enabled`` switch turned on alone."""
    renderings = {"defaults": ()}
    for values in sorted((chart / "ci").glob("*-values.yaml")):
        renderings[f"ci/{values.name}"] = ("-f", str(values))
    for switch in enabled_switches(yaml.safe_load((chart / "values.yaml").read_text())):
        needs = tuple(arg for value in SWITCH_NEEDS.get(switch, ()) for arg in ("--set", value))
        renderings[f"--set {switch}=true"] = ("--set", f"{switch}=true", *needs)
    renderings["scale-out (every mode at once)"] = ("-f", str(SCALE_OUT_VALUES))
    return renderings


def product_texts(render_text: Callable[..., str], repo: Path = REPO) -> dict[str, str]:
    """What the product reads or shows, by where it is: source files, then chart renderings."""
    texts = {str(path.relative_to(repo)): path.read_text(errors="replace") for path in source_files(repo)}
    for label, args in chart_renderings(repo / "charts" / "vllm").items():
        texts[f"helm template ({label})"] = render_text("contract", *args)
    return texts


def used_names(texts: dict[str, str]) -> dict[str, list[str]]:
    """Each metric name used in TEXTS, with where it is used."""
    used: dict[str, list[str]] = {}
    for where, text in texts.items():
        for name in metric_names(text):
            used.setdefault(name, []).append(where)
    return used


def contract_problems(used: dict[str, list[str]], exported: set[str], server: str) -> list[str]:
    """One line per used name that SERVER does not export, naming where it is used and any rename."""
    problems = []
    for name in sorted(set(used) - exported):
        renamed = RENAMED.get(name)
        hint = f"; renamed to {renamed}" if renamed and base_name(renamed) in exported else ""
        problems.append(f"{name} is not exported by {server}{hint} (used in {', '.join(sorted(used[name]))})")
    return problems
