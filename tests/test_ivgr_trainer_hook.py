"""The step stage inside verl's real v1 trainer machinery: real TransferQueue on a local Ray cluster,
real padding (`upsample_batch_to_divisible_size`) and real GRPO advantages (`_compute_advantage`).

The trainer object is built with `__new__` plus a composed recipe config: its GPU worker groups
(rollout, FSDP actor) cannot exist on CPU, and the methods exercised here do not use them.
"""

import os
import re

import numpy as np
import pytest
import torch
from judge_server import ok, status

tq = pytest.importorskip("transfer_queue")

from hydra import compose, initialize_config_dir  # noqa: E402
from transfer_queue import KVBatchMeta  # noqa: E402
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

from recipe.ivgr.trainer import IVGRTrainer, build_stages, load_stage_states, save_stage_states  # noqa: E402
from reward_score.background import BackgroundLoop  # noqa: E402
from reward_score.result import RESULT_KEYS, RewardScore  # noqa: E402

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "recipe", "ivgr", "config")
N = 4  # rollouts per row


def compose_config(*overrides):
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        return compose(config_name="ivgr_trainer", overrides=["actor_rollout_ref.model.path=/nonexistent",
                                                              f"actor_rollout_ref.rollout.n={N}", *overrides])


def consistency_from_target(body):
    user = body["messages"][-1]["content"]
    match = re.search(r"say=([0-9.]+)", user.split("target_reasoning>")[1])
    return ok(f"Score: {match.group(1)}")


def trajectory(uid, session, stream, sample_id, reward, think):
    response_len = 6
    rm = torch.zeros(response_len)
    rm[-1] = reward["score"]
    return {
        "uid": uid,
        "prompts": torch.arange(5, dtype=torch.int64),
        "responses": torch.arange(response_len, dtype=torch.int64) + 10,
        "response_mask": torch.ones(response_len, dtype=torch.int64),
        "attention_mask": torch.ones(5 + response_len, dtype=torch.int64),
        "input_ids": torch.arange(5 + response_len, dtype=torch.int64),
        "position_ids": torch.arange(5 + response_len, dtype=torch.int64),
        "rm_scores": rm,
        "data_source": f"synthetic/{stream}",
        "extra_info": {"sample_id": sample_id, "stream": stream, "question": "What colour is the cup?"},
        "extra_fields": {"reward_extra_info": {**reward, "think": think}},
    }, {"status": "success", "prompt_len": 5, "response_len": response_len, "seq_len": 5 + response_len,
        "global_steps": 1}


def put_step(step_rows):
    """step_rows: list of (uid, stream, sample_id, [(reward, think) x N]). Returns the batch meta."""
    keys, fields, tags = [], [], []
    for uid, stream, sample_id, outs in step_rows:
        for session, (reward, think) in enumerate(outs):
            field, tag = trajectory(uid, session, stream, sample_id, reward, think)
            keys.append(f"{uid}_{session}_0")
            fields.append(field)
            tags.append(tag)
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
    return KVBatchMeta(partition_id="train", keys=keys, tags=tags)


def make_trainer(config, tmp_path):
    trainer = IVGRTrainer.__new__(IVGRTrainer)
    trainer.config = config
    trainer.global_steps = 1
    trainer.stages = build_stages(config)
    trainer._stage_loop = BackgroundLoop()
    trainer._dump_every = 0
    return trainer


def g(acc, iou):
    """A grounded rollout's reward_extra_info as the reward worker writes it (every RewardScore key)."""
    return RewardScore(score=1 + 1 + iou + acc, format=1.0, acc=acc, iou=iou, box_valid=1.0, num_boxes=1.0).as_dict()


def t(acc):
    return RewardScore(score=1 + acc, format=1.0, acc=acc).as_dict()


