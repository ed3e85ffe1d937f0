"""The first N samples of a record Parquet, as a new record Parquet that still finds its images.

    python -m data_prep.subset --input data/mine/train.parquet --num 8 --out /tmp/smoke/data/train.parquet \
        [--image-root IMAGES]

For a quick run on your own data (`scripts/smoke_cpu.sh` with `SMOKE_TRAIN_FILE`, a preflight at a small
batch size) without converting again. Rows are copied unchanged, in order, streamed in bounded batches;
the schema and its metadata are kept, except the image root: path-mode images are resolved the way every
reader resolves them (`data_prep.schema.resolve_image_root`: `--image-root`, else the root stored in the
input, else the input's folder) and that folder is stored for the new file's location, so the copy works
from any folder. Exit status 0 on success, 2 when the input is unreadable or holds no rows.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa

from data_prep import streaming
from data_prep.schema import image_root_metadata, resolve_image_root


def write_subset(source: str | os.PathLike, out: str | os.PathLike, num: int,
                 image_root: str | os.PathLike | None = None) -> int:
    """Copy the first `num` rows of `source` to `out` (atomic: written beside it, then renamed); returns the
    number of rows written. The image root of `source` is stored for `out`'s folder."""
    source, out = Path(source), Path(out)
    parquet = streaming.open_parquet(source)
    root = resolve_image_root(source, image_root)
    metadata = dict(parquet.schema_arrow.metadata or {})
    if root is not None:
        metadata.update(image_root_metadata(out, root))
    schema = parquet.schema_arrow.with_metadata(metadata)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    written = 0
    try:
        with streaming.writer(tmp, schema) as writer:
            for batch in streaming.iter_batches(source):
                if written >= num:
                    break
                batch = batch.slice(0, num - written)
                writer.write_table(pa.Table.from_batches([batch]).cast(schema))
                written += batch.num_rows
        if written:  # an empty input publishes nothing
            os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_prep.subset", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, type=Path, help="a record Parquet (data_prep converters)")
    parser.add_argument("--num", required=True, type=int, help="samples (rows) to keep, from the start")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--image-root", type=Path, default=None,
                        help="root of path-mode images (default: the root stored in the input, else its folder)")
    args = parser.parse_args(argv)
    if args.num < 1:
        parser.error("--num must be at least 1")
    try:
        written = write_subset(args.input, args.out, args.num, args.image_root)
    except (OSError, pa.ArrowInvalid) as err:
        print(f"[data_prep] error: cannot read {args.input} as Parquet: {err}", file=sys.stderr)
        return 2
    if written == 0:
        print(f"[data_prep] error: {args.input} has no rows; nothing written", file=sys.stderr)
        return 2
    print(f"[data_prep] {args.out}: the first {written} samples of {args.input}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
