"""`Verdict`: what the answer rules decide about one answer against one reference answer.

A leaf module: the rule families (`reward_score.answers`, `reward_score.numbers`) and their callers
share it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """`correct` is True/False when a rule decided, None when undecided; `rule` names the rule.

    `pending` is set (and `correct` None) when only math-verify can decide: the (gold, prediction)
    pair for `reward_score.mathcheck`; `resolve_math` turns its result into the final verdict.
    """

    correct: bool | None
    rule: str
    pending: tuple[str, str] | None = None

    @property
    def decisive(self) -> bool:
        return self.correct is not None


def resolve_math(verdict: Verdict, result: bool | None | str) -> Verdict:
    """The final verdict of a pending one, given `reward_score.mathcheck`'s result for its pair."""
    if verdict.pending is None:
        return verdict
    if result is True or result is False:
        return Verdict(result, "math")
    if result == "math_timeout":
        return Verdict(None, "math_timeout")
    return Verdict(None, "math")
