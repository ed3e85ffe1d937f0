"""POPE (lmms-lab/POPE): object-hallucination yes/no questions on COCO, three subsets (random, popular,
adversarial). Published numbers: VLMEvalKit `ImageYORNDataset` with `POPE_rating`. Score: F1 of the "yes"
class (VLMEvalKit's "Overall"), precision, recall and accuracy beside it.

Formats: lmms-lab/POPE Parquet (`question_id, question, answer, category, image`), the original
`coco_pope_{random,popular,adversarial}.json` lines (`question_id, image, text, label`; images under
`--image-root`), or a VLMEvalKit TSV.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from recipe.ivgr.eval.reference import YORN_POPE
from recipe.ivgr.eval.sources import (
    RawItem,
    RowError,
    _clean,
    _each,
    _files,
    _json_lines_or_list,
    _read_rows,
    _rel,
    _text,
    _tsv_image,
)
from recipe.ivgr.eval.spec import BenchmarkSpec, Metric, Protocol, Records

_POPE_FILE = re.compile(r"pope_(random|popular|adversarial)", re.IGNORECASE)


def read_pope(inputs: Sequence[Path], root: Path) -> Iterator[RawItem | RowError]:
    for path in _files(inputs, ("*.parquet", "*.json", "*.jsonl", "*.tsv")):
        file_category = _POPE_FILE.search(path.name)
        # the original POPE files are JSON lines named .json
        rows = _json_lines_or_list(path) if path.suffix.lower() == ".json" else _read_rows(path)
        yield from _each(enumerate(rows), lambda pair, path=path, fc=file_category: _pope_item(*pair, path, fc, root))


def _pope_item(number: int, row: dict, path: Path, file_category: re.Match | None, root: Path) -> RawItem:
    if "__error__" in row:
        raise RowError("bad_json", row["__error__"])
    question = _text(row.get("question") or row.get("text"))
    answer = _text(row.get("answer") if row.get("answer") is not None else row.get("label")).lower()
    if answer not in ("yes", "no"):
        raise RowError("bad_answer", f"{path.name}:{number}: {answer!r}")
    category = _text(row.get("category")) or (file_category.group(1).lower() if file_category else None)
    image = row.get("image")
    if isinstance(image, str) and path.suffix.lower() == ".tsv":
        images = _tsv_image(row)
    elif isinstance(image, str):
        images = [_rel(root / image, root)]
    else:
        images = [image] if image is not None else []
    qid = _text(row.get("question_id") or row.get("id") or row.get("index")) or str(number)
    return RawItem(
        source_id=f"{category or 'all'}/{qid}", question=question, images=images, answer=answer,
        answer_type="yes_no", subset=category, category=category,
        meta={"question_id": qid, "image_source": _clean(row.get("image_source")), "source_file": path.name},
    )


_DECIDED = ("rule", "lenient", "judge")


def said_yes(record: Mapping[str, Any], protocol: Protocol) -> bool:
    """Whether the answer said "yes". Graded: a decided verdict tells it (right on a "yes" item or wrong
    on a "no" item); an undecided answer says neither. Reference: VLMEvalKit read "Yes" (its Unknown
    counts as "no")."""
    if protocol == "reference":
        return record.get("reference_extracted") == "Yes"
    truth = str(record.get("ground_truth") or "").strip().lower() == "yes"
    return record.get("decided_by") in _DECIDED and truth == bool(record.get("correct"))


def yes_f1(records: Records, protocol: Protocol) -> dict[str, float]:
    """F1, precision and recall of the "yes" class."""
    tp = fp = fn = 0
    for record in records:
        truth = str(record.get("ground_truth") or "").strip().lower() == "yes"
        pred = said_yes(record, protocol)
        tp += truth and pred
        fp += (not truth) and pred
        fn += truth and not pred
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "precision": precision, "recall": recall}


def _aggregate(records: Records, protocol: Protocol) -> tuple[float | None, dict[str, Any]]:
    # summary.json layout: graded f1/precision/recall at the top level, the reference's as `reference_f1`
    stats = yes_f1(records, protocol)
    return (stats["f1"] if records else None), (stats if protocol == "graded" else {"f1": stats})


SPEC = BenchmarkSpec("pope", "POPE", reader=read_pope, metric=Metric("f1", _aggregate), answer_type="yes_no",
                     reference=YORN_POPE)
