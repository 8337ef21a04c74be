"""The launch checks under their old name: they live in :mod:`tpserve.fetch.preflight`. Kept while
tests/gpu/conftest.py imports ``tpserve.preflight``; new code imports ``tpserve.fetch.preflight``."""

from tpserve.fetch.preflight import *
