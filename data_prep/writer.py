"""Streaming, atomic Parquet writer with a rejects file and a summary.

For an output `DIR/NAME.parquet` it writes, next to it:
- `DIR/NAME.rejects.jsonl`: one line per dropped source row, `{"row": <source row id>, "reason":
  <code>, "detail": <text>}`, in input order;
- `DIR/NAME.summary.json`: counts (`read`, `written`, `rejected`, per reason, per kind, per
  data source) and `image_root` (relative to DIR, as in the Parquet's schema metadata
  `ivgr.image_root`, see `data_prep.schema.image_root_of`). No timings, so identical inputs give
  byte-identical outputs (idempotent re-runs).

Rows are buffered and flushed as Parquet row groups (`row_group_rows` rows or `row_group_bytes`
of embedded image bytes, 32 MB by default, whichever comes first) with pages near 1 MB
(`data_prep.streaming`), so memory stays bounded here and in every reader of the file. Everything goes to
hidden temporary files in the output directory first; only a run that finishes renames them
into place (`os.replace`, atomic on one filesystem). An exception or Ctrl-C removes the
temporaries and leaves any previous output untouched.

A run that keeps too little (`min_keep_ratio`: nothing at all, or fewer than that fraction of
the rows read, typically a wrong image root) is not published either: the previous output stays,
and the new rejects and summary are written as `NAME.failed.rejects.jsonl` /
`NAME.failed.summary.json` for diagnosis (a later successful run removes them); `committed` is then False.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa

from data_prep import streaming
from data_prep.schema import IMAGE_ROOT_KEY, RECORD_SCHEMA, RecordError, Sample, image_root_metadata, to_row


def side_paths(out: Path, infix: str = "") -> tuple[Path, Path]:
    """(rejects JSONL, summary JSON) paths that belong to the output `out`."""
    stem = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(f"{stem}{infix}.rejects.jsonl"), out.with_name(f"{stem}{infix}.summary.json")


class RecordWriter:
    """Context manager: `add()` samples, `reject()` source rows; files appear only on success."""

    schema: pa.Schema = RECORD_SCHEMA  # subclasses writing another table (data_prep.sft) replace it

    def __init__(self, out: str | os.PathLike, *, row_group_rows: int = 1000,
                 row_group_bytes: int = streaming.ROW_GROUP_BYTES, min_keep_ratio: float | None = None,
                 image_root: str | os.PathLike | None = None, notes: Counter | None = None):
        self.out = Path(out)
        self.notes = notes  # converter-specific counts, reported in the summary under `notes`
        base = type(self).schema
        self.metadata = dict(base.metadata or {})
        if image_root is not None:
            self.metadata.update(image_root_metadata(self.out, image_root))
        self.schema = base.with_metadata(self.metadata)
        self.min_keep_ratio = min_keep_ratio
        self.committed = False
        self.last_reject = ""
        self.rejects_path, self.summary_path = side_paths(self.out)
        self.row_group_rows = row_group_rows
        self.row_group_bytes = row_group_bytes
        self._buffer: list[dict[str, Any]] = []
        self._buffer_bytes = 0
        self._seen: set[str] = set()
        self.written = 0
        self.reasons: Counter = Counter()
        self.kinds: Counter = Counter()
        self.sources: Counter = Counter()
        self._tmp: dict[Path, Path] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> RecordWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        suffix = f".{os.getpid()}.tmp"
        self._tmp = {p: p.with_name(f".{p.name}{suffix}") for p in (self.out, self.rejects_path, self.summary_path)}
        self._writer = streaming.writer(self._tmp[self.out], self.schema)
        self._rejects = open(self._tmp[self.rejects_path], "w", encoding="utf-8", errors="backslashreplace")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        ok = exc_type is None
        try:
            if ok:
                self._flush()
        except BaseException:
            ok = False
            raise
        finally:
            self._writer.close()
            self._rejects.close()
            if not ok:
                for tmp in self._tmp.values():
                    tmp.unlink(missing_ok=True)
        if not ok:
            return
        self._tmp[self.summary_path].write_text(json.dumps(self.summary(), indent=2, sort_keys=True) + "\n",
                                                encoding="utf-8")
        if not self.kept_enough():
            failed_rejects, failed_summary = side_paths(self.out, ".failed")
            os.replace(self._tmp[self.rejects_path], failed_rejects)
            os.replace(self._tmp[self.summary_path], failed_summary)
            self._tmp[self.out].unlink(missing_ok=True)
            return
        # The Parquet file goes last: its presence means the side files belong to it.
        for final in (self.rejects_path, self.summary_path, self.out):
            os.replace(self._tmp[final], final)
        # a failed earlier run's diagnosis no longer describes what is published
        for stale in side_paths(self.out, ".failed"):
            stale.unlink(missing_ok=True)
        self.committed = True

    def kept_enough(self) -> bool:
        """False when `min_keep_ratio` is set and nothing, or less than that share of the rows read, was kept."""
        if self.min_keep_ratio is None:
            return True
        read = self.written + self.rejected
        return self.written > 0 and self.written >= self.min_keep_ratio * read

    # -- rows --------------------------------------------------------------------------------
    def add(self, sample: Sample, row_id: str) -> bool:
        """Append one sample; on a duplicate id or an unusable sample, record a reject instead."""
        if sample.sample_id in self._seen:
            self.reject(row_id, "duplicate_id", sample.sample_id)
            return False
        try:
            row = to_row(sample)
        except RecordError as err:
            self.reject(row_id, err.reason, err.detail)
            return False
        self._seen.add(sample.sample_id)
        self._buffer.append(row)
        self._buffer_bytes += sum(len(item.data or b"") for item in sample.images)
        self.written += 1
        self.kinds[row["kind"]] += 1
        self.sources[row["data_source"]] += 1
        if len(self._buffer) >= self.row_group_rows or self._buffer_bytes >= self.row_group_bytes:
            self._flush()
        return True

    def reject(self, row_id: str, reason: str, detail: str = "") -> None:
        """Record that source row `row_id` was dropped, and why."""
        self.reasons[reason] += 1
        self.last_reject = f"{row_id}: {reason} {str(detail)[:200]}"
        line = {"row": str(row_id), "reason": reason, "detail": str(detail)[:500]}
        self._rejects.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")

    def _flush(self) -> None:
        if self._buffer:
            self._writer.write_table(pa.Table.from_pylist(self._buffer, schema=self.schema))
            self._buffer, self._buffer_bytes = [], 0

    # -- report ------------------------------------------------------------------------------
    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())

    def summary(self) -> dict[str, Any]:
        return {
            "output": self.out.name,
            "read": self.written + self.rejected,
            "written": self.written,
            "rejected": self.rejected,
            "reasons": dict(sorted(self.reasons.items())),
            "kinds": dict(sorted(self.kinds.items())),
            "data_sources": dict(sorted(self.sources.items())),
            "image_root": self.metadata[IMAGE_ROOT_KEY].decode() if IMAGE_ROOT_KEY in self.metadata else None,
            **({"notes": dict(sorted(self.notes.items()))} if self.notes is not None else {}),
        }
