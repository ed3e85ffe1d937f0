"""The iVGR step stage: once per step, after every rollout has its per-rollout reward and before
advantages. Picks each sample's reference (best grounded rollout), updates the archive, has the judge
score every textual rollout's reasoning against the reference, and returns the consistency term to
add to the textual rewards plus the step's `ivgr/` metrics.

Pure asyncio over plain records: no verl, no TransferQueue (the trainer adapts). This is also the
extension point for other step-level methods (IVR-R1): subclass `StepStage`, implement `run`.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from recipe.ivgr.archive import Reference, RolloutArchive

GROUNDED_KEYS = ("score", "format", "acc", "iou", "box_valid", "num_boxes")
TEXTUAL_KEYS = ("score", "format", "acc", "consistency")
SINGLE_KEYS = ("score", "format", "acc")


@dataclass
class RolloutRecord:
    """One finished rollout as the stage sees it.

    `reward` is the per-rollout reward_extra_info (compute_score keys: score, format, acc, iou, …);
    `think` is the `<think>` text (None when missing), boxes in the model frame; `extra_info` is the
    dataset row's extra_info (GT boxes, image size, frame), kept for dumps.
    """

    sample_id: str
    stream: str
    question: str
    think: str | None
    reward: dict[str, float]
    extra_info: dict = field(default_factory=dict)


@dataclass
class StageOutput:
    """`bonus[i]` is added to record i's reward (0 for rows the stage leaves alone)."""

    bonus: list[float]
    metrics: dict[str, float] = field(default_factory=dict)


class StepStage(ABC):
    """A step-level stage: sees every rollout of the step, returns reward bonuses and metrics.
    `state_dict`/`load_state_dict` are saved in and restored from verl's checkpoint folder."""

    @abstractmethod
    async def run(self, records: Sequence[RolloutRecord], step: int) -> StageOutput:
        """Bonuses (one per record, in order) and metrics for this step."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


@dataclass(frozen=True)
class ConsistencySettings:
    """`reference_iou_threshold`: a grounded rollout qualifies as reference when acc == 1 and IoU >= this
    (paper: 0.3); `reference_requires_format`: also require format == 1 (paper figure; the official code
    does not check it); `weight`: multiplier of the consistency term (paper: 1)."""

    reference_iou_threshold: float = 0.3
    reference_requires_format: bool = False
    weight: float = 1.0


class ConsistencyStage(StepStage):
    """iVGR's reference selection + rollout archive + consistency judge."""

    def __init__(self, settings: ConsistencySettings, archive: RolloutArchive, judge=None) -> None:
        self.settings = settings
        self.archive = archive
        self.judge = judge  # reward_score.judge.JudgeClient, or None: consistency stays 0 (counted)

    def state_dict(self) -> dict:
        return {"archive": self.archive.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.archive.load_state_dict(state["archive"])

    def _qualifies(self, record: RolloutRecord) -> bool:
        r = record.reward
        return (
            r.get("acc", 0.0) >= 1.0
            and r.get("iou", 0.0) >= self.settings.reference_iou_threshold
            and bool((record.think or "").strip())
            and (not self.settings.reference_requires_format or r.get("format", 0.0) >= 1.0)
        )

    def update_archive(self, records: Sequence[RolloutRecord], step: int) -> int:
        """Offer each sample's best qualifying grounded rollout of this step; returns how many were stored."""
        self.archive.start_step()
        best: dict[str, RolloutRecord] = {}
        for record in records:
            if record.stream == "grounded" and self._qualifies(record):
                current = best.get(record.sample_id)
                if current is None or record.reward["iou"] > current.reward["iou"]:
                    best[record.sample_id] = record
        stored = 0
        for sample_id, record in best.items():
            candidate = Reference(record.think or "", record.reward["acc"], record.reward["iou"], step)
            stored += self.archive.offer(sample_id, candidate)
        return stored

    async def run(self, records: Sequence[RolloutRecord], step: int) -> StageOutput:
        from reward_score.judge import judge_consistency

        start = time.perf_counter()
        stored = self.update_archive(records, step)
        bonus = [0.0] * len(records)
        consistency: dict[int, float] = {}
        counts = defaultdict(int)
        calls: list[tuple[int, asyncio.Future]] = []
        for i, record in enumerate(records):
            if record.stream != "textual":
                continue
            counts["textual"] += 1
            reference = self.archive.get(record.sample_id)
            if reference is None:
                counts["no_reference"] += 1
                consistency[i] = 0.0
            elif not (record.think or "").strip():
                counts["no_think"] += 1
                consistency[i] = 0.0
            elif self.judge is None:
                counts["judge_disabled"] += 1
                consistency[i] = 0.0
            else:
                calls.append((i, judge_consistency(self.judge, record.question, reference.think, record.think)))
        if calls:
            results = await asyncio.gather(*(call for _, call in calls))
            for (i, _), result in zip(calls, results):
                if result.value is None:
                    counts["judge_failed"] += 1
                    consistency[i] = 0.0
                else:
                    consistency[i] = float(result.value)
        for i, value in consistency.items():
            bonus[i] = self.settings.weight * value

        metrics = stream_metrics(records, consistency, bonus)
        textual = counts["textual"]
        metrics.update({
            "ivgr/archive/size": float(len(self.archive)),
            "ivgr/archive/new_references": float(stored),
            "ivgr/archive/hit_rate": (textual - counts["no_reference"]) / textual if textual else 0.0,
            "ivgr/archive/mean_iou": self.archive.mean_iou(),
            "ivgr/textual/no_reference": float(counts["no_reference"]),
            "ivgr/textual/no_think": float(counts["no_think"]),
            "ivgr/textual/judge_failed": float(counts["judge_failed"]),
            "ivgr/textual/judge_disabled": float(counts["judge_disabled"]),
        })
        if self.judge is not None:
            metrics.update({f"ivgr/judge/{k}": float(v) for k, v in self.judge.stats(reset=True).items()})
        metrics["ivgr/stage/seconds"] = time.perf_counter() - start
        return StageOutput(bonus, metrics)


def stream_metrics(records: Sequence[RolloutRecord], consistency: dict[int, float],
                   bonus: Sequence[float]) -> dict[str, float]:
    """Means per stream of the reward components; textual `score` includes the consistency bonus."""
    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for i, record in enumerate(records):
        keys = {"grounded": GROUNDED_KEYS, "textual": TEXTUAL_KEYS, "single": SINGLE_KEYS}.get(record.stream)
        if keys is None:
            continue
        counts[record.stream] += 1
        for key in keys:
            if key == "consistency":
                value = consistency.get(i, 0.0)
            elif key == "score":
                value = record.reward.get("score", 0.0) + bonus[i]
            else:
                value = record.reward.get(key, 0.0)
            sums[f"ivgr/{record.stream}/{key}"] += float(value)
    out = {}
    for name, total in sums.items():
        stream = name.split("/")[1]
        out[name] = total / counts[stream]
    for stream, n in counts.items():
        out[f"ivgr/{stream}/rollouts"] = float(n)
    return out
