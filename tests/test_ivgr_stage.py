"""The iVGR step stage: reference selection, archive, consistency judge, bonuses and metrics."""

import asyncio
import re

import pytest
from judge_server import Reply, ok, status

from dataclasses import replace

from recipe.ivgr.archive import Reference, RolloutArchive
from recipe.ivgr.stage import ConsistencySettings, ConsistencyStage, RolloutRecord, StageOutput, apply_stage_outputs
from reward_score.config import RewardWeights
from reward_score.judge import JudgeClient, JudgeConfig
from reward_score.result import RewardScore


def grounded(sample_id, acc, iou, think="the cup <box>[1,2,30,40]</box> is red", fmt=1.0):
    return RolloutRecord(sample_id, "grounded", "What colour is the cup?", think,
                         RewardScore(score=fmt + 1 + iou + acc, format=fmt, acc=acc, iou=iou, box_valid=1.0,
                                     num_boxes=1.0))


def textual(sample_id, think="the cup is red", acc=1.0):
    return RolloutRecord(sample_id, "textual", "What colour is the cup?", think,
                         RewardScore(score=1 + acc, format=1.0, acc=acc))


def single(sample_id):
    return RolloutRecord(sample_id, "single", "2+2?", "four", RewardScore(score=2.5, format=1.0, acc=1.0))


def score_by_target(body):
    """Judge stand-in logic: the score is written in the target reasoning as 'say=<x>'."""
    user = body["messages"][-1]["content"]
    target = user.split("target_reasoning>")[1] if "target_reasoning>" in user else user
    match = re.search(r"say=([0-9.]+)", target)
    return ok(f"Reasoning... Score: {match.group(1)}" if match else "Score: 1.0")


@pytest.fixture
def judge(judge_server):
    judge_server.reset()
    judge_server.responder = score_by_target
    client = JudgeClient(JudgeConfig(base_url=judge_server.url, max_concurrency=8, timeout_s=2, max_retries=1,
                                     backoff_s=0.001, backoff_max_s=0.002))
    yield client
    judge_server.reset()


def run(stage, records, step=1):
    async def go():
        try:
            return await stage.run(records, step)
        finally:
            if stage.judge is not None:
                await stage.judge.aclose()
    return asyncio.run(go())


def test_reference_is_best_correct_grounded_rollout_above_threshold():
    stage = ConsistencyStage(ConsistencySettings(), RolloutArchive())
    records = [grounded("s1", 1.0, 0.5, think="mid"), grounded("s1", 1.0, 0.8, think="best"),
               grounded("s1", 0.0, 0.95, think="wrong answer"), grounded("s1", 1.0, 0.2, think="below threshold"),
               grounded("s2", 1.0, 0.29), grounded("s3", 1.0, 0.9, think="   ")]
    stored = stage.update_archive(records, step=7)
    assert stored == 1
    assert stage.archive.get("s1") == Reference("best", 1.0, 0.8, 7)
    assert stage.archive.get("s2") is None  # IoU below 0.3
    assert stage.archive.get("s3") is None  # empty reasoning cannot be a reference


def test_format_requirement_is_a_switch():
    records = [grounded("s1", 1.0, 0.9, fmt=0.0)]
    assert ConsistencyStage(ConsistencySettings(), RolloutArchive()).update_archive(records, 1) == 1
    strict = ConsistencyStage(ConsistencySettings(reference_requires_format=True), RolloutArchive())
    assert strict.update_archive(records, 1) == 0


def test_archive_keeps_best_ever_and_ablation_forgets():
    archive = RolloutArchive()
    assert archive.offer("s", Reference("a", 1.0, 0.6, 1))
    assert not archive.offer("s", Reference("b", 1.0, 0.5, 2))
    assert archive.offer("s", Reference("c", 1.0, 0.7, 3))
    assert archive.get("s").think == "c"
    current_only = RolloutArchive(enabled=False)
    current_only.offer("s", Reference("a", 1.0, 0.6, 1))
    current_only.start_step()
    assert current_only.get("s") is None


def test_archive_state_round_trip_keeps_string_keys():
    archive = RolloutArchive()
    archive.offer("123", Reference("think", 1.0, 0.5, 4))
    restored = RolloutArchive()
    import json
    restored.load_state_dict(json.loads(json.dumps(archive.state_dict())))
    assert restored.get("123") == Reference("think", 1.0, 0.5, 4)
    assert restored.get(123) == Reference("think", 1.0, 0.5, 4)


