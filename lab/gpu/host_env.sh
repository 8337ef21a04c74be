# Sourced by the lab/gpu host scripts: unpack the offline vLLM bundle once and set the environment.
# $1 holds the bundle's parts, joined in name order, so any split of it works: a device call carries at most
# 64 MiB with the repository, so split it finer than build-bundle.sh's 56 MB parts when the repository grows
# (cat part.* | split -b 34000000 -d -a 2 - DIR/part.).
# shellcheck shell=bash
site=/tmp/tpserve-site
# NVLink multicast stays off on this shared host (see shared/gpu-host/README.md).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ ! -f "$site/.unpacked" ]; then
  mkdir -p "$site"
  cat "$1"/part.* | xz -d -T0 | tar x -C "$site"
  touch "$site/.unpacked"
fi
export PYTHONPATH="$site:$PWD/src:$PWD" HF_HUB_OFFLINE=1 VLLM_CACHE_ROOT=/tmp/tpserve-vllm-cache \
       VLLM_NO_USAGE_STATS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
python3 -c "import vllm, locust; print('vllm', vllm.__version__, 'locust', locust.__version__)"
