"""`IVRR1Trainer`: verl's sync v1 trainer plus (1) the per-row ``agent_name`` on training batches,
(2) the step's ``ivr_r1/`` metrics read from TransferQueue before advantages, (3) optional dumps of
original vs rectified chains, (4) the demonstration rows of ``join`` (into the GRPO group with their own
reward) and ``aux_nll`` (marked for the NLL term) modes. The rectification itself runs in the rollout
phase (agent loop).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import transfer_queue as tq
from omegaconf import read_write
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync
from verl.utils import tensordict_utils as tu

from recipe.ivgr.checkpointing import VerifiedCheckpoints
from recipe.ivr_r1.settings import AGENT_NAME, DEMO_FIELD, EXTRA_ROW_MODES, GROUP_N_FIELD

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
    m.update(teacher_metrics([infos[i] for i in screened]))
    return m


def teacher_metrics(infos: Sequence[dict]) -> dict[str, float]:
    """`ivr_r1/teacher/`: continuation calls to the teacher (`continuation=teacher`) of the step's
    screened rollouts: ``calls``, ``usable`` (a reply, fresh or cached), ``failed`` and one count per
    outcome (``ok``, ``cached``, the judge client's failures, ``deadline``), ``seconds_mean``/
    ``seconds_max`` per call, and ``tokens_mean`` (policy tokens of the usable continuations)."""
    calls = [call for info in infos for call in info.get("teacher") or []]
    if not calls:
        return {}
    ok = [c for c in calls if c.get("outcome") in ("ok", "cached")]
    m = {"ivr_r1/teacher/calls": float(len(calls)), "ivr_r1/teacher/usable": float(len(ok)),
         "ivr_r1/teacher/failed": float(len(calls) - len(ok))}
    for outcome, count in Counter(c.get("outcome", "unknown") for c in calls).items():
        m[f"ivr_r1/teacher/{outcome}"] = float(count)
    secs = [float(c.get("seconds", 0.0)) for c in calls]
    m["ivr_r1/teacher/seconds_mean"] = sum(secs) / len(secs)
    m["ivr_r1/teacher/seconds_max"] = max(secs)
    tokens = [c["tokens"] for c in ok if "tokens" in c]
    m["ivr_r1/teacher/tokens_mean"] = sum(tokens) / len(tokens) if tokens else 0.0
    return m


def _has_signal(advantages: torch.Tensor) -> bool:
    return bool((advantages.abs() > 1e-6).any())


def grpo_advantages(uids: Sequence[str], scores: Sequence[float], norm_adv_by_std_in_grpo: bool = True) -> torch.Tensor:
    """One advantage per outcome score, from verl's own GRPO estimator
    (`verl.trainer.ppo.core_algos.compute_grpo_outcome_advantage`, groups by uid)."""
    rewards = torch.tensor([float(x) for x in scores], dtype=torch.float32).unsqueeze(-1)
    index = np.array(list(uids), dtype=object)
    advantages, _ = compute_grpo_outcome_advantage(rewards, torch.ones_like(rewards), index,
                                                   norm_adv_by_std_in_grpo=norm_adv_by_std_in_grpo)
    return advantages[:, 0]


def group_metrics(uids: Sequence[str], infos: Sequence[dict], scores: Sequence[float], mode: str,
                  norm_adv_by_std_in_grpo: bool = True) -> dict[str, float]:
    """What rectification did to the GRPO groups, judged by verl's own advantage function.

    One entry per rollout (demonstration rows of join / aux_nll mode excluded; ``scores`` = the row's
    reward as verl will use it). Before rectification a group holds the original rewards (a replaced
    rollout's ``original_score``); after it, the rows as they enter verl's GRPO: ``replace``: the
    rectified trajectory's reward instead of the flawed one's; ``join``: the flawed rollout's reward
    plus one member per demonstration with its own reward (``rectified_score``); ``aux_nll``: unchanged
    (demonstrations do not enter the group statistics).

    ``ivr_r1/groups/with_rectified``: groups with >= 1 rectified rollout; ``ivr_r1/groups/collapsed``:
    of those, groups whose advantages were not all zero before and are all zero after (every member,
    demonstration included, gets no gradient: the error's negative signal and the template are lost);
    ``ivr_r1/groups/demonstrations``: rectified trajectories that are rows of a GRPO group."""
    before_uid, before, after_uid, after = [], [], [], []
    rectified_groups = set()
    demos = 0
    for uid, info, score in zip(uids, infos, scores):
        rectified = info.get("status") == "rectified"
        before_uid.append(uid)
        before.append(float(info.get("original_score", score)) if rectified and mode == "replace" else float(score))
        after_uid.append(uid)
        after.append(float(score))
        if rectified:
            rectified_groups.add(uid)
            if mode == "join":
                after_uid.append(uid)
                after.append(float(info.get("rectified_score", score)))
            demos += mode in ("join", "replace")
    m = {"ivr_r1/groups/with_rectified": float(len(rectified_groups)), "ivr_r1/groups/collapsed": 0.0,
         "ivr_r1/groups/demonstrations": float(demos)}
    if not rectified_groups:
        return m
    adv_before = grpo_advantages(before_uid, before, norm_adv_by_std_in_grpo)
    adv_after = grpo_advantages(after_uid, after, norm_adv_by_std_in_grpo)
    for uid in rectified_groups:
        b = adv_before[[i for i, u in enumerate(before_uid) if u == uid]]
        a = adv_after[[i for i, u in enumerate(after_uid) if u == uid]]
        m["ivr_r1/groups/collapsed"] += float(_has_signal(b) and not _has_signal(a))
    return m


@contextlib.contextmanager
def demonstrations_as_sessions(demo_keys: set[str]) -> Iterator[None]:
    """``join`` mode: within this block, verl's GRPO step treats each demonstration row as a session of its
    own, so it enters its group's statistics with its own reward next to its flawed rollout.

    verl 0.9.1 keeps only the last output of each ``{uid}_{session}`` for GRPO and broadcasts that
    session's advantage to its other outputs (`compute_advantage_for_multi_trajectories`,
    verl/trainer/ppo/v1/utils.py:148, called by `PPOTrainer._compute_advantage`,
    verl/trainer/ppo/v1/trainer_base.py:1775, with ``batch_keys=batch.keys``). The block hands that call
    the same keys with a demonstration's session renamed (``{uid}_{session}demo_{index}``); the group is
    the ``uid`` field, unchanged, and TransferQueue keys are untouched."""
    original = trainer_base.compute_advantage_for_multi_trajectories

    def with_demo_sessions(data, batch_keys, *args, **kwargs):
        keys = []
        for key in batch_keys:
            if key in demo_keys:
                uid, session, index = key.rsplit("_", 2)
                key = f"{uid}_{session}demo_{index}"
            keys.append(key)
        return original(data, keys, *args, **kwargs)

    trainer_base.compute_advantage_for_multi_trajectories = with_demo_sessions
    try:
        yield
    finally:
        trainer_base.compute_advantage_for_multi_trajectories = original


def _rows(value) -> list:
    """A TransferQueue field of several rows as a plain list (NonTensorStack or list)."""
    return list(value.tolist()) if hasattr(value, "tolist") else list(value)


class IVRR1Trainer(VerifiedCheckpoints, PPOTrainerSync):
    """verl's sync trainer plus IVR-R1's demonstrations (see the module docstring); checkpoints saved and
    resumed the verified way (`recipe.ivgr.checkpointing`)."""

    def __init__(self, config):
        super().__init__(config)
        ivr = config.ivr_r1
        self._ivr_enabled = bool(ivr.enable)
        self._rounds = int(ivr.rereason.rounds)
        self._dump_every = int(ivr.dump.every_k_steps or 0)
        self._step_started = None
        self._mode = str(ivr.optimization.mode)
        self._aux_nll_weight = float(ivr.optimization.aux_nll_weight) if self._mode == "aux_nll" else 0.0

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

    # ---------------------------------------------------------------- mini-batches with demonstration rows
    def _kept_updates(self) -> int | None:
        """join / aux_nll mode: the optimizer steps per training step verl plans for the batch without
        demonstrations (train_batch_size / ppo_mini_batch_size); None when verl's own sizing applies."""
        if self._mode not in EXTRA_ROW_MODES or self.use_critic:
            return None
        if self.config.trainer.critic_warmup > self.global_steps:
            return None
        mini = int(self.config.actor_rollout_ref.actor.ppo_mini_batch_size)
        return max(1, int(self.config.data.train_batch_size) // mini)

    def _get_required_batch_multiple(self, dp_size: int) -> int:
        """verl pads the batch to a multiple of the PPO mini-batch (ppo_mini_batch_size x n rows): the D extra
        demonstration rows of join / aux_nll mode would cost a whole extra, mostly-padding mini-batch (one more
        optimizer step per training step). Instead keep verl's number of updates k and pad only to a
        multiple of k x lcm(dp, n): each of the k mini-batches grows by about D/k rows."""
        updates = self._kept_updates()
        if updates is None:
            return super()._get_required_batch_multiple(dp_size)
        return updates * math.lcm(dp_size, int(self.config.actor_rollout_ref.rollout.n))

    def _update_actor(self, batch, metrics: dict):
        updates = self._kept_updates()
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
        if self._mode == "join":
            demo_keys = self.restore_demo_rewards(batch)
            with demonstrations_as_sessions(demo_keys):
                batch = super()._compute_advantage(batch, metrics)
            metrics.update(self.demo_advantage_metrics(batch, demo_keys))
            return batch
        batch = super()._compute_advantage(batch, metrics)
        if self._aux_nll_weight:
            batch = self.mark_demonstrations(batch, metrics)
        return batch

    def restore_demo_rewards(self, batch: KVBatchMeta) -> set[str]:
        """join mode: give each demonstration row its own reward in ``rm_scores`` (verl copied its flawed
        sibling's onto it: every output of a session gets the last one's, `_agent_loop_postprocess` in
        verl/trainer/ppo/v1/agent_loop_tq.py) from the session's record (``rectified_score``), on the last
        response token as verl places a reward. Returns the demonstration rows' keys."""
        real = [i for i, tag in enumerate(batch.tags) if not tag.get("is_padding", False)]
        keys = [batch.keys[i] for i in real]
        if not keys:
            return set()
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=["extra_fields", "rm_scores"])
        demo_keys, rewards = [], []
        for key, fields, rm in zip(keys, data["extra_fields"], data["rm_scores"].unbind()):
            fields = fields or {}
            if not fields.get(DEMO_FIELD):
                continue
            info = fields.get("ivr_r1") or {}
            if "rectified_score" not in info:
                logger.warning("demonstration row %s has no rectified_score: it keeps its sibling's reward", key)
                continue
            row = torch.zeros_like(rm, dtype=torch.float32)
            row[-1] = float(info["rectified_score"])
            demo_keys.append(key)
            rewards.append(row)
        if demo_keys:
            nested = torch.nested.as_nested_tensor(rewards, layout=torch.jagged)
            tq.kv_batch_put(keys=demo_keys, partition_id=batch.partition_id,
                            fields=TensorDict({"rm_scores": nested}, batch_size=len(demo_keys)))
        return set(demo_keys)

    def demo_advantage_metrics(self, batch: KVBatchMeta, demo_keys: set[str]) -> dict[str, float]:
        """join mode: the demonstrations' rows as verl's GRPO left them: ``ivr_r1/join/demonstrations``,
        ``ivr_r1/join/advantage_mean`` (their advantage) and ``ivr_r1/join/loss_tokens`` (tokens with
        response_mask 1 and a non-zero advantage: what the actor's PPO loss trains on)."""
        m = {"ivr_r1/join/demonstrations": float(len(demo_keys))}
        if not demo_keys:
            return m
        keys = [k for k in batch.keys if k in demo_keys]
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id,
                               select_fields=["advantages", "response_mask"])
        advantages, tokens = [], 0
        for adv, mask in zip(data["advantages"].unbind(), data["response_mask"].unbind()):
            on = mask.bool()
            advantages.append(float(adv[on].mean()) if on.any() else 0.0)
            tokens += int((on & (adv.abs() > 1e-6)).sum())
        m["ivr_r1/join/advantage_mean"] = sum(advantages) / len(advantages)
        m["ivr_r1/join/loss_tokens"] = float(tokens)
        return m

    def mark_demonstrations(self, batch: KVBatchMeta, metrics: dict) -> KVBatchMeta:
        """aux_nll mode: write `rollout_is_weights` (1 on ordinary rows, -λ on a demonstration's loss
        tokens; see recipe.ivr_r1.losses) so the registered policy loss trains demonstrations with NLL.

        Returns the batch metadata to hand on: TransferQueue records a batch's field list in the
        metadata a write returns, and the actor worker loads exactly those fields
        (`async_kv_batch_meta2batch_meta` -> `select_fields(meta.fields)`); metadata from before this
        write would make the worker fetch no `rollout_is_weights` and train the demonstration with
        PPO on its flawed sibling's advantage."""
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
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id,
                               select_fields=["uid", "extra_fields", "rm_scores"])
        # join / aux_nll demonstrations repeat their flawed rollout's record: count each rollout once
        rows = [(k, u, f, s) for k, u, f, s in zip(keys, _rows(data["uid"]), data["extra_fields"],
                                                   data["rm_scores"].unbind())
                if not (f or {}).get(DEMO_FIELD)]
        keys = [k for k, _, _, _ in rows]
        uids = [str(u) for _, u, _, _ in rows]
        infos = [dict((f or {}).get("ivr_r1") or {}) for _, _, f, _ in rows]
        scores = [float(s.sum()) for _, _, _, s in rows]
        out = step_metrics(infos, scores, self._rounds)
        algorithm = self.config.algorithm
        out.update(group_metrics(uids, infos, scores, self._mode, bool(algorithm.get("norm_adv_by_std_in_grpo", True))))
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
