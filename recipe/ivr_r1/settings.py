"""Typed view of the `ivr_r1:` config section (see config/ivr_r1_trainer.yaml for every key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from recipe.ivr_r1.rereason import RereasonSettings
from recipe.ivr_r1.screening import ScreenSettings
from recipe.ivr_r1.segment import MODES

AGENT_NAME = "ivr_r1_agent"
DEMO_FIELD = "ivr_r1_demo"  # extra_fields flag of a rectified demonstration row (join and aux_nll modes)
GROUP_N_FIELD = "ivr_r1_group_n"  # per-row group size (copy of __rollout_n__, which verl pops before the loop)
ATTRIBUTOR_KINDS = ("judge", "policy")
OPTIMIZATION_MODES = ("join", "replace", "aux_nll")
EXTRA_ROW_MODES = ("join", "aux_nll")  # modes whose demonstration is an extra row next to the flawed rollout
RECIPE_REWARD_MANAGER = ("IVGRRewardManager", "recipe.ivgr.reward_manager")


@dataclass
class IVRR1Settings:
    enable: bool = True
    screen: ScreenSettings = field(default_factory=ScreenSettings)
    group_wait_s: float = 900.0
    rereason: RereasonSettings = field(default_factory=RereasonSettings)
    attributor_kind: str = "judge"
    send_reference_answer: bool = False
    attributor_judge: dict[str, Any] = field(default_factory=dict)
    attributor_policy: dict[str, Any] = field(default_factory=dict)
    teacher: dict[str, Any] = field(default_factory=dict)  # rereason.teacher (JudgeConfig keys + TeacherPolicy)
    optimization_mode: str = "join"
    aux_nll_weight: float = 0.1
    keep_texts: bool = True

    @classmethod
    def from_config(cls, config: Any) -> IVRR1Settings:
        """From the whole trainer config (DictConfig) or a plain dict holding an `ivr_r1` key."""
        from omegaconf import OmegaConf

        section = config["ivr_r1"] if "ivr_r1" in config else {}
        c = OmegaConf.to_container(section, resolve=True) if not isinstance(section, dict) else section
        s, seg, att, rr = (c.get("screening", {}), c.get("segmentation", {}), c.get("attributor", {}),
                           c.get("rereason", {}))
        opt = c.get("optimization", {})
        if seg.get("mode", "auto") not in MODES:
            raise ValueError(f"ivr_r1.segmentation.mode must be one of {MODES}")
        if att.get("kind", "judge") not in ATTRIBUTOR_KINDS:
            raise ValueError(f"ivr_r1.attributor.kind must be one of {ATTRIBUTOR_KINDS}")
        if opt.get("mode", "join") not in OPTIMIZATION_MODES:
            raise ValueError(f"ivr_r1.optimization.mode must be one of {OPTIMIZATION_MODES}")
        return cls(
            enable=bool(c.get("enable", True)),
            screen=ScreenSettings(s.get("qualify", "all"), int(s.get("cap_per_group", 2)),
                                  bool(s.get("skip_truncated", True))),
            group_wait_s=float(s.get("group_wait_s", 900.0)),
            rereason=RereasonSettings(
                rounds=int(rr.get("rounds", 2)), cue=str(rr.get("cue", RereasonSettings.cue)),
                segmentation=seg.get("mode", "auto"), max_steps=int(seg.get("max_steps", 32)),
                prefix_mask=1 if opt.get("prefix_in_loss", False) else 0,
                min_continuation_tokens=int(rr.get("min_continuation_tokens", 16)),
                cue_mask=1 if opt.get("cue_in_loss", False) else 0,
                continuation=str(rr.get("continuation", "policy"))),
            attributor_kind=att.get("kind", "judge"),
            send_reference_answer=bool(att.get("send_reference_answer", False)),
            attributor_judge=dict(att.get("judge") or {}),
            attributor_policy=dict(att.get("policy") or {}),
            teacher=dict(rr.get("teacher") or {}),
            optimization_mode=opt.get("mode", "join"),
            aux_nll_weight=float(opt.get("aux_nll_weight", 0.1)),
            keep_texts=bool((c.get("dump") or {}).get("keep_texts", True)),
        )


def owns_reward(config: Any) -> bool:
    """Whether the session's score IS the configured reward (the recipe's reward manager, no reward
    model), so it can be handed to verl instead of being computed again by the reward workers."""
    reward = config.get("reward") or {}
    manager = reward.get("reward_manager") or {}
    path = str((manager.get("module") or {}).get("path") or "")
    return (manager.get("name") == RECIPE_REWARD_MANAGER[0] and path.endswith(RECIPE_REWARD_MANAGER[1])
            and not (reward.get("reward_model") or {}).get("enable", False))
