"""Benchmark of data preparation: a 100,000-row generic JSONL input with images by path, and an
embedded-image Parquet of >= 500 MB in ONE row group.

    python scripts/bench_data_prep.py [--rows 100000] [--images 300] [--embedded-mb 600] [--workdir DIR] [--keep]

Writes a few hundred small PNG/JPEG files once and references them repeatedly under distinct ids
(disk stays small), then converts the first 10,000 rows and all rows, each in its own
subprocess (`python -m data_prep.generic`), so peak RSS (`ru_maxrss` from `os.wait4`) is per run.
Prints rows/s measured in wall time including interpreter start-up, rows/s of the conversion
loop alone (reported by the converter), and peak RSS. The converter is single-process, so rows/s
is rows/s per core. Targets: >= 1,000 rows/s per core, peak RSS < 1 GiB and flat in the size.

The embedded part writes a TreeVGR-style Parquet (`images: [{bytes, path}]`, `target_instances`)
whose rows each carry a distinct ~1 MB JPEG, all in one row group (`--embedded-mb` MB in total),
twice: with pyarrow's default writer settings (the row group's image column is then ONE data
page, the worst case: a page is read whole) and with ~1 MB pages. Each is converted with
`data_prep.treevgr_rl37k --embed-images` (read in ~8 MB batches, written in row groups capped at
32 MB with ~1 MB pages), then `data_prep.validate` and `data_prep.inspect` run on the output, each
in its own subprocess with its peak RSS. `--embedded-mb 0` skips it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def make_input(workdir: Path, rows: int, images: int, seed: int = 0) -> Path:
    """Images under workdir/images, the JSONL at workdir/input.jsonl (grounded and single rows)."""
    rng = random.Random(seed)
    image_dir = workdir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    sizes = []
    for i in range(images):
        size = (rng.randint(200, 1600), rng.randint(200, 1200))
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        name = f"img_{i:04d}.{'png' if i % 2 else 'jpg'}"
        Image.new("RGB", size, colour).save(image_dir / name, quality=85)
        sizes.append((name, size))
    path = workdir / "input.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for row in range(rows):
            name, (width, height) = sizes[row % images]
            line = {"id": f"r{row:07d}", "image": name, "question": f"Where is object {row}?", "answer": str(row % 7)}
            if row % 3:
                x1, y1 = rng.randint(0, width // 2), rng.randint(0, height // 2)
                line["boxes"] = [[x1, y1, x1 + rng.randint(8, width // 2), y1 + rng.randint(8, height // 2)]]
            handle.write(json.dumps(line) + "\n")
    return path


def make_embedded_input(workdir: Path, megabytes: int, pages: str = "default", seed: int = 0) -> Path:
    """A TreeVGR-style Parquet of about `megabytes` MB in ONE row group: distinct ~1 MB noise JPEGs.

    `pages="default"`: pyarrow's default writer settings, which put the whole image column of the
    row group into one data page (the page size is checked every 1024 values); `"small"`: pages
    near 1 MB (what data_prep writes)."""
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    base = []
    for _ in range(8):  # a few noise images; each row gets its own bytes (a distinct tail after EOI)
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (700, 900, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
        base.append(buffer.getvalue())
    rows, total, number = [], 0, 0
    while total < megabytes * 2**20:
        data = base[number % len(base)] + number.to_bytes(8, "little")
        rows.append({"problem": f"<image>Where is object {number}?", "answer": "left",
                     "images": [{"bytes": data, "path": f"img/{number}.jpg"}],
                     "target_instances": [{"bbox": [10.0 + number % 50, 20.0, 300.0, 400.0]}]})
        total += len(data)
        number += 1
    path = workdir / f"embedded_{pages}.parquet"
    table = pa.Table.from_pylist(rows)
    extra = {"write_batch_size": 1, "data_page_size": 1 << 20} if pages == "small" else {}
    pq.write_table(table, path, row_group_size=len(rows) + 1, use_dictionary=False, compression="none", **extra)
    return path


def run_child(command: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, stderr) of one subprocess; exits on failure."""
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[2:4])} failed:\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss / 1024, stderr


