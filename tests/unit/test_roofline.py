"""Each run against its card's roofline: the committed H200 runs worked out by hand from their records and the
model's config.json numbers, the datasheet table, measured limits, and runs that get none and say why."""

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from tests.conftest import REPO, tpserve
from tpserve import catalog, gpuspecs, roofline
from tpserve.fetch.modelconfig import parameter_count
from tpserve.report import layout_key, load_runs, roofline_markdown, rows
from tpserve.workload import runrecord

TUNE = REPO / "results/20261201b-h200x1-tune/call3/tune-cli/7b-tp1-tpserve-tune"
DEFAULTS = TUNE / "llama-2-7b-tp1x1-run1.json"
FP8 = TUNE / "llama-2-7b-tp1x1-kv-cache-dtype=fp8-quantization=fp8-run1.json"
CPU_DEMO = REPO / "results/20261126T092807Z-demo.json"

LLAMA_7B = catalog.MODELS["llama-2-7b"].config
HIDDEN, LAYERS, VOCAB = LLAMA_7B["hidden_size"], LLAMA_7B["num_hidden_layers"], LLAMA_7B["vocab_size"]
PARAMETERS = parameter_count(dict(LLAMA_7B))
EMBEDDING = VOCAB * HIDDEN  # the embedding table, and an lm_head of the same size (not tied)
LAYER_PARAMETERS = PARAMETERS - 2 * EMBEDDING
NORMS = (2 * LAYERS + 1) * HIDDEN  # RMSNorm weights: 16-bit in fp8 checkpoints too
KV_16BIT = 2 * LAYERS * HIDDEN * 2  # K and V, 32 heads × 128 = hidden, 2 bytes
H200 = gpuspecs.spec_for("NVIDIA H200")


def by_hand(record, weight_bytes: float, kv_bytes: float, tflops: float) -> tuple[float, float]:
    """(decode, prefill) fraction of one H200's datasheet: the module docstring's arithmetic, spelled out."""
    m = record.metrics
    batch = m.request_throughput * (m.mean_e2el_ms - m.mean_ttft_ms) / 1000
    prompt, output = m.total_input_tokens / m.completed, m.total_output_tokens / m.completed
    context = prompt + output / 2
    step_s = (weight_bytes + batch * context * kv_bytes) / (H200.memory_gb_s * 1e9)
    per_prompt_token_s = ((2 * LAYER_PARAMETERS + 2 * EMBEDDING / prompt) / (tflops * 1e12)
                          + 4 * (prompt + 1) / 2 * HIDDEN * LAYERS / (H200.bf16_tflops * 1e12))
    return m.output_throughput / (batch / step_s), m.total_input_tokens / m.duration * per_prompt_token_s


def test_vllms_defaults_on_one_h200_are_held_against_the_bytes_of_a_decode_step():
    record = runrecord.load(DEFAULTS)
    result = roofline.roofline(record)
    decode, prefill = by_hand(record, 2 * (PARAMETERS - EMBEDDING), KV_16BIT, H200.bf16_tflops)
    assert result.served.dtypes == "bf16 / 16-bit / bf16"
    assert result.datasheet.decode_limit == "memory"
    assert result.decode_fraction(result.datasheet) == pytest.approx(decode, rel=1e-12)
    assert result.prefill_fraction(result.datasheet) == pytest.approx(prefill, rel=1e-12)
    assert result.measured is None and result.decode_fraction(result.measured) is None


def test_the_fp8_profile_halves_weight_and_kv_bytes_and_doubles_tensor_throughput():
    record = runrecord.load(FP8)
    result = roofline.roofline(record)
    fp8_weights = LAYER_PARAMETERS - NORMS + 2 * NORMS + 2 * EMBEDDING  # linear 1 byte; norms, lm_head 2
    decode, prefill = by_hand(record, fp8_weights, KV_16BIT / 2, H200.fp8_tflops)
    assert result.served.dtypes == "fp8 / fp8 / fp8"
    assert result.decode_fraction(result.datasheet) == pytest.approx(decode, rel=1e-12)
    assert result.prefill_fraction(result.datasheet) == pytest.approx(prefill, rel=1e-12)


