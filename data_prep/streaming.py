"""Bounded-memory Parquet reading and writing for files that embed images.

Reading: `iter_batches` streams a row group page by page when the file is opened without
pre-buffering (`buffer_size` > 0, `pre_buffer=False`), so memory follows the batch, not the row
group. The batch size is chosen from the footer: about `target_bytes` of uncompressed data per
batch (few rows for embedded images, many for path-mode files). One limit remains: a Parquet
*page* is read whole, and pyarrow's writer, with its defaults, checks the page size only every
1024 values, so a file of fewer than 1024 embedded images written with defaults holds each row
group's image column in ONE page (a 600 MB row group then needs about 600 MB to read, whatever
the batch size).

Writing: `WRITE_OPTIONS` keep pages near 1 MB (the page size is checked every `write_batch_size`
values) and the writers here cap row groups in bytes, so files we write stream in bounded memory
for every reader.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

READ_BUFFER_BYTES = 4 << 20
BATCH_TARGET_BYTES = 8 << 20  # uncompressed bytes per read batch
MAX_BATCH_ROWS = 1024
ROW_GROUP_BYTES = 32 << 20  # cap on embedded image bytes per written row group
# Pages near 1 MB; the writer checks the size every 8 values (one value can be a 20 MB image).
WRITE_OPTIONS = {"data_page_size": 1 << 20, "write_batch_size": 8}


def open_parquet(path: str | os.PathLike) -> pq.ParquetFile:
    """A ParquetFile that reads column chunks through a small buffer (no pre-buffering)."""
    return pq.ParquetFile(path, buffer_size=READ_BUFFER_BYTES, pre_buffer=False)


def batch_rows(parquet: pq.ParquetFile, columns: Sequence[str] | None = None,
               target_bytes: int = BATCH_TARGET_BYTES, max_rows: int = MAX_BATCH_ROWS) -> int:
    """Rows per batch so that one batch holds about `target_bytes` of the selected columns."""
    meta = parquet.metadata
    if meta.num_rows == 0:
        return max_rows
    wanted = set(columns) if columns is not None else None
    total = 0
    for group in range(meta.num_row_groups):
        row_group = meta.row_group(group)
        for index in range(row_group.num_columns):
            column = row_group.column(index)
            if wanted is None or column.path_in_schema.split(".")[0] in wanted:
                total += column.total_uncompressed_size
    per_row = max(1, total // meta.num_rows)
    return int(max(1, min(max_rows, target_bytes // per_row)))


def iter_batches(path: str | os.PathLike, columns: Sequence[str] | None = None,
                 target_bytes: int = BATCH_TARGET_BYTES) -> Iterator[pa.RecordBatch]:
    """Record batches of about `target_bytes` each, streamed (see the module docstring)."""
    parquet = open_parquet(path)
    names = set(parquet.schema_arrow.names)
    wanted = [c for c in columns if c in names] if columns is not None else None
    yield from parquet.iter_batches(batch_size=batch_rows(parquet, wanted, target_bytes), columns=wanted)


def writer(path: str | os.PathLike, schema: pa.Schema) -> pq.ParquetWriter:
    """A ParquetWriter with small pages (`WRITE_OPTIONS`)."""
    return pq.ParquetWriter(path, schema, **WRITE_OPTIONS)
