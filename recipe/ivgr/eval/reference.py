"""The `reference` protocol: each benchmark's answer matching as done by the implementation its
published numbers come from, reproduced rule for rule, quirks included (see README, "Protocols").

Written from reading VLMEvalKit's source at commit `REFERENCE_COMMIT` (no code copied; the
behaviour is pinned by `tests/data/reference_rules.json`, produced by running VLMEvalKit's own
functions on the same answers). Every rule reads the answer text OUR extraction produced
(`scoring.extract_answer`: `<answer>` content, else the text after `</think>`), i.e. what the
reference's exact-matching mode would see as `prediction`, with no LLM judge (VLMEvalKit's
`exact_matching` policy: an answer it cannot read counts as wrong).

Rule families (one callable per family; each benchmark's spec names its `ReferenceRule`, no string dispatch):
- `vlmeval_mcq`: `vlmeval/utils/matching_util.py` `can_infer` = `can_infer_option` (a lone option
  letter among the answer's tokens, in the last five tokens; "answer is X" regex) then
  `can_infer_text` (exactly one option text as a SUBSTRING of the lower-cased answer). Used by
  `vlmeval/dataset/utils/multiple_choice.py` `mcq_vanilla_eval` for V*, HR-Bench, AI2D, MMStar,
  RealWorldQA, CV-Bench and MMMU (open MMMU questions are turned into a two-option item
  `A = answer, B = "Other Answers"` by `MMMU_preproc`).
- `vlmeval_regex`: `multiple_choice.py` `extract_characters_regex` after `<answer>` upper-casing
  (`vlmeval/dataset/image_mcq.py`, `MMERealWorld.evaluate` and `TreeBench.evaluate`).
- `vlmeval_yorn`: `vlmeval/dataset/utils/yorn.py` `YOrN_Extraction` with `vlmeval/smp/misc.py`
  `process_punctuation` (POPE).
- `vlmeval_wemath`: `vlmeval/dataset/utils/wemath.py` `load_and_process_data`, the path WeMath's
  `evaluate` takes under exact matching (it skips `mcq_vanilla_eval` without a judge): the first
  character after the last "Answer", if a capital A-H.
- ChartQA's `vlmeval/dataset/utils/vqa_eval.py` `relaxed_correctness` lives with the benchmark
  (`benchmarks.chartqa.vlmeval_relaxed`): it is the same rule as its graded one.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reward_score.choices import LETTERS

REFERENCE = "open-compass/VLMEvalKit"
REFERENCE_COMMIT = "e8e78f05f3080fe28154f2130321f17951c3be94"


@dataclass(frozen=True)
class ReferenceVerdict:
    """`extracted`: what the reference read from the answer (an option letter, "Z" for its
    refusal/none label, "Yes"/"No"/"Unknown" for yes-no), None when it read nothing."""

    correct: bool
    extracted: str | None


# ------------------------------------------------------------------ VLMEvalKit multiple choice
_API_FAILURE = "Failed to obtain answer via API"
_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
             "I'm sorry, but without the image provided", "Cannot determine the answer")
_OPTION_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
_ANSWER_IS = re.compile(r"(?:correct\s+)?answer\s+is\s+\**([ABCD])\**", re.IGNORECASE)


def option_letter(answer: str, options: Mapping[str, str]) -> str | None:
    """VLMEvalKit's `can_infer_option` (its VERBOSE env unset). The answer is split into tokens at
    whitespace after turning `.()[],:;!*#{}` into spaces. Exactly one option letter among the
    tokens -> that letter if its first occurrence is among the last five tokens (quirk: "A" as an
    article also counts, "B is wrong, A is right" is undecided by this step); no option letter but
    a token "Z" -> "Z"; otherwise the case-INSENSITIVE regex "(correct) answer is X", X in A-D
    (quirk: "the answer is blue" reads "b" -> B). API-failure text -> None, a fixed refusal
    phrase -> "Z"."""
    if _API_FAILURE in answer:
        return None
    if any(phrase in answer for phrase in _REFUSALS):
        return "Z"
    tokens = answer.translate(_OPTION_SEPARATORS).split()
    present = [letter for letter in options if letter in tokens]
    if len(present) == 1:
        if tokens.index(present[0]) > len(tokens) - 5:
            return present[0]
    elif not present and "Z" in tokens:
        return "Z"
    found = _ANSWER_IS.search(answer)
    if found and found.group(1).upper() in options:
        return found.group(1).upper()
    return None


def option_by_text(answer: str, options: Mapping[str, str]) -> str | None:
    """VLMEvalKit's `can_infer_text`: exactly one option whose lower-cased text is a substring of
    the lower-cased answer (quirks: no word boundaries, so option "no" is found in "not"; an empty
    option text is in every answer); answers longer than twice the options' total length -> None."""
    text = answer.lower()
    if len(text) > 2 * sum(len(str(v)) for v in options.values()):
        return None
    found = [letter for letter, option in options.items() if str(option).lower() in text]
    return found[0] if len(found) == 1 else None


