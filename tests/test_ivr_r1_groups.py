"""What rectification does to a GRPO group, judged by verl's own advantage function
(`verl.trainer.ppo.core_algos.compute_grpo_outcome_advantage`) and verl's own advantage step
(`PPOTrainer._compute_advantage` on real TransferQueue rows): in `replace` mode rectifying every flawed
rollout of a group can zero all its advantages (counted as `ivr_r1/groups/collapsed`); in `join` mode
the demonstration is an extra member with its own reward and the flawed rollout keeps its negative
advantage."""

import os

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from recipe.ivr_r1.settings import DEMO_FIELD
from recipe.ivr_r1.trainer import IVRR1Trainer, group_metrics

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "recipe", "ivr_r1", "config")
N = 8
# a group of 8 whose 2 wrong rollouts (reward 1: format only) are both rectified to reward 2
ORIGINAL = [2.0] * 6 + [1.0, 1.0]


def verl_grpo(rewards, groups=None):
    """Advantages of outcome rewards by verl's GRPO estimator (one group unless `groups` says)."""
    r = torch.tensor(rewards, dtype=torch.float32).unsqueeze(-1)
    index = np.array(groups or ["g"] * len(rewards), dtype=object)
    advantages, _ = compute_grpo_outcome_advantage(r, torch.ones_like(r), index)
    return advantages[:, 0].tolist()


def test_verl_grpo_on_the_group_before_and_after_replacement():
    before = verl_grpo(ORIGINAL)
    assert before[0] == pytest.approx(0.54, abs=0.005) and before[-1] == pytest.approx(-1.62, abs=0.005)
    assert verl_grpo([2.0] * 8) == [0.0] * 8  # replace: every member, demonstrations included, gets 0
    joined = verl_grpo(ORIGINAL + [2.0, 2.0])  # join: the two demonstrations as extra members
    assert joined[6] == joined[7] < -1.5 and joined[8] == joined[0] > 0.4


def infos(mode):
    out = [{"screen": "correct", "status": "not_screened", "correct": True, "original_score": 2.0} for _ in range(6)]
    out += [{"screen": "selected", "status": "rectified", "correct": False, "original_score": 1.0,
             "rectified_score": 2.0} for _ in range(2)]
    return out


@pytest.mark.parametrize("mode, scores, collapsed", [
    ("replace", [2.0] * 8, 1.0),  # the rows carry the rectified rewards: no spread left
    ("join", ORIGINAL, 0.0),       # the rows carry the flawed rewards; demonstrations join with 2.0
    ("aux_nll", ORIGINAL, 0.0),    # demonstrations stay out of the group statistics
])
def test_group_metrics_count_collapsed_groups(mode, scores, collapsed):
    m = group_metrics(["g"] * 8, infos(mode), scores, mode)
    assert m["ivr_r1/groups/with_rectified"] == 1.0 and m["ivr_r1/groups/collapsed"] == collapsed
    assert m["ivr_r1/groups/demonstrations"] == (0.0 if mode == "aux_nll" else 2.0)
    # a group that had no spread before rectification did not collapse because of it
    flat = [dict(i, original_score=2.0) for i in infos(mode)]
    assert group_metrics(["h"] * 8, flat, [2.0] * 8, mode)["ivr_r1/groups/collapsed"] == 0.0


def _config(n=N):
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        return compose(config_name="ivr_r1_trainer", overrides=[
            "actor_rollout_ref.model.path=/nonexistent", f"actor_rollout_ref.rollout.n={n}",
            "ivr_r1.attributor.kind=policy", "actor_rollout_ref.actor.use_kl_loss=false"])


def _put(tq, uid, rows):
    """rows: (session, index, reward on rm_scores, response length, extra_fields) as the agent loop stores them."""
    fields, tags, keys = [], [], []
    for session, index, reward, length, extra in rows:
        rm = torch.zeros(length)
        rm[-1] = reward
        mask = torch.ones(length, dtype=torch.int64)
        fields.append({"uid": uid, "prompts": torch.arange(3) + 1, "responses": torch.arange(length) + 9,
                       "response_mask": mask, "loss_mask": mask, "rm_scores": rm,
                       "old_log_probs": -0.3 * torch.ones(length), "extra_fields": extra})
        tags.append({"status": "success", "prompt_len": 3, "response_len": length, "seq_len": 3 + length,
                     "global_steps": 1})
        keys.append(f"{uid}_{session}_{index}")
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
    return upsample_batch_to_divisible_size(KVBatchMeta(partition_id="train", keys=keys, tags=tags), 16, eos_token_id=0)