def test_consistency_lands_on_textual_rows_only(judge):
    stage = ConsistencyStage(ConsistencySettings(weights=RewardWeights(consistency=2.0)), RolloutArchive(), judge)
    records = [grounded("s1", 1.0, 0.8), textual("s1", "red say=0.7"), textual("s1", "blue say=0.0"),
               single("s9"), textual("s2", "no reference say=1.0")]
    out = run(stage, records)
    assert out.bonus == [0.0, pytest.approx(1.4), 0.0, 0.0, 0.0]
    m = out.metrics
    assert m["ivgr/textual/consistency"] == pytest.approx((0.7 + 0.0 + 0.0) / 3)
    assert m["ivgr/textual/no_reference"] == 1.0
    assert m["ivgr/archive/hit_rate"] == pytest.approx(2 / 3)
    assert m["ivgr/archive/size"] == 1.0 and m["ivgr/archive/mean_iou"] == pytest.approx(0.8)
    assert m["ivgr/grounded/iou"] == pytest.approx(0.8)
    assert m["ivgr/textual/score"] == pytest.approx((2 + 1.4 + 2 + 0 + 2) / 3)
    assert m["ivgr/single/acc"] == 1.0
    assert m["ivgr/judge/calls"] == 2.0 and m["ivgr/stage/seconds"] >= 0


def test_reference_from_an_earlier_step_is_used(judge):
    stage = ConsistencyStage(ConsistencySettings(), RolloutArchive(), judge)
    run(stage, [grounded("s1", 1.0, 0.9, think="old but good")], step=1)
    out = run(stage, [grounded("s1", 0.0, 0.1), textual("s1", "say=1.0")], step=2)
    assert out.bonus[1] == 1.0
    assert stage.archive.get("s1").step == 1


def test_judge_failures_are_counted_and_score_zero(judge, judge_server):
    judge_server.responder = lambda body: status(500)
    stage = ConsistencyStage(ConsistencySettings(), RolloutArchive(), judge)
    out = run(stage, [grounded("s1", 1.0, 0.9), textual("s1", "say=1.0"), textual("s1", "say=0.3")])
    assert out.bonus == [0.0, 0.0, 0.0]
    assert out.metrics["ivgr/textual/judge_failed"] == 2.0
    assert out.metrics["ivgr/judge/failures"] == 2.0
    assert judge_server.count == 4  # 2 calls x (1 + 1 retry): bounded


def test_garbage_judge_replies_are_retried_then_counted(judge, judge_server):
    judge_server.responder = lambda body: Reply(texts=("I refuse to grade this.",))
    stage = ConsistencyStage(ConsistencySettings(), RolloutArchive(), judge)
    out = run(stage, [grounded("s1", 1.0, 0.9), textual("s1", "say=1.0")])
    assert out.bonus == [0.0, 0.0] and out.metrics["ivgr/textual/judge_failed"] == 1.0


def test_no_judge_configured_means_zero_and_counted():
    stage = ConsistencyStage(ConsistencySettings(), RolloutArchive(), judge=None)
    out = run(stage, [grounded("s1", 1.0, 0.9), textual("s1"), textual("s1", think=None)])
    assert out.bonus == [0.0, 0.0, 0.0]
    assert out.metrics["ivgr/textual/judge_disabled"] == 1.0
    assert out.metrics["ivgr/textual/no_think"] == 1.0


# ------------------------------------------------------------------- step deadline, breaker, metrics
def fast_judge(judge_server, **kw):
    base = dict(base_url=judge_server.url, max_concurrency=8, timeout_s=30, max_retries=3, backoff_s=0.001,
                backoff_max_s=0.002)
    return JudgeClient(JudgeConfig(**{**base, **kw}))


