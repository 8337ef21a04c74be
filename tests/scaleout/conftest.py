"""Fixtures of the scale-out test: the chart's scale-out and monitoring objects run by their real controllers on
the cluster test's single-node Kubernetes (docs/cluster-test.md, "The scale-out test").

Every test here is marked ``scaleout``, deselected from ``make test`` and ``make cluster-test``; ``make
scale-out-test`` selects them. The cluster, the shell and the hub stand-in are the cluster test's own fixtures
(tests/cluster/conftest.py): a cluster that is up is reused, otherwise one is started and taken down at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cluster.conftest import REPORT, WORK, cluster, hub, images, shell  # noqa: F401  (fixtures reused)

TIMINGS = WORK / "scaleout-timings.json"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.scaleout)


def pytest_terminal_summary(terminalreporter):
    if not (REPORT.timings or REPORT.facts):
        return
    terminalreporter.section("scale-out test: timings (s) and facts")
    for name, seconds in REPORT.timings.items():
        terminalreporter.write_line(f"{name}: {seconds:.1f}")
    for name, value in REPORT.facts.items():
        terminalreporter.write_line(f"{name}: {value}")
    WORK.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(json.dumps({"timings_s": REPORT.timings, "facts": REPORT.facts}, indent=2) + "\n")
