"""Entry point: `python -m recipe.ivgr.main [hydra key=value overrides]`, like verl.trainer.main_ppo.

Composes `config/ivgr_trainer.yaml` (verl's ppo_trainer plus the `ivgr:` section), runs verl's own
config validation, and starts verl's v1 TaskRunner with `IVGRTrainer` bound to the sync trainer slot
(registry key "sync" must stay: verl checks `trainer_mode == "sync"` in many places).
"""

from __future__ import annotations

import hydra
import ray
from omegaconf import DictConfig
from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
from verl.trainer.ppo.utils import need_critic, need_reference_policy
from verl.utils.config import validate_config
from verl.utils.device import auto_set_device


class _IVGRTaskRunner(TaskRunnerV1.__ray_actor_class__):
    def run(self, config: DictConfig):
        from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY

        from recipe.ivgr.trainer import IVGRTrainer

        if config.trainer.v1.trainer_mode != "sync":
            raise ValueError("iVGR needs trainer.v1.trainer_mode=sync: async modes refill groups one prompt "
                             "at a time and split the two streams of a sample")
        # inside this actor process only; the driver's registry is untouched
        TRAINER_REGISTRY["sync"] = IVGRTrainer
        return super().run(config)


IVGRTaskRunner = ray.remote(_IVGRTaskRunner)


def check_config(config: DictConfig) -> None:
    """verl's validation plus the recipe's own invariants; raises ValueError with a clear message."""
    auto_set_device(config)
    validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    if not config.trainer.use_v1:
        raise ValueError("iVGR runs on verl's v1 trainer: set trainer.use_v1=true")
    if config.data.get("gen_batch_size") not in (None, config.data.train_batch_size):
        raise ValueError("data.gen_batch_size must be unset: one dataloader fetch must hold both streams of a sample")
    filter_groups = config.algorithm.get("filter_groups") or {}
    if filter_groups.get("enable", False):
        raise ValueError("algorithm.filter_groups refills one prompt at a time and splits pairs; keep it disabled")
    if config.data.shuffle:
        raise ValueError("set data.shuffle=false: verl's row-level shuffle splits the two streams of a sample "
                         "across batches" + ("; the recipe's pair sampler does the shuffling" if config.ivgr.pair_sampler
                                             else " (keep ivgr.pair_sampler=true for a pair-level shuffle)"))
    if (config.trainer.v1.get("sampler") or {}).get("sync_refill_failed_groups", False):
        raise ValueError("trainer.v1.sampler.sync_refill_failed_groups=true makes verl fetch one prompt at a time "
                         "(gen_batch_size=1) and splits pairs; keep it false")
    if not config.ivgr.pair_sampler and config.data.train_batch_size % 2:
        raise ValueError(f"data.train_batch_size={config.data.train_batch_size} is odd: without the pair sampler "
                         "an odd batch splits a pair across two steps")
    sync_step = (config.trainer.v1.get(config.trainer.v1.trainer_mode) or {}).get("parameter_sync_step", 1)
    if int(sync_step or 1) > 1:
        raise ValueError(f"trainer.v1.{config.trainer.v1.trainer_mode}.parameter_sync_step={sync_step}: sub-batch "
                         "sampling orders rows arbitrarily and splits pairs; keep it 1")


@hydra.main(config_path="config", config_name="ivgr_trainer", version_base=None)
def main(config: DictConfig) -> None:
    check_config(config)
    run_ppo(config, task_runner_class=IVGRTaskRunner)


if __name__ == "__main__":
    main()
