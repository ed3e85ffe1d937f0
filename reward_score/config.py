"""Reward settings. Defaults reproduce the iVGR paper; every deviation is a named switch.

Built from verl's `reward.custom_reward_function.reward_kwargs` (a flat or nested mapping), e.g.
`+reward.custom_reward_function.reward_kwargs.iou_variant=hungarian`, or from the recipes' `reward_score:`
config section (the same keys, read by `recipe.ivgr.reward_manager`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any

from reward_score.families import DEFAULT_FAMILY
from reward_score.iou import DUPLICATE_PENALTIES, IOU_VARIANTS


@dataclass(frozen=True)
class RewardWeights:
    """Multipliers of each component (the paper uses 1 everywhere except single accuracy 1.5)."""

    format: float = 1.0
    box_valid: float = 1.0
    iou: float = 1.0
    accuracy: float = 1.0
    consistency: float = 1.0
    single_format: float = 1.0
    single_accuracy: float = 1.5


@dataclass(frozen=True)
class RewardConfig:
    weights: RewardWeights = field(default_factory=RewardWeights)
    # IoU term: "paper" (½·(recall+precision) best-match), "hungarian" (one-to-one), "f1@0.5"
    iou_variant: str = "paper"
    # "precision" (ours: duplicates are invalid and score 0 on the IoU precision side),
    # "paper" (box_valid = 0 if the first half repeats a box; IoU untouched), "none"
    duplicate_penalty: str = "precision"
    # "tolerant" (ours: spaces, floats, bbox_2d JSON) or "strict" (official: integers, no spaces)
    box_syntax: str = "tolerant"
    # "ours": exact <think>…</think><answer>…</answer>, grounded needs a valid box in <think>, textual
    # and single no box; "paper": the official regex <think>.*</think>.*<answer>.*</answer>, no box rules
    format_rule: str = "ours"
    # box payloads beyond this count are invalid ("over_limit"); bounds the duplicate check
    max_boxes: int = 64
    # relative tolerance for non-integer numeric answers
    number_rel_tol: float = 1e-2
    # longer answers score 0 (paper)
    max_answer_chars: int = 1000
    # when rules cannot decide and no judge answers: "zero" (acc 0, counted as undecided) or
    # "contains" (normalized ground truth appears as whole words in the answer)
    undecided_fallback: str = "zero"
    # ask the judge (settings["judge"], when it has a base_url) about answers the rules cannot decide;
    # false: undecided answers score the fallback even with a judge configured
    judge_accuracy: bool = True
    # send every non-empty answer to the judge, as the official code does
    judge_all: bool = False
    # box frame used when extra_info carries none: "qwen2_5_vl" or "qwen3_vl"
    default_box_frame: str = DEFAULT_FAMILY
    # math-verify wall-time bound per check, seconds (a stuck check is killed: `math_timeout`,
    # undecided, then the judge), and the number of persistent math worker processes per process
    math_timeout_s: float = 2.0
    math_workers: int = 2

    def __post_init__(self) -> None:
        if self.iou_variant not in IOU_VARIANTS:
            raise ValueError(f"iou_variant {self.iou_variant!r} not in {IOU_VARIANTS}")
        if self.duplicate_penalty not in DUPLICATE_PENALTIES:
            raise ValueError(f"duplicate_penalty {self.duplicate_penalty!r} not in {DUPLICATE_PENALTIES}")
        if self.box_syntax not in ("tolerant", "strict"):
            raise ValueError(f"box_syntax {self.box_syntax!r} not in ('tolerant', 'strict')")
        if self.format_rule not in ("ours", "paper"):
            raise ValueError(f"format_rule {self.format_rule!r} not in ('ours', 'paper')")
        if self.math_timeout_s <= 0 or self.math_workers < 1:
            raise ValueError("math_timeout_s must be > 0 and math_workers >= 1")
        if self.undecided_fallback not in ("zero", "contains"):
            raise ValueError(f"undecided_fallback {self.undecided_fallback!r} not in ('zero', 'contains')")


_KNOWN = {f.name for f in fields(RewardConfig)} | {"judge"}


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


@lru_cache(maxsize=64)
def _build(frozen: tuple) -> RewardConfig:
    kwargs = {k: (dict(v) if k == "weights" else v) for k, v in frozen}
    unknown = set(kwargs) - _KNOWN
    if unknown:
        raise ValueError(f"unknown reward settings {sorted(unknown)}; known: {sorted(_KNOWN)}")
    kwargs.pop("judge", None)
    weights = RewardWeights(**kwargs.pop("weights", {}))
    return replace(RewardConfig(**kwargs), weights=weights)


def reward_config(settings: Mapping[str, Any] | None) -> RewardConfig:
    """A (cached) RewardConfig from a mapping of settings; unknown keys raise ValueError."""
    if not settings:
        return _build(())
    return _build(_freeze({k: v for k, v in settings.items()}))
