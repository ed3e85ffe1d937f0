"""`IVRR1Trainer`: verl's sync v1 trainer plus (1) the per-row ``agent_name`` on training batches,
(2) the step's ``ivr_r1/`` metrics read from TransferQueue before advantages, (3) optional dumps of
original vs rectified chains. The rectification itself runs in the rollout phase (agent loop).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter, defaultdict

import torch
import transfer_queue as tq
from omegaconf import read_write
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu

from recipe.ivr_r1.settings import AGENT_NAME, DEMO_FIELD, GROUP_N_FIELD

logger = logging.getLogger(__name__)
STATUS_KEYS = ("rectified", "empty_think", "unattributed", "no_fault", "length_exceeded", "not_verified",
               "generation_error")


def step_metrics(infos: list[dict], scores: list[float], max_rounds: int) -> dict[str, float]:
    """`ivr_r1/` metrics from every real row's ``extra_fields["ivr_r1"]`` and its final reward."""
    n = len(infos)
    if not n:
        return {}
    screened = [i for i, info in enumerate(infos) if info.get("screen") == "selected"]
    status = Counter(infos[i].get("status") for i in screened)
    screen = Counter(info.get("screen", "missing") for info in infos)
    m: dict[str, float] = {"ivr_r1/rollouts": float(n), "ivr_r1/screened": float(len(screened)),
                           "ivr_r1/screened_share": len(screened) / n}
    for key, count in screen.items():
        m[f"ivr_r1/screen/{key}"] = float(count)
    for key in STATUS_KEYS:
        m[f"ivr_r1/status/{key}"] = float(status.get(key, 0))
    attempted = [i for i in screened if infos[i].get("attribution")]
    ok_first = [i for i in attempted if infos[i]["attribution"][0] == "ok"]
    m["ivr_r1/attribution/success_rate"] = len(ok_first) / len(attempted) if attempted else 0.0
    outcomes = Counter(o for i in attempted for o in infos[i]["attribution"])
    for key, count in outcomes.items():
        m[f"ivr_r1/attribution/{key}"] = float(count)
    hist = Counter(s for i in attempted for s in infos[i].get("steps", []) if s is not None)
    for step, count in hist.items():
        m[f"ivr_r1/attribution/step_{min(step, 16)}{'+' if step >= 16 else ''}"] = float(count)
    for r in range(1, max_rounds + 1):
        entered = [i for i in screened if infos[i].get("rounds", 0) >= r]
        won = [i for i in entered if infos[i].get("status") == "rectified" and infos[i].get("rounds") == r]
        m[f"ivr_r1/rectify/success_round_{r}"] = len(won) / len(entered) if entered else 0.0
    m["ivr_r1/rectify/success_rate"] = status.get("rectified", 0) / len(screened) if screened else 0.0
    rect = [i for i in screened if infos[i].get("status") == "rectified"]
    rect_set = set(rect)
    others = [i for i in range(n) if i not in rect_set]
    # a rectified rollout's own reward: in aux_nll mode its row keeps the flawed rollout (and its reward),
    # the demonstration's reward is the session's `rectified_score`
    rect_scores = [float(infos[i].get("rectified_score", scores[i])) for i in rect]
    m["ivr_r1/score/rectified_mean"] = sum(rect_scores) / len(rect) if rect else 0.0
    m["ivr_r1/score/other_mean"] = sum(scores[i] for i in others) / len(others) if others else 0.0
    m["ivr_r1/acc/original_all"] = sum(1 for info in infos if info.get("correct") is True) / n
    m["ivr_r1/acc/after_rectification"] = (sum(1 for info in infos if info.get("correct") is True) + len(rect)) / n
    secs = [infos[i].get("seconds", 0.0) for i in screened]
    m["ivr_r1/rectify/seconds_mean"] = sum(secs) / len(secs) if secs else 0.0
    m["ivr_r1/rectify/seconds_max"] = max(secs) if secs else 0.0
    return m