def _trainer(mode):
    trainer = IVRR1Trainer.__new__(IVRR1Trainer)
    trainer.config, trainer._mode, trainer._aux_nll_weight = _config(), mode, 0.0
    trainer._rounds, trainer._dump_every, trainer._step_started, trainer.global_steps = 2, 0, None, 1
    return trainer


def _advantages(tq, batch):
    data = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["advantages", "rm_scores"])
    return ({k: float(a[0]) for k, a in zip(batch.keys, data["advantages"].unbind())},
            {k: float(r.sum()) for k, r in zip(batch.keys, data["rm_scores"].unbind())})


def test_replace_mode_collapse_is_counted_and_is_what_verl_computes(transfer_queue):
    tq = transfer_queue
    info = infos("replace")
    batch = _put(tq, "g6", [(s, 0, 2.0, 4, {"ivr_r1": info[s]}) for s in range(N)])  # 2 rows replaced
    trainer, metrics = _trainer("replace"), {}
    trainer.collect_ivr_metrics(batch, metrics)
    assert metrics["ivr_r1/groups/collapsed"] == 1.0 and metrics["ivr_r1/status/rectified"] == 2.0
    batch = trainer._compute_advantage(batch, metrics)  # verl's own advantage step
    advantages, _ = _advantages(tq, batch)
    assert all(advantages[f"g6_{s}_0"] == 0.0 for s in range(N))
    tq.kv_clear(keys=batch.keys, partition_id="train")


def test_join_mode_demonstrations_are_extra_members_with_their_own_reward(transfer_queue):
    """Sessions 6 and 7 returned [demonstration, flawed rollout]; verl copied the flawed reward (1.0) onto
    the demonstration row. verl's `_compute_advantage` then sees 10 members: the flawed rollouts keep
    their negative advantage, the demonstrations get a positive one from their own reward (2.0)."""
    tq = transfer_queue
    info = infos("join")
    rows = [(s, 0, 2.0, 4, {"ivr_r1": info[s]}) for s in range(6)]
    for s in (6, 7):
        rows += [(s, 0, 1.0, 5, {"ivr_r1": info[s], DEMO_FIELD: True}), (s, 1, 1.0, 4, {"ivr_r1": info[s]})]
    batch = _put(tq, "g7", rows)
    trainer, metrics = _trainer("join"), {}
    trainer.collect_ivr_metrics(batch, metrics)
    assert metrics["ivr_r1/groups/collapsed"] == 0.0 and metrics["ivr_r1/groups/demonstrations"] == 2.0
    assert metrics["ivr_r1/rollouts"] == 8.0  # a demonstration repeats its session's record: counted once
    batch = trainer._compute_advantage(batch, metrics)
    advantages, rewards = _advantages(tq, batch)
    expected = verl_grpo(ORIGINAL + [2.0, 2.0])  # rows 8, 9: the demonstrations
    for s in range(6):
        assert advantages[f"g7_{s}_0"] == pytest.approx(expected[s], abs=1e-5)
    for j, s in enumerate((6, 7)):
        assert rewards[f"g7_{s}_0"] == 2.0 and rewards[f"g7_{s}_1"] == 1.0
        assert advantages[f"g7_{s}_1"] == pytest.approx(expected[6 + j], abs=1e-5) and expected[6 + j] < -1.5
        assert advantages[f"g7_{s}_0"] == pytest.approx(expected[8 + j], abs=1e-5) and expected[8 + j] > 0.4
    assert metrics["ivr_r1/join/demonstrations"] == 2.0 and metrics["ivr_r1/join/loss_tokens"] == 10.0
    assert metrics["ivr_r1/join/advantage_mean"] == pytest.approx(expected[8], abs=1e-5)
    # the swap of verl's function is undone
    from verl.trainer.ppo.v1 import trainer_base, utils

    assert trainer_base.compute_advantage_for_multi_trajectories is utils.compute_advantage_for_multi_trajectories
    tq.kv_clear(keys=batch.keys, partition_id="train")


def test_join_mode_pads_like_aux_nll():
    """Demonstration rows are extra rows in join mode too: verl's k updates are kept (see the aux_nll test)."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    trainer = _trainer("join")
    trainer.use_critic = False
    assert trainer._get_required_batch_multiple(8) == (256 // 64) * 8
    trainer._mode = "replace"
    assert trainer._get_required_batch_multiple(8) == PPOTrainer._get_required_batch_multiple(trainer, 8)