def test_stage_writes_consistency_into_textual_rewards_and_grpo_uses_it(transfer_queue, judge_server, tmp_path):
    judge_server.reset()
    judge_server.responder = consistency_from_target
    config = compose_config(f"reward_score.judge.base_url={judge_server.url}", "reward_score.judge.max_retries=1",
                            "reward_score.judge.backoff_s=0.001", f"trainer.default_local_dir={tmp_path}",
                            "data.train_batch_size=4")
    trainer = make_trainer(config, tmp_path)
    rows = [
        ("ga", "grounded", "s1", [(g(1, 0.9), "ref A <box>[1,2,3,4]</box>"), (g(1, 0.5), "x"), (g(0, 0.9), "y"),
                                  (g(1, 0.1), "z")]),
        ("tb", "textual", "s1", [(t(1), "say=1.0"), (t(1), "say=0.7"), (t(0), "say=0.3"), (t(0), "say=0.0")]),
        ("gc", "grounded", "s2", [(g(0, 0.9), "w")] * N),  # no correct grounded rollout: no reference
        ("td", "textual", "s2", [(t(1), "say=1.0")] * N),
    ]
    batch = put_step(rows)
    batch = upsample_batch_to_divisible_size(batch, 24, eos_token_id=0)  # real padding rows (8 of them)
    assert sum(tag.get("is_padding", False) for tag in batch.tags) == 8

    metrics = {}
    trainer.run_step_stages(batch, metrics)

    data = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["rm_scores"])
    final = [float(r.sum()) for r in data["rm_scores"].unbind()]
    assert final[4:8] == pytest.approx([3.0, 2.7, 1.3, 1.0])  # textual of s1: format+acc+consistency
    assert final[0:4] == pytest.approx([3.9, 3.5, 2.9, 3.1])  # grounded rows untouched
    assert final[12:16] == pytest.approx([2.0] * 4)  # s2 has no reference: consistency 0
    assert final[16:] == [0.0] * 8  # padding rows untouched
    assert judge_server.count == 4
    assert metrics["ivgr/textual/no_reference"] == 4.0
    assert metrics["ivgr/archive/size"] == 1.0
    assert metrics["ivgr/textual/consistency"] == pytest.approx((1.0 + 0.7 + 0.3 + 0.0) / 8)

    # verl's own GRPO: the textual group of s1 is normalized on its own, with the consistency included
    trainer._compute_advantage(batch, {})
    adv = tq.kv_batch_get(keys=batch.keys[4:8], partition_id="train", select_fields=["advantages"])["advantages"]
    got = np.array([float(a[-1]) for a in adv.unbind()])
    scores = np.array([3.0, 2.7, 1.3, 1.0])
    expected = (scores - scores.mean()) / (scores.std(ddof=1) + 1e-6)
    assert got == pytest.approx(expected, rel=1e-4)
    tq.kv_clear(keys=batch.keys, partition_id="train")


