"""The Locust file to run from a checkout: the installed package's own (``tpserve/data/locustfile.py``).

    locust -f loadtest/prompts.py --headless -u 8 -r 8 --host http://localhost:8000

Locust runs the users this module holds, which are that file's.
"""

from tpserve.data.locustfile import *
