"""What validate, inspect and their SFT variants (`data_prep.sft_tools`) report with: problem counts with
examples, bad-row counts, quantiles and size buckets, and the HTML gallery's pieces. A leaf module, so the
record and SFT tools share these without importing each other."""

from __future__ import annotations

import html
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import ImageDraw

from data_prep.images import ImageError

SIZE_BUCKETS = (512, 1024, 2048, 4096)


class Report:
    """Problem counts with a few examples each."""

    def __init__(self, max_examples: int = 5):
        self.counts: Counter = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.bad_rows: set[int] = set()
        self.rows = 0
        self.decoded = 0
        self.max_examples = max_examples

    def add(self, code: str, row: int | None, message: str) -> None:
        self.counts[code] += 1
        if row is not None:
            self.bad_rows.add(row)
        if len(self.examples[code]) < self.max_examples:
            self.examples[code].append(message)

    def check_sample_id(self, sample_id: str, row: int, seen: set[str]) -> str:
        """Count an empty (`empty_sample_id`) or repeated (`duplicate_sample_id`) id of row `row`, remember
        it in `seen`; returns the row's label for messages, `row N (<id>)`."""
        where = f"row {row} ({sample_id or '<no id>'})"
        if not sample_id:
            self.add("empty_sample_id", row, where)
        elif sample_id in seen:
            self.add("duplicate_sample_id", row, where)
        seen.add(sample_id)
        return where

    @property
    def ok(self) -> bool:
        return not self.counts

    def render(self, path: Path) -> str:
        head = f"validate {path}: {self.rows} rows, images decoded for {self.decoded} rows"
        if self.ok:
            return head + "\nOK: no problems found"
        lines = [head, f"FAIL: {sum(self.counts.values())} problems in {len(self.bad_rows)} rows"]
        for code, count in sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0])):
            lines.append(f"  {code:<28} {count:>8}")
            lines.extend(f"      e.g. {example}" for example in self.examples[code])
        return "\n".join(lines)


class BadRows:
    """Rows whose images could not be opened: counts per reason and a few examples."""

    def __init__(self, max_examples: int = 5):
        self.counts: Counter = Counter()
        self.examples: list[str] = []
        self.max_examples = max_examples
        self._seen: set[str] = set()  # the prefix ratio and the gallery may both meet one bad row

    def add(self, sample_id: str, err: ImageError) -> None:
        if sample_id in self._seen:
            return
        self._seen.add(sample_id)
        self.counts[err.reason] += 1
        if len(self.examples) < self.max_examples:
            self.examples.append(f"{sample_id}: {err.reason} {err.detail}"[:240])

    def as_dict(self) -> dict[str, Any]:
        return {"count": sum(self.counts.values()), "reasons": dict(sorted(self.counts.items())),
                "examples": self.examples}


def quantiles(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def q(p: float) -> float:
        return round(float(ordered[min(len(ordered) - 1, int(p * len(ordered)))]), 4)

    return {"min": q(0.0), "p10": q(0.1), "p50": q(0.5), "p90": q(0.9), "max": round(float(ordered[-1]), 4),
            "mean": round(statistics.fmean(ordered), 4), "n": len(ordered)}


def size_bucket(longest: int) -> str:
    for edge in SIZE_BUCKETS:
        if longest < edge:
            return f"<{edge}"
    return f">={SIZE_BUCKETS[-1]}"


def draw_boxes(image, boxes, colour: tuple[int, int, int] = (255, 0, 255)) -> None:
    """Draw xyxy `boxes` (in the image's pixels) on `image`, numbered, in `colour` (magenta by default)."""
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 400))
    for number, box in enumerate(boxes or []):
        draw.rectangle(box, outline=colour, width=width)
        draw.text((box[0] + width, box[1] + width), str(number), fill=colour)


def prompt_html(messages: list[dict] | None) -> str:
    if not messages:
        return "<em>none</em>"
    return "".join(f"<div class='msg'><b>{html.escape(str(m['role']))}</b>: "
                   f"<pre>{html.escape(str(m['content']))}</pre></div>" for m in messages)


GALLERY_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title><style>
body {{ font-family: sans-serif; margin: 1em; }}
.row {{ border-top: 1px solid #ccc; padding: 1em 0; display: flex; gap: 1em; }}
.row img {{ max-width: 480px; max-height: 480px; }} pre {{ white-space: pre-wrap; margin: 0; }}
.bad {{ color: #b00; }} .meta {{ color: #555; font-size: 90%; }} .cols {{ flex: 1; }}
</style></head><body><h1>{title}</h1><p>{summary}</p>
{rows}
</body></html>
"""
