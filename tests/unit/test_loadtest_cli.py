"""The Locust file: Locust finds its user, and it refuses bad options in one line before starting any.

No server is needed: every case here ends before the first request.
"""

import sys

import pytest

from tests.conftest import REPO, free_port, run
from tpserve.commandlines import DEFAULT_LOCUSTFILE, loadtest_command

LOCUSTFILE = REPO / "loadtest" / "prompts.py"
STARTED_USERS = ("Ramping to", "All users spawned", "Aggregated", "Traceback")


def locust(*args, host=None):
    argv = ["locust", "-f", str(LOCUSTFILE), "--headless", "-u", "2", "-r", "2", *args]
    if host is not None:
        argv += ["--host", host]
    return run(sys.executable, "-m", *argv, timeout=120)


@pytest.mark.parametrize("locustfile", [LOCUSTFILE, DEFAULT_LOCUSTFILE], ids=["checkout", "package"])
def test_locust_finds_the_completion_user_in_the_checkouts_locust_file_and_in_the_packages(locustfile, tmp_path):
    done = run(sys.executable, "-m", "locust", "-f", str(locustfile), "--list", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("Available Users:", 1)[1].split() == ["CompletionUser"]


@pytest.mark.parametrize("args, host, message", [
    ((), None, "no server address: pass --host http://HOST:PORT"),
    ((), "127.0.0.1:8123", "--host 127.0.0.1:8123 has no scheme: pass --host http://127.0.0.1:8123"),
    ((), "ftp://127.0.0.1:8123", "--host ftp://127.0.0.1:8123 has scheme 'ftp'"),
    (("--max-tokens", "0"), "http://127.0.0.1:8123", "--max-tokens must be at least 1, got 0"),
    (("--prompt-set", "file"), "http://127.0.0.1:8123", "--prompt-set file needs --prompt-file PATH"),
])
def test_a_bad_option_is_one_line_and_no_user_starts(args, host, message):
    done = locust(*args, host=host)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and message in errors[0]
    for sign in STARTED_USERS:
        assert sign not in done.stderr + done.stdout


def test_an_unreachable_server_stops_the_run_before_users_start():
    port = free_port()
    done = run(*loadtest_command(f"http://127.0.0.1:{port}", users=2, run_time_s=30), timeout=120)
    assert done.returncode == 2
    assert f"cannot reach http://127.0.0.1:{port}/v1/models" in done.stderr
    for sign in STARTED_USERS:
        assert sign not in done.stderr + done.stdout


def test_forked_workers_do_not_outlive_a_master_that_refuses_its_options():
    """Without this, ``--processes`` workers wait a minute for the master's heartbeat, then exit 0."""
    done = locust("--processes", "2", "--max-tokens", "0", host="http://127.0.0.1:8123")
    assert done.returncode == 2
    assert "--max-tokens must be at least 1, got 0" in done.stderr
    assert "heartbeat" not in done.stderr