class IVRR1Trainer(PPOTrainerSync):
    def __init__(self, config):
        super().__init__(config)
        ivr = config.ivr_r1
        self._ivr_enabled = bool(ivr.enable)
        self._rounds = int(ivr.rereason.rounds)
        self._dump_every = int(ivr.dump.every_k_steps or 0)
        self._step_started = None
        self._aux_nll_weight = float(ivr.optimization.aux_nll_weight) if ivr.optimization.mode == "aux_nll" else 0.0

    def _fetch_one_gen_batch(self):
        batch = super()._fetch_one_gen_batch()
        tu.assign_non_tensor_data(batch, "agent_name", AGENT_NAME)  # training rows only; val keeps the default
        if "__rollout_n__" in batch.keys():  # verl pops it before the agent loop: the group barrier needs it
            batch.set(GROUP_N_FIELD, batch.get("__rollout_n__").clone())
        return batch

    def on_step_begin(self):
        self._step_started = time.perf_counter()
        return super().on_step_begin()

    def _balance_batch(self, batch, metrics, logging_prefix="global_seqlen", keep_minibatch=False):
        self.collect_ivr_metrics(batch, metrics)
        return super()._balance_batch(batch, metrics, logging_prefix=logging_prefix, keep_minibatch=keep_minibatch)

    # ---------------------------------------------------------------- aux_nll mini-batches
    def _aux_nll_updates(self) -> int | None:
        """aux_nll mode: the optimizer steps per training step verl plans for the batch without
        demonstrations (train_batch_size / ppo_mini_batch_size); None when verl's own sizing applies."""
        if not self._aux_nll_weight or self.use_critic or self.config.trainer.critic_warmup > self.global_steps:
            return None
        mini = int(self.config.actor_rollout_ref.actor.ppo_mini_batch_size)
        return max(1, int(self.config.data.train_batch_size) // mini)

    def _get_required_batch_multiple(self, dp_size: int) -> int:
        """verl pads the batch to a multiple of the PPO mini-batch (ppo_mini_batch_size x n rows): the D extra
        demonstration rows of aux_nll mode would cost a whole extra, mostly-padding mini-batch (one more
        optimizer step per training step). Instead keep verl's number of updates k and pad only to a
        multiple of k x lcm(dp, n): each of the k mini-batches grows by about D/k rows."""
        updates = self._aux_nll_updates()
        if updates is None:
            return super()._get_required_batch_multiple(dp_size)
        return updates * math.lcm(dp_size, int(self.config.actor_rollout_ref.rollout.n))

    def _update_actor(self, batch, metrics: dict):
        updates = self._aux_nll_updates()
        n = int(self.config.actor_rollout_ref.rollout.n)
        if updates is None or len(batch) % (updates * n):  # not padded by our _balance_batch sizing
            return super()._update_actor(batch, metrics)
        actor = self.config.actor_rollout_ref.actor
        planned = int(actor.ppo_mini_batch_size)
        with read_write(actor):  # verl's _update_actor reads it (prompts, x n sequences) for this call only
            actor.ppo_mini_batch_size = len(batch) // updates // n
        try:
            return super()._update_actor(batch, metrics)
        finally:
            with read_write(actor):
                actor.ppo_mini_batch_size = planned

    def _compute_advantage(self, batch, metrics: dict):
        batch = super()._compute_advantage(batch, metrics)
        if self._aux_nll_weight:
            batch = self.mark_demonstrations(batch, metrics)
        return batch

    def mark_demonstrations(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """aux_nll mode: write `rollout_is_weights` (1 on ordinary rows, -λ on a demonstration's loss
        tokens; see recipe.ivr_r1.losses) so the registered policy loss trains demonstrations with NLL.

        Returns the batch metadata to hand on: TransferQueue records a batch's field list in the
        metadata a write returns, and the actor worker loads exactly those fields
        (`async_kv_batch_meta2batch_meta` -> `select_fields(meta.fields)`); metadata from before this
        write would make the worker fetch no `rollout_is_weights` and train the demonstration with
        PPO on its flawed sibling's advantage."""
        from tensordict import TensorDict

        from recipe.ivr_r1.losses import demo_weights

        data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id,
                               select_fields=["extra_fields", "response_mask"])
        rows, demos = [], 0
        for tag, fields, mask in zip(batch.tags, data["extra_fields"], data["response_mask"].unbind()):
            is_demo = not tag.get("is_padding", False) and bool((fields or {}).get(DEMO_FIELD))
            demos += is_demo
            rows.append(demo_weights(mask.numel(), mask if is_demo else None, self._aux_nll_weight))
        weights = torch.nested.as_nested_tensor(rows, layout=torch.jagged)
        written = tq.kv_batch_put(keys=batch.keys, partition_id=batch.partition_id,
                                  fields=TensorDict({"rollout_is_weights": weights}, batch_size=len(batch.keys)))
        if "rollout_is_weights" not in (written.fields or []):
            raise RuntimeError("TransferQueue did not record rollout_is_weights for the step's rows")
        metrics["ivr_r1/aux_nll/demonstrations"] = float(demos)
        # the put's field list, with the step's own tags (order) and extra_info
        return KVBatchMeta(keys=list(batch.keys), tags=batch.tags, partition_id=batch.partition_id,
                           fields=written.fields, extra_info=batch.extra_info)

    def collect_ivr_metrics(self, batch, metrics: dict) -> dict[str, float]:
        """Read the step's real rows, add `ivr_r1/` metrics, dump chains when due."""
        real = [i for i, tag in enumerate(batch.tags) if not tag.get("is_padding", False)]
        keys = [batch.keys[i] for i in real]
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields", "rm_scores"])
        # aux_nll demonstrations repeat their flawed rollout's record: count each rollout once
        rows = [(k, f, s) for k, f, s in zip(keys, data["extra_fields"], data["rm_scores"].unbind())
                if not (f or {}).get(DEMO_FIELD)]
        keys = [k for k, _, _ in rows]
        infos = [dict((f or {}).get("ivr_r1") or {}) for _, f, _ in rows]
        scores = [float(s.sum()) for _, _, s in rows]
        out = step_metrics(infos, scores, self._rounds)
        if self._step_started is not None:
            out["ivr_r1/rollout_phase_seconds"] = time.perf_counter() - self._step_started
        metrics.update(out)
        if self._dump_every and self.global_steps % self._dump_every == 0:
            folder = self.config.ivr_r1.dump.dir or os.path.join(self.config.trainer.default_local_dir, "ivr_r1_dumps")
            write_dump(folder, self.global_steps, keys, infos, scores)
        return out


def write_dump(folder: str, step: int, keys: list[str], infos: list[dict], scores: list[float]) -> str | None:
    """JSONL with original and rectified chains side by side, for screened rollouts only."""
    rows = [{"key": k, "score_final": s, **info} for k, info, s in zip(keys, infos, scores)
            if info.get("screen") == "selected"]
    if not rows:
        return None
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"step_{step}.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    return path