@pytest.mark.parametrize("weight", [1.0, 2.0])
def test_the_dump_the_step_metrics_and_rm_scores_agree_on_every_reward(transfer_queue, judge_server, tmp_path,
                                                                       weight):
    """The three places a user reads a rollout's reward: the recipe's rollout dump, the ivgr/ step metrics and
    the rm_scores verl's GRPO reads. The textual reward includes the consistency term, weighted by
    `reward_score.weights.consistency`, in all three."""
    import json

    judge_server.reset()
    judge_server.responder = consistency_from_target
    config = compose_config(f"reward_score.judge.base_url={judge_server.url}", "reward_score.judge.max_retries=1",
                            "reward_score.judge.backoff_s=0.001", f"trainer.default_local_dir={tmp_path}",
                            "data.train_batch_size=2", f"reward_score.weights.consistency={weight}")
    trainer = make_trainer(config, tmp_path)
    trainer._dump_every = 1

    class Tokenizer:  # the dump decodes responses; the text is not what this test checks
        @staticmethod
        def batch_decode(ids, skip_special_tokens=True):
            return [" ".join(map(str, row)) for row in ids]

    trainer.tokenizer = Tokenizer()
    rows = [
        ("ga", "grounded", "s1", [(g(1, 0.9), "ref A"), (g(1, 0.5), "x"), (g(0, 0.9), "y"), (g(1, 0.1), "z")]),
        ("tb", "textual", "s1", [(t(1), "say=1.0"), (t(1), "say=0.7"), (t(0), "say=0.3"), (t(0), "say=0.0")]),
    ]
    batch = put_step(rows)
    metrics = {}
    trainer.run_step_stages(batch, metrics)

    data = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["rm_scores"])
    trained = [float(r.sum()) for r in data["rm_scores"].unbind()]
    dumped = [json.loads(line) for line in (tmp_path / "rollout_dumps" / "step_1.jsonl").read_text().splitlines()]
    assert [row["reward"]["score"] for row in dumped] == pytest.approx(trained)
    consistency = [1.0, 0.7, 0.3, 0.0]
    # format + acc + weight x consistency (the judge's scores written in the reasoning)
    assert trained[4:] == pytest.approx([1 + acc + weight * c for acc, c in zip([1, 1, 0, 0], consistency)])
    assert [row["reward"]["consistency"] for row in dumped[4:]] == pytest.approx(consistency)
    assert all(tuple(row["reward"]) == RESULT_KEYS for row in dumped)
    assert metrics["ivgr/textual/score"] == pytest.approx(sum(trained[4:]) / 4)
    assert metrics["ivgr/grounded/score"] == pytest.approx(sum(trained[:4]) / 4)
    tq.kv_clear(keys=batch.keys, partition_id="train")


def test_judge_outage_is_bounded_and_counted(transfer_queue, judge_server, tmp_path):
    judge_server.reset()
    judge_server.responder = lambda body: status(503)
    config = compose_config(f"reward_score.judge.base_url={judge_server.url}", "reward_score.judge.max_retries=2",
                            "reward_score.judge.backoff_s=0.001", "reward_score.judge.backoff_max_s=0.002", "data.train_batch_size=2")
    trainer = make_trainer(config, tmp_path)
    batch = put_step([("ge", "grounded", "s3", [(g(1, 0.8), "ref")] * N),
                      ("tf", "textual", "s3", [(t(1), f"say=1.0 #{i}") for i in range(N)])])
    metrics = {}
    trainer.run_step_stages(batch, metrics)
    data = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["rm_scores"])
    assert [float(r.sum()) for r in data["rm_scores"].unbind()][4:] == [2.0] * N
    assert metrics["ivgr/textual/judge_failed"] == N
    assert judge_server.count == N * 3  # 1 + 2 retries each, then it stops
    tq.kv_clear(keys=batch.keys, partition_id="train")


def test_archive_survives_checkpoint_round_trip_and_resumed_run_scores_the_same(transfer_queue, judge_server, tmp_path):
    judge_server.reset()
    judge_server.responder = consistency_from_target
    overrides = (f"reward_score.judge.base_url={judge_server.url}", f"trainer.default_local_dir={tmp_path}",
                 "data.train_batch_size=1")
    first = make_trainer(compose_config(*overrides), tmp_path)
    batch = put_step([("gg", "grounded", "s4", [(g(1, 0.9), "reference from step 1")] * N)])
    first.run_step_stages(batch, {})
    tq.kv_clear(keys=batch.keys, partition_id="train")
    folder = os.path.join(tmp_path, "global_step_1")
    save_stage_states(first.stages, folder)

    resumed = make_trainer(compose_config(*overrides), tmp_path)
    assert load_stage_states(resumed.stages, folder)
    assert resumed.stages[0].archive.get("s4").think == "reference from step 1"
    # step 2: textual rows only; the reference must come from the restored archive
    for trainer in (first, resumed):
        trainer.global_steps = 2
        batch = put_step([("th", "textual", "s4", [(t(1), "say=0.7")] * N)])
        metrics = {}
        trainer.run_step_stages(batch, metrics)
        data = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["rm_scores"])
        assert [float(r.sum()) for r in data["rm_scores"].unbind()] == pytest.approx([2.7] * N)
        assert metrics["ivgr/archive/hit_rate"] == 1.0
        tq.kv_clear(keys=batch.keys, partition_id="train")
    assert not load_stage_states(resumed.stages, os.path.join(tmp_path, "global_step_99"))


