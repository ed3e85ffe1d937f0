"""Rule-based answer matching. Each verdict is decisive (correct or wrong) or undecided.

The rules decide only what a careful grader would decide without reading the question; everything
else is undecided and worth a judge call. Rules, picked by `answer_type` or detected from the
ground truth:

- choice: one committed option ("B", "(B)", "B.", "B) blue", "Option B", "The answer is (B).", the
  option's text when `choices` are given) is decisive; two or more distinct options ("B or C",
  "A, B", "A/B", "(A) and (B)", "B C", "red or blue") are decisively wrong (a hedge). Without
  `choices`, free text that merely starts with a capital letter ("I think…", "A balloon") is never
  an option letter.
- yes/no: the words yes/no/true/false only (never "right", "correct" or directions); "yes or no" is
  undecided.
- numbers: one number per side (digits, thousands separators, decimals, fractions, percent,
  `\\frac{a}{b}`, number words up to the millions), compared exactly as rationals; non-integer
  ground truths also within `number_rel_tol`. Units from a table (length, mass, time, volume, area,
  speed, angle, temperature, currency) convert within a dimension ("200 cm" = "2 m"); different
  dimensions are wrong, unknown or unconvertible unit pairs undecided. Expressions go to math-verify.
- math: math-verify (`reward_score.mathcheck`, hard time bound) for LaTeX and expressions.
- text: normalized exact match (lower case, no punctuation or articles), else undecided.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

ANSWER_TYPES = ("choice", "yes_no", "number", "math", "text")


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


# ------------------------------------------------------------------------------------- text basics
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_HAS_LETTER = re.compile(r"[A-Za-z]")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_LEADIN = re.compile(
    r"^\s*(?:(?:so|thus|therefore|hence)\s*,?\s*)?(?:the\s+)?(?:final\s+|correct\s+|right\s+)?"
    r"(?:answer|option|choice)\s*(?:is|:|=|would\s+be|should\s+be)\s*", re.IGNORECASE)
_BOXED = re.compile(r"^\\boxed\{(.*)\}$", re.DOTALL)
_MATH_DELIMS = re.compile(r"^\$+(.*?)\$+$|^\\\((.*)\\\)$|^\\\[(.*)\\\]$", re.DOTALL)


@lru_cache(maxsize=16_384)  # answers repeat within GRPO groups
def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


@lru_cache(maxsize=16_384)  # answers repeat within GRPO groups
def _strip_answer(text: str) -> str:
    """The answer without a lead-in ("The answer is"), quotes, bold marks or a trailing period."""
    text = str(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    text = text.strip()
    lower = text[:40].lower()
    if "answer" in lower or "option" in lower or "choice" in lower:
        text = _LEADIN.sub("", text)
    text = text.strip().strip("\"'`*").strip()
    if text.startswith("\\boxed"):
        boxed = _BOXED.match(text)
        if boxed:
            text = boxed.group(1).strip()
    return text


# ------------------------------------------------------------------------------------------- choice
_LETTERS = "ABCDEFGHIJ"
_BARE = re.compile(r"\(?\[?([A-Ja-j])\]?\)?\s*[.:]?")  # "B", "(b)", "B.", "[C]"
_LEAD_LETTER = re.compile(r"(?:\(([A-Ja-j])\)|\[([A-Ja-j])\]|([A-J])\s*[.:)])\s*(\S.*)$", re.DOTALL)  # "(B) blue", "B) blue", "B. blue"
# "Option B", "choice (c)": a lower-case letter only in parentheses ("the answer is a dog" names no option)
_PHRASE = re.compile(r"\b(?i:option|choice|answer(?:\s+is)?)\s*:?\s*(?:\(([A-Ja-j])\)|([A-J]))(?![\w'])")
_IS_LETTER = re.compile(r"\b(?:is|be)\s*:?\s*\(?([A-J])\)?\s*[.!]?$")  # "I think it is B", "it is (C)."
_LETTER_LIST = re.compile(
    r"\(?([A-Ja-j])\)?(?:\s*(?:,|/|&|;|\+|\bor\b|\band\b|\s)\s*\(?([A-Ja-j])\)?)+\s*\.?", re.IGNORECASE)
_LIST_LETTER = re.compile(r"(?<![A-Za-z])\(?([A-Ja-j])\)?(?![A-Za-z])")
_HEDGE_SPLIT = re.compile(r"\s*(?:,|/|&|;|\bor\b|\band\b|\beither\b)\s*", re.IGNORECASE)
_OPTION_LINE = re.compile(r"^\s*\(?([A-Ja-j])\)?\s*[.:)]\s*(.*)$", re.DOTALL)


def options_from_choices(choices: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Letter -> normalized option text. Accepts a mapping, or a list of `"A. text"` / `"(A) text"`
    lines, or bare option texts (lettered A, B, … in order)."""
    if choices is None or (hasattr(choices, "__len__") and len(choices) == 0):
        return {}
    if isinstance(choices, Mapping):
        return {str(k).strip().strip("()").upper(): normalize_text(str(v)) for k, v in choices.items()}
    options = {}
    for index, item in enumerate(choices):
        item = str(item)
        match = _OPTION_LINE.match(item)
        if match:
            options[match.group(1).upper()] = normalize_text(match.group(2))
        elif index < len(_LETTERS):
            options[_LETTERS[index]] = normalize_text(item)
    return options


