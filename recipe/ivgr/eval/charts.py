"""The summary's picture: one grouped bar chart of the scores, per benchmark, per mode and protocol
(`summary.png` next to `summary.md`). Graded bars are solid, reference bars hatched in the same colour
per mode; a benchmark without a reference rule has no hatched bar. Needs matplotlib (Agg backend, no
display).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

CHART_NAME = "summary.png"
_PROTOCOLS = (("graded", "score", None), ("reference", "reference_score", "//"))


def chart_series(summary: Mapping[str, Any], modes: Sequence[str] | None = None
                 ) -> tuple[list[str], list[tuple[str, str, list[float | None]]]]:
    """(benchmark labels, [(mode, protocol, score per benchmark in % or None)]) of a summary; a series whose
    scores are all None (no reference rule on any benchmark) is left out."""
    results = summary.get("results") or {}
    labels = list(results)
    modes = list(modes) if modes is not None else list(dict.fromkeys(m for r in results.values() for m in r))
    series = []
    for mode in modes:
        for protocol, field, _ in _PROTOCOLS:
            values = [(results[b].get(mode) or {}).get(field) for b in labels]
            values = [None if v is None else 100.0 * float(v) for v in values]
            if any(v is not None for v in values):
                series.append((mode, protocol, values))
    return labels, series


def write_chart(out_dir: str | os.PathLike, summary: Mapping[str, Any], modes: Sequence[str] | None = None) -> Path:
    """Draw the scores of `summary` (build_summary's layout) into `out_dir/summary.png`; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, series = chart_series(summary, modes)
    mode_names = list(dict.fromkeys(mode for mode, _, _ in series))
    colours = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(series))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 + len(labels) * (0.5 + 0.25 * len(series))), 4.5))
    for index, (mode, protocol, values) in enumerate(series):
        hatch = dict((p, h) for p, _, h in _PROTOCOLS)[protocol]
        positions = [b + (index - (len(series) - 1) / 2) * width for b in range(len(labels))]
        shown = [(x, v) for x, v in zip(positions, values) if v is not None]
        colour = colours(mode_names.index(mode) % 10)
        bars = axes.bar([x for x, _ in shown], [v for _, v in shown], width, label=f"{mode} · {protocol}",
                        color=colour if hatch is None else "white", edgecolor=colour, hatch=hatch, linewidth=1.2)
        for bar, (_, value) in zip(bars, shown):
            axes.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=7, xytext=(0, 1), textcoords="offset points")
    axes.set_xticks(range(len(labels)), labels, rotation=20 if len(labels) > 4 else 0, ha="right" if len(labels) > 4
                    else "center")
    axes.set_ylim(0, 105)
    axes.set_ylabel("score (%)")
    axes.set_title("Scores per benchmark, mode and protocol (graded solid, reference hatched)", fontsize=10)
    if series:
        axes.legend(fontsize=8, ncol=min(4, len(series)), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    else:
        axes.text(0.5, 0.5, "no scores", ha="center", va="center", transform=axes.transAxes)
    figure.tight_layout()
    path = Path(out_dir) / CHART_NAME
    tmp = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(tmp, dpi=110)
    plt.close(figure)
    os.replace(tmp, path)
    return path
