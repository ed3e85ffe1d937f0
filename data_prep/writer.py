"""Streaming, atomic Parquet writer with a rejects file and a summary.

For an output `DIR/NAME.parquet` it writes, next to it:
- `DIR/NAME.rejects.jsonl`: one line per dropped source row, `{"row": <source row id>, "reason":
  <code>, "detail": <text>}`, in input order;
- `DIR/NAME.summary.json`: counts (`read`, `written`, `rejected`, per reason, per kind, per
  data source). No timings, so identical inputs give byte-identical outputs (idempotent re-runs).

Rows are buffered and flushed as Parquet row groups (`row_group_rows` rows or `row_group_bytes`
of embedded image bytes, whichever comes first), so memory stays bounded. Everything goes to
hidden temporary files in the output directory first; only a run that finishes renames them
into place (`os.replace`, atomic on one filesystem). An exception or Ctrl-C removes the
temporaries and leaves any previous output untouched.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.schema import RECORD_SCHEMA, RecordError, Sample, to_row


def side_paths(out: Path) -> tuple[Path, Path]:
    """(rejects JSONL, summary JSON) paths that belong to the output `out`."""
    stem = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(f"{stem}.rejects.jsonl"), out.with_name(f"{stem}.summary.json")


class RecordWriter:
    """Context manager: `add()` samples, `reject()` source rows; files appear only on success."""

    schema: pa.Schema = RECORD_SCHEMA  # subclasses writing another table (data_prep.sft) replace it

    def __init__(self, out: str | os.PathLike, *, box_frame: str = "qwen2_5_vl",
                 row_group_rows: int = 1000, row_group_bytes: int = 64 << 20):
        self.out = Path(out)
        self.rejects_path, self.summary_path = side_paths(self.out)
        self.box_frame = box_frame
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
        self._writer = pq.ParquetWriter(self._tmp[self.out], self.schema)
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
        # The Parquet file goes last: its presence means the side files belong to it.
        for final in (self.rejects_path, self.summary_path, self.out):
            os.replace(self._tmp[final], final)

    # -- rows --------------------------------------------------------------------------------
    def add(self, sample: Sample, row_id: str) -> bool:
        """Append one sample; on a duplicate id or an unusable sample, record a reject instead."""
        if sample.sample_id in self._seen:
            self.reject(row_id, "duplicate_id", sample.sample_id)
            return False
        try:
            row = to_row(sample, self.written, self.box_frame)
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
            "box_frame": self.box_frame,
        }
