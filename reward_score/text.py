"""Answer text before any rule reads it: normalization, the lead-in, and the model's final statement.

Owned here (the reward, the eval and data_prep import it):
- `normalize_text`: lower case, no punctuation, no articles, single spaces (free-text equality);
- `strip_answer`: the answer without a lead-in ("The answer is"), quotes, bold marks or `\\boxed{}`,
  with unicode math written as LaTeX (`2√3` -> `2\\sqrt{3}`, `x²` -> `x^2`, `π` -> `\\pi`);
- `final_statement`: what the answer finally commits to. The last stated decision wins ("B...
  actually C" -> "C"; "3, no wait, 4" -> "4"), a conclusion wins over its derivation ("3 x 4 = 12,
  so the value is 12" -> "the value is 12"), and a claim wins over its explanation ("The value is 12
  because 3 x 4 = 12" -> "The value is 12");
- `affirmed`: the statement without clauses that only reject ("A, not B" -> "A");
- `negated_before`: whether a negation or comparison ("not", "isn't", "less than", "at least", "<")
  governs a value at a position (a careful grader never credits "not 2" or "at least 2" for 2).
"""

from __future__ import annotations

import re
import string
import unicodedata
from functools import lru_cache

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_LEADIN = re.compile(
    r"^\s*(?:(?:so|thus|therefore|hence)\s*,?\s*)?(?:the\s+)?(?:final\s+|correct\s+|right\s+)?"
    r"(?:answer|option|choice)\s*(?:is|:|=|would\s+be|should\s+be)\s*", re.IGNORECASE)
_BOXED = re.compile(r"^\\boxed\{(.*)\}$", re.DOTALL)

# unicode math -> LaTeX (before NFKC, which would turn "x²" into "x2")
_SQRT_GROUP = re.compile(r"([√∛∜])\s*(\((?:[^()]|\([^()]*\))*\)|\{[^{}]*\}|\d+(?:\.\d+)?|[A-Za-z]|\\pi)")
_ROOT_INDEX = {"√": "", "∛": "[3]", "∜": "[4]"}
_UNICODE_MATH = {"π": "\\pi ", "×": "\\times ", "·": "\\cdot ", "÷": "\\div ", "²": "^2", "³": "^3",
                 "−": "-", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "∞": "\\infty "}


def _root(match: re.Match) -> str:
    body = match.group(2)
    if body[0] in "({":
        body = body[1:-1]
    return f"\\sqrt{_ROOT_INDEX[match.group(1)]}{{{body}}}"


def latex_unicode_math(text: str) -> str:
    """`2√3` -> `2\\sqrt{3}`, `√(x+1)` -> `\\sqrt{x+1}`, `∛8` -> `\\sqrt[3]{8}`, `x²` -> `x^2`, `π` -> `\\pi`."""
    if text.isascii():
        return text
    text = _SQRT_GROUP.sub(_root, text)
    for symbol, latex in _UNICODE_MATH.items():
        if symbol in text:
            text = text.replace(symbol, latex)
    return re.sub(r" +(?=[}\s)^,.]|$)", "", text) if "\\" in text else text


@lru_cache(maxsize=16_384)  # answers repeat within GRPO groups
def normalize_text(text: str) -> str:
    """Lower-case, drop punctuation and articles, collapse whitespace."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())


@lru_cache(maxsize=16_384)
def words_key(text: str) -> str:
    """Lower-case, no punctuation, single spaces; articles KEPT (an option whose text is "A" keeps it)."""
    return " ".join(text.lower().translate(_PUNCT).split())


@lru_cache(maxsize=16_384)  # answers repeat within GRPO groups
def strip_answer(text: str) -> str:
    """The answer without a lead-in ("The answer is"), quotes, bold marks, `\\boxed{}` or a trailing
    period's surrounding space; unicode math as LaTeX."""
    text = str(text)
    if not text.isascii():
        text = unicodedata.normalize("NFKC", latex_unicode_math(text))
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


# ------------------------------------------------------------------------------- final statement
# a self-correction: what follows the last one is the decision ("B... actually C")
_REVERSAL = re.compile(r"\b(?:no\s*,?\s*wait|wait|actually|correction|on\s+second\s+thought|scratch\s+that|"
                       r"on\s+(?:a\s+)?closer\s+(?:inspection|look))\b",
                       re.IGNORECASE)
