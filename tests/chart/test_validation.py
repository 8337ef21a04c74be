"""Values that cannot work fail `helm install` before anything is applied, with messages that name the fix.

vllm.validateValues collects every problem and fails once; values.schema.json rejects unknown keys and
wrong types. Each test asserts the exact line a user sees.
"""

from __future__ import annotations

import json
import re

import pytest
from kubernetes.utils import parse_quantity

from tests.chart.conftest import CHART, init_container, load_tool
from tpserve.fetch.preflight import valid_tensor_parallel_sizes

TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz01234567"
HEADER = "the values of chart vllm have {} problem(s); nothing was applied:\n"


def problems(stderr: str) -> list[str]:
    """The problem lines of vllm.validateValues' failure."""
    return [line[2:] for line in stderr.splitlines() if line.startswith("- ")]


def test_tp_that_does_not_divide_the_attention_heads_is_rejected_with_the_sizes_that_would(render_error):
    stderr = render_error("--set", "parallelism.tensor=3")
    assert problems(stderr) == [
        ("parallelism.tensor=3 cannot split model.attentionHeads=64 and model.kvHeads=8 evenly: "
        "use one of 1, 2, 4, 8, 16, 32, 64")]
    assert HEADER.format(1) in stderr


def test_without_kv_heads_the_attention_heads_alone_decide(render_error):
    assert problems(render_error("--set", "parallelism.tensor=3", "--set", "model.kvHeads=0")) == [
        "parallelism.tensor=3 cannot split model.attentionHeads=64 evenly: use one of 1, 2, 4, 8, 16, 32, 64"]


def test_kv_heads_rule_out_sizes_that_divide_the_attention_heads(render_error):
    stderr = render_error("--set", "model.name=example/shape", "--set", "model.attentionHeads=40", "--set", "model.kvHeads=8",
                          "--set", "parallelism.tensor=5", "--set", "gpu.perNode=8")
    sizes = ", ".join(map(str, valid_tensor_parallel_sizes(40, 8)))
    assert sizes == "1, 2, 4, 8, 40"
    assert problems(stderr) == [
        f"parallelism.tensor=5 cannot split model.attentionHeads=40 and model.kvHeads=8 evenly: use one of {sizes}"]


@pytest.mark.parametrize("heads, kv", [(64, 8), (32, 32), (40, 8), (28, 4), (12, 12)])
def test_the_chart_accepts_exactly_the_sizes_tpserve_preflight_accepts(render_text, render_error, heads, kv):
    valid = valid_tensor_parallel_sizes(heads, kv, limit=8)
    for tensor in range(1, 9):
        args = ("--set", "model.name=example/shape", "--set", f"model.attentionHeads={heads}", "--set", f"model.kvHeads={kv}",
                "--set", f"parallelism.tensor={tensor}", "--set", "resources.memory=200Gi")
        if tensor in valid:
            assert render_text("r", *args)
        else:
            assert "cannot split" in problems(render_error(*args))[0]


def test_tp_times_pp_above_the_gpus_of_a_node_is_rejected_naming_multi_node_as_the_fix(render_error, render):
    assert problems(render_error("--set", "parallelism.pipeline=4")) == [
        ("parallelism.tensor × parallelism.pipeline = 4 × 4 = 16 GPUs, more than gpu.perNode=8: one pod runs on "
        "one node, so spread the server over 2 nodes with multiNode.enabled=true and multiNode.nodes=2 "
        "(docs/scale-out.md), lower the parallelism, or raise gpu.perNode if your nodes have more GPUs")]
    assert problems(render_error("--set", "gpu.perNode=2")) == [
        ("parallelism.tensor × parallelism.pipeline = 4 × 1 = 4 GPUs, more than gpu.perNode=2: one pod runs on "
        "one node, so spread the server over 2 nodes with multiNode.enabled=true and multiNode.nodes=2 "
        "(docs/scale-out.md), lower the parallelism, or raise gpu.perNode if your nodes have more GPUs")]
    # The fix the message names renders.
    assert render("r", "--set", "parallelism.pipeline=4", "--set", "multiNode.enabled=true",
                  "--set", "multiNode.nodes=2", "--set", "image.tpserve=false")["LeaderWorkerSet"]


