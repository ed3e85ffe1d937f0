"""The iVGR step stage: reference selection, archive, consistency judge, bonuses and metrics."""

import asyncio
import re

import pytest
from judge_server import Reply, ok, status

from recipe.ivgr.archive import Reference, RolloutArchive
from recipe.ivgr.stage import ConsistencySettings, ConsistencyStage, RolloutRecord
from reward_score.judge import JudgeClient, JudgeConfig


def grounded(sample_id, acc, iou, think="the cup <box>[1,2,30,40]</box> is red", fmt=1.0):
    return RolloutRecord(sample_id, "grounded", "What colour is the cup?", think,
                         {"score": fmt + 1 + iou + acc, "format": fmt, "acc": acc, "iou": iou, "box_valid": 1.0,
                          "num_boxes": 1.0})


def textual(sample_id, think="the cup is red", acc=1.0):
    return RolloutRecord(sample_id, "textual", "What colour is the cup?", think,
                         {"score": 1 + acc, "format": 1.0, "acc": acc})


def single(sample_id):
    return RolloutRecord(sample_id, "single", "2+2?", "four", {"score": 2.5, "format": 1.0, "acc": 1.0})


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
    stage = ConsistencyStage(ConsistencySettings(weight=2.0), RolloutArchive(), judge)
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
