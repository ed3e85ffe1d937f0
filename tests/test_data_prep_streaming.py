"""Bounded memory: files we write stream page by page, row groups are capped in bytes, and the
converters read big row groups in small batches (pyarrow's allocation counter is the measure)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from data_prep import streaming, treevgr_rl37k

REPO = Path(__file__).resolve().parents[1]


def _noise_jpegs(n: int, seed: int = 0) -> list[bytes]:
    """n distinct JPEGs of about 250 KB each."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def _source(path: Path, images: list[bytes]) -> Path:
    """A TreeVGR-style Parquet with ONE row group, written with pyarrow's defaults (one page)."""
    rows = [{"problem": f"<image>Where is object {i}?", "answer": "left",
             "images": [{"bytes": data, "path": f"img/{i}.jpg"}],
             "target_instances": [{"bbox": [10.0, 20.0, 100.0, 200.0]}]} for i, data in enumerate(images)]
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=len(rows) + 1, compression="none")
    return path


def _arrow_peak_first_batch(path: Path) -> int:
    """Peak bytes pyarrow allocates to read a first batch of ~1 MB (fresh process: the counter is global)."""
    code = ("import sys, pyarrow as pa; from data_prep import streaming; "
            "next(streaming.iter_batches(sys.argv[1], target_bytes=1 << 20)); "
            "print(pa.default_memory_pool().max_memory())")
    result = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, capture_output=True, text=True,
                            check=True)
    return int(result.stdout.strip())


def test_converted_files_stream_in_small_pages_and_capped_row_groups(tmp_path):
    images = _noise_jpegs(400)  # ~45 MB of images in one source row group
    total = sum(map(len, images))
    assert total > streaming.ROW_GROUP_BYTES
    source = _source(tmp_path / "src.parquet", images)
    out = tmp_path / "out.parquet"
    assert treevgr_rl37k.main(["--input", str(source), "--out", str(out), "--embed-images", "--quiet"]) == 0
    meta = pq.ParquetFile(out).metadata
    assert meta.num_rows == 400 and meta.num_row_groups >= 2
    largest = max(len(b) for b in images)
    for group in reversed(range(meta.num_row_groups)):  # ends on the first (a full) row group
        image_bytes = sum(meta.row_group(group).column(i).total_uncompressed_size
                          for i in range(meta.row_group(group).num_columns)
                          if meta.row_group(group).column(i).path_in_schema.startswith("images"))
        assert image_bytes <= streaming.ROW_GROUP_BYTES + 2 * largest
    # reading one small batch of our file costs a few ~1 MB pages, not a row group (~32 MB)
    assert _arrow_peak_first_batch(out) < image_bytes / 2
    # the source, written with pyarrow's defaults, is one page: the same read costs the whole group
    assert _arrow_peak_first_batch(source) > total


def test_batch_rows_follow_the_bytes_per_row(tmp_path):
    source = _source(tmp_path / "src.parquet", _noise_jpegs(8))
    parquet = streaming.open_parquet(source)
    per_row = sum(parquet.metadata.row_group(0).column(i).total_uncompressed_size
                  for i in range(parquet.metadata.num_columns)) / 8
    assert streaming.batch_rows(parquet) == int(streaming.BATCH_TARGET_BYTES // per_row)
    assert streaming.batch_rows(parquet, ["problem", "answer"]) == streaming.MAX_BATCH_ROWS