def test_the_nodes_a_too_big_layout_is_told_to_use_split_its_tensor_groups_evenly(render_error):
    # 12 GPUs on nodes of 6: 2 pods of 6 would split a tensor group of 4, so 3 pods of 4.
    assert "spread the server over 3 nodes with multiNode.enabled=true and multiNode.nodes=3" in problems(
        render_error("--set", "parallelism.tensor=4", "--set", "parallelism.pipeline=3", "--set", "gpu.perNode=6"))[0]
    assert "spread the server over 3 nodes with multiNode.enabled=true and multiNode.nodes=3" in problems(
        render_error("--set", "parallelism.tensor=2", "--set", "parallelism.pipeline=6", "--set", "gpu.perNode=5"))[0]


def test_the_same_problem_twice_is_listed_once(render_error):
    stderr = render_error("--set", "securityContext.capabilities.add={NET_RAW,NET_RAW}")
    assert len(problems(stderr)) == len(set(problems(stderr))) == 1
    assert HEADER.format(1) in stderr


@pytest.mark.parametrize("set_arg, path", [
    (f"model.servedName={TOKEN}", "model.servedName"),
    (f"vllm.extraArgs.some-flag={TOKEN}", "vllm.extraArgs.some-flag"),
    (f"tolerations[0].value={TOKEN}", "tolerations[0].value"),
    (f"podAnnotations.token={TOKEN}", "podAnnotations.token"),
    (f"hfToken.secretName={TOKEN.lower()}", "hfToken.secretName"),
])
def test_a_literal_token_anywhere_in_values_is_rejected_without_echoing_it(render_error, set_arg, path):
    stderr = render_error("--set", set_arg)
    assert problems(stderr) == [
        (f"{path} holds what looks like a Hugging Face token: values are stored in the release and shown by "
        "`helm get values`; put the token in a Secret and name it in hfToken.secretName")]
    assert TOKEN not in stderr and TOKEN.lower() not in stderr


def test_a_token_in_extra_env_is_refused_twice_as_a_literal_and_as_a_secret_variable(render_error):
    assert problems(render_error("--set", f"vllm.extraEnv.HF_TOKEN={TOKEN}")) == [
        ("vllm.extraEnv.HF_TOKEN holds what looks like a Hugging Face token: values are stored in the release and "
        "shown by `helm get values`; put the token in a Secret and name it in hfToken.secretName"),
        "vllm.extraEnv.HF_TOKEN: secrets come only from a Secret the chart references; set hfToken.secretName"]


@pytest.mark.parametrize("set_arg", ["model.name=", "model.name=null"])
def test_a_missing_model_name_is_rejected(render_error, set_arg):
    assert problems(render_error("--set", set_arg)) == [
        ("model.name is empty: set it to the Hugging Face repo id to serve, "
        "e.g. --set model.name=meta-llama/Llama-2-7b-chat-hf")]


def test_a_model_name_that_is_no_repo_id_is_rejected(render_error):
    assert problems(render_error("--set", "model.name=/models/llama")) == [
        ('model.name "/models/llama" is not a Hugging Face repo id: expected ORG/NAME, '
        "e.g. meta-llama/Llama-2-7b-chat-hf")]


def test_a_moving_revision_needs_an_explicit_opt_in(render_error, render):
    assert problems(render_error("--set", "model.revision=main")) == [
        ('model.revision "main" is a branch or tag, so a restart could serve other weights: pin a 40-hex commit '
        "sha, or set model.allowMovingRevision=true to serve whatever it points to at each start")]
    assert render("r", "--set", "model.revision=main", "--set", "model.allowMovingRevision=true")


def test_fetch_offline_needs_a_pinned_revision(render_error):
    assert problems(render_error("--set", "fetch.offline=true", "--set", "model.revision=main",
                                 "--set", "model.allowMovingRevision=true")) == [
        ("fetch.offline=true cannot resolve a branch or tag without the hub: pin model.revision to the 40-hex "
         "commit the claim was filled with and set model.allowMovingRevision=false")]


def test_every_problem_is_reported_in_one_failure(render_error):
    stderr = render_error("--set", "model.name=", "--set", "parallelism.tensor=3", "--set", "parallelism.pipeline=3",
                          "--set", f"model.servedName={TOKEN}")
    assert HEADER.format(4) in stderr
    assert stderr.count("execution error") == 1
    assert [line.split(" ", 1)[0] for line in problems(stderr)] == [
        "model.servedName", "model.name", "parallelism.tensor=3", "parallelism.tensor"]