def can_infer(answer: str, options: Mapping[str, str]) -> str | None:
    """VLMEvalKit's `can_infer`: `option_letter`, else `option_by_text`."""
    return option_letter(answer, options) or option_by_text(answer, options)


def _options(item: Mapping[str, Any]) -> dict[str, str]:
    choices = item.get("choices")
    return {LETTERS[i]: str(text) for i, text in enumerate(list(choices) if choices is not None else [])}


def vlmeval_mcq(answer: str, item: Mapping[str, Any], tagged: bool) -> ReferenceVerdict:
    """`mcq_vanilla_eval` with exact matching: hit iff `can_infer` == the ground-truth letter. An
    item without options (MMMU open question) becomes `A = answer, B = "Other Answers"`, truth A
    (`MMMU_preproc`; only the first acceptable answer is used)."""
    options = _options(item)
    truth = str(item.get("answer") or "").strip()
    if not options:
        options, truth = {"A": truth, "B": "Other Answers"}, "A"
    got = can_infer(answer, options)
    return ReferenceVerdict(got is not None and got == truth, got)


# ---------------------------------------------------- VLMEvalKit regex (MME-RealWorld, TreeBench)
_PREFIXES = ("The best answer is", "The correct answer is", "The answer is", "The answer", "The best option is",
             "The correct option is", "Best answer:", "Best option:")
_FIRST_LETTER = re.compile(r"[ABCDE]")


def first_letter(text: str) -> str:
    """VLMEvalKit's `extract_characters_regex`: strip, delete the fixed answer prefixes (case
    sensitive, every occurrence), then the FIRST capital A-E anywhere (quirk: "Based on ..." reads
    B); with none: "" if more than ten words, else the option "(X)" whose text contains the whole
    answer (quirk: an empty answer reads A, "b" or "(c)" read B / C). "" = nothing read."""
    text = text.strip()
    for prefix in _PREFIXES:
        text = text.replace(prefix, "")
    found = _FIRST_LETTER.search(text)
    if found:
        return found.group(0)
    if len(text.split()) > 10:
        return ""
    for letter in "ABCDE":
        if text.lower() in f"({letter.lower()})":
            return letter
    return ""


def vlmeval_regex(answer: str, item: Mapping[str, Any], tagged: bool) -> ReferenceVerdict:
    """MME-RealWorld / TreeBench `evaluate`: an answer from an `<answer>` tag is upper-cased first
    (quirk: "a" -> "A", but also every word of a sentence, so "based on" reads B); hit iff
    `first_letter` == the ground-truth letter."""
    text = answer.strip().upper() if tagged else answer
    got = first_letter(text)
    return ReferenceVerdict(bool(got) and got == str(item.get("answer") or "").strip(), got or None)


# ------------------------------------------------------------------------ VLMEvalKit yes / no
_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_LONE_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")
_PERIOD_LIMIT = 32  # quirk: VLMEvalKit passes re.UNICODE (= 32) as `count` of `sub`