def test_measured_limits_give_a_second_fraction_scaled_by_what_the_card_achieved(tmp_path):
    limits = tmp_path / "gpu-limits.json"
    limits.write_text(json.dumps({"device": "NVIDIA H200", "memory_gb_s": 4000.0, "matmul": {
        "bf16": {"available": True, "tflops": 700.0}, "fp8": {"available": False, "reason": "not here"}}}))
    measured = roofline.measured_limits([limits])
    defaults = roofline.roofline(runrecord.load(DEFAULTS), measured)
    assert defaults.measured_source == str(limits)
    assert defaults.decode_fraction(defaults.measured) == pytest.approx(
        defaults.decode_fraction(defaults.datasheet) * H200.memory_gb_s / 4000, rel=1e-12)
    assert defaults.prefill_fraction(defaults.measured) == pytest.approx(
        defaults.prefill_fraction(defaults.datasheet) * H200.bf16_tflops / 700, rel=1e-12)
    fp8 = roofline.roofline(runrecord.load(FP8), measured)
    assert fp8.measured is None and fp8.decode_fraction(fp8.datasheet) is not None


def test_tensor_parallel_adds_the_gpus_bandwidth_and_tensor_throughput():
    record = runrecord.load(DEFAULTS)
    one = roofline.roofline(record)
    two = roofline.roofline(replace(record, layout=replace(record.layout, tensor_parallel_size=2)))
    assert two.datasheet.decode_tok_s == pytest.approx(2 * one.datasheet.decode_tok_s, rel=1e-12)
    assert two.datasheet.prefill_tok_s == pytest.approx(2 * one.datasheet.prefill_tok_s, rel=1e-12)


def test_a_run_served_on_cpu_gets_no_roofline_and_says_why():
    record = runrecord.load(CPU_DEMO)
    assert record.layout.device_kind.startswith("CPU")
    assert roofline.roofline(record).reason == "served on a CPU, which has no datasheet figures in tpserve.gpuspecs"
    runs = load_runs([CPU_DEMO])
    text = roofline_markdown(runs, rows(runs), {})
    assert "decode bound" not in text
    assert "on a CPU, which has no datasheet figures in tpserve.gpuspecs." in text


def test_a_card_without_confirmed_datasheet_figures_gets_no_roofline_naming_it():
    record = runrecord.load(DEFAULTS)
    record = replace(record, layout=replace(record.layout, device_kind="NVIDIA A10G"))
    assert roofline.roofline(record).reason == "NVIDIA A10G is a card that has no datasheet figures in tpserve.gpuspecs"


def test_a_model_tpserve_cannot_size_gets_no_roofline():
    record = runrecord.load(DEFAULTS)
    record = replace(record, workload=replace(record.workload, model="m"), layout=replace(record.layout, model="/x/m"))
    assert "cannot find the config.json of /x/m" in roofline.roofline(record).reason


@pytest.mark.parametrize(("name", "label"), [("NVIDIA H100 80GB HBM3", "H100 SXM 80GB"),
                                             ("NVIDIA H100 PCIe", "H100 PCIe 80GB"),
                                             ("nvidia  h200", "H200 SXM 141GB"), ("NVIDIA L4", "L4"),
                                             ("NVIDIA L40S", "L40S"), ("NVIDIA A100-SXM4-40GB", "A100 SXM 40GB")])
def test_cards_are_found_by_the_name_the_driver_gives_them(name, label):
    assert gpuspecs.spec_for(name).label == label


def test_every_card_names_its_source_and_only_ampere_lacks_fp8():
    for spec in gpuspecs.SPECS:
        assert spec.source and spec.memory_gb_s > 0 and spec.bf16_tflops > 0
        assert (spec.fp8_tflops is None) == spec.label.startswith("A100")
        assert not spec.kind or spec.kind in catalog.GPUS


def test_the_report_holds_the_committed_tune_runs_against_the_h200(tmp_path):
    done = tpserve("report", str(TUNE), "--markdown", str(tmp_path / "report.md"))
    assert done.returncode == 0, done.stderr
    runs = load_runs([TUNE])
    table = rows(runs)
    assert done.stdout.count("(memory) |") == len(table) == 5
    for path in (DEFAULTS, FP8):
        record = runrecord.load(path)
        result = roofline.roofline(record)
        row = next(row for row in table if row.key == layout_key(record))
        line = next(line for line in done.stdout.splitlines() if f"| {result.served.dtypes} |" in line
                    and (f"| {row.settings_beside(table[0])} |" in line))
        assert f"| {result.decode_fraction(result.datasheet):.1%} | — |" in line
        assert f"| {result.prefill_fraction(result.datasheet):.1%} | — |" in line
    assert "H200 SXM 141GB (NVIDIA H200): datasheet 4,800 GB/s, 989.5 TFLOPS bf16, 1,979 fp8" in done.stdout
    assert (tmp_path / "report.md").read_text() == done.stdout


