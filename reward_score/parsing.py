"""Parse a rollout's text into `<think>`, `<answer>` and `<box>` parts.

Everything here is tolerant and total: any string (unicode, megabytes, unclosed or nested tags)
parses into a `ParsedResponse`; nothing raises. Boxes are returned in whatever frame the model
wrote them (model frame); mapping ground truth into that frame is `reward_score.frames`' job.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field

Box = tuple[float, float, float, float]
"""[x1, y1, x2, y2], top-left and bottom-right corners, in the frame of whoever wrote it."""

# Tags tolerate a little inner whitespace and any case: "< think >", "</ Answer>". One scan over
# the text finds every think/answer tag; the structure check is then plain Python, so the cost stays
# linear even for adversarial inputs with thousands of unclosed tags.
_TAG = re.compile(r"<\s{0,8}(/?)\s{0,8}(think|answer)\s{0,8}>", re.IGNORECASE)
# A box tag's payload; bounded so a megabyte of garbage between two tags is not one payload.
_BOX = re.compile(r"<\s{0,8}box\s{0,8}>(.{0,512}?)<\s{0,8}/\s{0,8}box\s{0,8}>", re.IGNORECASE | re.DOTALL)
_BOX_OPEN = re.compile(r"<\s{0,8}box\s{0,8}>", re.IGNORECASE)
# First bracketed list in a payload: "[1, 2, 3, 4]" or the value of {"bbox_2d": [...]}.
_BRACKET = re.compile(r"\[([^\[\]]{0,256})\]")
# The common payload, `[x1, y1, x2, y2]` with plain decimal numbers and ASCII spaces only: read in one
# match (payloads up to 256 characters, so `_BRACKET`'s bound holds). Anything else goes through
# `_parse_payload`; both give the same floats for what both accept.
_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_PLAIN_PAYLOAD = re.compile(rf"[ ]*\[[ ]*({_NUMBER})[ ]*,[ ]*({_NUMBER})[ ]*,[ ]*({_NUMBER})[ ]*,[ ]*({_NUMBER})[ ]*\][ ]*")
# The official code's box syntax: integers, no spaces (kept for the paper-fidelity switch).
_STRICT_BOX = re.compile(r"\[(\d+),(\d+),(\d+),(\d+)\]")

INVALID_REASONS = ("no_list", "arity", "not_number", "non_finite", "out_of_range", "inverted", "over_limit")
# No image frame has coordinates beyond this; larger values would overflow area products.
MAX_COORD = 1e7


@dataclass(frozen=True)
class ParsedBoxes:
    """Boxes found in a text, in the order written.

    `valid` holds well-formed boxes (finite, x1 < x2 and y1 < y2); `invalid` counts the rest
    per reason (see `INVALID_REASONS`). `total` is every `<box>` payload seen.
    """

    valid: tuple[Box, ...] = ()
    invalid: Counter = field(default_factory=Counter)
    starts: tuple[int, ...] = ()  # character offset of each valid box's tag in the parsed text

    def any_within(self, span: tuple[int, int] | None) -> bool:
        """True if a valid box starts inside the character span [start, end)."""
        return span is not None and any(span[0] <= s < span[1] for s in self.starts)

    @property
    def total(self) -> int:
        return len(self.valid) + sum(self.invalid.values())


@dataclass(frozen=True)
class ParsedResponse:
    """One rollout's text split into its parts.

    `think`/`answer` are the inner texts (None when the tag pair is missing); when the strict
    structure does not hold they come from the first well-formed pair anywhere in the text.
    `structure_ok` is True iff the whole text is exactly `<think>…</think><answer>…</answer>`
    (surrounding whitespace allowed) with no further think/answer tags inside.
    `box_tags` counts `<box>` openings anywhere in the text (the textual stream must have none).
    `think_span` is the character span of `think` inside the text.
    `paper_structure_ok` is the official rule, `<think>.*</think>.*<answer>.*</answer>` over the whole
    text (anything may stand between and inside the blocks).
    """

    think: str | None
    answer: str | None
    structure_ok: bool
    box_tags: int
    think_span: tuple[int, int] | None = None
    paper_structure_ok: bool = False


_STRICT_ORDER = [("", "think"), ("/", "think"), ("", "answer"), ("/", "answer")]


def _first_pair(tags: list[re.Match], kinds: list[tuple[str, str]], name: str) -> tuple[int, int] | None:
    """Inner span of the first `<name>` opener and the first closer after it (`kinds[i]` is tag i's
    (closing slash, lower-case name))."""
    opener = None
    for tag, (slash, tag_name) in zip(tags, kinds):
        if tag_name != name:
            continue
        if opener is None and not slash:
            opener = tag
        elif opener is not None and slash:
            return opener.end(), tag.start()
    return None


def parse_response(text: str) -> ParsedResponse:
    """Split `text` into think/answer parts and check the strict structure."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    tags = list(_TAG.finditer(text))
    kinds = [(slash, name.lower()) for slash, name in (tag.groups() for tag in tags)]
    think_span = _first_pair(tags, kinds, "think")
    answer_span = _first_pair(tags, kinds, "answer")
    structure_ok = (
        len(tags) == 4
        and kinds == _STRICT_ORDER
        and not text[: tags[0].start()].strip()
        and not text[tags[1].end() : tags[2].start()].strip()
        and not text[tags[3].end() :].strip()
    )
    return ParsedResponse(
        text[think_span[0] : think_span[1]] if think_span else None,
        text[answer_span[0] : answer_span[1]] if answer_span else None,
        structure_ok,
        len(_BOX_OPEN.findall(text)) if "<" in text else 0,
        think_span,
        _paper_structure(text, tags, kinds),
    )


