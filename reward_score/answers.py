"""Rule-based answer matching. Each verdict is decisive (correct or wrong) or undecided.

The rules decide only what a careful grader would decide from the answer, the ground truth and (if
given) the question, without the image; everything else is undecided and worth a judge call. The
answer is first reduced to its final statement (`reward_score.text.final_statement`: the last stated
decision wins, a conclusion over its derivation, a claim over its explanation). Rules, picked by
`answer_type` or detected from the ground truth:

- choice: `reward_score.choices.choice_letters` (the one option parser, shared with the eval): one
  committed option is decisive; two or more distinct options ("B or C", "A, B", "red or blue",
  "A. green" where green is B) are a hedge, wrong; an answer that only negates options ("not B")
  is wrong. A lone letter is always the letter, also when the options' texts are letters (AI2D).
- yes/no: the words yes/no/true/false only (never "right", "correct" or directions); the last
  decision wins ("Yes. No wait, no." is no); "yes or no" is a hedge, wrong.
- numbers: one number per side (digits, thousands separators, decimals, fractions, percent,
  `\\frac{a}{b}`, number words up to the millions), compared exactly as rationals; non-integer
  ground truths also within `number_rel_tol`. Units from a table (length, mass, time, volume, area,
  speed, angle, temperature, currency) convert within a dimension ("200 cm" = "2 m"); different
  dimensions are wrong, unknown or unconvertible unit pairs undecided. A negated or compared number
  ("not 2", "at least 2", "between 2 and 3") and two offered values ("3 or 4") are wrong; a
  percentage against a plain ground truth is read by the question (`asks_percent`). Expressions go
  to math-verify.
- math: math-verify (`reward_score.mathcheck`, hard time bound) for LaTeX and expressions.
- text: normalized exact match (lower case, no punctuation or articles); the ground truth only under
  a negation ("not red") or offered beside another answer ("red or green") is wrong; else undecided.

`acceptable_answers` and `best_verdict` are the acceptable-answers rule the reward and the eval share.
The number family lives in `reward_score.numbers`, `Verdict` and `resolve_math` in
`reward_score.verdict` (both re-exported here, the public path).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import lru_cache

from reward_score.choices import NEGATED, choice_letters, letter_of, options_from_choices
from reward_score.numbers import asks_percent, looks_like_math, match_number, quantity  # noqa: F401 (asks_percent)
from reward_score.text import affirmed, final_statement, has_negation_cue, negated_before, normalize_text, strip_answer
from reward_score.verdict import Verdict, resolve_math  # noqa: F401 (re-export: the public path)

ANSWER_TYPES = ("choice", "yes_no", "number", "math", "text")


# ------------------------------------------------------------------------------------------- choice
def _match_choice(pred: str, gt: str, options: Mapping[str, str]) -> Verdict:
    gt_letters = choice_letters(gt, options, is_gt=True)
    if gt_letters is None or len(gt_letters) != 1:
        return Verdict(None, "choice")
    pred_letters = choice_letters(pred, options)
    if pred_letters is None:
        return Verdict(None, "choice")
    if pred_letters == NEGATED:
        return Verdict(False, "choice_negated")  # "not B", "It is not red": no option chosen
    if len(pred_letters) > 1:
        return Verdict(False, "choice_hedge")
    return Verdict(pred_letters == gt_letters, "choice")


# ------------------------------------------------------------------------------------------- yes/no
_YES = {"yes", "yeah", "yep", "true"}
_NO = {"no", "nope", "false"}
_YES_NO_HEDGE = re.compile(r"\b(?:yes|no|true|false)\b\s*(?:or|/|and)\s*\b(?:yes|no|true|false)\b", re.IGNORECASE)
# a later decision: a yes/no word that opens a clause and stands alone ("Yes. No wait, no.")
_DECISION = re.compile(r"(?:^|[.,;:!?]\s*)(?:(?:no\s+wait|wait|actually|correction|on\s+second\s+thought|so|then)\s*,?\s*)?"
                       r"(yes|yeah|yep|true|no|nope|false)\b(?=\s*(?:[,.;:!?)]|$))", re.IGNORECASE)
_HEDGED = "hedge"


def _yes_no(text: str) -> str | None:
    """"yes", "no", `_HEDGED` ("yes or no") or None. The first word decides, unless a later clause
    is a yes/no of its own: then the last stated decision wins ("No. Actually, yes." is yes)."""
    stripped = strip_answer(text)
    if _YES_NO_HEDGE.search(stripped):
        return _HEDGED
    words = normalize_text(stripped).split()
    decision = None
    if words and (words[0] in _YES or words[0] in _NO):
        decision = words[0]
    for match in _DECISION.finditer(stripped):
        if not negated_before(stripped, match.start(1)):
            decision = match.group(1).lower()
    if decision is None:
        return None
    return "yes" if decision in _YES else "no"


def _match_yes_no(pred: str, gt: str) -> Verdict:
    gt_value, pred_value = _yes_no(gt), _yes_no(pred)
    if gt_value in (None, _HEDGED) or pred_value is None:
        return Verdict(None, "yes_no")
    if pred_value == _HEDGED:
        return Verdict(False, "yes_no_hedge")
    return Verdict(gt_value == pred_value, "yes_no")


# ------------------------------------------------------------------------------------------- math
def _match_math(pred: str, gt: str) -> Verdict:
    stripped = strip_answer(pred)
    if len(stripped) > 300:
        return Verdict(None, "math")
    return Verdict(None, "math", pending=(strip_answer(gt), stripped))


# ------------------------------------------------------------------------------------------- dispatch
def _choices_key(choices: object) -> tuple | None:
    """A hashable form of `choices` (a mapping, a list or a numpy array from parquet)."""
    if choices is None or (hasattr(choices, "__len__") and len(choices) == 0):
        return None
    if isinstance(choices, Mapping):
        return ("map", *((str(k), str(v)) for k, v in choices.items()))
    return ("seq", *(str(c) for c in choices))


@lru_cache(maxsize=4096)
def _options(key: tuple | None) -> dict[str, str]:
    if key is None:
        return {}
    if key[0] == "map":
        return options_from_choices(dict(key[1:]))
    return options_from_choices(list(key[1:]))


def detect_answer_type(gt: str, choices: object = None) -> str:
    """Guess the rule family from the ground truth (and the presence of options)."""
    return _detect(str(gt), _choices_key(choices))


@lru_cache(maxsize=65_536)
def _detect(gt: str, choices_key: tuple | None) -> str:
    stripped = strip_answer(gt).rstrip(".").strip()
    if letter_of(stripped):
        return "choice"
    options = _options(choices_key)
    if options and choice_letters(gt, options, is_gt=True):
        return "choice"
    if normalize_text(stripped) in ("yes", "no", "true", "false"):
        return "yes_no"
    if quantity(stripped, strict=True) is not None:
        return "number"
    if looks_like_math(stripped):
        return "math"
    return "text"


@lru_cache(maxsize=4096)
def _gt_phrase(gt_norm: str) -> re.Pattern:
    """The ground truth's words (normalized) as they may appear in raw text, as a search pattern."""
    return re.compile(r"(?<!\w)" + r"\W+(?:(?:a|an|the)\W+)?".join(map(re.escape, gt_norm.split())) + r"(?!\w)",
                      re.IGNORECASE)


