#!/usr/bin/env bash
# Runs tests/gpu on the project's offline GPU host, from the repository root there.
# The host has torch but no vLLM and no package index: unpack the bundle that
# shared/gpu-host/build-bundle.sh made (vLLM 0.26.0 + locust), once, then run the tests.
#   tests/gpu/run_on_host.sh PARTS_DIR RESULTS_DIR
set -euo pipefail
parts=${1:?usage: run_on_host.sh PARTS_DIR RESULTS_DIR}
results=${2:?usage: run_on_host.sh PARTS_DIR RESULTS_DIR}
site=/tmp/tpserve-site
# NVLink multicast stays off on this shared host (see shared/gpu-host/README.md).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ ! -f "$site/.unpacked" ]; then
  mkdir -p "$site"
  cat "$parts"/part.* | xz -d -T0 | tar x -C "$site"
  touch "$site/.unpacked"
fi
mkdir -p "$results"
export PYTHONPATH="$site:$PWD/src:$PWD" TPSERVE_GPU_RESULTS="$results" HF_HUB_OFFLINE=1 \
       VLLM_CACHE_ROOT=/tmp/tpserve-vllm-cache VLLM_NO_USAGE_STATS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
python3 -c "import vllm, locust; print('vllm', vllm.__version__, 'locust', locust.__version__)"
python3 -m pytest tests/gpu -v -s -p no:cacheprovider -o addopts="" "${@:3}"