@pytest.mark.parametrize("set_args, message", [
    (("vllm.extraArgs.tensor-parallel-size=2",), ("vllm.extraArgs.tensor-parallel-size is set by the chart: "
                                                 "use parallelism.tensor")),
    (("vllm.extraArgs.model=x",), "vllm.extraArgs.model is set by the chart: use model.name"),
    (("vllm.extraArgs.api-key=secret",),
     ("vllm.extraArgs.api-key would put the key on the command line, visible in the pod spec and process "
     "listings: put it in a Secret and set apiKey.secretName")),
    (("vllm.extraArgs.--enforce-eager=true",),
     "vllm.extraArgs.--enforce-eager: write flags without leading dashes, e.g. enforce-eager: true"),
    (("vllm.extraArgs.compilation-config.level=3",),
     ('vllm.extraArgs.compilation-config and vllm.allreduceFusion=false both set --compilation-config: put '
     '"pass_config": {"fuse_allreduce_rms": false} inside yours and set vllm.allreduceFusion=true')),
    (("vllm.extraEnv.VLLM_API_KEY=x",),
     "vllm.extraEnv.VLLM_API_KEY: secrets come only from a Secret the chart references; set apiKey.secretName"),
    (("fetch.extraEnv.HF_HOME=/x",), "fetch.extraEnv.HF_HOME is set by the chart; remove it"),
    (("vllm.extraEnv.TPSERVE_MODEL=x",), "vllm.extraEnv.TPSERVE_MODEL is set by the chart; remove it"),
    (("shm.sizeLimit=96Gi",), ("shm.sizeLimit=96Gi does not fit in resources.memory=96Gi: /dev/shm is RAM charged "
                              "to the pod, raise resources.memory or lower shm.sizeLimit")),
    (("probes.readinessPath=/v1/models", "apiKey.secretName=keys"),
     ("probes.readinessPath=/v1/models answers 401 once apiKey.secretName is set, so the pod would never be "
     "ready: use /health")),
    (("replicaCount=2",), ("replicaCount=2 needs cache.accessMode=ReadWriteMany: every replica mounts the same "
                          "cache claim, which ReadWriteOnce lets only one node mount; or set cache.existingClaim to a "
                          "claim they can all mount, or cache.allowReadWriteOnceReplicas=true to run every replica "
                          "on one node")),
    (("replicaCount=2", "cache.accessMode=ReadWriteOncePod", "cache.allowReadWriteOnceReplicas=true"),
     ("replicaCount=2 cannot share one cache claim of cache.accessMode=ReadWriteOncePod, which only one pod may "
      "mount: use ReadWriteMany, or cache.existingClaim")),
    (("gpu.product=NVIDIA-A100-SXM4-80GB", "nodeSelector.nvidia\\.com/gpu\\.product=NVIDIA-H100-80GB-HBM3"),
     ("gpu.product=NVIDIA-A100-SXM4-80GB contradicts nodeSelector nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3: "
     "set only one")),
    (("podLabels.app\\.kubernetes\\.io/instance=x",),
     ("podLabels.app.kubernetes.io/instance would change the labels the Service and Deployment select pods by: "
     "remove it")),
    (("apiKey.secretName=Keys_1",), ('apiKey.secretName "Keys_1" is not a Secret name (lowercase letters, '
                                    "digits, '-' and '.')")),
])
def test_settings_that_fight_the_chart_or_each_other_are_rejected(render_error, set_args, message):
    args = [arg for set_arg in set_args for arg in ("--set", set_arg)]
    assert problems(render_error(*args)) == [message]


def test_a_small_shm_in_enough_memory_and_fusion_on_with_own_compilation_config_are_fine(render):
    assert render("r", "--set", "shm.sizeLimit=1Ti", "--set", "resources.memory=1.5Ti")
    assert render("r", "--set", "vllm.allreduceFusion=true", "--set", "vllm.extraArgs.compilation-config.level=3")


