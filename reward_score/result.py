"""Typed reward input and result, and the one formula that turns a rollout's terms into its score.

`RewardInput` is the row as the reward reads it (verl's `ground_truth` and the dataset's `extra_info`);
`RewardScore` is what the reward decides for one rollout. verl's reward managers want a dict with a
"score" (they keep every key as the rows' `reward_extra_info`): `RewardScore.as_dict` builds it, and
`RewardScore.from_extra_info` reads it back, refusing a dict that lacks a field (a renamed key fails
there instead of reading as 0).

The step stage's consistency term joins the textual score through `with_consistency`, with the same
weights (`RewardWeights`) as every other term, so the dump, the step metrics and verl's `rm_scores`
show one final score.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import Any

from reward_score.answers import acceptable_answers
from reward_score.config import RewardWeights
from reward_score.streams import STREAMS


@dataclass(frozen=True, slots=True)
class RewardScore:
    """One rollout's reward. `score` is the weighted sum of the stream's terms (`stream_score`); the
    other fields are the unweighted terms and counters, all floats (verl stores them as arrays).

    Terms are in [0, 1]: `format`, `acc`, `iou` (in the model's box frame), `box_valid`, `consistency`
    (0 until the step stage sets it); flags are 0/1: `acc_undecided`, `gt_error`, `math_timeout`;
    counts: `num_boxes`, `invalid_boxes`, `duplicate_boxes`; `acc_judge` is 0 (no accuracy-judge call)
    or the call's outcome code (`reward_score.judge.JudgeOutcome.code`)."""

    score: float = 0.0
    format: float = 0.0
    acc: float = 0.0
    acc_undecided: float = 0.0
    iou: float = 0.0
    box_valid: float = 0.0
    num_boxes: float = 0.0
    invalid_boxes: float = 0.0
    duplicate_boxes: float = 0.0
    consistency: float = 0.0
    gt_error: float = 0.0
    math_timeout: float = 0.0
    acc_judge: float = 0.0

    def as_dict(self) -> dict[str, float]:
        """The dict verl's reward managers read ("score" and every term; `RESULT_KEYS` order)."""
        return {name: getattr(self, name) for name in RESULT_KEYS}

    def replaced_and_scored(self, stream: str, weights: RewardWeights, **changes: float) -> RewardScore:
        """A copy with `changes` applied and `score` recomputed from the new terms (`stream_score`), in
        one construction: `dataclasses.replace` twice per rollout (its field introspection, and ~1.7 us
        per frozen copy) was 15% of the rule path. An unknown name raises TypeError, as `replace` does."""
        values = {name: getattr(self, name) for name in RESULT_KEYS}
        values.update(changes)
        values["score"] = stream_score(stream, SimpleNamespace(**values), weights)
        return RewardScore(**values)

    @classmethod
    def from_extra_info(cls, info: Mapping[str, Any]) -> RewardScore:
        """The result back from a row's `reward_extra_info` (`as_dict`'s keys; other keys are ignored).
        A missing key raises KeyError naming it: a renamed field must not read as 0."""
        missing = [name for name in RESULT_KEYS if name not in info]
        if missing:
            raise KeyError(f"reward_extra_info lacks {missing} (has {sorted(map(str, info))}): not written by "
                           "reward_score's RewardScore.as_dict")
        return cls(**{name: float(info[name]) for name in RESULT_KEYS})


RESULT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(RewardScore))


def stream_score(stream: str, terms: RewardScore, weights: RewardWeights) -> float:
    """The weighted score of a rollout of `stream` from its terms (the one formula; paper weights):
    grounded = format + box_valid + IoU + accuracy (0..4); textual = format + accuracy + consistency
    (0..3); single = 1·format + 1.5·accuracy (0..2.5)."""
    w = weights
    if stream == "grounded":
        return w.format * terms.format + w.box_valid * terms.box_valid + w.iou * terms.iou + w.accuracy * terms.acc
    if stream == "textual":
        return w.format * terms.format + w.accuracy * terms.acc + w.consistency * terms.consistency
    if stream == "single":
        return w.single_format * terms.format + w.single_accuracy * terms.acc
    raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")


def with_consistency(reward: RewardScore, consistency: float, weights: RewardWeights) -> RewardScore:
    """A textual rollout's final reward: its per-rollout reward with the step stage's consistency term
    (the judge's score in [0, 1], unweighted) set and weighted into `score` like every other term."""
    return reward.replaced_and_scored("textual", weights, consistency=float(consistency))


@dataclass(frozen=True)
class RewardInput:
    """One row as the reward reads it: verl's `ground_truth` and the dataset's `extra_info`.

    `stream`: grounded | textual | single (default single); `answers`: every acceptable answer, the
    ground truth first (`reward_score.answers.acceptable_answers`); `question`, `answer_type` and
    `choices`: hints for the answer rules and the judge; `extra_info`: the whole mapping, for the
    ground-truth boxes (original pixels, mapped by `reward_score.frames`) and for logging."""

    stream: str
    answers: Sequence[str]
    question: str | None = None
    answer_type: str | None = None
    choices: Any = None
    extra_info: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, ground_truth: Any, extra_info: Mapping[str, Any] | None) -> RewardInput:
        """Read verl's arguments; an unknown `stream` raises ValueError."""
        info = extra_info if extra_info is not None else {}
        stream = info.get("stream") or "single"
        if stream not in STREAMS:
            raise ValueError(f"extra_info.stream must be one of {STREAMS}, got {stream!r}")
        question = info.get("question")
        return cls(stream, acceptable_answers(ground_truth, info.get("answers")),
                   str(question) if question is not None else None, info.get("answer_type"), info.get("choices"),
                   info)
