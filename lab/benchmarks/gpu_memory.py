"""Print each visible GPU's total memory as PyTorch reports it (the figure vLLM multiplies).

`tpserve plan` keeps this per GPU kind in src/tpserve/catalog.py; run this on a GPU host to check it.

    python3 lab/benchmarks/gpu_memory.py
"""

import torch

for index in range(torch.cuda.device_count()):
    free, total = torch.cuda.mem_get_info(index)
    print(f"{index}: {torch.cuda.get_device_name(index)}: total {total:,} bytes ({total / 2**30:.2f} GiB), "
          f"free {free:,}")
