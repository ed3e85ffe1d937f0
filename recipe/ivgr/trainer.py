"""`IVGRTrainer`: verl's sync v1 trainer plus the iVGR step stage, pair-aware data order and the
persisted rollout archive.

Where the stage runs: `_balance_batch` is the first pipeline method after every rollout of the step
has its streaming per-rollout reward in TransferQueue and before old/ref log-probs and advantages;
overriding it (work first, then `super()`) sees only real rows, never the padding rows verl adds.
"""

from __future__ import annotations

import json
import logging
import os

import torch
import transfer_queue as tq
from omegaconf import OmegaConf, open_dict
from tensordict import TensorDict
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from recipe.ivgr import integrity
from recipe.ivgr.checkpointing import VerifiedCheckpoints
from recipe.ivgr.archive import RolloutArchive
from recipe.ivgr.reward_manager import REWARD_WAIT, reward_section
from recipe.ivgr.sampler import epochs_for_steps
from recipe.ivgr.stage import (ConsistencySettings, ConsistencyStage, RewardMetricsStage, RolloutRecord, StageOutput,
                               StepStage, apply_stage_outputs, saved_state, split_judge_settings, stage_key)
from reward_score.background import process_loop
from reward_score.config import reward_config
from reward_score.result import RewardScore
from reward_score.streams import KIND_STREAMS, parse_streams

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))
STAGE_FIELDS = ["extra_info", "extra_fields", "rm_scores"]
# verl's error when a sync step's groups all failed (trainer/ppo/v1/replay_buffer.py ~509)
NO_TRAJECTORIES = "Sync replay buffer selected terminal groups with no materializable trajectories."


def build_stages(config) -> list[StepStage]:
    """The step stages the `ivgr` config asks for (consistency, unless disabled; else reward metrics only),
    with the reward's weights and judge from the `reward_score:` section the reward workers read."""
    ivgr = OmegaConf.to_container(config.ivgr, resolve=True)
    reward = reward_section(config)
    judge_settings, policy = split_judge_settings(reward.get("judge"))
    if not ivgr["consistency"]["enable"]:
        return [RewardMetricsStage(policy.warn_failure_rate)]
    judge = None
    if judge_settings.get("base_url"):
        from reward_score.judge import JudgeClient, JudgeConfig

        judge = JudgeClient(JudgeConfig.from_mapping(judge_settings))
    else:
        logger.warning("reward_score.judge.base_url is not set: consistency stays 0 (counted as "
                       "ivgr/textual/judge_disabled)")
    settings = ConsistencySettings(
        reference_iou_threshold=ivgr["consistency"]["reference_iou_threshold"],
        reference_requires_format=ivgr["consistency"]["reference_requires_format"],
        weights=reward_config(reward).weights,  # the reward workers' weights (the same section)
        judge=policy,
    )
    return [ConsistencyStage(settings, RolloutArchive(enabled=ivgr["archive"]["enable"]), judge)]


def records_from_rows(extra_infos: list[dict], extra_fields: list[dict]) -> list[RolloutRecord]:
    """Stage records from TransferQueue rows (dataset `extra_info` + the reward's `reward_extra_info`, as
    `recipe.ivgr.reward_manager.score_response` writes it: a row without every `RewardScore` key raises
    KeyError)."""
    records = []
    for info, fields in zip(extra_infos, extra_fields):
        reward = (fields or {}).get("reward_extra_info") or {}
        records.append(RolloutRecord(
            sample_id=str(info.get("sample_id")), stream=str(info.get("stream", "single")),
            question=str(info.get("question") or ""), think=reward.get("think"),
            reward=RewardScore.from_extra_info(reward), extra_info=dict(info),
            reward_wait_s=float(reward.get(REWARD_WAIT, 0.0))))
    return records