_RETRACTION = re.compile(r"^(?:no|nope)\s*[,:;.!-]+\s*(?=\S)", re.IGNORECASE)  # "wait, no: B" -> "B"
# a conclusion after its derivation: "3 x 4 = 12, so the value is 12"
_CONCLUSION = re.compile(r"(?:(?:^|[,;.:]\s*)(?:and\s+)?so\b(?!-)|\b(?:therefore|thus|hence)\b)\s*,?", re.IGNORECASE)
# an explanation after the claim: "The value is 12 because 3 x 4 = 12"
# ("since 1990" is a date, not an explanation)
_EXPLANATION = re.compile(r"\s*[,;(]?\s*\b(?:because|since(?!\s+\d{4}\b)|given\s+that|due\s+to|as\s+(?=\d))\b",
                          re.IGNORECASE)


def _tail(text: str, pattern: re.Pattern) -> str:
    """The text after the last match of `pattern` (the text itself when that tail is empty)."""
    last = None
    for last in pattern.finditer(text):
        pass
    if last is None:
        return text
    tail = text[last.end():].strip().lstrip(",:;.!-…").strip()
    return tail or text


@lru_cache(maxsize=16_384)
def final_statement(text: str) -> str:
    """What an answer finally commits to (see the module docstring); `strip_answer` applied."""
    text = strip_answer(text)
    if _REVERSAL.search(text):
        text = _RETRACTION.sub("", _tail(text, _REVERSAL))
    if _CONCLUSION.search(text):
        text = _tail(text, _CONCLUSION)
    explained = _EXPLANATION.search(text)
    if explained:
        head = text[:explained.start()].strip()
        if head:
            text = head
        else:  # "Because 3 x 4 = 12, the value is 12": the claim follows the clause
            _, comma, rest = text.partition(",")
            text = rest.strip() if comma and rest.strip() else text
    return strip_answer(text.rstrip(".").strip()) if text.rstrip(".").strip() else strip_answer(text)


# a clause that only rejects ("..., not B", "not happy but sad"): what the answer does NOT say
_CLAUSES = re.compile(r"\s*(?:[,;]|\bbut\b)\s*", re.IGNORECASE)
_REJECTING = re.compile(r"^(?:and\s+|or\s+)?(?:not|never|neither|nor|isn'?t|aren'?t|wasn'?t|weren'?t|rather\s+than|"
                        r"instead\s+of)\b", re.IGNORECASE)


@lru_cache(maxsize=16_384)
def affirmed(text: str) -> str:
    """The statement without its rejecting clauses ("A, not B" -> "A"; "He has 2 dogs, not 3" ->
    "He has 2 dogs"); the text itself when every clause rejects ("not 2") or none does."""
    clauses = _CLAUSES.split(text)
    kept = [c for c in clauses if c and not _REJECTING.match(c)]
    if not kept or len(kept) == len([c for c in clauses if c]):
        return text
    return ", ".join(kept)


# ------------------------------------------------------------------------------- negations
# a negation or comparison right before a value (in the same clause): that value is not the answer
_NEGATION_BEFORE = re.compile(
    r"(?:\b(?:not|never|no|isn'?t|aren'?t|wasn'?t|weren'?t|neither|nor|without|except|n't)"
    r"(?:\s+(?:exactly|quite|even|just|only|equal\s+to|option|choice|a|an|the))*"
    r"|\b(?:less|fewer|more|greater|larger|smaller|higher|lower|bigger|rather|other)\s+than"
    r"|\bat\s+(?:least|most)|\bup\s+to|\binstead\s+of"
    r"|\b(?:over|under|above|below|beyond|exceeding|nearly|almost|between)"
    r"|[<>≤≥≠]=?|\\(?:le|ge|ne|leq|geq|neq|lt|gt))\s*\(?$", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[,;.:!?\n]")
# any word or sign `_NEGATION_BEFORE` can end on (a cheap test first: most answers have none)
_ANY_CUE = re.compile(r"\b(?:not|never|no|neither|nor|without|except|than|least|most|up|instead|over|under|above|"
                      r"below|beyond|exceeding|nearly|almost|between)\b|n'?t\b|[<>≤≥≠]|\\(?:le|ge|ne|lt|gt)",
                      re.IGNORECASE)


@lru_cache(maxsize=16_384)
def has_negation_cue(text: str) -> bool:
    """Whether `text` holds any negation or comparison word at all (`negated_before` can be True)."""
    return bool(_ANY_CUE.search(text))


def negated_before(text: str, start: int) -> bool:
    """True when a negation or comparison governs the value starting at `start` in `text`
    ("not 2", "It is not red", "at least 2", "> 2"); a clause break in between ends its scope
    ("No, there are 2")."""
    if not has_negation_cue(text):
        return False
    clause = _CLAUSE_BREAK.split(text[:start])[-1]
    return bool(_NEGATION_BEFORE.search(clause))
