#!/usr/bin/env bash
# The hardened-pod rehearsal on the offline GPU host (lab/gpu/pod_rehearsal.py), from the repository
# root there, as root. PARTS_DIR holds shared/gpu-host/build-bundle.sh's parts (vLLM 0.26.0 + locust);
# REHEARSAL_DIR is what lab/gpu/prepare_pod_rehearsal.py made; the record and logs go to OUT_DIR.
# With ROUNDS, the comparison instead: the hardened server, then the same one as root with nothing
# dropped, the note's workload ROUNDS times on each.
#   lab/gpu/rehearse_pod_on_host.sh PARTS_DIR REHEARSAL_DIR OUT_DIR [ROUNDS]
set -euo pipefail
parts=${1:?usage: rehearse_pod_on_host.sh PARTS_DIR REHEARSAL_DIR OUT_DIR}
rehearsal=${2:?usage: rehearse_pod_on_host.sh PARTS_DIR REHEARSAL_DIR OUT_DIR}
out=${3:?usage: rehearse_pod_on_host.sh PARTS_DIR REHEARSAL_DIR OUT_DIR}
# The bundle stands in for the image's site-packages: outside /tmp, which the pod's scratch volume covers.
export TPSERVE_SITE=/opt/tpserve-site
if [ ! -f "$TPSERVE_SITE/.unpacked" ]; then
  mkdir -p "$TPSERVE_SITE"
  cat "$parts"/part.* | xz -d -T0 | tar x -C "$TPSERVE_SITE"
  chmod -R a+rX "$TPSERVE_SITE"
  touch "$TPSERVE_SITE/.unpacked"
fi
mkdir -p "$out"
{
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
  PYTHONPATH=$TPSERVE_SITE python3 -c "import sys, torch, vllm, locust, huggingface_hub; print(sys.version.split()[0], \
'torch', torch.__version__, 'vllm', vllm.__version__, 'locust', locust.__version__, 'huggingface_hub', huggingface_hub.__version__)"
  uname -r
  echo "yama ptrace_scope: $(cat /proc/sys/kernel/yama/ptrace_scope 2>/dev/null || echo absent)"
} | tee "$out/host.txt"
if [ -n "${4:-}" ]; then
  python3 lab/gpu/pod_rehearsal.py compare "$rehearsal" "$out" "$4"
else
  python3 lab/gpu/pod_rehearsal.py run "$rehearsal" "$out"
fi
