"""Scoring of one model response against one benchmark item: answer extraction, rule matching
(`reward_score.answers.match_answer`), lenient option/yes-no fallbacks, optional judge, box IoU.

Answer extraction: the text inside `<answer>` (`reward_score.parsing.parse_response`). Without an
answer tag the fallback (on by default, `strict=False`) is the text after the last `</think>`, or
the whole response when there are no think tags (baselines that ignore the format); such items are
counted as `no_answer_tag`. An opened `<think>` that never closes (truncated reasoning) has no answer.
Nothing usable is `unparsable_output` (wrong).

Matching, in order:
1. rules (`match_answer` with the item's answer type and SHOWN options): letters and option texts
   for multiple choice ("B", "(B)", "B. blue", "the answer is B" and "blue" all name option B),
   yes/no by the first word, numbers with tolerance, math, normalized exact text;
2. lenient rules for answers the strict rules leave undecided (`lenient=True`): a lone lower-case
   letter; exactly one option whose text appears as whole words in the answer (or which contains
   the whole answer); numeric options by the value the answer states ("three" for "3"); options
   sharing a frame ("The man is sitting" / "... standing") by the one whose own words all appear and
   nothing is negated; exactly one of yes/no among the answer's words, else for an "Is there ...?"
   question a statement of presence ("There is a dog on the couch") or absence ("I do not see any
   bicycle"); for free text, the ground truth as whole words in the answer
   (`reward_score.answers.contains_answer`);
3. the LLM judge, only when configured and in scope (`open`: non-multiple-choice items; `all`);
4. otherwise wrong, counted `undecided`.

An item with several acceptable answers (`answers`) is correct when the response matches any of
them. A benchmark whose spec names its own `graded` rule replaces steps 1-2: ChartQA's relaxed accuracy
on the stated value (`benchmarks.chartqa.graded_relaxed`).

These rules agree with a careful human grader on every row of `tests/data/human_graded.jsonl`.

`reference_score` gives the other protocol's verdict: the spec's `reference` rule (`reference.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from recipe.ivgr.eval.reference import ReferenceVerdict
from reward_score.answers import Verdict, acceptable_answers, best_verdict, contains_answer, match_answer
from reward_score.choices import letter_of, named_options, options_from_choices
from reward_score.iou import iou_matrix, iou_reward
from reward_score.parsing import Box, parse_response
from reward_score.numbers import quantity
from reward_score.text import final_statement, has_negation_cue, normalize_text

_THINK_CLOSE = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<\s*think\s*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<\s*/?\s*(?:think|answer)\s*>", re.IGNORECASE)


@dataclass
class AnswerScore:
    """Outcome of scoring one response. `decided_by`: rule | lenient | judge | undecided | empty."""

    answer: str | None
    answer_source: str  # "tag" | "fallback" | "none"
    correct: bool
    rule: str
    decided_by: str

    @property
    def undecided(self) -> bool:
        return self.decided_by == "undecided"


def extract_answer(response: str | None, strict: bool = False) -> tuple[str | None, str]:
    """(answer text, source): source is "tag", "fallback" or "none"."""
    parsed = parse_response(response or "")
    if parsed.answer is not None and parsed.answer.strip():
        return parsed.answer.strip(), "tag"
    if strict or not response:
        return None, "none"
    closers = list(_THINK_CLOSE.finditer(response))
    if not closers and _THINK_OPEN.search(response):
        return None, "none"  # reasoning that never finished (usually truncated): no answer in it
    tail = response[closers[-1].end():] if closers else response
    tail = _ANY_TAG.sub(" ", tail).strip()
    return (tail, "fallback") if tail else (None, "none")


def _option_by_value(text: str, options: Mapping[str, str]) -> set[str]:
    """Numeric options: the one whose value the answer states ("three" for option "3")."""
    values = {letter: quantity(option, strict=True) for letter, option in options.items()}
    if not all(values.values()):
        return set()
    said = quantity(text, strict=False)
    if said is None or has_negation_cue(text):
        return set()
    return {letter for letter, value in values.items() if value.value == said.value}


_FILLER = frozenset({"a", "an", "the", "of", "is", "are", "to", "in", "on", "at", "it", "and"})


def _option_by_distinct_words(text: str, options: Mapping[str, str]) -> set[str]:
    """Options that share a frame ("The man is sitting" / "The man is standing"): the one whose own words
    (those not common to every option) all appear in the answer, when exactly one does and nothing is
    negated ("He is standing near the door" names "The man is standing")."""
    if has_negation_cue(text) or len(options) < 2:
        return set()
    words = {letter: set(normalize_text(option).split()) for letter, option in options.items()}
    common = set.intersection(*words.values())
    said = set(normalize_text(text).split())
    return {letter for letter, own in words.items() if (own - common - _FILLER) and own - common - _FILLER <= said}


_EXISTENCE_QUESTION = re.compile(r"^\s*(?:is|are)\s+there\b", re.IGNORECASE)
_ABSENT = re.compile(r"\b(?:there\s+(?:is|are)\s+no|there\s+(?:isn'?t|aren'?t)|(?:do|does|can)\s*(?:not|n't)\s+see|"
                     r"cannot\s+see|not\s+that\s+i\s+can\s+see|no\s+\w+\s+(?:is|are)\s+(?:visible|present))\b",
                     re.IGNORECASE)
_PRESENT = re.compile(r"^(?:yes\s*,?\s*)?(?:there\s+(?:is|are)|i\s+(?:can\s+)?see)\s+(?:a|an|some|one|two|three|\d+)\b",
                      re.IGNORECASE)


def _existence(text: str, question: str) -> list[str]:
    """An existence question ("Is there a dog ...?") answered by a statement: "There is a dog on the
    couch" -> yes; "There is no bicycle", "I do not see any bicycle" -> no; anything else -> []."""
    if not _EXISTENCE_QUESTION.match(question):
        return []
    if _ABSENT.search(text):
        return ["no"]
    if _PRESENT.match(text.strip()) and not has_negation_cue(text):
        return ["yes"]
    return []


