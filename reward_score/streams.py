"""Streams and sample kinds: the names every part of the recipe shares, defined here once.

A record (`data_prep.schema`) is of one KIND: `grounded` (it has ground-truth boxes) or `single`
(it has none). A grounded sample is trained as two STREAMS, `grounded` (reasoning that localizes
objects with boxes) and `textual` (the same question, reasoning in words only); a single sample is
one `single` stream. The reward (`reward_score.format`, `compute_score`), the recipe dataset, the
preflights, the prompts and the SFT data (streams `grounded` / `textual` / `single`) all read these names here.
"""

from __future__ import annotations

from collections.abc import Iterable

STREAMS: tuple[str, ...] = ("grounded", "textual", "single")
KINDS: tuple[str, ...] = ("grounded", "single")
KIND_STREAMS: dict[str, tuple[str, ...]] = {"grounded": ("grounded", "textual"), "single": ("single",)}
# an SFT conversation: with boxes, in words (the textual stream of a grounded sample), or a single sample's
SFT_STREAMS: tuple[str, ...] = ("grounded", "textual", "single")


def parse_streams(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """The enabled streams (in `STREAMS` order) from a config value: None = all, a name, or a list.

    Raises ValueError for an empty selection or an unknown name.
    """
    if value is None:
        return STREAMS
    streams = [value] if isinstance(value, str) else list(value)
    unknown = [s for s in streams if s not in STREAMS]
    if unknown or not streams:
        raise ValueError(f"streams must be a non-empty subset of {list(STREAMS)}, got {streams!r}")
    return tuple(s for s in STREAMS if s in streams)


def streams_of(kind: str, enabled: Iterable[str] = STREAMS) -> tuple[str, ...]:
    """The enabled streams a sample of `kind` trains (grounded: grounded + textual; single: single).

    Raises ValueError for an unknown kind.
    """
    if kind not in KIND_STREAMS:
        raise ValueError(f"unknown record kind {kind!r} (expected one of {list(KINDS)}): is this a data_prep file?")
    enabled = tuple(enabled)
    return tuple(s for s in KIND_STREAMS[kind] if s in enabled)
