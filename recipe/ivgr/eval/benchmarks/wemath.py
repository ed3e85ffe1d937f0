"""We-Math (We-Math/We-Math testmini): multi-step math problems decomposed into one-step sub-problems.
Published numbers: VLMEvalKit `WeMath.evaluate` (under exact matching the `wemath.py` extraction).
Score: the strict score over the multi-step problems (lmms-eval `tasks/wemath/wemath_utils.py`, the
official four-dimensional metric), the loose score and the IK / IG / CM / RM counts beside it.

Formats: `testmini.json` (`ID, split, knowledge concept, question, option "A. ..; B. ..", answer, key,
image_path`; images under `--image-root`) or its Parquet (`image_path` embedded).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from recipe.ivgr.eval.reference import WEMATH
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _clean,
    _each,
    _files,
    _mc_from_letter,
    _read_rows,
    _text,
)
from recipe.ivgr.eval.spec import BenchmarkSpec, Metric, Protocol, Records, hits
from reward_score.choices import LETTER, LETTERS

_WEMATH_OPTION = re.compile(rf"(?:^|;\s*)({LETTER})\.\s*")


def wemath_options(text: str) -> list[str] | None:
    """We-Math's "A. 3 cm; B. 4 cm; C. 5 cm" -> ["3 cm", "4 cm", "5 cm"] (letters must run A, B, ...)."""
    marks = list(_WEMATH_OPTION.finditer(text or ""))
    if len(marks) < 2 or [m.group(1) for m in marks] != list(LETTERS[: len(marks)]):
        return None
    return [text[m.end():(marks[i + 1].start() if i + 1 < len(marks) else len(text))].strip().rstrip(";").strip()
            for i, m in enumerate(marks)]


def read_wemath(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.json", "*.parquet", "*.jsonl")):
        yield from _each(enumerate(_read_rows(path)), lambda pair, path=path: _wemath_item(*pair, path))


def _wemath_item(number: int, row: dict, path: Path) -> RawItem:
    group = _text(row.get("ID"))
    key = _text(row.get("key"))
    if not group or not key:
        raise RowError("malformed_row", f"{path.name}:{number}: WeMath rows need ID and key")
    options = wemath_options(_text(row.get("option")))
    if not options:
        raise RowError("no_options", f"{group}@{key}")
    image = _clean(row.get("image_path"))
    if image is None:
        image = _clean(row.get("image"))
    steps = key.split("_")[0] if "_" in key else key  # 2steps, 3steps, or the one-step key
    return RawItem(source_id=f"{group}@{key}", question=_text(row.get("question")),
                   images=[image] if image is not None else [], options=options,
                   correct=_mc_from_letter(options, row.get("answer"), group), subset=steps, category=key,
                   meta={"ID": group, "key": key, "knowledge_concept": _clean(row.get("knowledge concept")),
                         "split": _clean(row.get("split")), "source_file": path.name})


def wemath_scores(records: Records, protocol: Protocol = "graded") -> dict[str, Any]:
    """We-Math's four-dimensional metrics and scores over its multi-step problems.

    A problem `ID` of N steps (N = 2, 3) has sub-problems keyed `{N}steps_1..N` and the composite
    `{N}steps_multi` (item ids `wemath:<ID>@<key>`). Per complete problem: IK (insufficient
    knowledge) = some sub-problem wrong and the composite wrong; IG (inadequate generalization) =
    all sub-problems right, composite wrong; CM (complete mastery) = composite right and all
    sub-problems right (strict) / at least one right (loose); RM (rote memorization) = composite
    right and some sub-problem wrong (strict) / all wrong (loose). Score = (n - 0.5 IG - RM - IK) / n
    over the n complete problems (n = 525 on testmini, lmms-eval's constant). Problems missing a
    part are counted in `incomplete` and left out. `protocol` picks the verdicts (`graded`:
    `correct`; `reference`: `reference_correct`).
    """
    parts: dict[tuple[int, str], dict[str, bool]] = defaultdict(dict)
    for record, hit in zip(records, hits(records, protocol)):
        group, _, key = str(record.get("item_id") or "").split(":", 1)[-1].rpartition("@")
        if key[:1].isdigit() and "steps_" in key:
            parts[(int(key[0]), group)][key.split("_", 1)[1]] = hit
    counts: Counter = Counter()
    for (steps, _), got in parts.items():
        needed = [str(i) for i in range(1, steps + 1)] + ["multi"]
        if any(k not in got for k in needed):
            counts["incomplete"] += 1
            continue
        singles, multi = [got[str(i)] for i in range(1, steps + 1)], got["multi"]
        counts["problems"] += 1
        if not multi:
            counts["IG" if all(singles) else "IK"] += 1
        else:
            counts["CM_strict" if all(singles) else "RM_strict"] += 1
            counts["RM_loose" if not any(singles) else "CM_loose"] += 1
    n = counts["problems"]
    out: dict[str, Any] = {k: counts.get(k, 0) for k in ("problems", "incomplete", "IK", "IG", "CM_strict",
                                                         "RM_strict", "CM_loose", "RM_loose")}
    for kind in ("strict", "loose"):
        out[f"score_{kind}"] = (n - 0.5 * counts["IG"] - counts[f"RM_{kind}"] - counts["IK"]) / n if n else None
    return out


def _aggregate(records: Records, protocol: Protocol) -> tuple[float | None, dict[str, Any]]:
    scores = wemath_scores(records, protocol)
    return scores["score_strict"], {"wemath": scores}


SPEC = BenchmarkSpec("wemath", "WeMath", reader=read_wemath, metric=Metric("wemath", _aggregate), reference=WEMATH)
