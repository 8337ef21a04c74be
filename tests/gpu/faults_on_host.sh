#!/usr/bin/env bash
# The GPU part of the fault suite on the offline GPU host, from the repository root there: kill one
# tensor-parallel worker of a serving vLLM mid-load and time what follows (tests/gpu/tp_worker_kill.py),
# once per RANK given. PARTS_DIR holds shared/gpu-host/build-bundle.sh's parts (vLLM 0.26.0 + locust).
#   tests/gpu/faults_on_host.sh PARTS_DIR OUT_DIR [RANK ...]
set -euo pipefail
parts=${1:?usage: faults_on_host.sh PARTS_DIR OUT_DIR [RANK ...]}
out=${2:?usage: faults_on_host.sh PARTS_DIR OUT_DIR [RANK ...]}
shift 2
mkdir -p "$out"
# shellcheck source=tests/gpu/host_env.sh disable=SC1091  # sourced for its exports, so never in a pipe
source "$(dirname "$0")/host_env.sh" "$parts" >"$out/host.txt"
cat "$out/host.txt"
for rank in "${@:-1}"; do
  # Eager mode: no torch.compile or CUDA-graph capture, so a start costs about a minute, not four;
  # what happens after a worker dies does not depend on either.
  python3 tests/gpu/tp_worker_kill.py "$out" --tensor 2 --rank "$rank" --vllm-arg=--enforce-eager
done
