"""The chart refuses at install a model that does not fit its GPUs, with `tpserve plan`'s answer and numbers.

templates/_fit.tpl ports tpserve.plan.layout; these tests render the real chart over shapes × GPUs × TP × PP ×
settings profiles and hold each answer (fits or not, why, the GiB figures, the layouts that would fit) against
plan.py's for the same values.
"""

from __future__ import annotations

import pytest

from tests.chart.conftest import CHART
from tests.chart.test_validation import problems
from tpserve import plan, settings
from tpserve.catalog import GPUS, MODELS, GiB
from tpserve.plan import gib

SHAPES = ("llama-2-7b", "llama-2-70b", "llama-3.1-8b", "qwen2.5-72b")
KINDS = ("a10", "a100-40gb", "h100", "h200")
# Layouts within one node of 8 GPUs.
LAYOUTS = ((1, 1), (2, 1), (4, 1), (8, 1), (1, 2), (2, 2), (4, 2))
CONTEXT = 4096
# Llama-2-70b with a wider MLP: its fp8 weights fit what vLLM may use of an H100 at utilization 0.99, but the
# module being quantized at load does not fit beside them.
WIDE_70B = {**MODELS["llama-2-70b"].config, "intermediate_size": 35_712}


def chart_args(config: dict, kind: str, tensor: int, pipeline: int, profile: str,
               utilization: float = plan.GPU_MEMORY_UTILIZATION, context: int = CONTEXT) -> tuple[str, ...]:
    """The chart values that describe CONFIG on GPUs of KIND, as `tpserve plan` recommends them, with the
    parameters to the last digit. The name is outside the chart's catalog, which holds them to two decimals."""
    size = plan.model_size(config)
    values = {"model.name": "example/shape", "model.attentionHeads": size.attention_heads, "model.kvHeads": size.kv_heads,
              "model.layers": size.layers, "model.parameterBillions": repr(size.parameters / 1e9),
              "model.hiddenSize": size.hidden_size, "model.vocabSize": size.vocab_size,
              "gpu.product": GPUS[kind].products[0], "gpu.memoryGiB": f"{GPUS[kind].memory_bytes / GiB:.1f}",
              "gpu.perNode": 8, "parallelism.tensor": tensor, "parallelism.pipeline": pipeline,
              "vllm.maxModelLen": context, "vllm.settings": profile, "vllm.gpuMemoryUtilization": utilization}
    return tuple(part for name, value in values.items() for part in ("--set", f"{name}={value}"))


def plans_answer(config: dict, kind: str, tensor: int, pipeline: int, profile: str,
                 utilization: float = plan.GPU_MEMORY_UTILIZATION, context: int = CONTEXT) -> str | None:
    """What the chart must say for these values by plan.py: None when the layout fits, else the reason with
    plan's figures and the layouts that would fit."""
    dtype, kv_dtype = settings.sized_dtypes(settings.choose(profile, None, GPUS[kind].memory_bytes).flags)
    options = {"context": context, "dtype": dtype, "kv_dtype": kv_dtype, "utilization": utilization}
    item = plan.layout(config, GPUS[kind], tensor, pipeline, **options)
    if item.fits:
        return None
    usable = int(GPUS[kind].memory_bytes * utilization)
    weights = gib(item.weight_bytes_per_gpu)
    if item.reason.startswith("the weights need"):
        reason = f"the weights need {weights} per GPU, more than the {gib(usable)} vLLM may use of each"
    elif item.reason.startswith("the fp8 weights fit"):
        reason = f"the fp8 weights fit ({weights} per GPU) but loading peaks at {gib(item.load_peak_bytes_per_gpu)}"
    elif item.reason.startswith("the weights ("):
        reason = f"the weights ({weights} per GPU) and 2.00 GiB for activations fill the {gib(usable)}"
    else:
        reason = f"the KV cache holds {item.kv_cache_tokens} tokens per GPU, less than one vllm.maxModelLen={context}"
    whole = plan.make_plan(plan.ModelSource("m", "test", config), GPUS[kind], **options)
    fitting = [layout.tensor_parallel for layout in whole.layouts if layout.fits and layout.pipeline_parallel == 1]
    if fitting:
        sizes = str(fitting[0]) if len(fitting) == 1 else f"{', '.join(map(str, fitting[:-1]))} or {fitting[-1]}"
        alternatives = f"layouts that fit: parallelism.tensor={sizes} with parallelism.pipeline=1"
    else:
        least = whole.minimum
        alternatives = (f"set multiNode.enabled=true with parallelism.tensor={least.tensor_parallel} and "
                        f"parallelism.pipeline={least.pipeline_parallel} ({least.gpus} GPUs over {least.nodes} "
                        "nodes)")
    return f"{reason}…{alternatives}"


def assert_chart_gives_plans_answer(tools, config: dict, kind: str, tensor: int, pipeline: int, profile: str,
                                    utilization: float = plan.GPU_MEMORY_UTILIZATION, context: int = CONTEXT) -> None:
    done = tools.helm_run("template", "llama70b", str(CHART),
                          *chart_args(config, kind, tensor, pipeline, profile, utilization, context))
    answer = plans_answer(config, kind, tensor, pipeline, profile, utilization, context)
    if answer is None:
        assert done.returncode == 0, done.stderr
        return
    (line,) = [line for line in problems(done.stderr) if "does not fit the model" in line]
    reason, alternatives = answer.split("…")
    assert f"on gpu.product={GPUS[kind].products[0]} ({gib(GPUS[kind].memory_bytes)} each): {reason}" in line
    assert line.endswith(alternatives)


