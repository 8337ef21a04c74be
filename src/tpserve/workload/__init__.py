"""The load test's logic, apart from Locust where it can be. Among its modules: promptsets (the ``--prompt-set``
choices), requesttypes (the run's plan, each request's spec and result), sse (a streamed response as a
result), metrics, runstate (a run in progress), runrecord (the run record, the results JSON), runtable (its table),
logline (a run record as one log line) and user (the Locust user).

The Locust file, ``tpserve/data/locustfile.py`` (``loadtest/prompts.py`` from a checkout), holds only
:mod:`tpserve.workload.user`'s user.
"""