def _option_by_text(norm: str, options: Mapping[str, str]) -> str | None:
    for letter, option in options.items():
        if option and norm == option:
            return letter
    return None


def _choice_letters(text: str, options: Mapping[str, str], *, is_gt: bool = False) -> set[str] | None:
    """The option letters an answer commits to: one letter, several (a hedge), or None (no option
    recognised). `options` maps letters to normalized option texts (may be empty)."""
    stripped = _strip_answer(text).rstrip(".!").strip()
    norm = normalize_text(stripped)
    if options:
        letter = _option_by_text(norm, options)
        if letter:
            return {letter}
    bare = _BARE.fullmatch(stripped)
    if bare:  # a lone letter in any case ("a" alone is a letter here: the question is multiple choice)
        return {bare.group(1).upper()}
    if _LETTER_LIST.fullmatch(stripped):
        return {m.upper() for m in _LIST_LETTER.findall(stripped)}
    if options:
        parts = [normalize_text(p) for p in _HEDGE_SPLIT.split(stripped) if normalize_text(p)]
        named = {_option_by_text(p, options) for p in parts}
        if len(parts) > 1 and None not in named:
            return named
    if is_gt:
        return None
    lead = _LEAD_LETTER.match(stripped)
    if lead:
        letter = (lead.group(1) or lead.group(2) or lead.group(3)).upper()
        rest = normalize_text(lead.group(4))
        other = _option_by_text(rest, options) if options else None
        if other is not None and other != letter:
            return {letter, other}  # "B) red" where red is option A: two answers
        return {letter}
    found = {(a or b).upper() for a, b in _PHRASE.findall(stripped)}
    if found:
        return found
    is_letter = _IS_LETTER.search(stripped)
    if is_letter:
        return {is_letter.group(1)}
    return None


def _match_choice(pred: str, gt: str, options: Mapping[str, str]) -> Verdict:
    gt_letters = _choice_letters(gt, options, is_gt=True)
    if gt_letters is None or len(gt_letters) != 1:
        return Verdict(None, "choice")
    pred_letters = _choice_letters(pred, options)
    if pred_letters is None:
        return Verdict(None, "choice")
    if len(pred_letters) > 1:
        return Verdict(False, "choice_hedge")
    return Verdict(pred_letters == gt_letters, "choice")


# ------------------------------------------------------------------------------------------- yes/no
_YES = {"yes", "yeah", "yep", "true"}
_NO = {"no", "nope", "false"}
_YES_NO_HEDGE = re.compile(r"\b(?:yes|no|true|false)\b\s*(?:or|/|and)\s*\b(?:yes|no|true|false)\b", re.IGNORECASE)


def _yes_no(text: str) -> str | None:
    stripped = _strip_answer(text)
    if _YES_NO_HEDGE.search(stripped):
        return None
    words = normalize_text(stripped).split()
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


# ------------------------------------------------------------------------------------------- numbers
# unit -> (dimension, factor to the dimension's base unit); affine temperature scales do not convert
_UNIT_GROUPS: dict[str, tuple[float, tuple[str, ...]]] = {}