@pytest.mark.parametrize("set_arg, message", [
    ("modle.name=x", "- at '': additional properties 'modle' not allowed"),
    ("model.nmae=x", "- at '/model': additional properties 'nmae' not allowed"),
    ("parallelism.tensorParallel=2", "- at '/parallelism': additional properties 'tensorParallel' not allowed"),
    ("resources.gpu=1", "- at '/resources': additional properties 'gpu' not allowed"),
    ("tolerations[0].efect=NoSchedule", "- at '/tolerations/0': additional properties 'efect' not allowed"),
    ("cache.storageclass=fast", "- at '/cache': additional properties 'storageclass' not allowed"),
])
def test_an_unknown_value_key_fails_with_the_schema_error(render_error, set_arg, message):
    stderr = render_error("--set", set_arg)
    assert "values don't meet the specifications of the schema(s)" in stderr
    assert message in stderr


@pytest.mark.parametrize("set_arg, message", [
    ("image.tag=latest", "- at '/image/tag': 'not' failed"),
    ("parallelism.tensor=0", "- at '/parallelism/tensor': minimum: got 0, want 1"),
    ("probes.readinessPath=/", "- at '/probes/readinessPath': value must be one of '/health', '/v1/models'"),
    ("startup.maxLoadSeconds=10", "- at '/startup/maxLoadSeconds': minimum: got 10, want 60"),
])
def test_values_of_the_wrong_shape_fail_with_the_schema_error(render_error, set_arg, message):
    assert message in render_error("--set", set_arg)


# Each size value: its minimum (docs/chart.md says why) and the example its message gives (the default).
SIZES = {"cache.size": ("1Gi", "300Gi"), "shm.sizeLimit": ("512Mi", "16Gi"), "scratch.sizeLimit": ("1Gi", "20Gi"),
         "resources.memory": ("4Gi", "96Gi"), "fetch.resources.memory": ("1Gi", "4Gi")}
UNIT = re.compile(r"[0-9]+(\.[0-9]+)?(k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)")


def size_message(name: str, value: str) -> str:
    minimum, example = SIZES[name]
    return (f'{name} "{value}" is not a size of at least {minimum}: write a number with a binary (Mi, Gi, Ti) or '
            f"decimal (M, G, T) unit, e.g. {name}={example}; a number without a unit means bytes")


def size_is_accepted(name: str, value: str) -> bool:
    """The Python rule: a unit, and at least the minimum, as Kubernetes reads the quantity."""
    return bool(UNIT.fullmatch(value)) and parse_quantity(value) >= parse_quantity(SIZES[name][0])


def size_args(name: str, value: str) -> tuple[str, ...]:
    """--set-string NAME=VALUE, with the memory big enough for any /dev/shm (or a small shm for a small memory)."""
    others = ("--set", "shm.sizeLimit=512Mi") if name == "resources.memory" else ("--set", "resources.memory=2Ti")
    return ("--set-string", f"{name}={value}", *others)


@pytest.mark.parametrize("name, value", [
    ("cache.size", "0Gi"), ("cache.size", "500Mi"), ("cache.size", "1G"), ("cache.size", "0.5Gi"),
    ("shm.sizeLimit", "64Mi"), ("shm.sizeLimit", "0Mi"), ("scratch.sizeLimit", "100Mi"),
    ("resources.memory", "2Gi"), ("resources.memory", "3900M"), ("fetch.resources.memory", "512Mi"),
])
def test_a_size_below_its_minimum_is_rejected_naming_the_value_and_an_example(render_error, name, value):
    assert problems(render_error(*size_args(name, value))) == [size_message(name, value)]


@pytest.mark.parametrize("name, value", [
    ("cache.size", "0"), ("cache.size", "300"), ("cache.size", "300gi"), ("shm.sizeLimit", "16"),
    ("scratch.sizeLimit", "20GB"), ("resources.memory", "96000m"), ("fetch.resources.memory", "4"),
])
def test_a_size_without_a_unit_is_refused_with_the_human_line_not_the_schemas_regex(render_error, name, value):
    stderr = render_error(*size_args(name, value))
    assert "does not match pattern" not in stderr
    assert problems(stderr) == [size_message(name, value)]


@pytest.mark.parametrize("name, value", [("cache.size", "300"), ("shm.sizeLimit", "16"), ("resources.memory", "1.5")])
def test_a_size_given_as_a_number_by_set_gets_the_same_human_line(render_error, name, value):
    others = ("--set", "shm.sizeLimit=512Mi") if name == "resources.memory" else ("--set", "resources.memory=2Ti")
    assert problems(render_error("--set", f"{name}={value}", *others)) == [size_message(name, value)]