@pytest.mark.parametrize("profile", ["vllm", "fp8"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_the_chart_refuses_exactly_the_layouts_tpserve_plan_refuses_with_its_numbers(tools, shape, kind, profile):
    for tensor, pipeline in LAYOUTS:
        assert_chart_gives_plans_answer(tools, dict(MODELS[shape].config), kind, tensor, pipeline, profile)


def test_fp8_weights_whose_load_peak_does_not_fit_are_refused_for_that_reason_as_plan_does(tools):
    assert plans_answer(WIDE_70B, "h100", 1, 1, "fp8", 0.99).startswith("the fp8 weights fit")
    assert_chart_gives_plans_answer(tools, WIDE_70B, "h100", 1, 1, "fp8", 0.99)


@pytest.mark.parametrize("profile", ["vllm", "fp8"])
def test_a_context_the_kv_cache_cannot_hold_is_refused_as_plan_refuses_it(tools, profile):
    llama_3_1_70b = dict(MODELS["llama-3.1-70b"].config)
    assert plans_answer(llama_3_1_70b, "a100-40gb", 4, 1, "vllm", context=32_768).startswith("the KV cache holds")
    assert_chart_gives_plans_answer(tools, llama_3_1_70b, "a100-40gb", 4, 1, profile, context=32_768)


def test_a_70b_on_four_24_gb_gpus_is_refused_with_the_numbers_and_the_layout_that_fits(render_error):
    assert problems(render_error("--set", "gpu.product=NVIDIA-A10G")) == [
        ("parallelism.tensor=4 × parallelism.pipeline=1 does not fit the model (model.parameterBillions=68.98, "
        "16-bit weights and a 16-bit KV cache) on gpu.product=NVIDIA-A10G (22.19 GiB each): the weights need "
        "32.12 GiB per GPU, more than the 20.41 GiB vLLM may use of each (0.92 × 22.19 GiB); layouts that fit: "
        "parallelism.tensor=8 with parallelism.pipeline=1")]


def test_with_four_gpus_per_node_the_fix_is_pipeline_stages_over_nodes(render_error):
    (line,) = problems(render_error("--set", "gpu.product=NVIDIA-L4", "--set", "gpu.perNode=4"))
    assert line.endswith("no layout on one node of gpu.perNode=4 fits: set multiNode.enabled=true with "
                         "parallelism.tensor=4 and parallelism.pipeline=2 (8 GPUs over 2 nodes)")


def test_the_fp8_profile_fits_llama_2_70b_on_one_h200_where_16_bits_do_not(render_text, render_error):
    one_h200 = ("--set", "gpu.product=NVIDIA-H200", "--set", "parallelism.tensor=1", "--set", "vllm.maxModelLen=4096")
    (line,) = problems(render_error(*one_h200))
    assert "16-bit weights and a 16-bit KV cache" in line and "leaving nothing for the KV cache" in line
    assert render_text("llama70b", *one_h200, "--set", "vllm.settings=fp8", "--set", "gpu.memoryGiB=140.4")


def test_a_flag_in_extra_args_sizes_the_bytes_as_the_server_gets_them(render_text, render_error):
    one_h200 = ("--set", "gpu.product=NVIDIA-H200", "--set", "parallelism.tensor=1")
    assert render_text("llama70b", *one_h200, "--set", "vllm.extraArgs.quantization=fp8")
    (line,) = problems(render_error("--set", "gpu.product=NVIDIA-A10G", "--set", "parallelism.tensor=1",
                                    "--set", "vllm.settings=fp8", "--set", "gpu.memoryGiB=22.2",
                                    "--set", "vllm.extraArgs.kv-cache-dtype=auto"))
    assert "(model.parameterBillions=68.98, fp8 weights quantized at load and a 16-bit KV cache)" in line


@pytest.mark.parametrize("args", [
    ("--set", "gpu.product=NVIDIA-RTX-4090"),  # a card the chart has no memory figure for
    ("--set", "gpu.product="),
    ("-f", str(CHART / "values-cpu.yaml"), "--set", "gpu.product=NVIDIA-A10G"),  # no GPU requested
    ("--set", "gpu.product=NVIDIA-A10G", "--set", "model.hiddenSize=0"),
])
def test_where_the_chart_cannot_know_the_memory_or_the_shape_it_skips_the_check(render_text, args):
    assert render_text("llama70b", "--set", "parallelism.tensor=1", *args)


def test_shape_values_that_cannot_hold_the_parameters_are_refused_naming_them(render_error):
    """A 7b's parameter count with the default 70b's hidden size: stale defaults, not a model (under a name outside
    the catalog, which would otherwise refuse them first)."""
    assert problems(render_error("-f", str(CHART / "ci" / "7b-tp1-values.yaml"), "--set", "model.hiddenSize=8192",
                                 "--set", "model.name=example/shape",
                                 "--set", "gpu.product=NVIDIA-H100-80GB-HBM3")) == [
        ("model.parameterBillions=6.74 is too few parameters for model.hiddenSize=8192, model.vocabSize=32000, "
        "model.attentionHeads=32 and model.layers=32 (their attention and embeddings alone take more): set all "
        "of them from the model's config.json (`tpserve plan MODEL --gpu KIND` prints them)")]


def test_every_gpu_product_of_the_catalog_gives_the_chart_its_memory(render_error):
    for kind in GPUS.values():
        for product in kind.products:
            (line,) = problems(render_error("--set", f"gpu.product={product}", "--set", "parallelism.tensor=1",
                                            "--set", "model.name=example/big", "--set", "model.parameterBillions=1000"))
            assert f"on gpu.product={product} ({gib(kind.memory_bytes)} each): " in line
