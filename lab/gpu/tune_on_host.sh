#!/usr/bin/env bash
# The tuning session on the offline GPU host (lab/gpu/tune_on_host.py), from the repository root there.
# A device call lasts at most 10 minutes, so the session runs in its own process session and later calls
# wait for it and take its files:
#   lab/gpu/tune_on_host.sh PARTS_DIR OUT_DIR start DEADLINE_S   unpack the bundle, start the session
#   lab/gpu/tune_on_host.sh PARTS_DIR OUT_DIR wait SECONDS [TAR]  wait until it is done or SECONDS pass,
#                                                                 then pack OUT_DIR into TAR (profile traces
#                                                                 into profile-traces.tar beside it)
# Sourcing host_env.sh imports vLLM first: `wait 585` passed a device call's 600 s (2026-12-01), `wait 540` fit.
set -euo pipefail
usage="usage: tune_on_host.sh PARTS_DIR OUT_DIR start DEADLINE_S | wait SECONDS [TAR]"
parts=${1:?$usage}
out=${2:?$usage}
step=${3:?$usage}
mkdir -p "$out"
# shellcheck source=lab/gpu/host_env.sh disable=SC1091  # sourced for its exports, so never in a pipe
source "$(dirname "$0")/host_env.sh" "$parts" >"$out/host.txt"
case "$step" in
  start)
    nvidia-smi >>"$out/host.txt"
    setsid nohup python3 lab/gpu/tune_on_host.py "$out" --deadline-s "${4:?$usage}" "${@:5}" \
      >"$out/session.log" 2>&1 </dev/null &
    echo "started $!"
    ;;
  wait)
    deadline=$((SECONDS + ${4:?$usage}))
    while [ $SECONDS -lt "$deadline" ] && ! grep -q '^done$' "$out/session.log"; do
      sleep 5
    done
    cat "$out/session.log"
    if [ -n "${5:-}" ]; then
      # The load test's per-request records (5.5 MB a run) stay on the host: a device call brings back 16 MiB a file.
      # Profile traces travel apart (profile-traces.tar beside TAR): a large one cannot keep the figures back.
      tar czf "$5" --exclude='*.jsonl' --exclude='*.pt.trace.json.gz' -C "$(dirname "$out")" "$(basename "$out")"
      if [ -d "$out/profile" ]; then
        tar cf "$(dirname "$5")/profile-traces.tar" -C "$out" profile
      fi
    fi
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