def _units(dimension: str, table: dict[float, tuple[str, ...]]) -> None:
    for factor, names in table.items():
        for name in names:
            _UNIT_GROUPS[name] = (dimension, factor)  # type: ignore[assignment]


_units("length", {1e-3: ("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
                  1e-2: ("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
                  1.0: ("m", "meter", "meters", "metre", "metres"),
                  1e3: ("km", "kilometer", "kilometers", "kilometre", "kilometres"),
                  0.0254: ("in", "inch", "inches", '"'), 0.3048: ("ft", "foot", "feet", "'"),
                  0.9144: ("yd", "yard", "yards"), 1609.344: ("mi", "mile", "miles")})
_units("mass", {1e-6: ("mg", "milligram", "milligrams"), 1e-3: ("g", "gram", "grams"),
                1.0: ("kg", "kilogram", "kilograms", "kilo", "kilos"), 1e3: ("tonne", "tonnes"),
                0.45359237: ("lb", "lbs", "pound", "pounds"), 0.028349523125: ("oz", "ounce", "ounces")})
_units("time", {1e-3: ("ms", "millisecond", "milliseconds"), 1.0: ("s", "sec", "secs", "second", "seconds"),
                60.0: ("min", "mins", "minute", "minutes"), 3600.0: ("h", "hr", "hrs", "hour", "hours"),
                86400.0: ("day", "days"), 604800.0: ("week", "weeks"), 31557600.0: ("year", "years")})
_units("volume", {1e-3: ("ml", "milliliter", "milliliters", "millilitre", "millilitres"),
                  1.0: ("l", "liter", "liters", "litre", "litres")})
_units("area", {1e-4: ("cm²", "cm^2", "cm2"), 1.0: ("m²", "m^2", "m2"), 1e6: ("km²", "km^2", "km2")})
_units("speed", {1.0: ("m/s",), 1 / 3.6: ("km/h", "kph", "kmh"), 0.44704: ("mph",)})
_units("angle", {1.0: ("°", "deg", "degree", "degrees")})
_units("percent", {1.0: ("%", "percent", "per cent")})
_units("celsius", {1.0: ("°c", "℃", "celsius")})
_units("fahrenheit", {1.0: ("°f", "℉", "fahrenheit")})
_units("kelvin", {1.0: ("kelvin", "kelvins")})
_units("usd", {1.0: ("$", "usd", "dollar", "dollars")})
_units("eur", {1.0: ("€", "eur", "euro", "euros")})
_units("gbp", {1.0: ("£", "gbp", "pound sterling")})
_units("yen", {1.0: ("¥", "jpy", "yen")})
# different units of one family have no fixed conversion here (exchange rates, affine scales): undecided
_FAMILY = {"celsius": "temperature", "fahrenheit": "temperature", "kelvin": "temperature",
           "usd": "currency", "eur": "currency", "gbp": "currency", "yen": "currency"}
# unit words that are also ordinary English words: units only right after a number standing alone
_SENTENCE_AMBIGUOUS = {"in", "s", "h", "l", "g", "min"}

_ONES = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_NUM_WORD = "|".join(sorted([*_ONES, *_TENS, *_SCALES], key=len, reverse=True))
_WORD_RUN = re.compile(rf"\b(?:an?\s+)?(?:{_NUM_WORD})(?:(?:\s+|\s*-\s*|\s+and\s+)(?:{_NUM_WORD}))*\b", re.IGNORECASE)

_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?"
_FRAC_LATEX = re.compile(r"\\[dt]?frac\s*\{\s*([-+]?\d+)\s*\}\s*\{\s*([-+]?\d+)\s*\}")
_FRAC_LATEX_BARE = re.compile(r"\\[dt]?frac(\d)(\d)")
_NUMBER_UNIT = re.compile(
    rf"^(?P<pre>[$€£¥])?\s*(?P<num>{_NUM})(?:\s*/\s*(?P<den>\d+))?\s*(?P<unit>[^\d\s].{{0,24}}?)?\s*$", re.DOTALL)
_NUMBER_TOKEN = re.compile(rf"(?<![\w.,/])(?P<pre>[$€£¥])?(?P<num>{_NUM})(?:/(?P<den>\d+))?(?![\w.]|,\d)"
                           r"(?:\s*(?P<unit>°[cCfF]?|%|[A-Za-zµ°²]+(?:/[A-Za-z]+|\^2)?))?")
_DEGREE = re.compile(r"\s*(?:\^\s*\{?\\circ\}?|\\circ|\\degree|º|˚)")
_LATEX_PERCENT = re.compile(r"\\%")
_MATH_HINT = re.compile(r"\\[a-zA-Z]+|\^|_\{|\\\(|\$|\b(?:sqrt|pi|log|ln|sin|cos|tan|exp)\b|[a-z]\s*[-+*/=]\s*\d|\d\s*[-+*/]\s*\(?\d")
_SENTENCE_MATH = re.compile(r"\\[a-zA-Z]+|\^|_\{|\$|=|\d\s*[-+*]\s*\(?\d")
_LATEX_WORDS = re.compile(r"\\[a-zA-Z]+|\b(?:sqrt|pi|log|ln|sin|cos|tan|exp)\b")
_PERCENT = {"%", "percent", "per cent"}
_EXPRESSION = re.compile(r"^[\d\s.+\-*/^()=a-zA-Z\\{}_,|!$]+$")


def _words_to_numbers(text: str) -> str:
    """Replace number words ("twenty-one", "one hundred and five", "a thousand") with digits."""
    def value(match: re.Match) -> str:
        words = re.split(r"[\s-]+", match.group(0).lower())
        if words[0] in ("a", "an"):
            if len(words) == 1 or words[1] not in _SCALES:
                return match.group(0)
            words[0] = "one"
        total, current = 0, 0
        for word in words:
            if word == "and":
                continue
            if word in _ONES:
                current += _ONES[word]
            elif word in _TENS:
                current += _TENS[word]
            elif word == "hundred":
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * _SCALES[word]
                current = 0
        return str(total + current)
    return _WORD_RUN.sub(value, text)


@lru_cache(maxsize=16_384)  # answers repeat within GRPO groups
def _prepare_number_text(text: str) -> str:
    text = _strip_answer(text)
    if not text.isascii():
        text = text.replace("\u2212", "-").replace("\u2009", "").replace("\u202f", "")
    if "$" in text or "\\" in text:
        delims = _MATH_DELIMS.fullmatch(text)
        if delims:
            text = next(g for g in delims.groups() if g is not None).strip()
        text = _FRAC_LATEX.sub(lambda m: f"{m.group(1)}/{m.group(2)}", text)
        text = _FRAC_LATEX_BARE.sub(lambda m: f"{m.group(1)}/{m.group(2)}", text)
        text = _DEGREE.sub("°", text)
        text = _LATEX_PERCENT.sub("%", text)
        text = re.sub(r"\\(?:text|mathrm)\{\s*([^{}]*)\}", r" \1", text)
        text = text.replace("\\,", "").replace("\\ ", " ").replace("\\!", "")
    elif not text.isascii():
        text = _DEGREE.sub("°", text)
    if _HAS_LETTER.search(text):
        text = _words_to_numbers(text)
    return text.strip().rstrip(".").strip()


def _to_fraction(num: str, den: str | None) -> Fraction | None:
    exponent = re.search(r"[eE]([-+]?\d+)$", num)
    if exponent and abs(int(exponent.group(1))) > 400:
        return None  # 1e999999999 would build a billion-digit integer
    try:
        value = Fraction(num.replace(",", ""))
        if den is not None:
            if int(den) == 0:
                return None
            value /= int(den)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return value


def _unit_key(unit: str | None, prefix: str | None) -> str:
    if prefix:
        return prefix
    if not unit:
        return ""
    unit = unit.strip().rstrip(".").strip().lower()
    unit = re.sub(r"^(?:degrees?|°)\s*(celsius|fahrenheit|c|f)$", lambda m: "°" + m.group(1)[0], unit)
    return unit.replace("³", "^3").replace("degrees c", "°c").replace("degrees f", "°f")


@dataclass(frozen=True)
class _Quantity:
    value: Fraction
    unit: str  # "" when none; a key of _UNIT_GROUPS, or an unknown word ("cars")
    exact: bool  # written as an integer or fraction (exact), not a decimal


@lru_cache(maxsize=65_536)
def _quantity(text: str, *, strict: bool) -> _Quantity | None:
    """One number with an optional unit. `strict`: the whole text must be that; otherwise a sentence
    with exactly one number ("There are 3 cars.") also counts. None when no or several numbers."""
    text = _prepare_number_text(text)
    match = _NUMBER_UNIT.fullmatch(text)
    if match is not None:
        unit = _unit_key(match.group("unit"), match.group("pre"))
        if unit and unit not in _UNIT_GROUPS and not re.fullmatch(r"[a-z][a-z ]{0,23}", unit):
            match = None  # "3 + 4", "2^{10}": an expression, not a number with a unit
    if match is None:
        if strict or _SENTENCE_MATH.search(text):
            return None
        tokens = list(_NUMBER_TOKEN.finditer(text))
        if not tokens or len(tokens) > 16:
            return None
        values = {_to_fraction(t.group("num"), t.group("den")) for t in tokens}
        units = {_unit_key(t.group("unit"), t.group("pre")) for t in tokens} & set(_UNIT_GROUPS)
        if len(values) != 1 or len(units) > 1:
            return None
        match = tokens[0]
        unit = _unit_key(match.group("unit"), match.group("pre"))
        if unit not in _UNIT_GROUPS or unit in _SENTENCE_AMBIGUOUS:
            unit = ""  # a word after the number in a sentence ("3 cars are") is not a unit
    value = _to_fraction(match.group("num"), match.group("den"))
    if value is None:
        return None
    exact = match.group("den") is not None or not re.search(r"[.eE]", match.group("num"))
    return _Quantity(value, unit, exact)


def _in_base(q: _Quantity) -> tuple[str, Fraction] | None:
    group = _UNIT_GROUPS.get(q.unit)
    if group is None:
        return None
    dimension, factor = group
    return dimension, q.value * Fraction(factor).limit_denominator(10**12)


def _compare_values(pred: _Quantity, gt: _Quantity, pred_value: Fraction, gt_value: Fraction,
                    rel_tol: float) -> bool | None:
    """Equal rationals are right. An integer ground truth (a count) is exact. A fraction ground
    truth against a decimal close to it (1/3 vs 0.333) is undecided; other decimals within rel_tol."""
    if pred_value == gt_value:
        return True
    close = abs(pred_value - gt_value) <= Fraction(rel_tol) * max(abs(pred_value), abs(gt_value))
    if gt.exact:
        if gt_value.denominator == 1 or pred.exact:
            return False
        return None if close else False
    return close


def _looks_like_math(text: str) -> bool:
    return bool(_MATH_HINT.search(text)) and len(text) <= 300


def _is_expression(text: str) -> bool:
    """Only numbers, operators, variables and LaTeX commands: something math-verify can read."""
    if not _EXPRESSION.fullmatch(text):
        return False
    return not re.search(r"[a-zA-Z]{2,}", _LATEX_WORDS.sub("", text))


def _match_number(pred: str, gt: str, rel_tol: float) -> Verdict:
    gt_q = _quantity(gt, strict=True)
    if gt_q is None:
        return Verdict(None, "number")
    pred_q = _quantity(pred, strict=False)
    if pred_q is None:
        stripped = _strip_answer(pred)
        if _looks_like_math(stripped) and _is_expression(stripped):
            return Verdict(None, "math", pending=(_strip_answer(gt), stripped))
        return Verdict(None, "number")
    gt_value, pred_value, rule = gt_q.value, pred_q.value, "number"
    if gt_q.unit and pred_q.unit and gt_q.unit != pred_q.unit:
        gt_base, pred_base = _in_base(gt_q), _in_base(pred_q)
        rule = "number_unit"
        if gt_base is None or pred_base is None:
            return Verdict(None, rule)  # "5 apples" vs "5 pears": a unit we do not know
        families = {_FAMILY.get(gt_base[0]), _FAMILY.get(pred_base[0])}
        dims = {gt_base[0], pred_base[0]}
        if "angle" in dims and families & {"temperature"}:
            pass  # "30°" vs "30 °C": the degree sign alone; compare the numbers
        elif gt_base[0] != pred_base[0]:
            if len(families) == 1 and None not in families:
                return Verdict(None, rule)  # dollars vs euros, °C vs °F: no fixed conversion here
            return Verdict(False, rule)
        else:
            gt_value, pred_value = gt_base[1], pred_base[1]
    verdict = _compare_values(pred_q, gt_q, pred_value, gt_value, rel_tol)
    if verdict is not True and (gt_q.unit in _PERCENT) != (pred_q.unit in _PERCENT) \
            and not (gt_q.unit and pred_q.unit):
        # "50%" vs "0.5": a percent against a plain ratio
        scaled = pred_value * 100 if gt_q.unit in _PERCENT else pred_value / 100
        if _compare_values(pred_q, gt_q, scaled, gt_value, rel_tol):
            return Verdict(True, rule)
    return Verdict(verdict, rule)


# ------------------------------------------------------------------------------------------- math
def _match_math(pred: str, gt: str) -> Verdict:
    stripped = _strip_answer(pred)
    if len(stripped) > 300:
        return Verdict(None, "math")
    return Verdict(None, "math", pending=(_strip_answer(gt), stripped))


def resolve_math(verdict: Verdict, result: bool | None | str) -> Verdict:
    """The final verdict of a pending one, given `reward_score.mathcheck`'s result for its pair."""
    if verdict.pending is None:
        return verdict
    if result is True or result is False:
        return Verdict(result, "math")
    if result == "math_timeout":
        return Verdict(None, "math_timeout")
    return Verdict(None, "math")


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
    stripped = _strip_answer(gt).rstrip(".").strip()
    if _BARE.fullmatch(stripped):
        return "choice"
    options = _options(choices_key)
    if options and _choice_letters(gt, options, is_gt=True):
        return "choice"
    if normalize_text(stripped) in ("yes", "no", "true", "false"):
        return "yes_no"
    if _quantity(stripped, strict=True) is not None:
        return "number"
    if _looks_like_math(stripped):
        return "math"
    return "text"


def rule_verdict(
    pred: str | None,
    gt: str,
    answer_type: str | None = None,
    choices: Sequence[str] | Mapping[str, str] | None = None,
    *,
    number_rel_tol: float = 1e-2,
    max_answer_chars: int = 1000,
) -> Verdict:
    """Rules only, no math-verify: a math case comes back with `pending` set (see `resolve_math`).
    Never raises."""
    if pred is None or not str(pred).strip():
        return Verdict(False, "empty")
    pred = str(pred)
    if len(pred) > max_answer_chars:
        return Verdict(False, "too_long")
    gt = "" if gt is None else str(gt)
    key = _choices_key(choices)
    kind = answer_type if answer_type in ANSWER_TYPES else _detect(gt, key)
    norm_pred, norm_gt = normalize_text(_strip_answer(pred)), normalize_text(_strip_answer(gt))
    if kind == "choice":
        verdict = _match_choice(pred, gt, _options(key))
        if verdict.decisive:
            return verdict
    elif kind == "yes_no":
        return _match_yes_no(pred, gt)
    elif kind == "number":
        verdict = _match_number(pred, gt, number_rel_tol)
        if verdict.decisive or verdict.pending or verdict.rule == "number_unit":
            return verdict
    elif kind == "math":
        quantity_gt = _quantity(gt, strict=True)
        if quantity_gt is not None and _quantity(pred, strict=True) is not None:
            return _match_number(pred, gt, number_rel_tol)
        if norm_gt and norm_pred == norm_gt:
            return Verdict(True, "text")
        return _match_math(pred, gt)
    if norm_gt and norm_pred == norm_gt:
        return Verdict(True, "text")
    return Verdict(None, kind)


def match_answer(
    pred: str | None,
    gt: str,
    answer_type: str | None = None,
    choices: Sequence[str] | Mapping[str, str] | None = None,
    *,
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
    verdict = rule_verdict(pred, gt, answer_type, choices, number_rel_tol=number_rel_tol,
                           max_answer_chars=max_answer_chars)
    if verdict.pending is None:
        return verdict
    from reward_score.mathcheck import math_pool

    return resolve_math(verdict, math_pool(math_workers, math_timeout_s).check(*verdict.pending))


def contains_answer(pred: str | None, gt: str) -> bool:
    """Lenient fallback for undecided answers when no judge is configured: the normalized ground
    truth appears as whole words in the normalized prediction."""
    if not pred or not gt:
        return False
    norm_gt = normalize_text(str(gt))
    return bool(norm_gt) and f" {norm_gt} " in f" {normalize_text(pred)} "
