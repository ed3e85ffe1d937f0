"""The distillation's SFT rows: the record rows of the selected samples (images as bytes), every
journaled rewrite checked and written as a textual-stream SFT row, or rejected with its reason."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from data_prep.sft import SftWriter
from recipe.ivgr.distill.references import Candidate
from recipe.ivgr.distill.rewrite import check_rewrite, parse_rewrite


def load_records(path: Path, wanted: set[str], image_root: Path) -> dict[str, dict]:
    """Record rows (data_prep.schema) of the wanted sample ids, images as embedded bytes."""
    import pyarrow.parquet as pq

    from data_prep.images import ImageError, safe_relative_path

    columns = ["sample_id", "question", "answer", "choices", "images", "image_size", "gt_boxes"]
    names = pq.read_schema(path).names
    columns += [c for c in ("question_textual",) if c in names]  # schema 1 files have none
    records = {}
    for batch in pq.ParquetFile(path).iter_batches(batch_size=64, columns=columns):
        for row in batch.to_pylist():
            if row["sample_id"] not in wanted:
                continue
            images = []
            try:
                for item in row["images"] or []:
                    if item.get("bytes"):
                        images.append(item["bytes"])
                    else:
                        _, full = safe_relative_path(item["path"], image_root)
                        images.append(full.read_bytes())
                row["image_bytes"] = images
            except (ImageError, OSError) as err:
                row["image_error"] = f"{type(err).__name__}: {err}"
            records[row["sample_id"]] = row
    return records


def build_rows(candidates: Sequence[Candidate], records: dict[str, dict], done: dict[str, list[str]], writer,
               k: int) -> None:
    """Check every journaled rewrite and add the valid ones to `writer` (SftWriter); reject the rest."""
    from data_prep.images import ImageError, ImageItem, size_of_bytes
    from data_prep.schema import RecordError
    from data_prep.sft import SftSample

    for candidate in candidates:
        sid = candidate.sample_id
        record = records.get(sid)
        if candidate.source == "none":
            writer.reject(sid, "no_reference", "no archive entry and no qualifying grounded rollout")
            continue
        if candidate.source == "invalid":
            writer.reject(sid, "reference_invalid", candidate.problem)
            continue
        if record is None:
            writer.reject(sid, "sample_not_in_data", "sample_id not in --data")
            continue
        if record.get("image_error"):
            writer.reject(sid, "image_unreadable", record["image_error"])
            continue
        if sid not in done:
            writer.reject(sid, f"judge_{record.get('judge_failure', 'not_asked')}", "retried by the next run")
            continue
        reference_answer = candidate.answer or record["answer"]
        try:
            images = [ImageItem(data, None) for data in record["image_bytes"]]
            sizes = [size_of_bytes(data) for data in record["image_bytes"]]
        except ImageError as err:
            writer.reject(sid, err.reason, err.detail)
            continue
        seen: set[str] = set()
        for j, raw in enumerate(done[sid][:k]):
            row_id = f"{sid}#r{j}"
            text = parse_rewrite(raw) or ""
            if text in seen:
                writer.reject(row_id, "duplicate_rewrite", "")
                continue
            seen.add(text)
            reason, detail = check_rewrite(text, reference_answer, record.get("choices"))
            if reason is not None:
                writer.reject(row_id, reason, detail)
                continue
            # the RL textual stream's question (data_prep.schema: question_textual when the source has one)
            sample = SftSample(sample_id=f"distill:{row_id}", data_source=f"distill/{candidate.source}",
                               question=record.get("question_textual") or record["question"], response=text, images=images, image_sizes=sizes,
                               choices=record.get("choices"), stream="textual", source_box_format="model")
            try:
                writer.add(sample, row_id)
            except RecordError as err:  # pragma: no cover - add() records its own rejects
                writer.reject(row_id, err.reason, err.detail)


class DistillWriter(SftWriter):
    """`SftWriter` whose keep ratio counts samples, not rows: of the `samples` selected samples with a
    reference, the share that got at least one SFT row (with k rewrites, rejected duplicates of a kept
    rewrite are the filter working, not a loss)."""

    def __init__(self, out, *, samples: int, **options):
        super().__init__(out, **options)
        self.samples = samples
        self._kept_samples: set[str] = set()

    def add_row(self, row: dict[str, Any]) -> None:
        self._kept_samples.add(row["sample_id"].split("#r")[0])
        super().add_row(row)

    @property
    def samples_kept(self) -> int:
        return len(self._kept_samples)

    def kept_enough(self) -> bool:
        if self.min_keep_ratio is None:
            return True
        return self.samples_kept > 0 and self.samples_kept >= self.min_keep_ratio * self.samples
