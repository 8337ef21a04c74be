"""tpserve's errors under their old name: they live in :mod:`tpserve.fetch.errors`, which the chart's init
container carries. Kept while the load test's workload/servermetrics.py, workload/user.py and
tests/unit/test_servermetrics.py still import ``tpserve.errors``; new code imports ``tpserve.fetch.errors``."""

from tpserve.fetch.errors import *
