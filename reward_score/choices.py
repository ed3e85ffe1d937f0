"""Multiple-choice options and the option an answer names: the one choice parser of the project.

The reward (`reward_score.answers`), the eval (`recipe.ivgr.eval.scoring`, `.sources` and the
benchmark modules under `.benchmarks`) and data_prep (`data_prep.prompts` renders the options) import from here.

Options. A record's `choices` are the option TEXTS in shown order, lettered A, B, C, ... by
position (`LETTERS`); `render_options` writes them as "A. text" lines. A source that kept its own
labels ("A. red", "(B) blue") is read back by `option_texts` only when EVERY entry carries the
label of its own position, so an option whose text merely looks like a lettered line ("b: none of
them" as the first option) keeps its position and its text.

Answers. `choice_letters` returns the option letters an answer commits to, in this order:
1. a lone letter is that letter ("D", "(d)", "[D]", "D."), even when the options' texts are
   themselves letters (AI2D labels diagram points A-D, so option A's text may be "D"): the prompt
   asks for the letter, so a careful grader reads a letter as a letter;
2. an option's exact text ("b: none of them", "C" where an option's text is "C" only when the
   answer is not a lone letter; articles kept so that "A" never vanishes as the article "a");
3. "X. text" / "(X) text" / "X) text": the letter X, and a hedge when the text is ANOTHER
   option's text ("A. green" where green is option B names two options);
4. several letters ("B or C", "A, B", "A/B") or several option texts ("red or blue"): a hedge;
5. an option's text up to articles ("yellow car" for "a yellow car");
6. a phrase: "Option B", "choice (c)", "it is B".
A negated option ("not B", "It is not red") is never committed to; an answer that only negates
options commits to none (`NEGATED`), which a careful grader marks wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from reward_score.text import has_negation_cue, negated_before, normalize_text, strip_answer, words_key

LETTERS = "ABCDEFGHIJ"  # option letters by position; at most len(LETTERS) options
LETTER = f"[{LETTERS[0]}-{LETTERS[-1]}]"  # one upper-case option letter, for regexes built elsewhere
# "A. text", "(A) text", "A) text", "A: text" (an option line as sources and prompts write it)
OPTION_LINE = re.compile(rf"^\s*(?:\(({LETTER})\)|({LETTER})\s*[.:)])\s*(.*?)\s*$", re.DOTALL | re.IGNORECASE)
NEGATED = frozenset({"-"})  # `choice_letters` result of an answer that only negates options

_LOWER = LETTER.lower()
_BARE = re.compile(rf"\(?\[?({LETTER})\]?\)?\s*[.:]?", re.IGNORECASE)  # "B", "(b)", "B.", "[C]"
_LEAD_LETTER = re.compile(rf"(?:\(({LETTER})\)|\[({LETTER})\]|({LETTER})\s*[.:)])\s*(\S.*)$", re.DOTALL | re.IGNORECASE)
# "Option B", "choice (c)": a lower-case letter only in parentheses ("the answer is a dog" names no option)
_PHRASE = re.compile(rf"\b(?i:option|choice|answer(?:\s+is)?)\s*:?\s*(?:\((?i:({LETTER}))\)|({LETTER}))(?![\w'])")
_IS_LETTER = re.compile(rf"\b(?:is|be)\s*:?\s*\(?({LETTER})\)?\s*[.!]?$")  # "I think it is B", "it is (C)."
_LETTER_LIST = re.compile(
    rf"\(?({LETTER})\)?(?:\s*(?:,|/|&|;|\+|\bor\b|\band\b|\s)\s*\(?({LETTER})\)?)+\s*\.?", re.IGNORECASE)
_LIST_LETTER = re.compile(rf"(?<![A-Za-z])\(?({LETTER})\)?(?![A-Za-z])", re.IGNORECASE)
_HEDGE_SPLIT = re.compile(r"\s*(?:,|/|&|;|\bor\b|\band\b|\beither\b)\s*", re.IGNORECASE)
_NEGATED_LETTER = re.compile(rf"(?<![\w'])(?:option\s+|choice\s+)?\(?({LETTER})\)?(?![\w'])", re.IGNORECASE)


# ------------------------------------------------------------------------------------------ options
def split_option_line(text: str) -> tuple[str, str] | None:
    """("B", "blue") for "B. blue" / "(b) blue" / "B) blue" / "B: blue"; None for other text."""
    match = OPTION_LINE.match(str(text))
    if not match:
        return None
    return (match.group(1) or match.group(2)).upper(), match.group(3)


def option_texts(choices: Sequence[str] | None) -> list[str]:
    """The options' texts in shown order: labels stripped only when every entry is labelled with its
    own position's letter ("A. x", "B. y", ...), else the entries as given."""
    items = [str(c).strip() for c in (choices if choices is not None else ())]
    split = [split_option_line(item) for item in items]
    if len(items) >= 1 and all(s is not None and s[0] == LETTERS[i] for i, s in enumerate(split)
                               if i < len(LETTERS)) and len(items) <= len(LETTERS):
        return [s[1] for s in split]  # type: ignore[index]
    return items


def render_options(choices: Sequence[str]) -> str:
    """The options as the model sees them: one "A. text" line per option."""
    texts = option_texts(choices)
    if len(texts) > len(LETTERS):
        raise ValueError(f"{len(texts)} options; at most {len(LETTERS)} can be lettered")
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(texts))