def test_the_reports_json_holds_the_facts_of_its_tables():
    text = tpserve("report", str(TUNE), "--price", "h200=3.5")
    done = tpserve("report", str(TUNE), "--price", "h200=3.5", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert text.stdout.startswith(f"Workload: {', '.join(f'{k} {v}' for k, v in report['workload'].items())}\n")
    assert len(report["rows"]) == len(rows(load_runs([TUNE]))) == 5
    for row in report["rows"]:
        assert row["gpus"] == row["tensor_parallel_size"] * row["pipeline_parallel_size"] * row["replicas"]
        table = (f"| {row['model']} | {row['device']} | {row['gpus']} ({row['tensor_parallel_size']} × "
                 f"{row['replicas']}) | ")
        figures = (f"{row['mean_output_tok_s']:,.1f} | {row['stdev_output_tok_s']:,.1f} ({row['runs']}) | "
                   f"{row['output_tok_s_per_gpu']:,.1f} | {row['median_ttft_ms']:,.1f} | {row['median_tpot_ms']:,.2f} "
                   f"| {row['usd_per_million_output_tokens']:,.3f} |")
        roof = row["roofline"]
        bounds = (f"| {roof['dtypes']} | {roof['decode_batch']:,.1f} | {roof['mean_context']:,.0f} | "
                  f"{roof['decode_bound_tok_s']:,.0f} ({roof['decode_limit']}) | "
                  f"{roof['decode_fraction_of_datasheet']:.1%} | — | {roof['prefill_bound_tok_s']:,.0f} | "
                  f"{roof['prefill_fraction_of_datasheet']:.1%} | — |")
        lines = [line for line in text.stdout.splitlines() if line.startswith(table)]
        assert any(line.endswith(figures) for line in lines), (row, lines)
        assert any(line.endswith(bounds) for line in lines), (row, lines)
        assert row["no_roofline"] is None


def test_the_benchmarks_json_is_what_the_report_reads(tmp_path):
    out = tmp_path / "gpu-limits.json"
    done = subprocess.run([sys.executable, "lab/benchmarks/gpu_limits.py", "--cpu", "--iterations", "1", "--warmup",
                           "0", "--out", str(out)], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    assert document["copy"]["bytes_moved_per_iteration"] == 2 * document["copy"]["bytes"]
    device, limits = roofline.read_limits(out)
    assert device == document["device"] and limits.memory_gb_s == document["memory_gb_s"] > 0
    assert limits.tflops["bf16"] == document["matmul"]["bf16"]["tflops"] > 0


def test_a_file_that_is_not_the_benchmarks_json_is_refused_naming_the_fix(tmp_path):
    (tmp_path / "gpu-limits.json").write_text("{}")
    done = tpserve("report", str(DEFAULTS), "--gpu-limits", str(tmp_path / "gpu-limits.json"))
    assert done.returncode == 2
    assert "gpu-limits.json is not a lab/benchmarks/gpu_limits.py result (KeyError" in done.stderr
    assert "pass the JSON that script writes with --out" in done.stderr


def test_fp8_weights_on_a_card_without_fp8_tensor_cores_multiply_in_16_bits():
    record = runrecord.load(FP8)
    record = replace(record, layout=replace(record.layout, device_kind="NVIDIA A100-SXM4-80GB"))
    result = roofline.roofline(record)
    flops = gpuspecs.spec_for("NVIDIA A100-SXM4-80GB").bf16_tflops * 1e12
    prompt = record.metrics.total_input_tokens / record.metrics.completed
    assert result.served.dtypes == "fp8 / fp8 / bf16"
    assert result.datasheet.prefill_tok_s == pytest.approx(flops / (
        2 * LAYER_PARAMETERS + 2 * EMBEDDING / prompt + 4 * (prompt + 1) / 2 * HIDDEN * LAYERS), rel=1e-12)
