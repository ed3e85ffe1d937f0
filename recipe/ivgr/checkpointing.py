"""`VerifiedCheckpoints`: verl's checkpoint save and resume, made crash-safe. A mixin for any recipe trainer
built on verl's `PPOTrainerSync` (put it first in the bases); iVGR and IVR-R1 both use it.

- Save: the recipe's own state first (`save_recipe_state`; verl moves its tracker last, so a crash in
  between leaves the previous checkpoint as latest, never one without the recipe's state); no window
  without a complete checkpoint; the new folder verified right after verl moves the tracker.
- Resume: only a VERIFIED checkpoint is loaded (`recipe.ivgr.integrity.resume_target`), then the recipe's
  state (`restore_recipe_state`).
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

from omegaconf import open_dict

from recipe.ivgr import integrity

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))


class VerifiedCheckpoints:
    """Overrides verl's `_save_checkpoint` / `_load_checkpoint` (trainer/ppo/v1/trainer_base.py)."""

    def save_recipe_state(self, folder: str) -> None:
        """Write the recipe's own state into the checkpoint folder before verl writes its part."""

    def restore_recipe_state(self, folder: str) -> None:
        """Read the recipe's own state back after verl loaded the checkpoint in `folder` (a resume)."""

    def _save_checkpoint(self):
        """verl's save plus the recipe's state and verification.

        With `max_actor_ckpt_to_keep=1` verl deletes the previous step's `actor/` as soon as the new
        shards are written (`utils/checkpoint/checkpoint_manager.py` `register_checkpoint` ~181), BEFORE
        the trainer writes `data.pt` and `latest_checkpointed_iteration.txt` (`trainer/ppo/v1/trainer_base.py`
        ~1000-1026): a crash in between leaves "latest" naming weights that are gone. Here verl is asked
        to keep everything for that save and the recipe deletes the older folders itself once the new one
        is verified and named latest. An incomplete new folder is refused: the tracker goes back to the
        previous step and the run stops with the missing files listed."""
        root = self.config.trainer.default_local_dir
        folder = os.path.join(root, f"global_step_{self.global_steps}")
        self.save_recipe_state(folder)
        previous = integrity.read_tracker(root)
        deferred = self._defer_single_keep()
        try:
            super()._save_checkpoint()
        finally:
            with open_dict(self.config):
                for key, value in deferred.items():
                    self.config.trainer[key] = value
        if (self.config.actor_rollout_ref.actor.get("checkpoint") or {}).get("async_save", False):
            return  # verl writes no tracker for an async save
        problems = integrity.verify_checkpoint(folder, critic=bool(getattr(self, "use_critic", False)))
        if problems:
            if isinstance(previous, int):
                integrity.write_tracker(root, previous)
            else:
                os.remove(os.path.join(root, integrity.TRACKER))
            raise RuntimeError(f"checkpoint {folder} is incomplete right after saving ({'; '.join(problems[:4])}): "
                               f"{integrity.TRACKER} set back to {previous if isinstance(previous, int) else 'none'}; "
                               "is the disk full or the folder shared between nodes?")
        self._saved_steps = [*getattr(self, "_saved_steps", []), self.global_steps]
        if deferred:
            for step in self._saved_steps[:-1]:
                old = os.path.join(root, f"global_step_{step}")
                logger.info("keeping one checkpoint: removing %s now that %s is complete and latest", old, folder)
                shutil.rmtree(old, ignore_errors=True)
            self._saved_steps = self._saved_steps[-1:]

    def _defer_single_keep(self) -> dict[str, Any]:
        """Set `trainer.max_{actor,critic}_ckpt_to_keep` from 1 to None for one save (verl then deletes
        nothing); returns the keys changed with their values, for restoring."""
        trainer = self.config.trainer
        deferred = {}
        single = bool(trainer.get("remove_previous_ckpt_in_save", False))
        for key in ("max_actor_ckpt_to_keep", "max_critic_ckpt_to_keep"):
            if single or trainer.get(key, None) == 1:
                deferred[key] = trainer.get(key, None)
        if deferred:
            with open_dict(self.config):
                for key in deferred:
                    trainer[key] = None
                if single:
                    deferred["remove_previous_ckpt_in_save"] = True
                    trainer["remove_previous_ckpt_in_save"] = False
        return deferred

    def _load_checkpoint(self):
        """verl's load of a VERIFIED checkpoint, then the recipe's state. `resume_path` to an incomplete
        folder is refused; `auto` skips an incomplete latest (a crash inside the save window) for the
        newest complete `global_step_N`, loudly (`recipe.ivgr.integrity.resume_target`)."""
        trainer = self.config.trainer
        target = integrity.resume_target(str(trainer.resume_mode), trainer.default_local_dir,
                                         trainer.get("resume_from_path"), critic=bool(getattr(self, "use_critic",
                                                                                               False)))
        if target.error:
            raise RuntimeError(f"cannot resume: {target.error}")
        if target.skipped is not None and target.folder is not None:
            logger.warning("resume: %s is incomplete (%s); resuming from %s, the newest complete checkpoint",
                           target.skipped, "; ".join(target.problems[:4]), target.folder)
            saved = (trainer.resume_mode, trainer.get("resume_from_path"))
            with open_dict(self.config):
                trainer.resume_mode, trainer.resume_from_path = "resume_path", str(target.folder)
            try:
                super()._load_checkpoint()
            finally:
                with open_dict(self.config):
                    trainer.resume_mode, trainer.resume_from_path = saved
        else:
            super()._load_checkpoint()
        if self.global_steps > 0 and target.folder is not None:
            self.restore_recipe_state(os.path.abspath(target.folder))