def add_bonus(rm_scores: torch.Tensor, bonus: list[float]) -> torch.Tensor:
    """Add bonus[i] at the last response token of row i (where verl puts the scalar reward).
    `rm_scores` is a jagged nested tensor (one 1-D row per trajectory)."""
    rows = []
    for row, extra in zip(rm_scores.unbind(), bonus):
        row = row.clone()
        if extra and row.numel():
            row[-1] += extra
        rows.append(row)
    return torch.nested.as_nested_tensor(rows, layout=torch.jagged)


def default_tensorboard_dir(config) -> str:
    """TensorBoard logs next to the checkpoints: ``TENSORBOARD_DIR`` defaults to
    ``<trainer.default_local_dir>/tensorboard`` in this process (verl's Tracking, created in ``fit`` here,
    reads the variable; its own default is ``tensorboard_log/<project>/<experiment>`` under the Ray
    worker's working directory, verl/utils/tracking.py:557). A value the user set wins. Returns it."""
    return os.environ.setdefault("TENSORBOARD_DIR", os.path.join(str(config.trainer.default_local_dir), "tensorboard"))


class IVGRTrainer(VerifiedCheckpoints, PPOTrainerSync):
    """Sync PPO/GRPO trainer with iVGR's step stage; everything else is verl's."""

    def __init__(self, config):
        super().__init__(config)
        default_tensorboard_dir(config)
        self.stages: list[StepStage] = build_stages(config)
        self._stage_loop = process_loop() if self.stages else None
        self._dump_every = int(config.ivgr.dump.every_k_steps or 0)

    # ---------------------------------------------------------------- data order
    def _init_dataloader(self):
        super()._init_dataloader()
        if self.config.ivgr.pair_sampler:
            from recipe.ivgr.sampler import build_train_dataloader
            from verl.utils.dataset.rl_dataset import collate_fn

            self.train_dataloader = build_train_dataloader(self.train_dataset, self.config.data, collate_fn)
            self.train_dataloader_it = None
        self._reach_step_target()

    def _reach_step_target(self) -> None:
        """verl stops after `trainer.total_epochs` even when `total_training_steps` is not reached (and then
        skips the final checkpoint and validation); raise the epochs so the step target is met."""
        target = self.config.trainer.total_training_steps
        per_epoch = len(self.train_dataloader)
        if not target or not per_epoch:
            return
        needed = epochs_for_steps(int(target), per_epoch)
        if needed > self.config.trainer.total_epochs:
            logger.warning("trainer.total_training_steps=%d needs %d epochs of %d steps: trainer.total_epochs "
                           "raised from %d to %d", target, needed, per_epoch, self.config.trainer.total_epochs, needed)
            with open_dict(self.config):
                self.config.trainer.total_epochs = needed

    # ---------------------------------------------------------------- step stage
    def _step_once(self, metrics: dict, timing_raw: dict, sample_batch_size: int):
        try:
            return super()._step_once(metrics, timing_raw, sample_batch_size)
        except RuntimeError as err:
            if NO_TRAJECTORIES not in str(err):
                raise
            # verl's message advises trainer.v1.sampler.sync_refill_failed_groups, which check_config refuses
            raise RuntimeError(
                f"step {self.global_steps}: no rollout of the step came back ({NO_TRAJECTORIES!r}, verl's "
                "trainer/ppo/v1/replay_buffer.py): the rollout server or the agent-loop workers died; see the "
                "first errors above. Nothing of this step was trained. Restart the run: it resumes from the last "
                "complete checkpoint. (verl's hint to enable trainer.v1.sampler.sync_refill_failed_groups does not "
                "apply: it fetches one prompt at a time and splits the two streams of a sample, so the recipe "
                "refuses it.)") from None

    def _balance_batch(self, batch, metrics, logging_prefix="global_seqlen", keep_minibatch=False):
        self.run_step_stages(batch, metrics)
        return super()._balance_batch(batch, metrics, logging_prefix=logging_prefix, keep_minibatch=keep_minibatch)

    def check_step(self, keys: list[str], extra_infos: list[dict]) -> integrity.StepCounts:
        """Refuse (IncompleteStepError) a step whose real rows are not the `data.train_batch_size` rows x
        `rollout.n` rollouts it fetched, or that lost one stream of a grounded sample."""
        value = OmegaConf.select(self.config, "data.ivgr_streams", default=None)
        streams = parse_streams(OmegaConf.to_container(value) if OmegaConf.is_config(value) else value)
        return integrity.check_step_batch(
            keys, extra_infos, rows_expected=int(self.config.data.train_batch_size),
            rollouts_per_row=int(self.config.actor_rollout_ref.rollout.n),
            paired=set(KIND_STREAMS["grounded"]) <= set(streams), step=self.global_steps)

    def run_step_stages(self, batch, metrics: dict) -> list[StageOutput]:
        """Check the step's real rows are complete (else refuse the step), run every stage on them and
        write reward bonuses back to `rm_scores`."""
        real = [i for i, tag in enumerate(batch.tags) if not tag.get("is_padding", False)]
        keys = [batch.keys[i] for i in real]
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=STAGE_FIELDS)
        counts = self.check_step(keys, list(data["extra_info"]))
        metrics["ivgr/step/rows"] = float(counts.rows)
        metrics["ivgr/step/rollouts"] = float(counts.rollouts)
        records = records_from_rows(list(data["extra_info"]), list(data["extra_fields"]))
        outputs = []
        for stage in self.stages:
            out = self._stage_loop.run(stage.run(records, self.global_steps))
            outputs.append(out)
            metrics.update(out.metrics)
        total = apply_stage_outputs(records, outputs)  # records' rewards now final: the dump shows them
        if any(total):
            tq.kv_batch_put(keys=keys, partition_id=batch.partition_id,
                            fields=TensorDict({"rm_scores": add_bonus(data["rm_scores"], total)}, batch_size=len(keys)))
        if self._dump_every and self.global_steps % self._dump_every == 0:
            self._dump_stage(keys, batch.partition_id, records, total)
        return outputs

    def _dump_stage(self, keys: list[str], partition_id: str, records: list[RolloutRecord], bonus: list[float]) -> None:
        from recipe.ivgr.dump import write_step_dump

        responses = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["responses"])["responses"]
        texts = self.tokenizer.batch_decode([r.tolist() for r in responses.unbind()], skip_special_tokens=True)
        folder = self.config.ivgr.dump.dir or os.path.join(self.config.trainer.default_local_dir, "rollout_dumps")
        archive = next((s.archive for s in self.stages if isinstance(s, ConsistencyStage)), None)
        path = write_step_dump(folder, self.global_steps, records, texts, bonus, archive)
        logger.info("ivgr rollout dump written to %s", path)

    # ---------------------------------------------------------------- checkpoints (VerifiedCheckpoints)
    def save_recipe_state(self, folder: str) -> None:
        save_stage_states(self.stages, folder)

    def restore_recipe_state(self, folder: str) -> None:
        if not self.stages:
            return
        if not load_stage_states(self.stages, folder):
            logger.warning("no ivgr stage state in %s: the rollout archive starts empty", folder)
            return
        archive = next((s.archive for s in self.stages if isinstance(s, ConsistencyStage)), None)
        logger.info("ivgr stage state restored from %s at step %d: rollout archive of %d references", folder,
                    self.global_steps, len(archive) if archive is not None else 0)

def save_stage_states(stages: list[StepStage], folder: str) -> str:
    """Write every stage's state to `folder/ivgr_stages.json` atomically."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "ivgr_stages.json")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({stage_key(s): s.state_dict() for s in stages}, f, ensure_ascii=False)
    os.replace(tmp, path)
    return path


def load_stage_states(stages: list[StepStage], folder: str) -> bool:
    """Restore stage states from `folder/ivgr_stages.json`; False when the file is absent."""
    path = os.path.join(folder, "ivgr_stages.json")
    if not os.path.exists(path):
        return False
    with open(path, encoding="utf-8") as f:
        states = json.load(f)
    for stage in stages:
        state = saved_state(states, stage)
        if state is not None:
            stage.load_state_dict(state)
    return True
