"""Summary of an evaluation run: per benchmark x mode scores, IoU, failure counts (JSON + Markdown).

Scores follow each benchmark's official aggregate (`spec.BenchmarkSpec.metric`, owned by the benchmark's
module): `accuracy` (micro), `subset_mean` (mean of per-subset accuracies: HR-Bench FSP/FCP, CV-Bench-2D
ADE20K/COCO), `f1` (POPE: F1 of "yes", unknown answers count as "no", as VLMEvalKit does; the
accuracy is reported next to it) or `wemath` (We-Math's strict score, loose score beside it).
Every item counts: an item whose image is missing or whose
output is unparsable is wrong, never dropped from the denominator.

Two protocols per benchmark and mode (README, "Protocols"): `graded` (the careful grader,
`scoring.score_answer`: the top-level `score` / `accuracy`) and `reference` (the answer matching of
the implementation the benchmark's published numbers come from, the spec's `reference` rule;
`reference_score`, None for a benchmark without one). Both go through the same aggregation;
`protocol_gap` = graded - reference (fraction) and `protocols_differ` flags |gap| > `GAP_FLAG`.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from recipe.ivgr.eval.benchmarks import PAPER_MAIN, PAPER_REASONING, PAPER_TOOL, spec_of
from recipe.ivgr.eval.config import FAILURES, MODES, TOOL_MODES
from recipe.ivgr.eval.spec import BenchmarkSpec, hits

GAP_FLAG = 0.01  # flag a benchmark x mode whose two protocols differ by more than 1 point


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize_records(records: Sequence[Mapping[str, Any]], benchmark: str | None = None) -> dict[str, Any]:
    """Metrics of one benchmark x mode from its per-item records."""
    name = benchmark or (records[0].get("benchmark") if records else None)
    spec = spec_of(name)
    n = len(records)
    correct = sum(bool(r.get("correct")) for r in records)
    out: dict[str, Any] = {"benchmark": spec.name, "metric": spec.metric.name, "items": n, "correct": correct,
                           "accuracy": correct / n if n else None}
    groups: dict[str, dict[str, list]] = {"subsets": defaultdict(list), "categories": defaultdict(list)}
    for r in records:
        groups["subsets"][str(r.get("subset") or "-")].append(bool(r.get("correct")))
        groups["categories"][str(r.get("category") or "-")].append(bool(r.get("correct")))
    for key, group in groups.items():
        out[key] = {k: {"items": len(v), "correct": sum(v), "accuracy": sum(v) / len(v)}
                    for k, v in sorted(group.items())}
    out["score"], extra = spec.metric.score(records, "graded")
    out.update(extra)
    failures = Counter(reason for r in records for reason in r.get("failures") or [])
    out["failures"] = {reason: failures.get(reason, 0) for reason in FAILURES}
    out["decided_by"] = dict(sorted(Counter(str(r.get("decided_by")) for r in records).items()))
    out.update(_reference_summary(records, spec, out["score"]))
    with_gt = [r for r in records if "iou" in r]
    out["grounding"] = {
        "items_with_gt": len(with_gt),
        "iou": _mean([r["iou"] for r in with_gt]),
        "recall_iou": _mean([r["recall_iou"] for r in with_gt]),
        "precision_iou": _mean([r["precision_iou"] for r in with_gt]),
    }
    boxed = [r for r in records if "boxes_model" in r]
    if boxed:
        out["boxes"] = {
            "items": len(boxed),
            "mean_valid_boxes": _mean([len(r["boxes_model"]) for r in boxed]),
            "invalid_boxes": sum(int(r.get("invalid_boxes") or 0) for r in boxed),
            "boxes_outside_image": sum(int(r.get("boxes_outside") or 0) for r in boxed),
            "empty_crops": sum(int(r.get("empty_crops") or 0) for r in boxed),
        }
    tool = [r for r in records if r.get("mode") in TOOL_MODES]
    if tool:
        cropped = [r for r in tool if r.get("crops")]
        out["tool"] = {
            "items_with_crops": len(cropped),
            "mean_crops": _mean([len(r["crops"]) for r in cropped]),
            "textual_fallback": sum(bool(r.get("tool_fallback")) for r in tool),
        }
    return out


def _reference_summary(records: Sequence[Mapping[str, Any]], spec: BenchmarkSpec,
                       graded: float | None) -> dict[str, Any]:
    """The reference protocol's score with the benchmark's aggregation, and its gap to `graded`.
    An item without a reference verdict (missing image) is wrong; records written before the
    protocol existed (no `reference_correct` field anywhere) give None."""
    if spec.reference is None or not records or not any("reference_correct" in r for r in records):
        return {"reference_score": None, "reference_accuracy": None, "protocol_gap": None,
                "protocols_differ": False}
    accuracy = sum(hits(records, "reference")) / len(records)
    score, extra = spec.metric.score(records, "reference")
    gap = graded - score if graded is not None and score is not None else None
    return {"reference_score": score, "reference_accuracy": accuracy, "protocol_gap": gap,
            "protocols_differ": gap is not None and abs(gap) > GAP_FLAG, **{f"reference_{k}": v for k, v in extra.items()}}


def build_summary(out_dir: str | os.PathLike, benches: Iterable[str], modes: Iterable[str],
                  run: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Summary of every `<out>/<bench>/<mode>.jsonl` of this run."""
    from recipe.ivgr.eval.record import read_records

    results: dict[str, dict[str, Any]] = {}
    for bench in benches:
        for mode in modes:
            path = Path(out_dir) / bench / f"{mode}.jsonl"
            if not path.exists():
                continue
            records = read_records(path)
            name = records[0].get("benchmark") if records else bench
            results.setdefault(bench, {})[mode] = summarize_records(records, name)
    return {"run": dict(run or {}), "results": results, "protocol_flags": protocol_flags(results)}


