"""Entry point: `python -m recipe.ivr_r1.main [hydra key=value overrides]`, like verl.trainer.main_ppo.

Composes `config/ivr_r1_trainer.yaml`, fills in the agent-loop registry file, runs verl's config
validation plus the recipe's checks, and starts verl's v1 TaskRunner with `IVRR1Trainer` bound to the
sync trainer slot (same pattern as recipe.ivgr.main).
"""

from __future__ import annotations

import os

import hydra
import ray
from omegaconf import DictConfig, open_dict
from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.device import auto_set_device

from recipe.ivr_r1.settings import IVRR1Settings, owns_reward

AGENT_LOOP_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config", "agent_loop.yaml")


class _IVRR1TaskRunner(TaskRunnerV1.__ray_actor_class__):
    def run(self, config: DictConfig):
        from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY

        from recipe.ivr_r1.trainer import IVRR1Trainer

        TRAINER_REGISTRY["sync"] = IVRR1Trainer  # inside this actor process only
        return super().run(config)


IVRR1TaskRunner = ray.remote(_IVRR1TaskRunner)


def check_config(config: DictConfig) -> IVRR1Settings:
    """verl's validation plus the recipe's invariants; raises ValueError with a clear message."""
    agent = config.actor_rollout_ref.rollout.agent
    if not agent.get("agent_loop_config_path"):
        with open_dict(config):
            agent.agent_loop_config_path = AGENT_LOOP_CONFIG
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    settings = IVRR1Settings.from_config(config)
    if not config.trainer.use_v1 or config.trainer.v1.trainer_mode != "sync":
        raise ValueError("IVR-R1 runs on verl's v1 sync trainer: trainer.use_v1=true trainer.v1.trainer_mode=sync")
    if settings.optimization_mode == "aux_nll":
        from recipe.ivr_r1.losses import LOSS_MODE

        if config.actor_rollout_ref.actor.policy_loss.loss_mode != LOSS_MODE:
            raise ValueError(f"ivr_r1.optimization.mode=aux_nll needs actor_rollout_ref.actor.policy_loss.loss_mode="
                             f"{LOSS_MODE}")
        if config.algorithm.rollout_correction.get("rollout_is") is not None:
            raise ValueError("aux_nll marks demonstration tokens in rollout_is_weights: disable "
                             "algorithm.rollout_correction.rollout_is")
        if settings.aux_nll_weight <= 0:
            raise ValueError("ivr_r1.optimization.aux_nll_weight must be > 0")
    if settings.optimization_mode == "join" and not owns_reward(config):
        raise ValueError("ivr_r1.optimization.mode=join enters a demonstration into its GRPO group with the reward the "
                         "agent loop computed (the recipe's IVGRRewardManager, no reward model); with another reward "
                         "it would be scored unlike its siblings: use mode=replace or aux_nll")
    if settings.rereason.continuation == "teacher":
        from reward_score.judge import JudgeConfig

        from recipe.ivr_r1.teacher import split_teacher_settings

        client, _policy = split_teacher_settings(settings.teacher)  # raises on a bad deadline
        if not JudgeConfig.from_mapping(client).enabled and settings.enable:
            raise ValueError("ivr_r1.rereason.continuation=teacher needs ivr_r1.rereason.teacher.base_url (or "
                             "TEACHER_BASE_URL): an OpenAI-compatible vision model; or continuation=policy")
    if settings.enable and settings.attributor_kind == "judge" and not settings.attributor_judge.get("base_url"):
        raise ValueError("ivr_r1.attributor.kind=judge needs ivr_r1.attributor.judge.base_url (or "
                         "ATTRIBUTOR_BASE_URL); or set ivr_r1.attributor.kind=policy")
    if agent.default_agent_loop == "ivr_r1_agent":
        raise ValueError("keep actor_rollout_ref.rollout.agent.default_agent_loop a plain loop: validation "
                         "must not be rectified (the trainer sets ivr_r1_agent on training rows)")
    return settings


@hydra.main(config_path="config", config_name="ivr_r1_trainer", version_base=None)
def main(config: DictConfig) -> None:
    check_config(config)
    run_ppo(config, task_runner_class=IVRR1TaskRunner)


if __name__ == "__main__":
    main()
