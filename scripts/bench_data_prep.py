"""Benchmark of data preparation: a 100,000-row generic JSONL input with images by path.

    python scripts/bench_data_prep.py [--rows 100000] [--images 300] [--workdir DIR] [--keep]

Writes a few hundred small PNG/JPEG files once and references them repeatedly under distinct ids
(disk stays small), then converts the first 10,000 rows and all rows, each in its own
subprocess (`python -m data_prep.generic`), so peak RSS (`ru_maxrss` from `os.wait4`) is per run.
Prints rows/s measured in wall time including interpreter start-up, rows/s of the conversion
loop alone (reported by the converter), and peak RSS. The converter is single-process, so rows/s
is rows/s per core. Targets: >= 1,000 rows/s per core, peak RSS < 1 GiB and flat in the size.
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
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
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
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