def _negates(pred: str, norm_gt: str) -> bool:
    """The answer names the ground truth only under a negation ("not red", "It isn't red")."""
    if not has_negation_cue(pred):
        return False
    found = list(_gt_phrase(norm_gt).finditer(pred))
    return bool(found) and all(negated_before(pred, m.start()) for m in found)


def _text_hedge(pred: str, norm_gt: str) -> bool:
    """"red or green", "either red or green" for red: the ground truth offered beside another answer."""
    parts = {normalize_text(p) for p in re.split(r"\bor\b|\beither\b|/", pred, flags=re.IGNORECASE)} - {""}
    return len(parts) > 1 and norm_gt in parts


def rule_verdict(
    pred: str | None,
    gt: str,
    answer_type: str | None = None,
    choices: Sequence[str] | Mapping[str, str] | None = None,
    *,
    question: str | None = None,
    number_rel_tol: float = 1e-2,
    max_answer_chars: int = 1000,
) -> Verdict:
    """Rules only, no math-verify: a math case comes back with `pending` set (see `resolve_math`).
    `question` (optional) decides what a percentage means (see `match_number`). Never raises."""
    if pred is None or not str(pred).strip():
        return Verdict(False, "empty")
    pred = str(pred)
    if len(pred) > max_answer_chars:
        return Verdict(False, "too_long")
    gt = "" if gt is None else str(gt)
    key = _choices_key(choices)
    kind = answer_type if answer_type in ANSWER_TYPES else _detect(gt, key)
    if kind == "yes_no":  # every yes/no of the answer counts: the last decision wins
        return _match_yes_no(pred, gt)
    stated = final_statement(pred) or strip_answer(pred)
    pred = affirmed(stated)  # "A, not B" commits to A
    norm_pred, norm_gt = normalize_text(pred), normalize_text(strip_answer(gt))
    if kind == "choice":
        verdict = _match_choice(pred, gt, _options(key))
        if verdict.decisive:
            return verdict
    elif kind == "number":
        verdict = match_number(pred, gt, number_rel_tol, question)
        if verdict.decisive or verdict.pending or verdict.rule == "number_unit":
            return verdict
    elif kind == "math":
        quantity_gt = quantity(gt, strict=True)
        if quantity_gt is not None and quantity(pred, strict=True) is not None:
            return match_number(pred, gt, number_rel_tol, question)
        if norm_gt and norm_pred == norm_gt:
            return Verdict(True, "text")
        return _match_math(pred, gt)
    if norm_gt and norm_pred == norm_gt:
        return Verdict(True, "text")
    if norm_gt and _negates(stated, norm_gt):
        return Verdict(False, f"{kind}_negated")
    if norm_gt and _text_hedge(pred, norm_gt):
        return Verdict(False, f"{kind}_hedge")
    return Verdict(None, kind)


