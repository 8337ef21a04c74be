"""The load test's logic: request records, SSE parsing, metrics and the Locust user.

``loadtest/prompts.py`` is a thin Locust file that imports :mod:`tpserve.workload.user`.
"""
