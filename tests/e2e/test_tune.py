"""``tpserve tune`` end to end on the real vLLM server (CPU): two candidates, the chat preset with a small file."""

import json
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, tpserve
from tests.e2e.conftest import CACHE
from tpserve.commands.serve import serve_config
from tpserve.server import cpu_env

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "How do I fix a squeaky door?"}], "max_tokens": 8},
    {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name three tools."}],
     "max_tokens": 4},
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                  {"role": "user", "content": "What should I paint first, the walls or the ceiling, and why?"}],
     "max_tokens": 12},
] * 2


def test_tune_measures_vllms_defaults_beside_a_setting_and_names_the_winner(tiny_model, tmp_path, port):
    chat = tmp_path / "chat.jsonl"
    chat.write_text("".join(json.dumps(line) + "\n" for line in CONVERSATIONS))
    out = tmp_path / "tune"
    done = tpserve("tune", str(tiny_model), "--served-model-name", "tiny", "--tensor", "1",
                   "--vllm", "max-num-seqs=default,4", "--workload", "chat", "--prompt-file", str(chat),
                   "--concurrency", "3", "--max-ttft-ms", "120000", "--max-tpot-ms", "60000", "--dummy-weights",
                   "--serve-arg=--max-model-len=1024", "--base-port", str(port), "--health-timeout", "900",
                   "--out", str(out), "--json", env=cpu_env(CACHE), timeout=2400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert (summary.pop("out"), summary.pop("file")) == (str(out), str(out / "tune.json"))
    assert summary == json.loads((out / "tune.json").read_text())
    assert (summary["server_starts"], summary["runs"], summary["grid_server_starts"]) == (2, 2, 2)
    assert [(c["label"], c["phase"], c["runs"]) for c in summary["candidates"]] == [
        ("tp1x1", "layouts", ["tiny-tp1x1-run1.json"]),
        ("tp1x1-max-num-seqs=4", "axis max-num-seqs", ["tiny-tp1x1-max-num-seqs=4-run1.json"])]
    assert sorted(c["status"] for c in summary["candidates"]) == ["dropped", "winner"]
    winner = summary["winner"]
    assert winner["label"] in ("tp1x1", "tp1x1-max-num-seqs=4") and summary["defaults"]["label"] == "tp1x1"
    assert summary["ratio_to_defaults"] == winner["output_tok_s_per_gpu"] / summary["defaults"]["output_tok_s_per_gpu"]
    serve = shlex.split(winner["serve"])
    config, _ = serve_config(serve[2:])
    assert serve[:2] == ["tpserve", "serve"] and "dummy" not in winner["serve"]
    assert (config.model, config.tensor_parallel_size, config.max_model_len, config.settings) == (
        str(tiny_model), 1, 1024, "vllm")

    defaults, four = (json.loads((out / name).read_text()) for name in
                      ("tiny-tp1x1-run1.json", "tiny-tp1x1-max-num-seqs=4-run1.json"))
    assert defaults["layout"]["vllm_flags"] == {"--max-model-len": "1024", "--load-format": "dummy"}
    assert four["layout"]["vllm_flags"] == {"--max-model-len": "1024", "--load-format": "dummy", "--max-num-seqs": "4"}
    for run in (defaults, four):
        assert run["endpoint"] == "/v1/chat/completions" and run["completed"] == 6 and run["max_concurrency"] == 3
        assert run["token_check"]["status"] == "ok" and run["workload"]["prompt_set"] == f"file {chat}"


def test_an_interrupted_tune_stops_its_server_and_keeps_what_it_measured(tiny_model, tmp_path, port):
    """Ctrl-C while the second candidate's server starts: that server is stopped, tune.json is written with the
    first candidate measured and the second not, and tune exits 130."""
    out = tmp_path / "tune"
    argv = [sys.executable, "-m", "tpserve", "tune", str(tiny_model), "--served-model-name", "tiny", "--tensor", "1",
            "--vllm", "max-num-seqs=default,4", "--num-requests", "4", "--concurrency", "2", "--max-tokens", "4",
            "--dummy-weights", "--serve-arg=--max-model-len=512", "--base-port", str(port), "--health-timeout", "900",
            "--out", str(out)]
    # A job started in the background by a non-interactive shell (CI's, say) inherits SIGINT ignored, and Python
    # then leaves it ignored. While tune is spawned this process catches SIGINT instead; a caught signal is reset
    # to its default in the new program, so tune gets SIGINT as Ctrl-C in a terminal gives it.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        tune = subprocess.Popen(argv, cwd=REPO, env=cpu_env(CACHE), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    finally:
        signal.signal(signal.SIGINT, inherited)
    with tune:
        second = out / "logs" / "tp1x1-max-num-seqs=4-replica0.log"
        while not second.exists() and tune.poll() is None:  # the first candidate measured, the second starting
            time.sleep(0.5)
        assert tune.poll() is None, tune.stderr.read()[-3000:]
        tune.send_signal(signal.SIGINT)
        stdout, stderr = tune.communicate(timeout=300)
    assert tune.returncode == 130, stdout[-2000:] + stderr[-3000:]
    summary = json.loads((out / "tune.json").read_text())
    assert summary["stopped"] == "interrupted while measuring tp1x1-max-num-seqs=4"
    assert [(c["label"], c["status"]) for c in summary["candidates"]] == [
        ("tp1x1", "winner"), ("tp1x1-max-num-seqs=4", "not measured")]
    assert (out / "tiny-tp1x1-run1.json").is_file()
    assert "(so far)" in stderr
    # The second candidate's server is gone: no process serves on its port, nothing listens there.
    assert [argv for argv in command_lines() if "--port" in argv and str(port) in argv] == []
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


def command_lines() -> list[list[str]]:
    """Every running process's argv (those that exit while they are read are skipped)."""
    lines = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            lines.append(path.read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            continue
    return lines
