#!/usr/bin/env bash
# The GPU sessions of the scale-out and reliability work on the offline GPU host (2 × H200), from the
# repository root there. PARTS_DIR holds shared/gpu-host/build-bundle.sh's parts (vLLM 0.26.0 + locust).
#   lab/gpu/scaleout_on_host.sh PARTS_DIR OUT_DIR tp-kill RANK
#       kill tensor-parallel worker RANK of a serving TP 2 vLLM mid-load and time what follows
#       (lab/gpu/tp_worker_kill.py; its /metrics dump is the recorded list for the metric contract)
#   lab/gpu/scaleout_on_host.sh PARTS_DIR OUT_DIR multinode REHEARSAL_DIR [--kill POD]
#       the chart's LeaderWorkerSet as processes (lab/gpu/multinode_run.py): REHEARSAL_DIR holds what
#       lab/gpu/multinode_rehearsal.py rendered, with /models and /home/vllm mapped under /tmp
set -euo pipefail
usage="usage: scaleout_on_host.sh PARTS_DIR OUT_DIR tp-kill RANK | multinode REHEARSAL_DIR [--kill POD]"
parts=${1:?$usage}
out=${2:?$usage}
step=${3:?$usage}
mkdir -p "$out"
# shellcheck source=lab/gpu/host_env.sh disable=SC1091  # sourced for its exports, so never in a pipe
source "$(dirname "$0")/host_env.sh" "$parts" >"$out/host.txt"
cat "$out/host.txt"
case "$step" in
  tp-kill)
    # Eager mode: no torch.compile or CUDA-graph capture; what happens after a worker dies depends on neither.
    python3 lab/gpu/tp_worker_kill.py "$out/tp-kill" --tensor 2 --rank "${4:?$usage}" --budget-s 150 \
      --vllm-arg=--enforce-eager
    ;;
  multinode)
    # The bundle has no bin/: the official image's `vllm` command, as the rendered containers call it.
    mkdir -p /tmp/tpserve-bin
    printf '#!/bin/sh\nexec python3 -m vllm.entrypoints.cli.main "$@"\n' >/tmp/tpserve-bin/vllm
    chmod +x /tmp/tpserve-bin/vllm
    export PATH="/tmp/tpserve-bin:$PATH"
    rehearsal=${4:?$usage}
    python3 lab/gpu/multinode_run.py "$rehearsal" "$out/$(basename "$rehearsal")" "${@:5}"
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
