import pytest

from tpserve.fetch.errors import LoadTestError
from tpserve.workload.promptsets import BUILTIN_PROMPTS, builtin_specs
from tpserve.workload.requesttypes import RequestResult, RunPlan
from tpserve.workload.runstate import RunState, build_record, token_check
from tpserve.workload.servermetrics import GENERATION_TOKENS, PROMPT_TOKENS

PLAN = RunPlan(host="http://127.0.0.1:1", model="m", max_tokens=4, num_requests=3)


def ok(out=4, prompt=6):
    return RequestResult("p", 0.0, 1.0, ttft=0.1, latency=1.0, prompt_tokens=prompt,
                         completion_tokens=out, max_tokens=4)


def test_the_builtin_suite_has_59_distinct_prompts():
    assert len(BUILTIN_PROMPTS) == 59 == len(set(BUILTIN_PROMPTS))
    assert all(spec.max_tokens == 16 for spec in builtin_specs(16))


def test_exactly_num_requests_are_handed_out_cycling_through_the_prompts():
    state = RunState(PLAN, builtin_specs(4)[:2])
    specs = [state.next_spec() for _ in range(5)]
    assert [s.prompt_id for s in specs[:3]] == ["builtin-00", "builtin-01", "builtin-00"]
    assert specs[3:] == [None, None]
    assert state.in_flight == 3 and not state.finished
    for _ in range(3):
        state.record(ok())
    assert state.finished and state.in_flight == 0


def test_an_empty_prompt_set_is_rejected():
    with pytest.raises(LoadTestError, match="prompt set is empty"):
        RunState(PLAN, [])


def test_token_check_passes_when_client_and_server_agree():
    check = token_check([ok(), ok()], {GENERATION_TOKENS: 10, PROMPT_TOKENS: 0},
                        {GENERATION_TOKENS: 18, PROMPT_TOKENS: 12}, in_flight=0)
    assert check.ok
    assert (check.server_generation_tokens, check.server_prompt_tokens) == (8, 12)


def test_token_check_reports_a_mismatch_with_both_counts():
    check = token_check([ok()], {GENERATION_TOKENS: 0}, {GENERATION_TOKENS: 9}, in_flight=0)
    assert check.status.startswith("mismatch: client counted 4 completion tokens, server generated 9")


def test_token_check_is_skipped_with_requests_in_flight_or_no_counter():
    assert token_check([ok()], {GENERATION_TOKENS: 0}, {GENERATION_TOKENS: 9}, 2).status == (
        "skipped: the run stopped with 2 requests in flight")
    assert token_check([ok()], {}, {}, 0).status.startswith("skipped: the server does not export")


def test_report_fails_on_any_failed_request_by_default():
    state = RunState(PLAN, builtin_specs(4))
    for result in (ok(), ok(), RequestResult("p", 0.0, 1.0, error="HTTP 500: x")):
        state.issued += 1
        state.record(result)
    state.metrics_before = {GENERATION_TOKENS: 0.0}
    record = build_record(state, {GENERATION_TOKENS: 8.0})
    assert not record.ok
    assert record.problems == ("1 of 3 requests failed (allowed error rate 0)",)
    assert record.token_check.ok and record.errors == {"HTTP 500: x": 1}


def test_report_of_a_clean_run_is_ok_and_names_model_and_plan():
    state = RunState(PLAN, builtin_specs(4))
    for _ in range(3):
        state.issued += 1
        state.record(ok())
    state.metrics_before = {GENERATION_TOKENS: 0.0}
    record = build_record(state, {GENERATION_TOKENS: 12.0})
    assert record.ok and record.problems == ()
    assert record.model_id == "m" and record.workload.num_requests == 3
    assert record.metrics.output_throughput == pytest.approx(12.0)
    assert record.layout is None  # the load test does not know what serves it


def test_a_run_cut_short_before_all_requests_is_a_problem_not_a_smaller_denominator():
    state = RunState(PLAN, builtin_specs(4))
    state.issued = 2
    state.record(ok())
    state.metrics_before = {GENERATION_TOKENS: 0.0}
    record = build_record(state, {GENERATION_TOKENS: 9.0})
    assert not record.ok
    assert "the run stopped after 1 of 3 requests" in record.problems[0]
    assert record.token_check.status == "skipped: the run stopped with 1 requests in flight"


def test_a_server_gone_after_the_run_is_the_first_problem_and_skips_the_token_check():
    state = RunState(PLAN, builtin_specs(4))
    for result in (ok(), RequestResult("p", 0.0, 1.0, error="connection failed: ConnectionRefusedError: refused")):
        state.issued += 1
        state.record(result)
    state.metrics_before = {GENERATION_TOKENS: 0.0}
    gone = "cannot reach http://127.0.0.1:1/metrics: ConnectionError; is the server running?"
    record = build_record(state, {}, after_error=gone)
    assert record.problems[0] == f"the server stopped answering during the run: {gone}"
    assert record.token_check.status == "skipped: the server's counters could not be read after the run"
    assert record.token_check.client_completion_tokens == 4