def match_answer(
    pred: str | None,
    gt: str,
    answer_type: str | None = None,
    choices: Sequence[str] | Mapping[str, str] | None = None,
    *,
    question: str | None = None,
    number_rel_tol: float = 1e-2,
    max_answer_chars: int = 1000,
    math_timeout_s: float = 2.0,
    math_workers: int = 2,
) -> Verdict:
    """Compare a predicted answer text with the ground truth by rules (math-verify included).

    `answer_type` in ANSWER_TYPES (or None: detected from `gt`). A missing/empty prediction and one
    longer than `max_answer_chars` are decisively wrong (paper). math-verify runs in the process pool
    of `reward_score.mathcheck` and returns within `math_timeout_s` seconds (rule `math_timeout`,
    undecided, when it does not). Never raises.
    """
    verdict = rule_verdict(pred, gt, answer_type, choices, question=question, number_rel_tol=number_rel_tol,
                           max_answer_chars=max_answer_chars)
    if verdict.pending is None:
        return verdict
    from reward_score.mathcheck import math_pool

    return resolve_math(verdict, math_pool(math_workers, math_timeout_s).check(*verdict.pending))


def contains_answer(pred: str | None, gt: str) -> bool:
    """Lenient fallback for undecided answers when no judge is configured: the normalized ground
    truth appears as whole words in the normalized final statement of the prediction, not negated
    ("It is not red" does not contain the answer red)."""
    if not pred or not gt:
        return False
    norm_gt = normalize_text(str(gt))
    final = final_statement(str(pred)) or str(pred)
    return bool(norm_gt) and f" {norm_gt} " in f" {normalize_text(final)} " and not _negates(final, norm_gt)


# ------------------------------------------------------------------------------- acceptable answers
def acceptable_answers(reference: object, listed: Sequence[object] | None = None) -> list[str]:
    """Every acceptable answer of an item: the reference answer first, then the other answers of
    `listed` (data_prep's / the eval schema's `answers`), blanks and repeats dropped; `[""]` when
    there is none. An answer is correct when it matches ANY of them (`best_verdict`)."""
    out: list[str] = []
    for answer in [reference, *(list(listed) if listed is not None else [])]:
        text = "" if answer is None else str(answer)
        if text.strip() and text not in out:
            out.append(text)
    return out or [""]


def best_verdict(verdicts: Sequence[Verdict]) -> Verdict:
    """The verdict of an answer against all acceptable answers (one verdict each, same order): right
    when any is right; wrong when all are decisively wrong; else the first undecided one."""
    if not verdicts:
        raise ValueError("best_verdict needs at least one verdict")
    for verdict in verdicts:
        if verdict.correct is True:
            return verdict
    undecided = [v for v in verdicts if not v.decisive]
    return undecided[0] if undecided else verdicts[0]