def _paper_structure(text: str, tags: list[re.Match], kinds: list[tuple[str, str]]) -> bool:
    """The official regex rule, decided from the tag positions (linear time): the text starts with
    `<think>` and ends with `</answer>` (whitespace aside) and has a `</think>` before an `<answer>`."""
    if len(tags) < 4 or kinds[0] != ("", "think") or kinds[-1] != ("/", "answer"):
        return False
    if text[: tags[0].start()].strip() or text[tags[-1].end() :].strip():
        return False
    seen_think_close = False
    for kind in kinds[1:-1]:
        if kind == ("/", "think"):
            seen_think_close = True
        elif kind == ("", "answer") and seen_think_close:
            return True
    return False


def _parse_payload(payload: str) -> Box | str:
    """A box from one `<box>` payload, or the reason it is invalid."""
    bracket = _BRACKET.search(payload)
    if bracket is None:
        return "no_list"
    parts = [p.strip() for p in bracket.group(1).split(",")]
    if len(parts) != 4:
        return "arity"
    values = []
    for part in parts:
        try:
            values.append(float(part))
        except ValueError:
            return "not_number"
    return _check(values)


def _check(values: list[float]) -> Box | str:
    if not all(math.isfinite(v) for v in values):
        return "non_finite"
    if any(abs(v) > MAX_COORD for v in values):
        return "out_of_range"
    x1, y1, x2, y2 = values
    if not (x1 < x2 and y1 < y2):
        return "inverted"
    return (x1, y1, x2, y2)


def parse_boxes(text: str | None, *, max_boxes: int = 64, strict: bool = False) -> ParsedBoxes:
    """Parse every `<box>…</box>` in `text`.

    Tolerant syntax (default): spaces, floats, signs, exponents, `[x1,y1,x2,y2]` or
    `{"bbox_2d": [x1,y1,x2,y2], "label": …}`. With `strict=True` only the official code's
    integer, space-free `[x1,y1,x2,y2]` is accepted (paper-fidelity switch); anything else is
    counted as `not_number`. Boxes after the first `max_boxes` payloads count as `over_limit`.
    Never raises.
    """
    if not text:
        return ParsedBoxes()
    valid: list[Box] = []
    starts: list[int] = []
    invalid: Counter = Counter()
    for index, match in enumerate(_BOX.finditer(text)):
        if index >= max_boxes:
            invalid["over_limit"] += 1
            continue
        payload = match.group(1)
        if strict:
            strict_match = _STRICT_BOX.search(payload)
            if strict_match is None:
                invalid["not_number"] += 1
                continue
            result: Box | str = _check([float(v) for v in strict_match.groups()])
        else:
            plain = _PLAIN_PAYLOAD.fullmatch(payload) if len(payload) <= 256 else None  # _BRACKET's bound
            if plain is not None:
                x1, y1, x2, y2 = (float(v) for v in plain.groups())
                # finite, within range and well ordered: the usual case, decided without _check
                if (-MAX_COORD <= x1 < x2 <= MAX_COORD) and (-MAX_COORD <= y1 < y2 <= MAX_COORD):
                    result = (x1, y1, x2, y2)
                else:
                    result = _check([x1, y1, x2, y2])
            else:
                result = _parse_payload(payload)
        if isinstance(result, str):
            invalid[result] += 1
        else:
            valid.append(result)
            starts.append(match.start())
    return ParsedBoxes(tuple(valid), invalid, tuple(starts))