def _lenient(pred: str, item: Mapping[str, Any]) -> Verdict:
    """Second-chance rules for answers the strict rules could not decide, read on the answer's
    final statement (`reward_score.text.final_statement`); a negated option or value is never named."""
    kind = item.get("answer_type")
    gt = str(item.get("answer") or "")
    text = final_statement(pred) or pred.strip()
    if kind == "choice" and item.get("choices") is not None and len(item["choices"]):
        options = options_from_choices(list(item["choices"]))
        gt_letter = letter_of(gt)
        named = named_options(text, options)
        norm = normalize_text(text)
        if len(named) != 1 and len(norm) >= 2:  # the answer is a fragment of exactly one option
            named = {letter for letter, option in options.items() if f" {norm} " in f" {normalize_text(option)} "}
        if len(named) != 1:
            named = _option_by_value(text, options) or _option_by_distinct_words(text, options)
        if len(named) == 1 and gt_letter is not None:
            return Verdict(next(iter(named)) == gt_letter, "lenient_option_text")
        return Verdict(None, "choice")
    if kind == "yes_no":
        words = set(normalize_text(text).split())
        found = [w for w in ("yes", "no") if w in words]
        if not found:
            found = _existence(text, str(item.get("question") or ""))
        if len(found) == 1:
            return Verdict(found[0] == normalize_text(gt), "lenient_yes_no")
        return Verdict(None, "yes_no")
    if kind in ("text", None) and contains_answer(text, gt):
        return Verdict(True, "lenient_contains")
    return Verdict(None, str(kind))


def score_answer(item: Mapping[str, Any], response: str | None, *, strict: bool = False,
                 lenient: bool = True) -> AnswerScore:
    """Rule-based score of `response` for an eval item (dict with the eval schema's columns)."""
    from recipe.ivgr.eval.benchmarks import spec_of

    answer, source = extract_answer(response, strict)
    if answer is None:
        return AnswerScore(None, source, False, "empty", "empty")
    own_rule = spec_of(item.get("benchmark")).graded
    if own_rule is not None:
        verdict = own_rule(answer, item)
        return AnswerScore(answer, source, bool(verdict.correct), verdict.rule, "rule")
    golds = acceptable_answers(item.get("answer"), item.get("answers"))
    choices = list(item["choices"]) if item.get("choices") is not None else None
    question = str(item["question"]) if item.get("question") is not None else None
    verdict = best_verdict([match_answer(answer, gold, item.get("answer_type"), choices, question=question)
                            for gold in golds])
    if verdict.decisive:
        return AnswerScore(answer, source, bool(verdict.correct), verdict.rule, "rule")
    if lenient:
        second = best_verdict([_lenient(answer, {**item, "answer": gold}) for gold in golds])
        if second.decisive:
            return AnswerScore(answer, source, bool(second.correct), second.rule, "lenient")
    return AnswerScore(answer, source, False, verdict.rule, "undecided")


def reference_score(item: Mapping[str, Any], answer: str | None, tagged: bool) -> ReferenceVerdict | None:
    """The `reference` protocol's verdict on an extracted answer (the benchmark spec's `reference` rule);
    None when the benchmark has none. No answer at all is wrong (the reference would read nothing either)."""
    from recipe.ivgr.eval.benchmarks import spec_of

    rule = spec_of(item.get("benchmark")).reference
    if rule is None:
        return None
    if answer is None:
        return ReferenceVerdict(False, None)
    return rule.score(answer, item, tagged)


def judge_reference(item: Mapping[str, Any]) -> str:
    """The ground truth as the judge sees it ("B. blue" for multiple choice)."""
    if item.get("answer_type") == "choice" and item.get("answer_text"):
        return f"{item['answer']}. {item['answer_text']}"
    return str(item.get("answer") or "")


def in_judge_scope(item: Mapping[str, Any], scope: str) -> bool:
    """`open`: only items that are not multiple choice; `all`: every item; `none`: never."""
    if scope == "all":
        return True
    if scope == "open":
        return item.get("answer_type") != "choice"
    return False


def box_metrics(pred: Sequence[Box], gt: Sequence[Box]) -> dict[str, float]:
    """IoU of predicted vs GT boxes (same frame; IoU does not change under per-axis scaling, so
    original pixels are as good as the model frame). `iou` = the paper's ½·(recall + precision)
    best-match IoU (`reward_score.iou`), `recall_iou` = mean over GT of the best IoU with any
    prediction (TreeBench's mIoU), `precision_iou` = mean over predictions of their best IoU."""
    if not gt:
        return {}
    if not pred:
        return {"iou": 0.0, "recall_iou": 0.0, "precision_iou": 0.0}
    ious = iou_matrix(pred, gt)
    return {"iou": iou_reward(pred, gt, "paper"), "recall_iou": float(ious.max(axis=0).mean()),
            "precision_iou": float(ious.max(axis=1).mean())}
