"""Faults a real run met (issue: a run that never trains on a broken step, never becomes unresumable and
never overwrites data), each staged against the real pieces: verl's TransferQueue, replay buffer and
checkpoint retention, the recipe's trainer, dataset, reward and preflight, an HTTP judge on 127.0.0.1.

The trainer is built with `__new__` plus a composed config (no GPU worker groups on CPU); where verl
would call the actor worker group, `CheckpointWorkers` writes what verl's FSDP checkpoint manager
writes (`utils/checkpoint/fsdp_checkpoint_manager.py` ~272: shard names, `fsdp_config.json`,
`huggingface/`) and deletes old ones with verl's own `BaseCheckpointManager` retention methods.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path

import pytest
import torch
from judge_server import hang, ok

tq = pytest.importorskip("transfer_queue")

from tensordict import TensorDict  # noqa: E402
from test_ivgr_trainer_hook import N, compose_config, g, make_trainer, t, trajectory  # noqa: E402
from transfer_queue import KVBatchMeta  # noqa: E402
from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402



def integrity_module():
    """recipe.ivgr.integrity, imported per test (each test here also runs against the code before it)."""
    from recipe.ivgr import integrity

    return integrity


def put_rows(rows):
    """rows: (uid, stream, sample_id, kind, [reward x k]) with k rollouts each (k may be < N)."""
    keys, fields, tags = [], [], []
    for uid, stream, sample_id, kind, rewards in rows:
        for session, reward in enumerate(rewards):
            field, tag = trajectory(uid, session, stream, sample_id, reward, "look")
            field["extra_info"] = {**field["extra_info"], "kind": kind}
            keys.append(f"{uid}_{session}_0")
            fields.append(field)
            tags.append(tag)
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
    return KVBatchMeta(partition_id="train", keys=keys, tags=tags)


# --------------------------------------------------------------------------- incomplete steps
def test_a_step_with_missing_rollouts_or_a_missing_stream_is_refused_before_the_update(transfer_queue,
                                                                                        judge_server, tmp_path):
    """A killed reward worker left 1 of a row's rollouts (and lost the textual row of its sample):
    verl would pad and train on the rest; the stage refuses the step, with the counts, and writes nothing."""
    judge_server.reset()
    config = compose_config(f"reward_score.judge.base_url={judge_server.url}", "data.train_batch_size=4")
    trainer = make_trainer(config, tmp_path)
    batch = put_rows([("ga", "grounded", "s1", "grounded", [g(1, 0.9)] * N),
                      ("tb", "textual", "s1", "grounded", [t(1)] * N),
                      ("gc", "grounded", "s2", "grounded", [g(1, 0.9)])])  # 1 of 4; textual row of s2 gone
    before = [float(r.sum()) for r in tq.kv_batch_get(keys=batch.keys, partition_id="train",
                                                      select_fields=["rm_scores"])["rm_scores"].unbind()]
    with pytest.raises(integrity_module().IncompleteStepError) as refused:
        trainer.run_step_stages(batch, {})
    message = str(refused.value)
    assert "9 of 16 rollouts (3 of 4 rows x rollout.n 4)" in message
    assert "gc: 1/4" in message and "s2: grounded only" in message and "refused before the update" in message
    after = [float(r.sum()) for r in tq.kv_batch_get(keys=batch.keys, partition_id="train",
                                                     select_fields=["rm_scores"])["rm_scores"].unbind()]
    assert after == before and judge_server.count == 0
    tq.kv_clear(keys=batch.keys, partition_id="train")

    # every row and rollout there: the same stage runs, and the counts reach the step metrics
    batch = put_rows([("gd", "grounded", "s3", "grounded", [g(1, 0.9)] * N),
                      ("te", "textual", "s3", "grounded", [t(1)] * N),
                      ("gf", "grounded", "s4", "grounded", [g(0, 0.1)] * N),
                      ("tg", "textual", "s4", "grounded", [t(0)] * N)])
    metrics = {}
    trainer.run_step_stages(batch, metrics)
    assert (metrics["ivgr/step/rows"], metrics["ivgr/step/rollouts"]) == (4.0, 16.0)
    tq.kv_clear(keys=batch.keys, partition_id="train")


def test_a_dead_rollout_server_ends_with_the_recipes_advice(transfer_queue, tmp_path):
    """verl's replay buffer finds the step's groups failed with no trajectory (the rollout server died)
    and says to enable trainer.v1.sampler.sync_refill_failed_groups, which the recipe refuses."""
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    config = compose_config("data.train_batch_size=2")
    trainer = make_trainer(config, tmp_path)
    trainer.replay_buffer = ReplayBuffer(trainer_mode="sync", trainer_config=config.trainer,
                                         max_off_policy_threshold=None, max_off_policy_strategy="drop",
                                         sampler_kwargs={}, poll_interval=0.01)
    uids = ["deadprompta", "deadpromptb"]
    tq.kv_batch_put(keys=uids, partition_id="train", fields=TensorDict({"x": torch.zeros(2, 1)}, batch_size=2),
                    tags=[{"is_prompt": True, "status": "failure", "global_steps": 1}] * 2)
    with pytest.raises(RuntimeError) as failed:
        trainer._step_once({}, {}, 2)
    tq.kv_clear(keys=uids, partition_id="train")
    message = str(failed.value)
    assert "no rollout of the step came back" in message and "rollout server" in message
    assert "Enable trainer.v1.sampler.sync_refill_failed_groups" not in message
    assert failed.value.__cause__ is None and failed.value.__suppress_context__


# --------------------------------------------------------------------------- the judge budget
def test_a_hung_judge_costs_the_step_at_most_its_judge_budget(transfer_queue, judge_server, tmp_path):
    """Accuracy calls in the reward path and consistency calls in the stage share reward_score.judge.step_deadline_s:
    with a judge that never answers (timeout 30 s x 2 attempts per call), the step waits ~budget, not minutes."""
    from recipe.ivgr.reward_manager import reward_settings, score_response
    from recipe.ivgr.trainer import records_from_rows
    from reward_score.result import RewardScore

    judge_server.reset()
    judge_server.default = hang(60)
    budget = 2.0
    config = compose_config(f"reward_score.judge.base_url={judge_server.url}", "reward_score.judge.timeout_s=30",
                            "reward_score.judge.max_retries=1", f"reward_score.judge.step_deadline_s={budget}",
                            "data.train_batch_size=2")
    settings = reward_settings(config)

    async def rewards():  # undecided answers ("navy" vs "blue"): each goes to the accuracy judge
        return await asyncio.gather(*(score_response(
            f"<think>look {i}</think><answer>navy</answer>", "s/textual", "blue",
            {"stream": "textual", "sample_id": "s9", "question": "colour?"}, settings) for i in range(N)))

    start = time.monotonic()
    scored = asyncio.run(rewards())
    reward_seconds = time.monotonic() - start
    assert reward_seconds < budget + 1.5, reward_seconds
    from reward_score.judge import OUTCOME_CODES, OUTCOME_CANCELLED

    infos = [s["reward_extra_info"] for s in scored]
    assert {i["acc_judge"] for i in infos} == {float(OUTCOME_CODES[OUTCOME_CANCELLED])}
    assert all(budget - 0.1 <= i["reward_wait_s"] < budget + 1.0 for i in infos)

    # the stage: the reward waits already used the budget, so consistency calls get what is left (~0)
    trainer = make_trainer(config, tmp_path)
    reference = RewardScore(score=4.0, format=1.0, acc=1.0, iou=0.9, box_valid=1.0, num_boxes=1.0).as_dict()
    records = records_from_rows(
        [{"sample_id": "s9", "stream": "grounded", "question": "colour?"}] * N
        + [{"sample_id": "s9", "stream": "textual", "question": "colour?"}] * N,
        [{"reward_extra_info": {**reference, "think": "the cup is blue"}}] * N
        + [{"reward_extra_info": {**i}} for i in infos])
    start = time.monotonic()
    out = trainer._stage_loop.run(trainer.stages[0].run(records, 1))
    stage_seconds = time.monotonic() - start
    assert reward_seconds + stage_seconds < budget + 2.0, (reward_seconds, stage_seconds)
    assert out.metrics["ivgr/textual/judge_deadline"] == N
    assert out.metrics["ivgr/judge/consistency_budget_s"] < 0.5
    assert out.metrics["ivgr/acc_judge/cancelled"] == N
    judge_server.default = ok()


# --------------------------------------------------------------------------- checkpoints
class CheckpointWorkers:
    """The actor worker group's checkpoint calls for one rank, as verl's FSDP manager does them."""

    def __init__(self):
        from verl.utils.checkpoint.checkpoint_manager import BaseCheckpointManager

        self.manager = BaseCheckpointManager.__new__(BaseCheckpointManager)
        self.manager.previous_saved_paths = []
        self.loaded: list[str] = []

    def save_checkpoint(self, local_path, hdfs_path=None, global_step=0, max_ckpt_to_keep=None):
        self.manager.ensure_checkpoint_capacity(max_ckpt_to_keep)
        os.makedirs(os.path.join(local_path, "huggingface"), exist_ok=True)
        for kind in ("model", "optim", "extra_state"):
            torch.save({"step": global_step, "w": torch.ones(64)}, os.path.join(local_path,
                                                                                f"{kind}_world_size_1_rank_0.pt"))
        Path(local_path, "huggingface", "config.json").write_text("{}")
        Path(local_path, "fsdp_config.json").write_text(json.dumps({"FSDP_version": 2, "world_size": 1}))
        self.manager.register_checkpoint(local_path, max_ckpt_to_keep)

    def load_checkpoint(self, local_path, del_local_after_load=False):
        for kind in ("model", "optim", "extra_state"):
            torch.load(os.path.join(local_path, f"{kind}_world_size_1_rank_0.pt"))  # FileNotFoundError if gone
        self.loaded.append(local_path)


class Loader:
    """A real StatefulDataLoader; `crash` makes its state_dict() raise: the process dies right after verl
    rotated the actor checkpoints and before data.pt and the tracker are written."""

    def __init__(self):
        from torchdata.stateful_dataloader import StatefulDataLoader

        self.loader = StatefulDataLoader(list(range(8)), batch_size=2)
        self.crash = False

    def state_dict(self):
        if self.crash:
            raise KeyboardInterrupt("killed inside the checkpoint window")
        return self.loader.state_dict()

    def load_state_dict(self, state):
        self.loader.load_state_dict(state)


def checkpoint_trainer(tmp_path, *overrides):
    from verl.trainer.ppo.checkpoint_callback import CheckpointCallback

    config = compose_config(f"trainer.default_local_dir={tmp_path}", *overrides)
    trainer = make_trainer(config, tmp_path)
    trainer.actor_rollout_wg = CheckpointWorkers()
    trainer.use_critic = False
    trainer.trainer_mode = "sync"
    trainer.train_dataloader = Loader()
    trainer.checkpoint_callback = CheckpointCallback(config)
    return trainer


def test_keep_one_checkpoint_never_opens_a_window_without_a_complete_one(tmp_path):
    trainer = checkpoint_trainer(tmp_path, "trainer.max_actor_ckpt_to_keep=1")
    trainer.global_steps = 1
    trainer._save_checkpoint()
    tracker = tmp_path / "latest_checkpointed_iteration.txt"
    assert tracker.read_text() == "1"

    trainer.global_steps = 2
    trainer.train_dataloader.crash = True
    with pytest.raises(KeyboardInterrupt):
        trainer._save_checkpoint()
    # the tracker still names step 1, and step 1's weights are still there: the run resumes
    assert tracker.read_text() == "1"
    assert (tmp_path / "global_step_1" / "actor" / "model_world_size_1_rank_0.pt").is_file()
    integrity = integrity_module()
    assert integrity.read_tracker(tmp_path) == 1
    assert integrity.verify_checkpoint(tmp_path / "global_step_1") == []
    target = integrity.resume_target("auto", tmp_path)
    assert target.folder == tmp_path / "global_step_1" and target.error is None
    resumed = checkpoint_trainer(tmp_path, "trainer.max_actor_ckpt_to_keep=1")
    resumed._load_checkpoint()
    assert resumed.global_steps == 1 and resumed.actor_rollout_wg.loaded == [str(tmp_path / "global_step_1" / "actor")]

    # the resumed run saves step 2: one checkpoint kept, deleted only once step 2 is complete and latest
    resumed.global_steps = 2
    resumed._save_checkpoint()
    assert integrity.read_tracker(tmp_path) == 2 and integrity.verify_checkpoint(tmp_path / "global_step_2") == []
    resumed.global_steps = 3
    resumed._save_checkpoint()
    # step 2 gone once 3 is latest; step 1 is from before the resume, which verl's retention never tracks
    assert sorted(integrity.step_folders(tmp_path)) == [1, 3]
    assert resumed.config.trainer.max_actor_ckpt_to_keep == 1  # the setting itself is left as the user set it


def test_an_incomplete_checkpoint_is_never_resumed_and_the_preflight_says_so(tmp_path, capsys):
    from recipe.ivgr.preflight import run as preflight

    trainer = checkpoint_trainer(tmp_path, "trainer.max_actor_ckpt_to_keep=3")
    for step in (1, 2):
        trainer.global_steps = step
        trainer._save_checkpoint()
    shard = tmp_path / "global_step_2" / "actor" / "model_world_size_1_rank_0.pt"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a half-written shard

    overrides = ["actor_rollout_ref.model.path=/nonexistent", f"trainer.default_local_dir={tmp_path}"]
    out = io.StringIO()
    preflight([*overrides, "trainer.resume_mode=resume_path",
               f"trainer.resume_from_path={tmp_path / 'global_step_2'}"], decode="none", out=out)
    assert "PROBLEM: checkpoints: trainer.resume_from_path=" in out.getvalue()
    assert "model_world_size_1_rank_0.pt is incomplete" in out.getvalue()
    out = io.StringIO()
    preflight(overrides, decode="none", out=out)
    assert "names global_step_2, which is incomplete" in out.getvalue()
    assert "the run resumes from global_step_1" in out.getvalue()

    explicit = checkpoint_trainer(tmp_path, "trainer.resume_mode=resume_path",
                                  f"trainer.resume_from_path={tmp_path / 'global_step_2'}")
    with pytest.raises(RuntimeError, match="not a complete checkpoint"):
        explicit._load_checkpoint()
    assert explicit.actor_rollout_wg.loaded == []
    auto = checkpoint_trainer(tmp_path)
    auto._load_checkpoint()
    assert auto.global_steps == 1 and auto.actor_rollout_wg.loaded == [str(tmp_path / "global_step_1" / "actor")]
    assert auto.config.trainer.resume_mode == "auto"

    # nothing complete left under a tracker: refused, never a silent start from scratch over it
    (tmp_path / "global_step_1" / "data.pt").unlink()
    with pytest.raises(RuntimeError, match="no complete checkpoint is left"):
        checkpoint_trainer(tmp_path)._load_checkpoint()
    out = io.StringIO()
    preflight(overrides, decode="none", out=out)
    assert "PROBLEM: checkpoints:" in out.getvalue() and "no complete checkpoint is left" in out.getvalue()


def ivr_r1_checkpoint_trainer(tmp_path, *overrides):
    """IVRR1Trainer as `checkpoint_trainer` builds IVGRTrainer: its own composed config, the same workers."""
    from test_ivr_r1_agent_loop import compose_config as compose_ivr_r1
    from verl.trainer.ppo.checkpoint_callback import CheckpointCallback

    from recipe.ivr_r1.trainer import IVRR1Trainer

    trainer = IVRR1Trainer.__new__(IVRR1Trainer)
    trainer.config = compose_ivr_r1(f"trainer.default_local_dir={tmp_path}", *overrides)
    trainer.global_steps = 1
    trainer.actor_rollout_wg = CheckpointWorkers()
    trainer.use_critic = False
    trainer.trainer_mode = "sync"
    trainer.train_dataloader = Loader()
    trainer.checkpoint_callback = CheckpointCallback(trainer.config)
    return trainer


def test_ivr_r1_runs_get_the_same_crash_safe_checkpoints(tmp_path):
    trainer = ivr_r1_checkpoint_trainer(tmp_path, "trainer.max_actor_ckpt_to_keep=1")
    trainer._save_checkpoint()
    trainer.global_steps = 2
    trainer.train_dataloader.crash = True
    with pytest.raises(KeyboardInterrupt):
        trainer._save_checkpoint()
    # killed inside verl's save window: step 1 is still latest and whole, and the resume loads it
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text() == "1"
    assert integrity_module().verify_checkpoint(tmp_path / "global_step_1") == []
    resumed = ivr_r1_checkpoint_trainer(tmp_path)
    resumed._load_checkpoint()
    assert resumed.global_steps == 1 and resumed.actor_rollout_wg.loaded == [str(tmp_path / "global_step_1" / "actor")]

    shard = tmp_path / "global_step_1" / "actor" / "model_world_size_1_rank_0.pt"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])  # a half-written shard
    with pytest.raises(RuntimeError, match="cannot resume"):
        ivr_r1_checkpoint_trainer(tmp_path)._load_checkpoint()


def test_an_incomplete_save_moves_the_tracker_back(tmp_path):
    trainer = checkpoint_trainer(tmp_path)
    trainer.global_steps = 1
    trainer._save_checkpoint()
    broken = CheckpointWorkers()
    broken.save_checkpoint = lambda local_path, *a, **k: os.makedirs(local_path, exist_ok=True)  # disk full
    trainer.actor_rollout_wg = broken
    trainer.global_steps = 2
    with pytest.raises(RuntimeError, match="incomplete right after saving"):
        trainer._save_checkpoint()
    assert (tmp_path / "latest_checkpointed_iteration.txt").read_text() == "1"


def test_integrity_reads_verls_own_tracker_and_names():
    integrity = integrity_module()
    from verl.utils.checkpoint.checkpoint_manager import get_checkpoint_tracker_filename

    assert os.path.basename(get_checkpoint_tracker_filename("/x")) == integrity.TRACKER


# --------------------------------------------------------------------------- bad rows
def _bad_rows_file(folder: Path) -> Path:
    """A synthetic record file with the bad rows a real run met: a NUL byte in an image path, a
    20000x20 image, an empty reference answer, a NaN ground-truth box."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from data_prep import synthetic

    assert synthetic.main(["--out", str(folder), "--num", "12", "--seed", "1", "--quiet"]) == 0
    src = folder / "train.parquet"
    rows = pq.read_table(src).to_pylist()
    rows[0]["images"] = [{"bytes": None, "path": "a\x00b.png"}]
    wide = io.BytesIO()
    Image.new("RGB", (20000, 20)).save(wide, format="PNG")
    box = [[1.0, 1.0, 10.0, 10.0]]
    rows[1].update(images=[{"bytes": wide.getvalue(), "path": None}], image_size=[20000, 20], gt_boxes=box)
    rows[2]["answer"] = ""
    rows[3]["gt_boxes"] = [[float("nan"), 1.0, 10.0, 10.0]]
    out = folder / "bad.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(src)), out)
    return out


