"""Each GPU's physical limits from its vendor's datasheet: memory bandwidth and dense tensor throughput.

``tpserve report`` holds a run against them (:mod:`tpserve.roofline`). Figures are per GPU, in decimal
units (GB/s = 10^9 bytes/s, TFLOPS = 10^12 FLOP/s), and *dense*: NVIDIA's datasheets print tensor
throughput with 2:4 structured sparsity and say the dense figure is half of it, and no served model
here is sparse. Cards are matched by the name the CUDA driver gives them (``nvidia-smi``,
``torch.cuda.get_device_name``), which is what run records store as ``device_kind``; the name tells
SXM from PCIe, whose limits differ. A card whose figures could not be confirmed against its
datasheet is left out rather than guessed (A10, A10G, H100 NVL so far): its runs get no roofline.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuSpec:
    """One card's datasheet limits. ``fp8_tflops`` is None for cards without fp8 tensor cores (Ampere):
    vLLM runs fp8 weights there as weight-only, multiplying in 16 bits. ``kind`` is the card's
    :data:`tpserve.catalog.GPUS` name where the catalog has it."""

    label: str
    device_names: tuple[str, ...]
    memory_gb_s: float
    bf16_tflops: float
    fp8_tflops: float | None
    source: str
    kind: str = ""

    def tensor_tflops(self, dtype: str) -> float:
        """Dense tensor throughput for a matmul dtype ("fp8", else 16-bit)."""
        return self.fp8_tflops if dtype == "fp8" and self.fp8_tflops is not None else self.bf16_tflops


H100_DATASHEET = "NVIDIA H100 Tensor Core GPU datasheet (sparse figures halved)"
A100_DATASHEET = "NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4)"

SPECS = (
    GpuSpec("H100 SXM 80GB", ("NVIDIA H100 80GB HBM3",), 3350, 989.5, 1979, H100_DATASHEET, "h100"),
    GpuSpec("H100 PCIe 80GB", ("NVIDIA H100 PCIe",), 2000, 756.5, 1513, H100_DATASHEET),
    GpuSpec("H200 SXM 141GB", ("NVIDIA H200",), 4800, 989.5, 1979,
            "NVIDIA H200 Tensor Core GPU datasheet (sparse figures halved)", "h200"),
    GpuSpec("H200 NVL 141GB", ("NVIDIA H200 NVL",), 4800, 835.5, 1670.5,
            "NVIDIA H200 product page, NVL column (sparse figures halved)"),
    GpuSpec("A100 SXM 40GB", ("NVIDIA A100-SXM4-40GB",), 1555, 312, None, A100_DATASHEET, "a100-40gb"),
    GpuSpec("A100 SXM 80GB", ("NVIDIA A100-SXM4-80GB",), 2039, 312, None, A100_DATASHEET, "a100-80gb"),
    GpuSpec("A100 PCIe 40GB", ("NVIDIA A100-PCIE-40GB",), 1555, 312, None, A100_DATASHEET),
    GpuSpec("A100 PCIe 80GB", ("NVIDIA A100 80GB PCIe",), 1935, 312, None, A100_DATASHEET),
    GpuSpec("L40S", ("NVIDIA L40S",), 864, 362.05, 733, "NVIDIA L40S datasheet (dense column)"),
    GpuSpec("L4", ("NVIDIA L4",), 300, 121, 242.5, "NVIDIA L4 Tensor Core GPU datasheet (sparse figures halved)",
            "l4"),
)


def spec_for(device_name: str) -> GpuSpec | None:
    """The datasheet figures of the card the driver calls DEVICE_NAME (any case), or None when unknown."""
    wanted = " ".join(device_name.split()).lower()
    for spec in SPECS:
        if wanted in (name.lower() for name in spec.device_names):
            return spec
    return None
