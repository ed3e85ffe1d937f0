"""The iVGR step stage: once per step, after every rollout has its per-rollout reward and before
advantages. Picks each sample's reference (best grounded rollout), updates the archive, has the judge
score every textual rollout's reasoning against the reference, and returns each textual rollout's
final reward (the consistency term weighted in by `reward_score.result.with_consistency`) plus the
step's `ivgr/` metrics.

Pure asyncio over plain records: no verl, no TransferQueue (the trainer adapts). This is also the
extension point for other step-level methods (IVR-R1): subclass `StepStage`, implement `run`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from recipe.ivgr.archive import Reference, RolloutArchive
from reward_score.config import RewardWeights
from reward_score.judge.policy import JUDGE_POLICY_KEYS, JudgePolicy, split_judge_settings  # noqa: F401 (re-export)
from reward_score.result import RewardScore, with_consistency

logger = logging.getLogger(__name__)

GROUNDED_KEYS = ("score", "format", "acc", "acc_undecided", "iou", "box_valid", "num_boxes")
TEXTUAL_KEYS = ("score", "format", "acc", "acc_undecided", "consistency")
SINGLE_KEYS = ("score", "format", "acc", "acc_undecided")


@dataclass
class RolloutRecord:
    """One finished rollout as the stage sees it.

    `reward` is the per-rollout reward (`RewardScore`, read back from the row's reward_extra_info);
    `think` is the `<think>` text (None when missing), boxes in the model frame; `extra_info` is the
    dataset row's extra_info (GT boxes, image size, frame), kept for dumps; `reward_wait_s` is the wall
    time, seconds, the reward worker spent scoring it (judge calls included).
    """

    sample_id: str
    stream: str
    question: str
    think: str | None
    reward: RewardScore
    extra_info: dict = field(default_factory=dict)
    reward_wait_s: float = 0.0


@dataclass
class StageOutput:
    """`bonus[i]` is what the stage adds to record i's score (0 for rows it leaves alone); `terms[i]` are
    the reward terms it decided for record i (e.g. `{"consistency": 0.7}`, unweighted; `RewardScore`
    field names), written into the rollout's reward next to its final score (`apply_stage_outputs`)."""

    bonus: list[float]
    metrics: dict[str, float] = field(default_factory=dict)
    terms: dict[int, dict[str, float]] = field(default_factory=dict)


def apply_stage_outputs(records: Sequence[RolloutRecord], outputs: Sequence[StageOutput]) -> list[float]:
    """Make each record's `reward` the one the actor trains on: every stage's terms set, every bonus added
    to `score` (what verl's `rm_scores` then holds). A term that is no `RewardScore` field raises
    TypeError. Returns the total bonus per record."""
    total = [0.0] * len(records)
    for out in outputs:
        total = [a + b for a, b in zip(total, out.bonus)]
    for i, record in enumerate(records):
        terms: dict[str, float] = {}
        for out in outputs:
            terms.update(out.terms.get(i, {}))
        if terms or total[i]:
            record.reward = replace(record.reward, **terms, score=record.reward.score + total[i])
    return total


class StepStage(ABC):
    """A step-level stage: sees every rollout of the step, returns reward bonuses and metrics.
    `state_dict`/`load_state_dict` are saved in and restored from verl's checkpoint folder under
    `state_key`, a name that stays when the class is renamed (checkpoints written before it existed
    used the class name; `recipe.ivgr.trainer.load_stage_states` still reads those)."""

    state_key: str = ""  # set by every subclass that has state

    @abstractmethod
    async def run(self, records: Sequence[RolloutRecord], step: int) -> StageOutput:
        """Bonuses (one per record, in order) and metrics for this step."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        return None


def stage_key(stage: StepStage | type[StepStage]) -> str:
    """The stable name a stage's state is saved under (`StepStage.state_key`, else its class name)."""
    cls = stage if isinstance(stage, type) else type(stage)
    return cls.state_key or cls.__name__


def saved_state(states: dict, stage: StepStage | type[StepStage]) -> dict | None:
    """The state of `stage` in a checkpoint's `ivgr_stages.json` content: under its `state_key`, or under
    its class name (checkpoints written before the stable keys); None when absent."""
    cls = stage if isinstance(stage, type) else type(stage)
    for key in (stage_key(cls), cls.__name__):
        if key in states:
            return states[key]
    return None


@dataclass(frozen=True)
class ConsistencySettings:
    """`reference_iou_threshold`: a grounded rollout qualifies as reference when acc == 1 and IoU >= this
    (paper: 0.3); `reference_requires_format`: also require format == 1 (paper figure; the official code
    does not check it); `weights`: the reward's weights (`reward_score.weights`; the consistency term is
    weighted with the others by `reward_score.result.with_consistency`, paper: 1); `judge`: deadline,
    circuit breaker and warning threshold of the step's judge calls."""

    reference_iou_threshold: float = 0.3
    reference_requires_format: bool = False
    weights: RewardWeights = field(default_factory=RewardWeights)
    judge: JudgePolicy = field(default_factory=JudgePolicy)


class ConsistencyStage(StepStage):
    """iVGR's reference selection + rollout archive + consistency judge."""

    state_key = "consistency"  # the rollout archive

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
            r.acc >= 1.0
            and r.iou >= self.settings.reference_iou_threshold
            and bool((record.think or "").strip())
            and (not self.settings.reference_requires_format or r.format >= 1.0)
        )

    def update_archive(self, records: Sequence[RolloutRecord], step: int) -> int:
        """Offer each sample's best qualifying grounded rollout of this step; returns how many were stored."""
        self.archive.start_step()
        best: dict[str, RolloutRecord] = {}
        for record in records:
            if record.stream == "grounded" and self._qualifies(record):
                current = best.get(record.sample_id)
                if current is None or record.reward.iou > current.reward.iou:
                    best[record.sample_id] = record
        stored = 0
        for sample_id, record in best.items():
            candidate = Reference(record.think or "", record.reward.acc, record.reward.iou, step)
            stored += self.archive.offer(sample_id, candidate)
        return stored

    async def run(self, records: Sequence[RolloutRecord], step: int) -> StageOutput:
        from reward_score.judge import judge_consistency

        start = time.perf_counter()
        stored = self.update_archive(records, step)
        bonus = [0.0] * len(records)
        consistency: dict[int, float] = {}
        counts = defaultdict(int)
        # identical requests (same question, reference and reasoning: short answers and repeated
        # templates within a group) go to the judge once; every rollout of the group gets the value
        groups: dict[tuple[str, str, str], list[int]] = {}
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
                groups.setdefault((record.question, reference.think, record.think), []).append(i)
        calls = [(rows, judge_consistency(self.judge, *key)) for key, rows in groups.items()]
        asked = sum(len(rows) for rows, _ in calls)
        counts["judge_shared"] = asked - len(calls)
        # the accuracy calls already spent part of the step's judge budget: at most the longest reward wait
        reward_wait = max((r.reward_wait_s for r in records), default=0.0)
        budget = max(0.0, self.settings.judge.step_deadline_s - reward_wait)
        if calls:
            results = await self._bounded(calls, counts, step, budget)
            for (rows, _), result in zip(calls, results):
                for i in rows:
                    if result is None:
                        consistency[i] = 0.0  # cancelled by the deadline or the breaker (counted there)
                    elif result.value is None:
                        counts["judge_failed"] += 1
                        consistency[i] = 0.0
                    else:
                        consistency[i] = float(result.value)
        for i, value in consistency.items():
            reward = records[i].reward
            bonus[i] = with_consistency(reward, value, self.settings.weights).score - reward.score

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
            "ivgr/textual/judge_deadline": float(counts["judge_deadline"]),
            "ivgr/textual/judge_breaker": float(counts["judge_breaker"]),
            "ivgr/textual/judge_shared": float(counts["judge_shared"]),
            "ivgr/judge/reward_wait_max_s": float(reward_wait),
            "ivgr/judge/consistency_budget_s": float(budget),
        })
        metrics.update(reward_metrics(records, step, self.settings.judge.warn_failure_rate))
        if self.judge is not None:
            metrics.update({f"ivgr/judge/{k}": float(v) for k, v in self.judge.stats(reset=True).items()})
            lost = counts["judge_failed"] + counts["judge_deadline"] + counts["judge_breaker"]
            if asked and lost / asked > self.settings.judge.warn_failure_rate:
                logger.warning("step %d: consistency judge failed on %d of %d calls (%d failed, %d past the "
                               "%.0f s deadline, %d stopped by the breaker); their consistency is 0",
                               step, lost, asked, counts["judge_failed"], counts["judge_deadline"],
                               self.settings.judge.step_deadline_s, counts["judge_breaker"])
        metrics["ivgr/stage/seconds"] = time.perf_counter() - start
        return StageOutput(bonus, metrics, {i: {"consistency": value} for i, value in consistency.items()})

    async def _bounded(self, calls: list[tuple[list[int], Any]], counts: dict[str, int], step: int,
                       budget_s: float | None = None) -> list:
        """Run the judge calls (one per distinct request, each standing for the rollouts in its row
        list) within `budget_s` seconds (default: the whole step deadline) and under the circuit
        breaker; cancelled or skipped ones give None. At most the client's `max_concurrency` requests
        are open at a time (the client sends no more anyway), so a tripped breaker leaves at most that
        many to cancel; the breaker counts requests, the deadline and breaker metrics count rollouts."""
        policy = self.settings.judge
        window = max(1, int(getattr(getattr(self.judge, "config", None), "max_concurrency", len(calls))))
        loop = asyncio.get_running_loop()
        budget_s = policy.step_deadline_s if budget_s is None else budget_s
        deadline = loop.time() + budget_s
        results: list = [None] * len(calls)
        queue = list(enumerate(call for _, call in calls))[::-1]  # popped from the end, in order
        running: dict[asyncio.Future, int] = {}
        finished = failed = 0
        checked = False

        def rollouts(indices) -> int:
            return sum(len(calls[index][0]) for index in indices)

        while queue or running:
            while queue and len(running) < window:
                index, call = queue.pop()
                running[asyncio.ensure_future(call)] = index
            left = deadline - loop.time()
            if left <= 0:
                open_rollouts = rollouts(running.values()) + rollouts(index for index, _ in queue)
                counts["judge_deadline"] += open_rollouts
                logger.warning("step %d: %d consistency judge calls still open at the step deadline, %.0f s (the "
                               "%.0f s step judge budget minus the longest reward wait): cancelled", step,
                               open_rollouts, budget_s, policy.step_deadline_s)
                break
            done, _ = await asyncio.wait(running, timeout=left, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                results[running.pop(task)] = task.result()
                finished += 1
                failed += not task.result().ok
            if not checked and finished >= policy.breaker_min_calls:
                checked = True
                if failed > policy.breaker_failure_rate * finished and (running or queue):
                    open_rollouts = rollouts(running.values()) + rollouts(index for index, _ in queue)
                    counts["judge_breaker"] += open_rollouts
                    logger.warning("step %d: consistency judge failed %d of its first %d calls: circuit breaker "
                                   "open, %d remaining calls of this step skipped", step, failed, finished,
                                   open_rollouts)
                    break
        for _, call in queue:
            call.close()  # never started
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        return results


class RewardMetricsStage(StepStage):
    """No reward change; only the step's reward metrics (`reward_metrics`). Used when the consistency
    stage is off, so accuracy-judge failures stay visible."""

    def __init__(self, warn_failure_rate: float = 0.05) -> None:
        self.warn_failure_rate = warn_failure_rate

    async def run(self, records: Sequence[RolloutRecord], step: int) -> StageOutput:
        metrics = stream_metrics(records, {}, [0.0] * len(records))
        metrics.update(reward_metrics(records, step, self.warn_failure_rate))
        return StageOutput([0.0] * len(records), metrics)


def reward_metrics(records: Sequence[RolloutRecord], step: int, warn_failure_rate: float = 0.05) -> dict[str, float]:
    """The reward workers' accuracy-judge outcomes and undecided answers of this step, from each
    row's `reward_extra_info` (`acc_judge` outcome codes, `acc_undecided`, `math_timeout`, `gt_error`)
    and `extra_info` (`substituted_for`, set by the dataset).

    `ivgr/acc_judge/{calls, ok, failed, <outcome>}` are counts of rollouts (`ok` = answered, fresh or
    cached; `<outcome>` = each failure kind, `cached`, `disabled`); `ivgr/acc_undecided_rate`
    is the share of rollouts whose accuracy neither the rules nor the judge decided (scored by the
    fallback); `ivgr/data/gt_error` counts rollouts of rows whose ground truth is unusable (NaN box,
    empty reference answer) and `ivgr/data/substituted` rollouts of rows the dataset served from a
    substitute sample because an image failed at run time. Logs a warning when the failed share of the judge calls is above `warn_failure_rate`."""
    from reward_score.judge import FAILURE_OUTCOMES, OUTCOME_DISABLED, SUCCESS_OUTCOMES, JudgeOutcome

    outcomes = dict.fromkeys(JudgeOutcome, 0)
    undecided = math_timeouts = gt_errors = substituted = 0
    for record in records:
        reward = record.reward
        gt_errors += reward.gt_error >= 1.0
        substituted += bool(record.extra_info.get("substituted_for"))
        outcome = JudgeOutcome.from_code(reward.acc_judge)
        if outcome is not None:
            outcomes[outcome] += 1
        undecided += reward.acc_undecided >= 1.0
        math_timeouts += reward.math_timeout >= 1.0
    calls = sum(n for o, n in outcomes.items() if o != OUTCOME_DISABLED)
    ok = sum(outcomes[o] for o in SUCCESS_OUTCOMES)
    failed = sum(outcomes[o] for o in FAILURE_OUTCOMES)
    metrics = {"ivgr/acc_judge/calls": float(calls), "ivgr/acc_judge/ok": float(ok),
               "ivgr/acc_judge/failed": float(failed),
               "ivgr/acc_judge/failure_rate": failed / calls if calls else 0.0,
               "ivgr/acc_undecided_rate": undecided / len(records) if records else 0.0,
               "ivgr/acc_rules/math_timeout": float(math_timeouts),
               "ivgr/data/gt_error": float(gt_errors), "ivgr/data/substituted": float(substituted)}
    # `ok` above counts answered calls (fresh + cached); `cached` is also shown on its own
    metrics.update({f"ivgr/acc_judge/{o}": float(n) for o, n in outcomes.items() if o != "ok"})
    if gt_errors:
        logger.warning("step %d: %d rollouts of rows with an unusable ground truth (malformed box or empty "
                       "reference answer: scored 0 there; python -m data_prep.validate lists the rows)", step, gt_errors)
    if substituted:
        logger.warning("step %d: %d rollouts come from rows served by a substitute sample (an image failed at run "
                       "time; see the dataset's warnings)", step, substituted)
    if calls and failed / calls > warn_failure_rate:
        logger.warning("step %d: accuracy judge failed on %d of %d calls (%s); %d of %d rollouts scored by "
                       "the undecided fallback", step, failed, calls,
                       ", ".join(f"{o} {outcomes[o]}" for o in FAILURE_OUTCOMES if outcomes[o]),
                       undecided, len(records))
    return metrics


def stream_metrics(records: Sequence[RolloutRecord], consistency: dict[int, float],
                   bonus: Sequence[float]) -> dict[str, float]:
    """Means per stream of the reward components (`RewardScore` fields: a misspelt key raises
    AttributeError); textual `score` includes the consistency bonus."""
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
                value = record.reward.score + bonus[i]
            else:
                value = getattr(record.reward, key)
            sums[f"ivgr/{record.stream}/{key}"] += float(value)
    out = {}
    for name, total in sums.items():
        stream = name.split("/")[1]
        out[name] = total / counts[stream]
    for stream, n in counts.items():
        out[f"ivgr/{stream}/rollouts"] = float(n)
    return out