def punctuation_stripped(text: str) -> str:
    """VLMEvalKit's `process_punctuation` (from the VQA eval): each mark of `_PUNCT` is deleted when
    the ORIGINAL text has it next to a space (or has a digit,digit anywhere), else replaced by a
    space; then at most 32 periods not next to a digit are deleted."""
    out = text
    has_number_comma = _COMMA_IN_NUMBER.search(text) is not None
    for mark in _PUNCT:
        spaced = f"{mark} " in text or f" {mark}" in text
        out = out.replace(mark, "" if spaced or has_number_comma else " ")
    return _LONE_PERIOD.sub("", out, count=_PERIOD_LIMIT)


def yes_or_no(answer: str) -> str:
    """VLMEvalKit's `YOrN_Extraction`: "Yes" if the word "yes" is among the lower-cased,
    punctuation-stripped words and "no" is not, "No" for the reverse, else "Unknown" (quirks:
    "Yep", "Nope", "not" are not read; "yes, there is no doubt" is Unknown; "yes:" is not "yes")."""
    words = punctuation_stripped(answer.lower()).split()
    if "yes" in words and "no" not in words:
        return "Yes"
    if "no" in words and "yes" not in words:
        return "No"
    return "Unknown"


def vlmeval_yorn(answer: str, item: Mapping[str, Any], tagged: bool) -> ReferenceVerdict:
    """POPE: hit iff `yes_or_no` equals the truth ("Unknown" is wrong and counts as "No" in F1)."""
    got = yes_or_no(answer)
    return ReferenceVerdict(got == string.capwords(str(item.get("answer") or "").strip()), got)


# ---------------------------------------------------------------------------- VLMEvalKit WeMath
_WEMATH_DROPPED = re.compile(r"[<>:.]")


def wemath_letter(answer: str) -> str | None:
    """VLMEvalKit's WeMath exact matching: the text after the LAST "Answer" (case sensitive; the
    whole answer when absent), stripped, without `<>:.`, stripped again; its first character if it
    is a capital A-H, else None (quirks: "Blue" reads B, "Dog" D, "(B)" and "b" nothing, "The
    answer is C" nothing because "answer" is lower-case)."""
    tail = _WEMATH_DROPPED.sub("", answer.split("Answer")[-1].strip()).strip()
    return tail[0] if tail and tail[0] in "ABCDEFGH" else None


def vlmeval_wemath(answer: str, item: Mapping[str, Any], tagged: bool) -> ReferenceVerdict:
    """WeMath: hit iff `wemath_letter` equals the ground-truth letter (We-Math's four-dimensional
    aggregate is `benchmarks.wemath.wemath_scores` over these verdicts)."""
    got = wemath_letter(answer)
    return ReferenceVerdict(got is not None and got == str(item.get("answer") or "").strip(), got)


# ---------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class ReferenceRule:
    """Where a benchmark's published numbers come from and the callable that reproduces it; each
    benchmark module (`recipe.ivgr.eval.benchmarks.<name>`) names its rule in its spec."""

    source: str  # implementation, file and function
    score: Callable[[str, Mapping[str, Any], bool], ReferenceVerdict]


_REGEX_SOURCE = ("VLMEvalKit vlmeval/dataset/image_mcq.py {}.evaluate -> "
                 "vlmeval/dataset/utils/multiple_choice.py extract_characters_regex")
MCQ = ReferenceRule("VLMEvalKit vlmeval/dataset/utils/multiple_choice.py mcq_vanilla_eval -> "
                    "vlmeval/utils/matching_util.py can_infer", vlmeval_mcq)
REGEX_MME_REALWORLD = ReferenceRule(_REGEX_SOURCE.format("MMERealWorld"), vlmeval_regex)
REGEX_TREEBENCH = ReferenceRule(_REGEX_SOURCE.format("TreeBench"), vlmeval_regex)
YORN_POPE = ReferenceRule("VLMEvalKit vlmeval/dataset/image_yorn.py ImageYORNDataset.evaluate -> "
                          "vlmeval/dataset/utils/yorn.py YOrN_Extraction, POPE_rating", vlmeval_yorn)
WEMATH = ReferenceRule("VLMEvalKit vlmeval/dataset/image_mcq.py WeMath.evaluate (exact matching) -> "
                       "vlmeval/dataset/utils/wemath.py load_and_process_data", vlmeval_wemath)