def protocol_flags(results: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """`<bench>/<mode>` labels whose graded and reference scores differ by more than `GAP_FLAG`."""
    return [f"{bench}/{mode}" for bench, modes in results.items() for mode, s in modes.items()
            if s.get("protocols_differ")]


# --------------------------------------------------------------------------------------- markdown
def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}"


def _columns(results: Mapping[str, Any]) -> list[str]:
    """Benchmarks in the paper's column order first, then the others in run order."""
    def key(label: str) -> tuple[int, int]:
        name = next(iter(results[label].values()))["benchmark"] if results[label] else label
        order = PAPER_MAIN + tuple(x for x in PAPER_TOOL if x not in PAPER_MAIN) + PAPER_REASONING
        return (order.index(name) if name in order else len(order), list(results).index(label))
    return sorted(results, key=key)


def _title(label: str, results: Mapping[str, Any]) -> str:
    first = next(iter(results[label].values()), None)
    spec = spec_of(first["benchmark"]) if first else spec_of(label)
    return spec.title if spec.title and label == spec.name else label


def render_markdown(summary: Mapping[str, Any]) -> str:
    run = summary.get("run") or {}
    results = summary.get("results") or {}
    lines = ["# Evaluation summary", ""]
    facts = [("model", run.get("model")), ("backend", (run.get("backend") or {}).get("backend")),
             ("box frame", run.get("box_frame")), ("pixel bounds", run.get("pixel_bounds")),
             ("sampling", (run.get("backend") or {}).get("sampling") or run.get("sampling")),
             ("finished", run.get("finished"))]
    lines += [f"- {k}: `{v}`" for k, v in facts if v is not None]
    pictures = summary.get("pictures") or {}
    if pictures.get("gallery"):
        lines.append(f"- per-item gallery: [{pictures['gallery']}]({pictures['gallery']})")
    lines.append("")
    if pictures.get("chart"):
        lines += [f"![scores per benchmark, mode and protocol]({pictures['chart']})", ""]
    if not results:
        return "\n".join(lines + ["No results.", ""])
    cols = _columns(results)
    modes = [m for m in MODES if any(m in results[c] for c in cols)]

    def bench_of(label: str) -> str:
        return next(iter(results[label].values()))["benchmark"] if results[label] else label

    tables = [("Scores (%), paper table layout", [c for c in cols if bench_of(c) not in PAPER_REASONING],
               "Each benchmark's official score (accuracy; HR-Bench and CV-2D: mean over subsets; POPE: F1)."),
              ("Chart and multidisciplinary scores (%), paper table layout",
               [c for c in cols if bench_of(c) in PAPER_REASONING],
               "ChartQA: relaxed accuracy; AI2D, MMStar, MMMU, MMK12: accuracy; WeMath: strict score.")]
    for heading, table_cols, note in tables:
        if not table_cols:
            continue
        lines += [f"## {heading}", "", note, "Avg is shown when every benchmark has a score.", ""]
        lines.append("| mode | protocol | " + " | ".join(_title(c, results) for c in table_cols) + " | Avg |")
        lines.append("|---|---|" + "---|" * (len(table_cols) + 1))
        for mode in modes:
            for protocol, field in (("graded", "score"), ("reference", "reference_score")):
                scores = [results[c].get(mode, {}).get(field) for c in table_cols]
                if protocol == "reference" and all(s is None for s in scores):
                    continue
                avg = _mean([s for s in scores if s is not None]) if all(s is not None for s in scores) else None
                lines.append(f"| {mode} | {protocol} | " + " | ".join(_pct(s) for s in scores) + f" | {_pct(avg)} |")
        lines.append("")
    compared = [(c, m) for c in cols for m in modes if (results[c].get(m) or {}).get("reference_score") is not None]
    if compared:
        lines += ["## Protocols", "",
                  "`graded`: the careful grader (the number to trust for your own comparisons); `reference`: the "
                  "answer matching of the implementation the benchmark's published numbers come from (the "
                  "number to put beside published baselines). ⚠ = they differ by more than "
                  f"{100 * GAP_FLAG:.0f} point.", "",
                  "| benchmark | mode | graded | reference | graded − reference | reference rule |",
                  "|---|---|---|---|---|---|"]
        for c, m in compared:
            s = results[c][m]
            flag = " ⚠" if s.get("protocols_differ") else ""
            reference = spec_of(s["benchmark"]).reference
            rule = reference.source if reference is not None else "–"
            gap = "–" if s.get("protocol_gap") is None else f"{100 * s['protocol_gap']:+.1f}{flag}"
            lines.append(f"| {c} | {m} | {_pct(s['score'])} | {_pct(s['reference_score'])} | {gap} | {rule} |")
        lines.append("")
    wemath = [(c, m) for c in cols for m in modes if (results[c].get(m) or {}).get("wemath")]
    if wemath:
        lines += ["## WeMath", "", "| benchmark | mode | problems | strict | loose | IK | IG | CM (strict) | "
                  "RM (strict) | CM (loose) | RM (loose) | incomplete |", "|" + "---|" * 12]
        for c, m in wemath:
            w = results[c][m]["wemath"]
            lines.append(f"| {c} | {m} | {w['problems']} | {_pct(w['score_strict'])} | {_pct(w['score_loose'])} | "
                         f"{w['IK']} | {w['IG']} | {w['CM_strict']} | {w['RM_strict']} | {w['CM_loose']} | "
                         f"{w['RM_loose']} | {w['incomplete']} |")
        lines.append("")
    used = [f for f in FAILURES if any(results[c][m]["failures"].get(f) for c in cols for m in results[c])]
    lines += ["## Per benchmark and mode", ""]
    header = ["benchmark", "mode", "items", "score", "metric", "accuracy", *used]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for c in cols:
        for mode in modes:
            s = results[c].get(mode)
            if s is None:
                continue
            row = [c, mode, str(s["items"]), _pct(s["score"]), s["metric"], _pct(s["accuracy"]),
                   *(str(s["failures"].get(f, 0)) for f in used)]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    grounded = [(c, m) for c in cols for m in modes if results[c].get(m, {}).get("boxes")]
    if grounded:
        lines += ["## Grounding", "",
                  "IoU of the predicted boxes with the GT boxes (original pixels; 0 for an item without boxes):",
                  "the paper's ½·(recall + precision) best-match IoU, its recall side (TreeBench's mIoU) and",
                  "its precision side.", ""]
        lines.append("| benchmark | mode | items with GT | IoU | recall IoU | precision IoU | mean boxes | "
                     "invalid boxes | boxes outside image |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for c, m in grounded:
            s = results[c][m]
            g, b = s["grounding"], s["boxes"]
            lines.append(f"| {c} | {m} | {g['items_with_gt']} | {_pct(g['iou'])} | {_pct(g['recall_iou'])} | "
                         f"{_pct(g['precision_iou'])} | {b['mean_valid_boxes']:.2f} | {b['invalid_boxes']} | "
                         f"{b['boxes_outside_image']} |")
        lines.append("")
    tools = [(c, m) for c in cols for m in modes if results[c].get(m, {}).get("tool")]
    if tools:
        lines += ["## Tool mode", "", "| benchmark | mode | items with crops | mean crops | textual fallback |",
                  "|---|---|---|---|---|"]
        for c, m in tools:
            t = results[c][m]["tool"]
            mean = "–" if t["mean_crops"] is None else f"{t['mean_crops']:.2f}"
            lines.append(f"| {c} | {m} | {t['items_with_crops']} | {mean} | {t['textual_fallback']} |")
        lines.append("")
    lines += ["## Subsets", "", "| benchmark | mode | subset | items | accuracy |", "|---|---|---|---|---|"]
    for c in cols:
        for mode in modes:
            for subset, g in (results[c].get(mode) or {}).get("subsets", {}).items():
                lines.append(f"| {c} | {mode} | {subset} | {g['items']} | {_pct(g['accuracy'])} |")
    lines.append("")
    return "\n".join(lines)


def write_summary(out_dir: str | os.PathLike, summary: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write `summary.json` and `summary.md` into `out_dir` (atomically); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / "summary.json", out / "summary.md")
    texts = (json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n", render_markdown(summary))
    for path, text in zip(paths, texts):
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return paths
