"""Number answers: one number (with an optional unit) per side, compared exactly as rationals.

Digits, thousands separators, decimals, fractions, percent, `\\frac{a}{b}` and number words up to the
billions are read; units from a table (length, mass, time, volume, area, speed, angle, temperature,
currency) convert within a dimension ("200 cm" = "2 m"), different dimensions are wrong, unknown or
unconvertible unit pairs undecided. A negated or compared number ("not 2", "at least 2") and two
offered values ("3 or 4") are wrong; a percentage against a plain ground truth is read by the
question (`asks_percent`). Expressions go to math-verify (a `pending` verdict). The rule family of
`reward_score.answers`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from reward_score.text import has_negation_cue, negated_before, strip_answer
from reward_score.verdict import Verdict

_HAS_LETTER = re.compile(r"[A-Za-z]")
_MATH_DELIMS = re.compile(r"^\$+(.*?)\$+$|^\\\((.*)\\\)$|^\\\[(.*)\\\]$", re.DOTALL)


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
_SIGN_WORD = re.compile(r"\b(?:minus|negative)\s+(?=\d)", re.IGNORECASE)  # "minus 5 degrees" -> "-5 degrees"
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
    text = strip_answer(text)
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
        text = _SIGN_WORD.sub("-", _words_to_numbers(text))
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
class Quantity:
    """One number of an answer: its value, its unit and whether it was written exactly."""

    value: Fraction
    unit: str  # "" when none; a key of _UNIT_GROUPS, or an unknown word ("cars")
    exact: bool  # written as an integer or fraction (exact), not a decimal


@lru_cache(maxsize=65_536)
def quantity(text: str, *, strict: bool) -> Quantity | None:
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
    return Quantity(value, unit, exact)


def _in_base(q: Quantity) -> tuple[str, Fraction] | None:
    group = _UNIT_GROUPS.get(q.unit)
    if group is None:
        return None
    dimension, factor = group
    return dimension, q.value * Fraction(factor).limit_denominator(10**12)


def _compare_values(pred: Quantity, gt: Quantity, pred_value: Fraction, gt_value: Fraction,
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


def looks_like_math(text: str) -> bool:
    return bool(_MATH_HINT.search(text)) and len(text) <= 300


def _is_expression(text: str) -> bool:
    """Only numbers, operators, variables and LaTeX commands: something math-verify can read."""
    if not _EXPRESSION.fullmatch(text):
        return False
    return not re.search(r"[a-zA-Z]{2,}", _LATEX_WORDS.sub("", text))


_OR = re.compile(r"\bor\b", re.IGNORECASE)  # not "/": "3 / 4" is a fraction
_ASKS_PERCENT = re.compile(r"percent|percentage|per\s*cent|%", re.IGNORECASE)


def asks_percent(question: str | None) -> bool | None:
    """Whether the question asks for a percentage (None: no question known)."""
    return None if question is None or not str(question).strip() else bool(_ASKS_PERCENT.search(str(question)))


def _uncommitted_number(pred: str) -> str | None:
    """"comparison" when a negation or comparison governs a number of the answer ("not 2", "at
    least 2", "between 3 and 4", "> 2"), "hedge" for two different numbers offered as alternatives
    ("3 or 4"); None when the answer commits to its number(s)."""
    text = _prepare_number_text(pred)
    cue, alternatives = has_negation_cue(text), _OR.search(text)
    if not cue and not alternatives:
        return None
    tokens = list(_NUMBER_TOKEN.finditer(text))
    if cue and any(negated_before(text, t.start()) for t in tokens):
        return "comparison"
    if alternatives and len(tokens) > 1 and not _SENTENCE_MATH.search(text):
        if len({_to_fraction(t.group("num"), t.group("den")) for t in tokens}) > 1:
            return "hedge"
    return None


def match_number(pred: str, gt: str, rel_tol: float, question: str | None = None) -> Verdict:
    """The number rule's verdict on `pred` against `gt` (`rel_tol`: relative tolerance of a decimal
    ground truth; `question` decides what a percentage means); `pending` for an expression."""
    gt_q = quantity(gt, strict=True)
    if gt_q is None:
        return Verdict(None, "number")
    uncommitted = _uncommitted_number(pred)
    if uncommitted is not None:
        return Verdict(False, f"number_{uncommitted}")
    pred_q = quantity(pred, strict=False)
    if pred_q is None and "=" in pred:  # "3 x 4 = 12": the value the derivation ends on
        pred_q = quantity(pred.rsplit("=", 1)[1], strict=False)
    if pred_q is None:
        stripped = strip_answer(pred)
        if looks_like_math(stripped) and _is_expression(stripped):
            return Verdict(None, "math", pending=(strip_answer(gt), stripped))
        return Verdict(None, "number")
    percent_question = asks_percent(question)
    if percent_question is not None and pred_q.unit in _PERCENT and not gt_q.unit:
        # a percentage against a plain number: the question says which it is. Asked for a
        # percentage, "40%" is the 40 of the ground truth; asked for anything else, "40%" is the
        # ratio 0.4 (right only for a ground truth of 0.4)
        value = pred_q.value if percent_question else pred_q.value / 100
        return Verdict(bool(_compare_values(pred_q, gt_q, value, gt_q.value, rel_tol)), "number_percent")
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
