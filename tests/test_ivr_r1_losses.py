"""aux_nll mode: the registered policy loss (verl's real vanilla PPO loss and agg_loss, real ActorConfig)
and the per-token marking the trainer writes."""

import os

import pytest
import torch
from hydra import compose, initialize_config_dir
from verl.trainer.config import __file__ as verl_config_init
from verl.trainer.ppo.core_algos import compute_policy_loss_vanilla, get_policy_loss_fn
from verl.utils.config import omega_conf_to_dataclass

from recipe.ivr_r1.losses import LOSS_MODE, demo_weights


@pytest.fixture(scope="module")
def actor_config():
    with initialize_config_dir(config_dir=os.path.dirname(verl_config_init), version_base=None):
        cfg = compose(config_name="ppo_trainer", overrides=[
            "actor_rollout_ref.actor.strategy=fsdp2", "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            f"actor_rollout_ref.actor.policy_loss.loss_mode={LOSS_MODE}"])
    config = omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)
    config.global_batch_info.update(dp_size=1, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None)
    return config


def batch():
    torch.manual_seed(0)
    log_prob = -torch.rand(3, 5)
    old = log_prob + 0.05 * torch.randn(3, 5)
    adv = torch.tensor([[1.0] * 5, [-0.5] * 5, [0.3] * 5])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 1, 1]])
    return old, log_prob, adv, mask


def test_registered_and_equal_to_vanilla_without_demonstrations(actor_config):
    loss_fn = get_policy_loss_fn(LOSS_MODE)
    old, log_prob, adv, mask = batch()
    ones = torch.ones(3, 5)
    ours, _ = loss_fn(old, log_prob, adv, mask, "token-mean", actor_config, rollout_is_weights=ones)
    vanilla, _ = compute_policy_loss_vanilla(old, log_prob, adv, mask, "token-mean", actor_config)
    assert torch.allclose(ours, vanilla)


def test_demonstration_rows_get_nll_instead_of_ppo(actor_config):
    loss_fn = get_policy_loss_fn(LOSS_MODE)
    old, log_prob, adv, mask = batch()
    cue_masked = torch.tensor([1, 1, 0, 1, 1])  # row 2 is a demonstration whose cue token is masked
    weights = torch.stack([demo_weights(5, None, 0.5), demo_weights(5, None, 0.5), demo_weights(5, cue_masked, 0.5)])
    assert weights[2].tolist() == [-0.5, -0.5, 0.0, -0.5, -0.5]
    loss, metrics = loss_fn(old, log_prob, adv, mask, "token-mean", actor_config, rollout_is_weights=weights)
    ordinary = mask.clone()
    ordinary[2] = 0
    pg, _ = compute_policy_loss_vanilla(old, log_prob, adv, ordinary, "token-mean", actor_config)
    demo = (mask[2] * cue_masked).bool()
    nll = 0.5 * (-log_prob[2][demo]).sum() / demo.sum()
    assert torch.allclose(loss, pg + nll)
    assert metrics["ivr_r1/aux_nll_tokens"] == 4.0
    # the demonstration's advantage plays no part
    adv2 = adv.clone()
    adv2[2] = 100.0
    loss2, _ = loss_fn(old, log_prob, adv2, mask, "token-mean", actor_config, rollout_is_weights=weights)
    assert torch.allclose(loss, loss2)