def test_bad_rows_are_reason_lines_in_validate_and_the_preflight(tmp_path):
    from data_prep import validate
    from recipe.ivgr.preflight import run as preflight

    bad = _bad_rows_file(tmp_path)
    for decode in ("all", "sample", "none"):
        report = validate.validate(bad, decode=decode)  # never a traceback
        assert {"image_path_invalid", "image_aspect_ratio", "empty_answer", "box_malformed"} <= set(report.counts)
        assert report.bad_rows >= {0, 1, 2, 3}
    out = io.StringIO()
    preflight(["actor_rollout_ref.model.path=/nonexistent", f"data.train_files=[{bad}]",
               f"data.val_files=[{bad}]", f"trainer.default_local_dir={tmp_path / 'ckpt'}"], out=out)
    text = out.getvalue()
    for code in ("image_path_invalid", "image_aspect_ratio", "empty_answer", "box_malformed"):
        assert f"{bad}: {code} x" in text, code
    assert "Traceback" not in text


def test_an_empty_reference_never_reaches_the_judge_and_a_nan_box_is_a_step_metric(judge_server):
    from recipe.ivgr.stage import RolloutRecord, reward_metrics
    from reward_score import compute_score_async
    from reward_score.result import RewardScore

    judge_server.reset()
    judge = {"base_url": judge_server.url, "max_retries": 0}
    empty = asyncio.run(compute_score_async("s", "<think>x</think><answer>blue</answer>", "",
                                            {"stream": "textual"}, judge=judge))
    nan_box = asyncio.run(compute_score_async(
        "s", "<think>x</think><answer>blue</answer> <box>[1,1,9,9]</box>", "blue",
        {"stream": "grounded", "gt_boxes": [[float("nan"), 1, 9, 9]], "image_size": [100, 100]}, judge=judge))
    assert judge_server.count == 0
    assert (empty["acc"], empty["acc_undecided"], empty["gt_error"]) == (0.0, 0.0, 1.0)
    assert nan_box["gt_error"] == 1.0 and nan_box["iou"] == 0.0
    records = [RolloutRecord("a", "textual", "q", "x", RewardScore.from_extra_info(empty)),
               RolloutRecord("b", "grounded", "q", "x", RewardScore.from_extra_info(nan_box))]
    assert reward_metrics(records, 1)["ivgr/data/gt_error"] == 2.0
