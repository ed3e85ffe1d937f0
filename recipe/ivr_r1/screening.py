"""Reward-driven screening: which rollouts of a GRPO group are rectified.

A rollout is *flawed* when its answer is decisively wrong (rules first, the judge when rules cannot
decide; still undecided = not screened, counted). The group rule chooses which groups qualify:

- ``all``: every group;
- ``has_correct``: groups with at least one correct rollout (the policy can solve the item);
- ``all_wrong``: groups with no correct rollout (where GRPO gets no signal at all).

At most ``cap_per_group`` flawed rollouts per group are selected (0 = no cap), lowest session id
first: sessions are i.i.d. samples, so this is an unbiased and reproducible choice.

With ``skip_truncated`` (default), a flawed rollout that the length limit cut off is not selected
(reason ``truncated``) and does not take a place under the cap: its reasoning used the whole response
budget, so a continuation from an early step has about as little room as the original had and almost
always ends ``length_exceeded``, after an attribution call that was paid for nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

QUALIFY_MODES = ("all", "has_correct", "all_wrong")


@dataclass(frozen=True)
class ScreenSettings:
    qualify: str = "all"
    cap_per_group: int = 2
    skip_truncated: bool = True

    def __post_init__(self) -> None:
        if self.qualify not in QUALIFY_MODES:
            raise ValueError(f"ivr_r1.screening.qualify must be one of {QUALIFY_MODES}, got {self.qualify!r}")
        if self.cap_per_group < 0:
            raise ValueError("ivr_r1.screening.cap_per_group must be >= 0 (0 = no cap)")


@dataclass(frozen=True)
class Screening:
    """``selected``: session ids to rectify; ``reason[s]`` for every session: one of ``correct``,
    ``undecided``, ``truncated``, ``selected``, ``group_not_qualified``, ``over_cap``."""

    selected: tuple[int, ...]
    reason: dict[int, str]


def screen_group(correct: dict[int, bool | None], settings: ScreenSettings,
                 truncated: Collection[int] = ()) -> Screening:
    """``correct[session]`` = True / False / None (undecided) for every session of one group;
    ``truncated``: sessions whose rollout the length limit cut off."""
    reason: dict[int, str] = {}
    flawed = []
    for session in sorted(correct):
        verdict = correct[session]
        if verdict is True:
            reason[session] = "correct"
        elif verdict is None:
            reason[session] = "undecided"
        elif settings.skip_truncated and session in truncated:
            reason[session] = "truncated"
        else:
            flawed.append(session)
    any_correct = any(v is True for v in correct.values())
    qualifies = (settings.qualify == "all"
                 or (settings.qualify == "has_correct" and any_correct)
                 or (settings.qualify == "all_wrong" and not any_correct))
    selected = []
    for session in flawed:
        if not qualifies:
            reason[session] = "group_not_qualified"
        elif settings.cap_per_group and len(selected) >= settings.cap_per_group:
            reason[session] = "over_cap"
        else:
            selected.append(session)
            reason[session] = "selected"
    return Screening(tuple(selected), reason)


def screened_share(screenings: Sequence[Screening]) -> float:
    """Selected rollouts / all rollouts over several groups."""
    total = sum(len(s.reason) for s in screenings)
    return sum(len(s.selected) for s in screenings) / total if total else 0.0