@pytest.mark.timeout(60)
def test_a_hung_judge_costs_at_most_the_step_deadline(judge_server, caplog):
    from recipe.ivgr.stage import JudgePolicy

    judge_server.reset()
    judge_server.script(default=Reply(delay_s=30.0))  # answers long after any sane step
    settings = ConsistencySettings(judge=JudgePolicy(step_deadline_s=1.0))
    stage = ConsistencyStage(settings, RolloutArchive(), fast_judge(judge_server))
    records = [grounded("s1", 1.0, 0.9)] + [textual("s1", f"say=1.0 #{i}") for i in range(6)]
    import time as _time

    start = _time.monotonic()
    out = run(stage, records)
    assert _time.monotonic() - start < 3.0  # per call: 30 s timeout x 4 attempts without the deadline
    assert out.bonus == [0.0] * 7
    assert out.metrics["ivgr/textual/judge_deadline"] == 6.0
    assert out.metrics["ivgr/judge/failures/cancelled"] == 6.0  # the requests themselves were cancelled
    assert "step deadline" in caplog.text
    judge_server.reset()


def test_circuit_breaker_stops_calling_a_failing_judge(judge_server, caplog):
    from recipe.ivgr.stage import JudgePolicy

    judge_server.reset()
    judge_server.script(default=Reply(status=503, body="{}", delay_s=0.05))
    settings = ConsistencySettings(judge=JudgePolicy(breaker_failure_rate=0.5, breaker_min_calls=4))
    stage = ConsistencyStage(settings, RolloutArchive(), fast_judge(judge_server, max_concurrency=2, max_retries=1))
    records = [grounded("s1", 1.0, 0.9)] + [textual("s1", f"say=1.0 #{i}") for i in range(40)]
    out = run(stage, records)
    m = out.metrics
    assert m["ivgr/textual/judge_failed"] >= 4 and m["ivgr/textual/judge_breaker"] >= 30
    assert m["ivgr/textual/judge_failed"] + m["ivgr/textual/judge_breaker"] == 40
    # 2 calls open at a time, 2 attempts of 50 ms each: the 4 failed calls and the 2 open at the trip,
    # instead of 80 requests (40 calls x 2 attempts) without the breaker
    assert judge_server.count <= 12
    assert "circuit breaker" in caplog.text
    judge_server.reset()


def test_breaker_stays_closed_for_a_healthy_judge(judge):
    from recipe.ivgr.stage import JudgePolicy

    settings = ConsistencySettings(judge=JudgePolicy(breaker_min_calls=2))
    stage = ConsistencyStage(settings, RolloutArchive(), judge)
    out = run(stage, [grounded("s1", 1.0, 0.9)] + [textual("s1", f"say=0.7 #{i}") for i in range(5)])
    assert out.bonus[1:] == [pytest.approx(0.7)] * 5 and out.metrics["ivgr/textual/judge_breaker"] == 0.0