def options_from_choices(choices: Sequence[str] | Mapping[str, str] | None) -> dict[str, str]:
    """Letter -> option text (as shown, stripped) for a mapping or a list (see `option_texts`)."""
    if choices is None or (hasattr(choices, "__len__") and len(choices) == 0):
        return {}
    if isinstance(choices, Mapping):
        return {str(k).strip().strip("()").upper(): str(v).strip() for k, v in choices.items()}
    return {LETTERS[i]: text for i, text in enumerate(option_texts(list(choices))[:len(LETTERS)])}


def letter_of(answer: object, *, upper_only: bool = False) -> str | None:
    """"B", "(b)", "[B]", "B." -> "B"; anything else None (a lone letter, no other text).
    `upper_only`: a lower-case letter is not a letter (a source's answer key "a" may be a value)."""
    match = _BARE.fullmatch(str(answer if answer is not None else "").strip())
    if not match or (upper_only and not match.group(1).isupper()):
        return None
    return match.group(1).upper()


# ------------------------------------------------------------------------------------------ answers
def option_by_text(text: str, options: Mapping[str, str], *, loose: bool = True) -> str | None:
    """The letter of the option whose text `text` is: exactly (case and punctuation aside), else
    (`loose`) up to articles. None when no option, or when several options, have that text."""
    key = words_key(text)
    exact = [letter for letter, option in options.items() if key and words_key(option) == key]
    if exact:
        return exact[0] if len(exact) == 1 else None
    if not loose:
        return None
    norm = normalize_text(text)
    found = [letter for letter, option in options.items() if norm and normalize_text(option) == norm]
    return found[0] if len(found) == 1 else None


def _negated_options(text: str, options: Mapping[str, str]) -> set[str]:
    """Options the answer negates: "not B", "It is not red", "isn't option C"."""
    negated: set[str] = set()
    if not has_negation_cue(text):
        return negated
    for match in _NEGATED_LETTER.finditer(text):
        if negated_before(text, match.start()) and (match.group(1).isupper() or "(" in match.group(0)):
            negated.add(match.group(1).upper())
    lowered = text.lower()
    for letter, option in options.items():
        key = words_key(option)
        if not key:
            continue
        for match in re.finditer(rf"(?<![\w]){re.escape(option.lower().strip())}(?![\w])", lowered):
            if negated_before(lowered, match.start()):
                negated.add(letter)
    return negated


def choice_letters(text: str, options: Mapping[str, str], *, is_gt: bool = False) -> frozenset[str] | None:
    """The option letters `text` commits to: one letter, several (a hedge), `NEGATED` (it only
    negates options) or None (no option recognised). `options`: letter -> option text (may be empty).
    `is_gt`: the text is a ground truth (a letter or an option's text; no phrases)."""
    stripped = strip_answer(text).rstrip(".!").strip()
    bare = _BARE.fullmatch(stripped)
    if bare:  # a lone letter, in any case ("a" alone is a letter here: the question is multiple choice)
        if options and bare.group(1).upper() not in options:  # not an option's letter: an option's text?
            letter = option_by_text(stripped, options, loose=False)  # AI2D: diagram label "F" shown as option C
            if letter:
                return frozenset({letter})
        return frozenset({bare.group(1).upper()})
    if options:
        letter = option_by_text(stripped, options, loose=False)
        if letter:
            return frozenset({letter})
        labelled = split_option_line(stripped)  # "(B) A": option B written with its text, which is a letter
        if labelled and option_by_text(labelled[1], options, loose=False) == labelled[0]:
            return frozenset({labelled[0]})
    if is_gt:
        letter = option_by_text(stripped, options) if options else None
        return frozenset({letter}) if letter else None
    negated = _negated_options(stripped, options)
    if _LETTER_LIST.fullmatch(stripped):
        listed = frozenset(m.upper() for m in _LIST_LETTER.findall(stripped))
        if not listed & negated:
            return listed
    if options:
        parts = [p for p in _HEDGE_SPLIT.split(stripped) if normalize_text(p)]
        named = {option_by_text(p, options) for p in parts}
        if len(parts) > 1 and None not in named and not named & negated:
            return frozenset(named)  # type: ignore[arg-type]
    lead = _LEAD_LETTER.match(stripped)
    if lead:
        letter = (lead.group(1) or lead.group(2) or lead.group(3))
        if (letter.isupper() or lead.group(3) is None) and letter.upper() not in negated:
            letter = letter.upper()
            other = option_by_text(lead.group(4), options) if options else None
            if other is not None and other != letter:
                return frozenset({letter, other})  # "B) red" where red is option A: two answers
            return frozenset({letter})
    if options:
        letter = option_by_text(stripped, options)
        if letter and letter not in negated:
            return frozenset({letter})
    found = {(a or b).upper() for a, b in _PHRASE.findall(stripped)} - negated
    if found:
        return frozenset(found)
    is_letter = _IS_LETTER.search(stripped)
    if is_letter and is_letter.group(1) not in negated:
        return frozenset({is_letter.group(1)})
    return NEGATED if negated else None


def named_options(text: str, options: Mapping[str, str]) -> set[str]:
    """Lenient reading: the options whose text appears as whole words in `text` and is not negated
    there ("It looks blue to me" names blue; "It is not blue" names none)."""
    padded = f" {normalize_text(text)} "
    negated = _negated_options(strip_answer(text), options)
    return {letter for letter, option in options.items()
            if normalize_text(option) and f" {normalize_text(option)} " in padded and letter not in negated}
