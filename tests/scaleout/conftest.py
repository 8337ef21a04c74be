"""Fixtures of the scale-out test: the chart's scale-out and monitoring objects run by their real controllers on
the cluster test's single-node Kubernetes (docs/cluster-test.md, "The scale-out test").

Every test here is marked ``scaleout``, deselected from ``make test`` and ``make cluster-test``; ``make
scale-out-test`` selects them. The cluster, the shell and the hub stand-in are the cluster test's own fixtures
(tests/cluster/conftest.py): a cluster that is up is reused, otherwise one is started and taken down at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.conftest import tools  # noqa: F401  (the chart tests' helm and kubectl, for test_alert_rules)
from tests.cluster.conftest import WORK, cluster, hub, images, shell, summarize  # noqa: F401  (fixtures reused)

TIMINGS = WORK / "scaleout-timings.json"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.scaleout)


def pytest_terminal_summary(terminalreporter):
    summarize(terminalreporter, "scale-out test: timings (s) and facts", TIMINGS)
