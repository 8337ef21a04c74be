"""``tpserve tune`` end to end on the real vLLM server (CPU): two candidates, the chat preset with a small file."""

import json

from tests.conftest import tpserve
from tests.e2e.conftest import CACHE
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
                   "--out", str(out), env=cpu_env(CACHE), timeout=2400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "tune.json").read_text())
    assert (summary["server_starts"], summary["runs"], summary["grid_server_starts"]) == (2, 2, 2)
    assert [(c["label"], c["phase"], c["runs"]) for c in summary["candidates"]] == [
        ("tp1x1", "layouts", ["tiny-tp1x1-run1.json"]),
        ("tp1x1-max-num-seqs=4", "axis max-num-seqs", ["tiny-tp1x1-max-num-seqs=4-run1.json"])]
    assert sorted(c["status"] for c in summary["candidates"]) == ["dropped", "winner"]
    winner = summary["winner"]
    assert winner["label"] in ("tp1x1", "tp1x1-max-num-seqs=4") and summary["defaults"]["label"] == "tp1x1"
    assert summary["ratio_to_defaults"] == winner["output_tok_s_per_gpu"] / summary["defaults"]["output_tok_s_per_gpu"]
    assert winner["serve"].startswith(f"tpserve serve --model {tiny_model} -tp 1 --settings vllm --max-model-len=1024")
    assert done.stderr.strip().splitlines()[-1].startswith(f"winner: {winner['label']}, ")

    defaults, four = (json.loads((out / name).read_text()) for name in
                      ("tiny-tp1x1-run1.json", "tiny-tp1x1-max-num-seqs=4-run1.json"))
    assert defaults["layout"]["vllm_flags"] == {"--max-model-len": "1024", "--load-format": "dummy"}
    assert four["layout"]["vllm_flags"] == {"--max-model-len": "1024", "--load-format": "dummy", "--max-num-seqs": "4"}
    for run in (defaults, four):
        assert run["endpoint"] == "/v1/chat/completions" and run["completed"] == 6 and run["max_concurrency"] == 3
        assert run["token_check"]["status"] == "ok" and run["workload"]["prompt_set"] == f"file {chat}"