def test_the_archive_is_saved_under_a_stable_key_and_old_checkpoints_still_restore(tmp_path):
    """Renaming the stage class must not drop the archive on resume; a file written before the stable key
    (keyed by the class name) still restores."""
    import json

    from recipe.ivgr.archive import Reference
    from recipe.ivgr.stage import ConsistencyStage

    config = compose_config(f"trainer.default_local_dir={tmp_path}")
    stage = build_stages(config)[0]
    stage.archive.offer("s9", Reference("kept reasoning", 1.0, 0.8, 3))
    save_stage_states([stage], str(tmp_path / "new"))
    saved = json.loads((tmp_path / "new" / "ivgr_stages.json").read_text())
    assert list(saved) == ["consistency"]

    class RenamedConsistencyStage(ConsistencyStage):  # a later refactor's name for the same stage
        pass

    renamed = build_stages(config)[0]
    renamed.__class__ = RenamedConsistencyStage
    assert load_stage_states([renamed], str(tmp_path / "new"))
    assert renamed.archive.get("s9").think == "kept reasoning"

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "ivgr_stages.json").write_text(json.dumps({"ConsistencyStage": saved["consistency"]}))
    fresh = build_stages(config)[0]
    assert load_stage_states([fresh], str(tmp_path / "old"))
    assert fresh.archive.get("s9").think == "kept reasoning"


def test_accuracy_judge_outage_and_undecided_answers_reach_the_step_metrics(transfer_queue, judge_server, tmp_path,
                                                                            caplog):
    """reward_extra_info written by the real compute_score_async against a failing judge, read back from
    TransferQueue by the trainer's step stage: the outage is counted and logged, not silently 0."""
    import asyncio

    from reward_score import compute_score_async

    judge_server.reset()
    judge_server.responder = lambda body: status(503)
    judge = {"base_url": judge_server.url, "max_retries": 0, "timeout_s": 2}
    answers = [("B", "B"), ("navy", "blue"), ("crimson", "red"), ("3", "3")]  # two undecided -> judge (fails)

    async def score():
        return await asyncio.gather(*(compute_score_async(
            "s", f"<think>look</think><answer>{pred}</answer>", gt, {"stream": "textual"}, judge=judge)
            for pred, gt in answers))

    rewards = asyncio.run(score())
    assert [r["acc_undecided"] for r in rewards] == [0.0, 1.0, 1.0, 0.0]
    for disabled in (False, True):
        config = compose_config(f"reward_score.judge.base_url={judge_server.url}", f"trainer.default_local_dir={tmp_path}",
                                "data.train_batch_size=1", *(["ivgr.consistency.enable=false"] if disabled else []))
        trainer = make_trainer(config, tmp_path)
        batch = put_step([("ta", "textual", "s5", [(r, "look") for r in rewards])])
        metrics = {}
        trainer.run_step_stages(batch, metrics)
        assert (metrics["ivgr/acc_judge/calls"], metrics["ivgr/acc_judge/failed"],
                metrics["ivgr/acc_judge/server_error"]) == (2.0, 2.0, 2.0)
        assert metrics["ivgr/textual/acc_undecided"] == 0.5 and metrics["ivgr/acc_undecided_rate"] == 0.5
        tq.kv_clear(keys=batch.keys, partition_id="train")
    assert "accuracy judge failed on 2 of 2 calls" in caplog.text
