#!/usr/bin/env bash
# The GPU session of the scale-out and reliability work on the offline GPU host (2 × H200), from the
# repository root there:
#   1. kill one tensor-parallel worker of a serving vLLM mid-load and time what follows
#      (tests/gpu/tp_worker_kill.py; its /metrics dump is the recorded list for the metric contract);
#   2. the chart's multi-node LeaderWorkerSet as two processes with one GPU each: REHEARSAL_DIR holds the
#      leader.sh/worker-1.sh (and .json) that tests/gpu/multinode_rehearsal.py rendered, with /models and
#      /home/vllm mapped under /tmp/tpserve-mn/POD; both start, the leader's /health answers, and the load
#      test (the note's 59 prompts, 256 output tokens) passes with client tokens = server tokens.
#   tests/gpu/scaleout_on_host.sh PARTS_DIR REHEARSAL_DIR OUT_DIR
set -euo pipefail
parts=${1:?usage: scaleout_on_host.sh PARTS_DIR REHEARSAL_DIR OUT_DIR}
rehearsal=${2:?usage: scaleout_on_host.sh PARTS_DIR REHEARSAL_DIR OUT_DIR}
out=${3:?usage: scaleout_on_host.sh PARTS_DIR REHEARSAL_DIR OUT_DIR}
mkdir -p "$out"
# shellcheck source=tests/gpu/host_env.sh disable=SC1091  # sourced for its exports, so never in a pipe
source "$(dirname "$0")/host_env.sh" "$parts" >"$out/host.txt"
cat "$out/host.txt"

echo "== 1. a tensor-parallel worker killed mid-load"
# Eager mode: no torch.compile or CUDA-graph capture, so the start costs about a minute; what happens after
# a worker dies does not depend on either.
timeout 300 python3 tests/gpu/tp_worker_kill.py "$out/tp-kill" --tensor 2 --rank 1 --budget-s 150 \
  --vllm-arg=--enforce-eager || echo "tp_worker_kill.py exited with $?"

echo "== 2. the rendered LeaderWorkerSet as two processes"
# The bundle has no bin/: the official image's `vllm` command, as the rendered containers call it.
mkdir -p /tmp/tpserve-bin
printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' >/tmp/tpserve-bin/vllm
chmod +x /tmp/tpserve-bin/vllm
export PATH="/tmp/tpserve-bin:$PATH"
python3 - "$rehearsal" <<'PY'
import json, sys
from pathlib import Path
from tpserve.shapes import LLAMA2_7B, write_model_folder
for pod in sorted(Path(sys.argv[1]).glob("*.json")):
    argv = json.loads(pod.read_text())["argv"]
    model = Path(argv[argv.index("--model") + 1])
    write_model_folder(LLAMA2_7B, model)
    for name in ("HOME", "VLLM_CACHE_ROOT", "HF_HOME", "HF_MODULES_CACHE"):
        value = json.loads(pod.read_text())["env"].get(name)
        if value:
            Path(value).mkdir(parents=True, exist_ok=True)
    print(pod.stem, "model at", model)
PY
mn="$out/multinode"
mkdir -p "$mn"
cp "$rehearsal"/*.json "$rehearsal"/*.sh "$mn/"
started=$(date +%s)
setsid bash "$rehearsal/leader.sh" >"$mn/leader.log" 2>&1 &
leader=$!
setsid bash "$rehearsal/worker-1.sh" >"$mn/worker-1.log" 2>&1 &
worker=$!
stop_group() { kill -TERM -- "-$leader" "-$worker" 2>/dev/null || true; sleep 15; kill -KILL -- "-$leader" "-$worker" 2>/dev/null || true; }
trap stop_group EXIT
healthy=""
for _ in $(seq 1 200); do
  if curl -sf http://127.0.0.1:8000/health >/dev/null; then healthy=$(( $(date +%s) - started )); break; fi
  if ! kill -0 "$leader" 2>/dev/null || ! kill -0 "$worker" 2>/dev/null; then echo "a pod process exited"; break; fi
  sleep 2
done
echo "leader healthy after ${healthy:-never} s" | tee "$mn/health.txt"
if [ -n "$healthy" ]; then
  curl -s http://127.0.0.1:8000/v1/models >"$mn/models.json"
  timeout 240 python3 -m locust -f loadtest/prompts.py --headless -u 59 -r 59 --host http://127.0.0.1:8000 \
    --model llama-2-7b --num-requests 59 --max-tokens 256 --run-time 200s --only-summary \
    --results-json "$mn/load.json" >"$mn/load.log" 2>&1 && echo "load test passed" || echo "load test exited with $?"
  tail -25 "$mn/load.log"
  curl -s http://127.0.0.1:8000/metrics >"$mn/leader-metrics.txt"
fi
stop_group
trap - EXIT
echo "vLLM processes left: $(pgrep -fc "VLLM::" || true)" | tee "$mn/left.txt"
