"""`aux_nll` mode: an auxiliary NLL term on rectified demonstrations, through verl's policy-loss registry.

verl 0.9.1 hands a policy loss only (old_log_prob, log_prob, advantages, response_mask, loss_agg_mode,
config, rollout_is_weights): no per-row flag. The recipe therefore marks demonstration tokens in the
one per-token channel it has, `rollout_is_weights` (written by `IVRR1Trainer` after advantages; the
recipe refuses verl's own rollout correction, which would also write it):

- weight 1 on every token of ordinary rollouts: plain PPO-clip (the vanilla loss, unchanged);
- weight -λ on the loss tokens of a rectified demonstration: excluded from the PPO term and trained
  with λ · NLL instead (λ = `ivr_r1.optimization.aux_nll_weight`).

Both terms are aggregated by verl's `agg_loss` over the same global token count, so λ = 1 weighs a
demonstration token like a PPO token. The module registers the loss on import; verl imports it in
every Ray worker through `VERL_USE_EXTERNAL_MODULES` (set in the recipe yaml's runtime_env). It also
installs `recipe.verl_compat` there: demonstration rows make verl add text-only padding rows, and
verl 0.9.1's Qwen2.5-VL forward of a micro-batch without images fails under transformers 5.
"""

from __future__ import annotations

from typing import Any

import torch
from verl.trainer.ppo.core_algos import agg_loss, compute_policy_loss_vanilla, register_policy_loss

import recipe.verl_compat  # noqa: F401 (installs verl's image-free micro-batch fix in this worker)

LOSS_MODE = "ivr_r1_aux_nll"


def demo_weights(response_length: int, loss_mask: torch.Tensor | None, aux_nll_weight: float) -> torch.Tensor:
    """`rollout_is_weights` row for one trajectory: ones for an ordinary rollout (`loss_mask` None),
    -λ on the loss tokens of a demonstration and 0 on its other tokens (the masked cue)."""
    if loss_mask is None:
        return torch.ones(response_length, dtype=torch.float32)
    return -float(aux_nll_weight) * loss_mask.to(torch.float32)


@register_policy_loss(LOSS_MODE)
def aux_nll_policy_loss(old_log_prob: torch.Tensor, log_prob: torch.Tensor, advantages: torch.Tensor,
                        response_mask: torch.Tensor, loss_agg_mode: str = "token-mean", config: Any = None,
                        rollout_is_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """PPO-clip on ordinary tokens plus λ·NLL on demonstration tokens (see the module docstring)."""
    mask = response_mask.bool()
    if rollout_is_weights is None:  # nothing marked: exactly the vanilla loss
        return compute_policy_loss_vanilla(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config)
    demo = mask & (rollout_is_weights < 0)
    ordinary = mask & (rollout_is_weights > 0)
    pg_loss, metrics = compute_policy_loss_vanilla(old_log_prob, log_prob, advantages, ordinary, loss_agg_mode, config)
    metrics["ivr_r1/aux_nll_tokens"] = float(demo.sum().item())
    if not demo.any():  # a micro-batch without demonstrations (an empty token-mean would be 0/0)
        metrics["ivr_r1/aux_nll"] = 0.0
        return pg_loss, metrics
    nll = agg_loss(loss_mat=-log_prob * (-rollout_is_weights).clamp(min=0), loss_mask=demo,
                   loss_agg_mode=loss_agg_mode, **config.global_batch_info)
    metrics["ivr_r1/aux_nll"] = nll.detach().item()
    return pg_loss + nll, metrics
