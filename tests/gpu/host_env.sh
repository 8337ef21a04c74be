# Sourced by the tests/gpu host scripts: unpack the offline vLLM bundle once and set the environment.
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
