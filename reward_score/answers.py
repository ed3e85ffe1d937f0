"""Rule-based answer matching. Each verdict is decisive (correct or wrong) or undecided.

Only undecided verdicts are worth a judge call. Rules, picked by `answer_type` or detected from
the ground truth: multiple choice (letters and option texts), yes/no, numbers (units, commas,
percent, number words, tolerance), math (math-verify), short free text (normalized exact match).
"""

from __future__ import annotations

import math
import re
import string
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

ANSWER_TYPES = ("choice", "yes_no", "number", "math", "text")


@dataclass(frozen=True)
class Verdict:
    """`correct` is True/False when a rule decided, None when undecided; `rule` names the rule."""

    correct: bool | None
    rule: str

    @property
    def decisive(self) -> bool:
        return self.correct is not None


_LETTER = r"[A-J]"
_CHOICE_PREFIX = re.compile(rf"^\(?({_LETTER})\)?(?:[.:)\]]|\s|$)")
_BARE_LETTER = re.compile(r"\(?([a-jA-J])\)?\.?")
_CHOICE_PHRASE = re.compile(rf"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?({_LETTER})\)?(?![A-Za-z])", re.IGNORECASE)
_OPTION_LINE = re.compile(rf"^\s*\(?({_LETTER})\)?\s*[.:)]\s*(.*)$", re.DOTALL)
_LEADIN = re.compile(r"^\s*(?:the\s+)?(?:final\s+)?answer\s*(?:is|:)\s*", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w.])")
_NUMBER_WITH_UNIT = re.compile(
    r"^\s*(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>%|[^\W\d_][\w°/^]*)?\s*\.?\s*$"
)
_NUM_TOKEN = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_WORD_NUMBERS = {
    w: i for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_WORD_NUMBER_RE = re.compile(r"\b(" + "|".join(_WORD_NUMBERS) + r")\b", re.IGNORECASE)
_MATH_HINT = re.compile(r"\\(?:frac|sqrt|pi|boxed|cdot|times|le|ge)|\^|\$")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_YES = {"yes", "true", "correct", "right", "y"}
_NO = {"no", "false", "incorrect", "wrong", "n"}


def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


def _strip_answer(text: str) -> str:
    text = _LEADIN.sub("", text.strip())
    return text.strip().strip("\"'`*").strip()


def options_from_choices(choices: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Letter -> normalized option text. Accepts a mapping, or a list of `"A. text"` / `"(A) text"`
    lines, or bare option texts (lettered A, B, … in order)."""
    if not choices:
        return {}
    if isinstance(choices, Mapping):
        return {str(k).strip().strip("()").upper(): normalize_text(str(v)) for k, v in choices.items()}
    options = {}
    for index, item in enumerate(choices):
        item = str(item)
        match = _OPTION_LINE.match(item)
        if match:
            options[match.group(1).upper()] = normalize_text(match.group(2))
        elif index < 10:
            options["ABCDEFGHIJ"[index]] = normalize_text(item)
    return options


def _choice_letter(text: str, options: Mapping[str, str]) -> str | None:
    """The option letter a text names: a leading letter, "answer is B", or an exact option text."""
    stripped = _strip_answer(text)
    norm = normalize_text(stripped)
    for letter, option in options.items():
        if option and norm == option:
            return letter
    match = _CHOICE_PREFIX.match(stripped)
    if match and (len(stripped) <= 3 or not options or match.group(1) in options):
        return match.group(1).upper()
    bare = _BARE_LETTER.fullmatch(stripped)
    if bare:  # "c", "(c)", "c." : a lone letter in any case; "a" alone is never an English answer here
        return bare.group(1).upper()
    match = _CHOICE_PHRASE.search(stripped)
    if match:
        return match.group(1).upper()
    return None


def _match_choice(pred: str, gt: str, options: Mapping[str, str]) -> Verdict:
    gt_letter = _choice_letter(gt, options)
    if gt_letter is None:
        return Verdict(None, "choice")
    pred_letter = _choice_letter(pred, options)
    if pred_letter is None:
        return Verdict(None, "choice")
    return Verdict(pred_letter == gt_letter, "choice")


def _yes_no(text: str) -> str | None:
    words = normalize_text(_strip_answer(text)).split()
    if not words:
        return None
    if words[0] in _YES:
        return "yes"
    if words[0] in _NO:
        return "no"
    return None


def _match_yes_no(pred: str, gt: str) -> Verdict:
    gt_value, pred_value = _yes_no(gt), _yes_no(pred)
    if gt_value is None or pred_value is None:
        return Verdict(None, "yes_no")
    return Verdict(gt_value == pred_value, "yes_no")


def _number_and_unit(text: str) -> tuple[float, str] | None:
    """(value, unit) for a text that is one number with an optional unit, else None."""
    text = _WORD_NUMBER_RE.sub(lambda m: str(_WORD_NUMBERS[m.group(1).lower()]), _strip_answer(text))
    match = _NUMBER_WITH_UNIT.match(text)
    if match is None:
        return None
    try:
        value = float(match.group("num").replace(",", ""))
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return value, (match.group("unit") or "").lower()


def _numbers_in(text: str) -> list[float]:
    text = _WORD_NUMBER_RE.sub(lambda m: str(_WORD_NUMBERS[m.group(1).lower()]), text)
    values = []
    for token in _NUM_TOKEN.findall(text)[:32]:
        try:
            value = float(token.replace(",", ""))
        except ValueError:
            continue
        if math.isfinite(value):
            values.append(value)
    return values


def _close(a: float, b: float, rel_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-9)


def _match_number(pred: str, gt: str, rel_tol: float) -> Verdict:
    gt_parsed = _number_and_unit(gt)
    if gt_parsed is None:
        return Verdict(None, "number")
    gt_value, gt_unit = gt_parsed
    pred_parsed = _number_and_unit(pred)
    if pred_parsed is None:
        values = set(_numbers_in(_strip_answer(pred)))
        if len(values) != 1:  # no number, or several: a sentence the rules should not guess about
            return Verdict(None, "number")
        pred_value, pred_unit = values.pop(), ""
    else:
        pred_value, pred_unit = pred_parsed
    # integers written as integers compare exactly (counts); everything else within rel_tol
    tol = 0.0 if float(gt_value).is_integer() and "." not in gt else rel_tol
    if _close(pred_value, gt_value, tol):
        return Verdict(True, "number")
    if "%" in (gt_unit, pred_unit) and gt_unit != pred_unit:
        scaled = pred_value * 100 if gt_unit == "%" else pred_value / 100
        if _close(scaled, gt_value, max(tol, 1e-9)):
            return Verdict(True, "number")
    if gt_unit and pred_unit and gt_unit != pred_unit:
        return Verdict(None, "number")  # 35 mm vs 3.5 cm: no unit algebra here
    return Verdict(False, "number")


def _match_math(pred: str, gt: str) -> Verdict:
    try:
        from math_verify import parse, verify

        # math-verify's timeouts use SIGALRM, which only works in the main thread; verl calls
        # compute_score from executor threads.
        main = threading.current_thread() is threading.main_thread()
        timeout = 5 if main else None
        gold = parse(gt if "$" in gt or "\\boxed" in gt else f"${gt}$", parsing_timeout=timeout)
        answer = parse(pred if "$" in pred or "\\boxed" in pred else f"${pred}$", parsing_timeout=timeout)
        if not gold or not answer:
            return Verdict(None, "math")
        return Verdict(bool(verify(gold, answer, timeout_seconds=timeout)), "math")
    except Exception:  # noqa: BLE001  (sympy can fail in many ways on model output)
        return Verdict(None, "math")


def detect_answer_type(gt: str, choices: object = None) -> str:
    """Guess the rule family from the ground truth (and the presence of options)."""
    stripped = _strip_answer(gt)
    if choices or re.fullmatch(rf"\(?{_LETTER}\)?\.?", stripped):
        return "choice"
    if normalize_text(stripped) in ("yes", "no"):
        return "yes_no"
    if _number_and_unit(stripped) is not None:
        return "number"
    if _MATH_HINT.search(stripped):
        return "math"
    return "text"


def match_answer(
    pred: str | None,
    gt: str,
    answer_type: str | None = None,
    choices: Sequence[str] | Mapping[str, str] | None = None,
    *,
    number_rel_tol: float = 1e-2,
    max_answer_chars: int = 1000,
) -> Verdict:
    """Compare a predicted answer text with the ground truth by rules.

    `answer_type` in ANSWER_TYPES (or None: detected from `gt`). A missing/empty prediction and one
    longer than `max_answer_chars` are decisively wrong (paper). Never raises.
    """
    if pred is None or not pred.strip():
        return Verdict(False, "empty")
    if len(pred) > max_answer_chars:
        return Verdict(False, "too_long")
    gt = "" if gt is None else str(gt)
    kind = answer_type if answer_type in ANSWER_TYPES else detect_answer_type(gt, choices)
    if kind == "choice":
        verdict = _match_choice(pred, gt, options_from_choices(choices))
        if verdict.decisive:
            return verdict
    elif kind == "yes_no":
        return _match_yes_no(pred, gt)
    elif kind == "number":
        return _match_number(pred, gt, number_rel_tol)
    elif kind == "math":
        verdict = _match_math(pred, gt)
        if verdict.decisive:
            return verdict
    norm_pred, norm_gt = normalize_text(_strip_answer(pred)), normalize_text(_strip_answer(gt))
    if norm_gt and norm_pred == norm_gt:
        return Verdict(True, "text")
    return Verdict(None, kind)


def contains_answer(pred: str | None, gt: str) -> bool:
    """Lenient fallback for undecided answers when no judge is configured: the normalized ground
    truth appears as whole words in the normalized prediction."""
    if not pred or not gt:
        return False
    norm_gt = normalize_text(str(gt))
    return bool(norm_gt) and f" {norm_gt} " in f" {normalize_text(pred)} "
