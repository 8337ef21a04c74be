"""tpserve's Locust file: streams completions from a vLLM server and reports tok/s, TTFT and TPOT.

    locust -f loadtest/prompts.py --headless -u 8 -r 8 --host http://localhost:8000

sends the 59 built-in prompts (``--num-requests``), each for exactly ``--max-tokens`` output
tokens, then checks the tokens it counted against the server's own counters.
Options are listed in README.md ("Load test options").
The logic lives in the tpserve package (``tpserve.workload``).
"""

from tpserve.workload.user import CompletionUser

__all__ = ["CompletionUser"]