def bench_embedded(workdir: Path, megabytes: int, pages: str) -> None:
    import pyarrow.parquet as pq

    start = time.perf_counter()
    # In a child: Linux carries a parent's resident size into a forked child's ru_maxrss, so the
    # 600 MB built here would inflate every later measurement.
    run_child([sys.executable, __file__, "--make-embedded", str(workdir), str(megabytes), pages])
    source = workdir / f"embedded_{pages}.parquet"
    meta = pq.ParquetFile(source).metadata
    print(f"embedded input ({pages} pages): {source.stat().st_size / 2**20:.0f} MiB, {meta.num_rows} rows in "
          f"{meta.num_row_groups} row group(s) ({time.perf_counter() - start:.1f} s)")
    out = workdir / f"embedded_{pages}_out.parquet"
    wall, rss, stderr = run_child([sys.executable, "-m", "data_prep.treevgr_rl37k", "--input", str(source),
                                   "--out", str(out), "--embed-images", "--quiet"])
    loop = re.search(r"\((\d+) rows/s\)", stderr)
    groups = pq.ParquetFile(out).metadata
    print(f"  convert (treevgr_rl37k --embed-images): {wall:6.2f} s wall, {meta.num_rows / wall:6.0f} rows/s "
          f"(wall), {loop.group(1) if loop else '?'} rows/s (loop), "
          f"{source.stat().st_size / 2**20 / wall:.0f} MiB/s, peak RSS {rss:.0f} MiB; output "
          f"{out.stat().st_size / 2**20:.0f} MiB in {groups.num_row_groups} row groups")
    for module, extra in (("data_prep.validate", ["--decode", "none", "--quiet"]),
                          ("data_prep.inspect", ["--prefix-samples", "4", "--quiet"])):
        wall, rss, _ = run_child([sys.executable, "-m", module, str(out), *extra])
        print(f"  {module:<18} {wall:6.2f} s wall, {meta.num_rows / wall:6.0f} rows/s, peak RSS {rss:.0f} MiB")


def convert(workdir: Path, source: Path, limit: int) -> dict:
    """Run one conversion in a subprocess; wall seconds, loop rows/s and that child's peak RSS."""
    out = workdir / f"out_{limit}.parquet"
    command = [sys.executable, "-m", "data_prep.generic", "--input", str(source), "--image-root",
               str(workdir / "images"), "--out", str(out), "--limit", str(limit), "--quiet"]
    start = time.perf_counter()
    child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"conversion failed ({child.returncode}):\n{stderr}")
    summary = json.loads(out.with_name(out.stem + ".summary.json").read_text())
    loop = re.search(r"\((\d+) rows/s\)", stderr)
    return {"rows": summary["read"], "written": summary["written"], "rejected": summary["rejected"],
            "wall_s": wall, "rows_per_s_wall": summary["read"] / wall,
            "rows_per_s_loop": int(loop.group(1)) if loop else None,
            "peak_rss_mib": usage.ru_maxrss / 1024, "parquet_mib": out.stat().st_size / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--embedded-mb", type=int, default=600, help="size of the embedded-image Parquet (0: skip)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--make-embedded", nargs=3, metavar=("DIR", "MB", "PAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make_embedded:
        make_embedded_input(Path(args.make_embedded[0]), int(args.make_embedded[1]), args.make_embedded[2])
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_data_prep_"))
    try:
        start = time.perf_counter()
        source = make_input(workdir, args.rows, args.images)
        print(f"input: {args.rows} rows, {args.images} images in {workdir} ({time.perf_counter() - start:.1f} s)")
        print(f"cpu cores: {os.cpu_count()}; converter: single process")
        for limit in sorted({min(10_000, args.rows), args.rows}):
            r = convert(workdir, source, limit)
            print(f"{r['rows']:>7} rows: {r['wall_s']:6.2f} s wall, "
                  f"{r['rows_per_s_wall']:7.0f} rows/s (wall, incl. start-up), "
                  f"{r['rows_per_s_loop']} rows/s (conversion loop), peak RSS {r['peak_rss_mib']:.0f} MiB, "
                  f"written {r['written']}, rejected {r['rejected']}, parquet {r['parquet_mib']:.1f} MiB")
        if args.embedded_mb > 0:
            for pages in ("default", "small"):
                bench_embedded(workdir, args.embedded_mb, pages)
                for name in (f"embedded_{pages}.parquet", f"embedded_{pages}_out.parquet"):
                    (workdir / name).unlink()
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