def test_accuracy_judge_outcomes_and_undecided_answers_reach_the_step_metrics(caplog):
    """The reward workers' per-rollout `acc_judge` codes and `acc_undecided` flags, as compute_score
    writes them into reward_extra_info, become per-step counts, and an outage logs a warning."""
    from reward_score.judge import OUTCOME_CODES

    def with_judge(record, outcome, undecided):
        record.reward = replace(record.reward, acc_judge=float(OUTCOME_CODES[outcome]) if outcome else 0.0,
                                acc_undecided=float(undecided))
        return record

    records = [with_judge(grounded("s1", 1.0, 0.9), None, 0), with_judge(grounded("s1", 0.0, 0.9), "timeout", 1),
               with_judge(textual("s1"), "ok", 0), with_judge(textual("s1"), "connection_error", 1),
               with_judge(textual("s1"), "cached", 0), with_judge(single("s2"), "server_error", 1)]
    stage = ConsistencyStage(ConsistencySettings(), RolloutArchive(), judge=None)
    m = run(stage, records).metrics
    assert (m["ivgr/acc_judge/calls"], m["ivgr/acc_judge/ok"], m["ivgr/acc_judge/failed"]) == (5.0, 2.0, 3.0)
    assert (m["ivgr/acc_judge/timeout"], m["ivgr/acc_judge/connection_error"], m["ivgr/acc_judge/server_error"],
            m["ivgr/acc_judge/cached"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["ivgr/acc_undecided_rate"] == pytest.approx(3 / 6)
    assert m["ivgr/grounded/acc_undecided"] == 0.5 and m["ivgr/textual/acc_undecided"] == pytest.approx(1 / 3)
    assert m["ivgr/single/acc_undecided"] == 1.0
    assert "accuracy judge failed on 3 of 5 calls" in caplog.text


def test_judge_settings_split_into_client_and_step_policy():
    from recipe.ivgr.stage import split_judge_settings

    client, policy = split_judge_settings({"base_url": "http://h/v1", "timeout_s": 5, "step_deadline_s": 30,
                                           "breaker_min_calls": 8})
    assert client == {"base_url": "http://h/v1", "timeout_s": 5}
    assert (policy.step_deadline_s, policy.breaker_min_calls, policy.breaker_failure_rate) == (30, 8, 0.5)
    JudgeConfig.from_mapping(client)  # the client accepts what is left
    with pytest.raises(ValueError):
        split_judge_settings({"step_deadline_s": 0})


def test_identical_reasoning_is_judged_once_and_the_window_counts_requests(judge_server):
    """Rollouts of a group that repeat the same reasoning share one judge request, every one of them
    gets its value, and the concurrency window is filled with distinct requests (a window of logical
    calls would let duplicates waiting on an in-flight request hold half the slots)."""
    judge_server.reset()
    judge_server.script(default=Reply(texts=("Score: 0.7",), delay_s=0.2))
    client = fast_judge(judge_server, max_concurrency=4)
    stage = ConsistencyStage(ConsistencySettings(), RolloutArchive(), client)
    records = [grounded("s1", 1.0, 0.9)]
    for i in range(8):  # 8 distinct reasonings, each written by 3 rollouts of the group
        records += [textual("s1", f"the cup is red, take {i}")] * 3
    out = run(stage, records)
    assert out.bonus[1:] == [pytest.approx(0.7)] * 24
    assert judge_server.count == 8 and judge_server.max_inflight == 4
    m = out.metrics
    assert (m["ivgr/judge/calls"], m["ivgr/textual/judge_shared"]) == (8.0, 16.0)
    judge_server.reset()


def test_deadline_and_failures_count_every_rollout_of_a_shared_request(judge_server):
    from recipe.ivgr.stage import JudgePolicy

    judge_server.reset()
    judge_server.responder = lambda body: (status(500) if "fails" in body["messages"][-1]["content"]
                                           else Reply(delay_s=30.0))
    settings = ConsistencySettings(judge=JudgePolicy(step_deadline_s=1.0))
    stage = ConsistencyStage(settings, RolloutArchive(), fast_judge(judge_server, max_retries=0))
    records = [grounded("s1", 1.0, 0.9)] + [textual("s1", "fails")] * 2 + [textual("s1", "hangs")] * 3
    out = run(stage, records)
    assert out.bonus == [0.0] * 6
    assert (out.metrics["ivgr/textual/judge_failed"], out.metrics["ivgr/textual/judge_deadline"]) == (2.0, 3.0)
    judge_server.reset()


def test_a_reward_worker_never_imports_the_step_stage():
    """The reward manager (in every reward worker) splits the judge settings through a leaf module."""
    import subprocess
    import sys

    code = ("import sys, recipe.ivgr.reward_manager as m; "
            "assert 'recipe.ivgr.stage' not in sys.modules, 'the reward worker imported the step stage'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_consistency_weight_is_applied_with_the_other_weights_and_the_terms_land_in_the_reward(judge):
    """Textual = w_format * format + w_accuracy * acc + w_consistency * consistency (the paper's sum with its
    weights 1); the record's reward after `apply_stage_outputs` carries the term and the final score."""
    weights = RewardWeights(format=0.5, accuracy=2.0, consistency=3.0)
    stage = ConsistencyStage(ConsistencySettings(weights=weights), RolloutArchive(), judge)
    records = [grounded("s1", 1.0, 0.8), textual("s1", "red say=0.7", acc=1.0)]
    out = run(stage, records)
    apply_stage_outputs(records, [out])
    assert records[1].reward.consistency == pytest.approx(0.7)
    assert records[1].reward.score == pytest.approx(0.5 * 1.0 + 2.0 * 1.0 + 3.0 * 0.7)
    assert records[0].reward == grounded("s1", 1.0, 0.8).reward  # grounded rewards untouched


def test_a_stage_term_that_is_no_reward_field_fails_loudly():
    records = [textual("s1")]
    with pytest.raises(TypeError):
        apply_stage_outputs(records, [StageOutput([0.0], terms={0: {"consistancy": 0.7}})])
