"""tpserve's Locust file: streams completions from a vLLM server and reports tok/s, TTFT and TPOT.

    locust -f loadtest/prompts.py --headless -u 8 -r 8 --host http://localhost:8000

sends the 59 built-in prompts (``--num-requests``), each for exactly ``--max-tokens`` output
tokens, then checks the tokens it counted against the server's own counters. ``loadtest/prompts.py``
(the line above, from a checkout) imports this file; an installed tpserve runs it by its path,
:data:`tpserve.data.LOCUSTFILE`. Options are listed in README.md ("Load test options").
The logic lives in the tpserve package (``tpserve.workload``).
"""

from tpserve.workload.user import CompletionUser

__all__ = ["CompletionUser"]
