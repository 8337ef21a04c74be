#!/usr/bin/env bash
# The time-to-ready session on the offline GPU host (lab/gpu/ready_on_host.py), from the repository root there.
# A device call lasts at most 10 minutes and carries at most 64 MiB, so the bundle comes over in several calls;
# the torch-only part runs meanwhile, and later calls wait for the session and take its files:
#   lab/gpu/ready_on_host.sh PARTS_DIR OUT_DIR prep [--no-weights]  GPU limits, weight files, disk read rates
#   lab/gpu/ready_on_host.sh PARTS_DIR OUT_DIR start DEADLINE_S     unpack the bundle, compile its .pyc once
#                                                                   (an image has them), start the servers
#   lab/gpu/ready_on_host.sh PARTS_DIR OUT_DIR wait SECONDS [TAR]   wait until it is done or SECONDS pass,
#                                                                   then pack OUT_DIR into TAR
set -euo pipefail
usage="usage: ready_on_host.sh PARTS_DIR OUT_DIR prep | start DEADLINE_S | wait SECONDS [TAR]"
parts=${1:?$usage}
out=${2:?$usage}
step=${3:?$usage}
mkdir -p "$out"
case "$step" in
  prep)
    export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
    nvidia-smi >"$out/nvidia-smi.txt"
    setsid nohup python3 lab/gpu/ready_on_host.py "$out" --prep "${@:4}" >"$out/prep.log" 2>&1 </dev/null &
    echo "prep started $!"
    ;;
  start)
    # The disk's read rates come first: nothing else reads the disk until prep is done (it waits at most 5 min).
    for _ in $(seq 60); do grep -q '^prep done$' "$out/prep.log" 2>/dev/null && break; sleep 5; done
    # shellcheck source=lab/gpu/host_env.sh disable=SC1091  # sourced for its exports, so never in a pipe
    source "$(dirname "$0")/host_env.sh" "$parts" >"$out/host.txt"
    if [ ! -f /tmp/tpserve-site/.compiled ]; then
      began=$SECONDS
      python3 -m compileall -q -j 0 /tmp/tpserve-site >/dev/null 2>&1 || true
      touch /tmp/tpserve-site/.compiled
      echo "compileall: $((SECONDS - began)) s" >>"$out/host.txt"
    fi
    # py-spy for the profiled start, from its wheel among the parts when one came (a wheel is a zip file).
    for wheel in "$parts"/py_spy-*.whl; do
      [ -f "$wheel" ] || continue
      mkdir -p /tmp/pyspy
      python3 -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = [m for m in z.namelist() if m.endswith('/scripts/py-spy')][0]; open('/tmp/pyspy/py-spy', 'wb').write(z.read(n))" "$wheel"
      chmod +x /tmp/pyspy/py-spy
      export PYSPY=/tmp/pyspy/py-spy
      /tmp/pyspy/py-spy --version >>"$out/host.txt"
    done
    setsid nohup python3 lab/gpu/ready_on_host.py "$out" --deadline-s "${4:?$usage}" "${@:5}" \
      >"$out/session.log" 2>&1 </dev/null &
    echo "started $!"
    cat "$out/host.txt"
    ;;
  wait)
    deadline=$((SECONDS + ${4:?$usage}))
    while [ $SECONDS -lt "$deadline" ] && ! grep -q '^done$' "$out/session.log" 2>/dev/null; do
      sleep 5
    done
    tail -c 6000 "$out/session.log" 2>/dev/null || true
    if [ -n "${5:-}" ]; then
      # The load test's per-request records stay on the host: a device call brings back 16 MiB a file.
      tar czf "$5" --exclude='*.jsonl' -C "$(dirname "$out")" "$(basename "$out")"
    fi
    ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
