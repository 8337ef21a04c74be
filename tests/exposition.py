"""Prometheus text that hand-written parsers got wrong, and the interpreter the chart's scripts meet in a pod.

Every reader of /metrics (tpserve's servermetrics, the chart's check_tokens.py and progress_probe.py) goes
through prometheus_client's parser; the tests of each feed it these label values, as the exposition escapes
them, so a reader that falls back to a regex fails here first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import prometheus_client

# A brace, a comma followed by what looks like an le label, an escaped quote around a brace.
AWKWARD_LABEL_VALUES = ("org/m}1", 'org/m,le=\\"0.1\\"', 'org/say \\"}\\" m')


def python_with_prometheus_client_alone(folder: Path) -> tuple[str, ...]:
    """A command line that runs a script (the next argument) with the standard library and prometheus_client
    alone on the path, as a vLLM image's python3 runs the chart's scripts: vLLM requires prometheus_client,
    and nothing else of tpserve's is there."""
    (folder / "prometheus_client").symlink_to(Path(prometheus_client.__file__).parent)
    start = (f"import runpy, sys; sys.path.insert(0, {str(folder)!r}); del sys.argv[0]; "
             "runpy.run_path(sys.argv[0], run_name='__main__')")
    return sys.executable, "-I", "-S", "-c", start
