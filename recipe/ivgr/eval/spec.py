"""What a benchmark is: `BenchmarkSpec` (reader, per-item rules, aggregate) and the aggregates several
benchmarks share. A leaf module: every benchmark module under `recipe.ivgr.eval.benchmarks` builds its spec
from it; the registry (`recipe.ivgr.eval.benchmarks`) collects them.

Protocols: every record carries two verdicts, `correct` (`graded`, the careful grader,
`scoring.score_answer`) and `reference_correct` (`reference`, the rule of the implementation the
benchmark's published numbers come from). An aggregate turns one protocol's verdicts into the
benchmark's official score.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from recipe.ivgr.eval.reference import ReferenceRule
    from recipe.ivgr.eval.sources import RawItem, RowError, SkipRow
    from reward_score.answers import Verdict

Protocol = Literal["graded", "reference"]
VERDICT_FIELD: dict[str, str] = {"graded": "correct", "reference": "reference_correct"}
Records = Sequence[Mapping[str, Any]]
# (records of one benchmark x mode, protocol) -> (score as a fraction or None, extra summary fields)
AggregateFn = Callable[[Records, Protocol], tuple[float | None, dict[str, Any]]]
Reader = Callable[[Sequence[Path], Path], Iterator["RawItem | RowError | SkipRow"]]
# (extracted answer, eval row) -> verdict; replaces the generic graded rules (ChartQA's relaxed accuracy)
GradedRule = Callable[[str, Mapping[str, Any]], "Verdict"]


def hits(records: Records, protocol: Protocol) -> list[bool]:
    """Per-item verdicts of one protocol (a missing verdict is wrong)."""
    field = VERDICT_FIELD[protocol]
    return [bool(r.get(field)) for r in records]


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Metric:
    """A benchmark's official aggregate: `name` is shown in the summary, `score` computes it."""

    name: str
    score: AggregateFn


def _accuracy(records: Records, protocol: Protocol) -> tuple[float | None, dict[str, Any]]:
    return mean([float(h) for h in hits(records, protocol)]), {}


def _subset_mean(records: Records, protocol: Protocol) -> tuple[float | None, dict[str, Any]]:
    """Mean of the per-subset accuracies (HR-Bench FSP/FCP, CV-Bench-2D ADE20K/COCO)."""
    groups: dict[str, list[bool]] = defaultdict(list)
    for record, hit in zip(records, hits(records, protocol)):
        groups[str(record.get("subset") or "-")].append(hit)
    return mean([sum(v) / len(v) for v in groups.values()]), {}


ACCURACY = Metric("accuracy", _accuracy)
SUBSET_MEAN = Metric("subset_mean", _subset_mean)


@dataclass(frozen=True)
class BenchmarkSpec:
    """One benchmark: its reader, its per-item rules under both protocols and its aggregate.

    `reader`: public source files -> raw items (None for an unregistered eval file); `graded`: a rule
    that replaces the generic graded rules (None: `reward_score.answers.match_answer` and the lenient
    rules); `reference`: the rule of the implementation the published numbers come from (None: the
    benchmark has none, its `reference` score stays empty); `metric`: the official aggregate.
    """

    name: str
    title: str  # column name in the iVGR paper's result tables
    reader: Reader | None = None
    metric: Metric = ACCURACY
    answer_type: str = "choice"
    has_boxes: bool = False
    graded: GradedRule | None = None
    reference: ReferenceRule | None = None
