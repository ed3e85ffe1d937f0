"""Format reward per stream, in {0, 1}."""

from __future__ import annotations

from reward_score.parsing import ParsedBoxes, ParsedResponse
from reward_score.streams import STREAMS


def format_reward(parsed: ParsedResponse, stream: str, boxes: ParsedBoxes | None = None,
                  rule: str = "ours") -> float:
    """1.0 when the response has the stream's required shape, else 0.0.

    `rule="paper"` is the official rule for every stream: `<think>.*</think>.*<answer>.*</answer>`
    over the whole text, nothing about boxes. The default ("ours"):

    - grounded: exactly `<think>…</think><answer>…</answer>` and at least one VALID box inside
      `<think>` (`boxes` are the boxes parsed from the same full text as `parsed`).
    - textual / single: the same structure and no `<box>` tag anywhere.
    """
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; choose one of {STREAMS}")
    if rule == "paper":
        return 1.0 if parsed.paper_structure_ok else 0.0
    if not parsed.structure_ok or not (parsed.think or "").strip() or not (parsed.answer or "").strip():
        return 0.0
    if stream == "grounded":
        return 1.0 if boxes is not None and boxes.any_within(parsed.think_span) else 0.0
    return 1.0 if parsed.box_tags == 0 else 0.0