def test_the_load_tests_memory_is_checked_as_a_size_too(render_error):
    assert problems(render_error("--set", "loadtest.resources.memory=1024")) == [
        ('loadtest.resources.memory "1024" is not a size of at least 256Mi: write a number with a binary (Mi, Gi, Ti) '
         "or decimal (M, G, T) unit, e.g. loadtest.resources.memory=1Gi; a number without a unit means bytes")]


@pytest.mark.parametrize("digest", ["sha256:abc", "abc", "sha256:" + "A" * 64, "sha512:" + "a" * 128])
def test_an_image_digest_that_is_no_sha256_is_refused_with_a_human_line(render_error, digest):
    stderr = render_error("--set", f"image.digest={digest}")
    assert "does not match pattern" not in stderr
    assert problems(stderr) == [(
        f"image.digest={digest} is not an image digest: write sha256: and the 64 lowercase hex digits the registry "
        "reports (e.g. `docker buildx imagetools inspect IMAGE:TAG`), or leave it empty to pin by tag only")]


@pytest.mark.parametrize("name", sorted(SIZES))
def test_the_chart_accepts_exactly_the_sizes_kubernetes_reads_as_at_least_the_minimum(render_text, render_error, name):
    minimum = parse_quantity(SIZES[name][0])
    for value in (SIZES[name][0], f"{minimum // 2**20 - 1}Mi", f"{minimum // 10**6}M", f"{minimum // 10**6 + 1}M",
                  "1.5Ti", "1073741824"):
        args = ("--skip-schema-validation", *size_args(name, value))
        if size_is_accepted(name, value):
            assert render_text("r", *args), value
        else:
            assert problems(render_error(*args)) == [size_message(name, value)], value


def test_sizes_with_a_binary_or_decimal_unit_at_or_above_their_minimum_render(render):
    deployment = render("r", "--set", "cache.size=1Gi", "--set", "shm.sizeLimit=512Mi", "--set",
                        "scratch.sizeLimit=1Gi", "--set", "resources.memory=4Gi", "--set",
                        "fetch.resources.memory=1Gi")["Deployment"]
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "4Gi"
    assert render("r", "--set", "cache.size=2T", "--set", "resources.memory=100G")["PersistentVolumeClaim"][
        "spec"]["resources"]["requests"]["storage"] == "2T"


def test_a_catalog_model_with_another_models_shape_values_is_refused_at_install_with_its_own(render_error):
    assert ("model.name=meta-llama/Llama-2-7b-chat-hf is llama-2-7b in the chart's catalog, whose config.json "
            "the model values contradict: model.attentionHeads=64 (catalog: 32), model.kvHeads=8 (catalog: 32), "
            "model.layers=80 (catalog: 32), model.parameterBillions=68.98 (catalog: 6.74), model.hiddenSize=8192 "
            "(catalog: 4096): set --set model.attentionHeads=32 --set model.kvHeads=32 --set model.layers=32 --set "
            "model.parameterBillions=6.74 --set model.hiddenSize=4096 --set model.vocabSize=32000") in problems(
        render_error("--set", "model.name=meta-llama/Llama-2-7b-chat-hf", "--set", "parallelism.tensor=1"))


def test_a_catalog_model_with_its_own_values_or_zeros_renders_and_the_init_container_checks_the_rest(render):
    seven_b = ("--set", "model.name=meta-llama/Llama-2-7b-chat-hf", "--set", "parallelism.tensor=1",
               "--set", "model.attentionHeads=32", "--set", "model.kvHeads=0", "--set", "model.layers=0",
               "--set", "model.parameterBillions=6.74", "--set", "model.hiddenSize=0", "--set", "model.vocabSize=0")
    args = init_container(render("r", *seven_b)["Deployment"])["args"]
    declared = [args[index + 1] for index, arg in enumerate(args) if arg == "--declared"]
    assert declared == ["model.attentionHeads=32", "model.parameterBillions=6.74"]


def test_the_charts_model_catalog_is_tpserves(tools):
    sync = load_tool("sync_chart_files")
    assert (CHART / "files" / "models.json").read_text() == sync.models_json()
    catalog = json.loads(sync.models_json())
    assert catalog["meta-llama/llama-2-70b-chat-hf"] == {"name": "llama-2-70b", "attentionHeads": 64, "kvHeads": 8,
                                                         "layers": 80, "parameterBillions": 68.98,
                                                         "hiddenSize": 8192, "vocabSize": 32000}
