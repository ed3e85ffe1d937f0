"""Readers of the converters' source files: Parquet (streamed in bounded batches), JSONL (line by line),
JSON documents and arrays; each yields `(row_id, row)` pairs, a row that cannot be parsed as a `BadRow`
(rejected by `data_prep.common.run` with its reason), and counts rows for the progress bar."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from data_prep import streaming


class BadRow:
    """A source row that could not even be parsed (e.g. invalid JSON); the run loop rejects it."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason, self.detail = reason, detail


def iter_parquet(paths: Sequence[str | Path], columns: Sequence[str] | None = None,
                 batch_size: int | None = None) -> Iterator[tuple[str, dict]]:
    """Rows of Parquet files as dicts, streamed in bounded batches (`data_prep.streaming`; about
    16 MB per batch unless `batch_size` rows are asked for); row id `<file name>:<row number>`."""
    for path in map(Path, paths):
        parquet = streaming.open_parquet(path)
        names = set(parquet.schema_arrow.names)
        wanted = [c for c in columns if c in names] if columns else None
        rows_per_batch = batch_size or streaming.batch_rows(parquet, wanted)
        number = 0
        for batch in parquet.iter_batches(batch_size=rows_per_batch, columns=wanted):
            for row in batch.to_pylist():
                yield f"{path.name}:{number}", row
                number += 1


def iter_jsonl(paths: Sequence[str | Path]) -> Iterator[tuple[str, dict | BadRow]]:
    """Objects of JSONL files, line by line; row id `<file name>:<line number>` (1-based)."""
    for path in map(Path, paths):
        with open(path, encoding="utf-8", errors="surrogateescape") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                row_id = f"{path.name}:{number}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    # err's own "line 1" is the line within this one-line document: say the column only
                    yield row_id, BadRow("bad_json", f"{err.msg} at column {err.colno}")
                    continue
                yield row_id, obj if isinstance(obj, dict) else BadRow(
                    "bad_json", f"line is a JSON {type(obj).__name__}, not an object")


class InputError(ValueError):
    """A whole input file cannot be read as the format it claims (one line for the user, exit 2)."""


def load_json_document(path: str | Path) -> Any:
    """A whole `.json` file parsed, or `InputError` naming the file and where it breaks."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        hint = " (truncated?)" if err.pos >= len(text.rstrip()) else ""
        raise InputError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}{hint}") from None


def iter_json_array(path: str | Path, records: list) -> Iterator[tuple[str, dict | BadRow]]:
    """Elements of a JSON array of records (the same objects as JSONL lines); row id `<file>:[i]`."""
    name = Path(path).name
    for number, obj in enumerate(records):
        row_id = f"{name}:[{number}]"
        yield row_id, obj if isinstance(obj, dict) else BadRow(
            "bad_json", f"element is a JSON {type(obj).__name__}, not an object")


def jsonl_rows(paths: Sequence[str | Path], chunk: int = 1 << 20) -> int:
    """Number of lines of JSONL files (a byte scan, for the progress bar's total; blank lines count)."""
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            last = b"\n"
            while block := handle.read(chunk):
                total += block.count(b"\n")
                last = block[-1:]
            total += last != b"\n"
    return total


def parquet_rows(paths: Sequence[str | Path]) -> int:
    """Total row count from the Parquet footers (no data read)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
