"""Drivers for GPU sessions: the ``*_on_host.sh`` scripts run them on the offline GPU host, from the repository
root there; the values files and the seccomp filter are what they render and build."""

# NVLink multicast stays off on shared hosts; vLLM 0.26's fused all-reduce needs it, hence the switch.
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}
