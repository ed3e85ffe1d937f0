"""Split a `<think>` text into numbered reasoning steps, keeping character offsets.

Modes:
- ``marker``: explicit "Step k:" / "Step k." / "k." markers at line starts (use when the prompt asks
  for numbered steps); text before the first marker is step 1 only if it is not blank.
- ``paragraph``: blank-line separated blocks.
- ``sentence``: sentences (ends at ``.``, ``!``, ``?`` followed by whitespace, or at a newline).
- ``auto`` (default): markers when at least two are found, else paragraphs when at least two,
  else sentences.

Every step carries ``start``/``end`` offsets into the text it was cut from, so the re-reasoning loop can
keep the exact prefix before a faulty step. Steps are never empty; leading/trailing whitespace is not
part of a step. Total: any string gives a (possibly empty) list, nothing raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MODES = ("auto", "marker", "paragraph", "sentence")

_MARKER = re.compile(r"(?im)^[ \t]*(?:\*\*)?(?:step[ \t]*(\d{1,3})|(\d{1,3})[.)])[ \t]*[:.)\-]?")
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")


@dataclass(frozen=True)
class Step:
    """Step ``index`` (1-based) is ``text[start:end]`` of the segmented text."""

    index: int
    start: int
    end: int
    text: str


def _spans_to_steps(text: str, cuts: list[int], max_steps: int) -> list[Step]:
    """Steps from cut offsets (each cut starts a new piece); blank pieces dropped; the tail beyond
    ``max_steps`` is merged into the last step."""
    bounds = sorted(set([0, *cuts, len(text)]))
    pieces = []
    for a, b in zip(bounds, bounds[1:]):
        chunk = text[a:b]
        stripped = chunk.strip()
        if not stripped:
            continue
        lead = len(chunk) - len(chunk.lstrip())
        start = a + lead
        pieces.append((start, start + len(stripped)))
    if max_steps > 0 and len(pieces) > max_steps:
        pieces = pieces[: max_steps - 1] + [(pieces[max_steps - 1][0], pieces[-1][1])]
    return [Step(i + 1, s, e, text[s:e]) for i, (s, e) in enumerate(pieces)]


def _marker_cuts(text: str) -> list[int]:
    return [m.start() for m in _MARKER.finditer(text)]


def _paragraph_cuts(text: str) -> list[int]:
    return [m.end() for m in _PARAGRAPH_BREAK.finditer(text)]


def _sentence_cuts(text: str) -> list[int]:
    return [m.end() for m in _SENTENCE_END.finditer(text)]


def segment_steps(think: str | None, mode: str = "auto", max_steps: int = 32) -> list[Step]:
    """Numbered steps of ``think`` (see module doc). ``max_steps`` <= 0 means unbounded."""
    if mode not in MODES:
        raise ValueError(f"unknown segmentation mode {mode!r}; choose one of {MODES}")
    if not think or not think.strip():
        return []
    if mode == "marker":
        cuts = _marker_cuts(think)
    elif mode == "paragraph":
        cuts = _paragraph_cuts(think)
    elif mode == "sentence":
        cuts = _sentence_cuts(think)
    else:
        cuts = _marker_cuts(think)
        if len(cuts) < 2:
            cuts = _paragraph_cuts(think)
            if len(cuts) < 1:
                cuts = _sentence_cuts(think)
    return _spans_to_steps(think, cuts, max_steps)


def numbered(steps: list[Step]) -> str:
    """The steps as the attributor sees them: one "[k] text" block per step."""
    return "\n".join(f"[{s.index}] {s.text}" for s in steps)
