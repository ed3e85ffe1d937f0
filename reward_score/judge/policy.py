"""The step-level judge policy: the keys under `reward_score.judge` that are not the client's own
(`reward_score.judge.JudgeConfig`): the step's judge budget, the circuit breaker and the warning threshold.

A leaf module: the reward workers (`recipe.ivgr.reward_manager`), the step stage and the preflight all
split `reward_score.judge` here, so a reward worker never imports the step stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class JudgePolicy:
    """Step-level judge policy (keys under `reward_score.judge` next to the client's `JudgeConfig` keys).

    `step_deadline_s`: the step's judge budget in seconds. Each rollout's accuracy-judge calls in the
    reward workers are cancelled that long after its scoring began (`acc_judge` outcome `cancelled`),
    and the step's consistency calls get what is left of it after the longest reward wait of the step
    (`reward_wait_s`; outstanding calls then cancelled and counted as `ivgr/textual/judge_deadline`):
    the judge delays a step by at most this many seconds in all; `breaker_failure_rate`, `breaker_min_calls`: once the
    first `breaker_min_calls` consistency calls of a step have finished, more than this share failed
    -> the rest of the step's calls are cancelled (`ivgr/textual/judge_breaker`); `warn_failure_rate`:
    a warning line when the share of failed judge calls of a step (accuracy or consistency) is above it.
    """

    step_deadline_s: float = 600.0
    breaker_failure_rate: float = 0.5
    breaker_min_calls: int = 32
    warn_failure_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.step_deadline_s <= 0 or not 0 <= self.breaker_failure_rate <= 1 or self.breaker_min_calls < 1:
            raise ValueError(f"invalid reward_score.judge step policy: {self}")


JUDGE_POLICY_KEYS = tuple(f.name for f in fields(JudgePolicy))


def split_judge_settings(judge: Mapping[str, Any] | None) -> tuple[dict[str, Any], JudgePolicy]:
    """`reward_score.judge` -> (the client's JudgeConfig mapping, the step policy)."""
    judge = dict(judge or {})
    policy = {k: judge.pop(k) for k in JUDGE_POLICY_KEYS if k in judge}
    return judge, JudgePolicy(**policy)
