"""What ``tpserve plan`` recommends for each layout that fits: the settings profile's flags for the model
and the GPU kind, and the ``tpserve serve`` command line and the chart values that serve the layout with them.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from tpserve import settings
from tpserve.commandlines import serve_command
from tpserve.fetch import cache
from tpserve.plan import GPU_MEMORY_UTILIZATION, GiB, LayoutFit, Plan


@dataclass(frozen=True)
class Recommendation:
    """How to serve one layout: ``serve_command`` is empty for a layout over several nodes, which only the
    chart's multiNode serves; ``chart_values`` are ``helm --set`` pairs."""

    layout: str
    serve_command: str
    chart_values: dict[str, str]

    @property
    def chart_set(self) -> str:
        return " ".join(f"--set {name}={value}" for name, value in self.chart_values.items())


def settings_choice(plan: Plan, profile: str = settings.DEFAULT_PROFILE) -> settings.Choice:
    """What PROFILE adds for the plan's model on its GPU kind (by the memory the CUDA driver reports)."""
    return settings.choose(profile, plan.size.parameters, plan.gpu.memory_bytes)


def recommend(plan: Plan, serve_model: str, profile: str = settings.DEFAULT_PROFILE) -> tuple[Recommendation, ...]:
    """One recommendation per layout of PLAN that fits; SERVE_MODEL is the repo id or folder to serve."""
    return tuple(_recommend(plan, layout, serve_model, profile) for layout in plan.layouts if layout.fits)


def _recommend(plan: Plan, layout: LayoutFit, serve_model: str, profile: str) -> Recommendation:
    tensor, pipeline, size = layout.tensor_parallel, layout.pipeline_parallel, plan.size
    options = ["-pp", str(pipeline)] if pipeline > 1 else []
    # A repo id is the chart's model.name; a local folder has none (the user names the repo it came from).
    is_repo = "/" in serve_model and cache.REPO_ID.fullmatch(serve_model) and not Path(serve_model).exists()
    values = {"model.name": serve_model} if is_repo else {}
    values |= {"parallelism.tensor": str(tensor), "parallelism.pipeline": str(pipeline),
              "gpu.perNode": str(plan.gpus_per_node), "vllm.maxModelLen": str(plan.context_tokens)}
    if plan.gpu_memory_utilization != GPU_MEMORY_UTILIZATION:
        options += ["--gpu-memory-utilization", f"{plan.gpu_memory_utilization:g}"]
        values["vllm.gpuMemoryUtilization"] = f"{plan.gpu_memory_utilization:g}"
    if profile != settings.DEFAULT_PROFILE:
        options += ["--settings", profile]
        values["vllm.settings"] = profile
    values |= {"model.attentionHeads": str(size.attention_heads), "model.kvHeads": str(size.kv_heads),
               "model.layers": str(size.layers), "model.parameterBillions": f"{size.parameters / 1e9:.2f}",
               "model.hiddenSize": str(size.hidden_size), "model.vocabSize": str(size.vocab_size)}
    if plan.gpu.products:
        values["gpu.product"] = plan.gpu.products[0]
    values["gpu.memoryGiB"] = f"{plan.gpu.memory_bytes / GiB:.1f}"
    if layout.nodes > 1:
        values |= {"multiNode.enabled": "true", "multiNode.nodes": str(layout.nodes)}
        return Recommendation(layout.name, "", values)
    argv = serve_command(serve_model, tensor_parallel_size=tensor, max_model_len=plan.context_tokens,
                         serve_args=options, python="")
    return Recommendation(layout.name, shlex.join(["tpserve", *argv[3:]]), values)
