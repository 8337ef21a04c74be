from tpserve.workload.servermetrics import GENERATION_TOKENS, PROMPT_TOKENS, counter_totals

EXPOSITION = """\
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="m"} 120.0
vllm:generation_tokens_total{engine="1",model_name="m"} 30.0
vllm:generation_tokens_created{engine="0",model_name="m"} 1.7e+09
vllm:prompt_tokens_total{engine="0",model_name="m"} 44.0
vllm:prompt_tokens_by_source_total{engine="0",model_name="m",source="local_compute"} 44.0
"""


def test_counters_are_summed_over_label_sets_and_lookalikes_ignored():
    assert counter_totals(EXPOSITION) == {GENERATION_TOKENS: 150.0, PROMPT_TOKENS: 44.0}


def test_a_counter_the_server_does_not_export_is_absent_not_zero():
    assert counter_totals("# nothing here\nother_metric 1\n") == {}
