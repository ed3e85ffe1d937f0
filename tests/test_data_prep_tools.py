"""Synthetic set (determinism, correct answers), validate (exit codes, report) and inspect."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import generic, synthetic, validate
from data_prep import inspect as inspect_cli
from data_prep.synthetic import COLOURS
from data_prep.writer import RecordWriter

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    assert synthetic.main(["--out", str(out), "--num", "60", "--seed", "3", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def high_res_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn_hr")
    assert synthetic.main(["--out", str(out), "--num", "4", "--seed", "5", "--high-res", "--val-every", "0",
                           "--quiet"]) == 0
    return out


def test_synthetic_is_deterministic(small_set, tmp_path):
    assert synthetic.main(["--out", str(tmp_path), "--num", "60", "--seed", "3", "--quiet"]) == 0
    for name in ("train.parquet", "val.parquet"):
        assert (tmp_path / name).read_bytes() == (small_set / name).read_bytes()
    # sample i does not depend on --num; another seed gives other samples
    first = synthetic.make_sample(3, 7)
    row = next(r for r in pq.read_table(small_set / "train.parquet").to_pylist() if r["sample_id"] == first.sample_id)
    assert row["images"][0]["bytes"] == first.images[0].data and row["gt_boxes"] == [list(b) for b in first.gt_boxes]
    assert synthetic.make_sample(4, 7).images[0].data != first.images[0].data


def test_synthetic_split_and_answer_types(small_set):
    train = pq.read_table(small_set / "train.parquet").to_pylist()
    val = pq.read_table(small_set / "val.parquet").to_pylist()
    assert (len(train), len(val)) == (54, 6)
    assert {r["answer_type"] for r in train + val} == {"choice", "yes_no", "number", "text"}
    assert all(r["kind"] == "grounded" and r["gt_boxes"] for r in train + val)


def test_synthetic_answers_match_the_pixels(small_set):
    """Boxes enclose shapes of the stated colour, and the answers follow from the boxes."""
    for row in pq.read_table(small_set / "train.parquet").to_pylist():
        image = np.asarray(Image.open(io.BytesIO(row["images"][0]["bytes"])).convert("RGB")).astype(int)
        colours = []
        for x1, y1, x2, y2 in row["gt_boxes"]:
            cx, cy = int((x1 + x2) / 2), int(y1 + 0.6 * (y2 - y1))  # inside circles, squares and triangles
            pixel = tuple(image[cy, cx])
            colours.append(min(COLOURS, key=lambda c: sum((a - b) ** 2 for a, b in zip(COLOURS[c], pixel))))
            assert sum((a - b) ** 2 for a, b in zip(COLOURS[colours[-1]], pixel)) < 30
        question, answer = row["question"], row["answer"]
        if question.startswith("How many"):
            assert answer == str(len(row["gt_boxes"])) and all(c in question for c in colours)
        elif question.startswith("What is the colour"):
            assert answer == colours[0]
        elif question.startswith("Is the"):
            (a, b) = row["gt_boxes"]
            axis = 0 if "left of" in question else 1
            assert answer == ("yes" if a[axis] + a[axis + 2] < b[axis] + b[axis + 2] else "no")
        else:
            assert row["choices"] and answer in "ABC" and colours[0] in question


def test_high_res_has_tiny_targets(high_res_set):
    rows = pq.read_table(high_res_set / "train.parquet").to_pylist()
    assert len(rows) == 4
    for row in rows:
        width, height = row["image_size"]
        assert 2000 <= width <= 4000 and 2000 <= height <= 4000
        assert all(b[2] - b[0] <= 48 for b in row["gt_boxes"])


def test_validate_passes_good_files(small_set, high_res_set, capsys):
    assert validate.main([str(small_set / "train.parquet"), "--decode", "all"]) == 0
    assert validate.main([str(high_res_set / "train.parquet")]) == 0
    assert "OK: no problems found" in capsys.readouterr().out


def _broken_copy(src: Path, dst: Path) -> None:
    rows = pq.read_table(src).to_pylist()[:6]
    rows[0]["gt_boxes"] = [[10.0, 10.0, 9999.0, 20.0]]
    rows[1]["question"] = "<image>a placeholder in the question: the rendered prompt would hold two"
    rows[2]["images"] = [{"bytes": b"\x89PNG broken", "path": None}]
    rows[3]["sample_id"] = rows[4]["sample_id"]
    rows[5]["images"] = [{"bytes": None, "path": "../../secret.png"}]
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(src)), dst)


def test_validate_reports_problems_and_exits_1(small_set, tmp_path):
    broken = tmp_path / "broken.parquet"
    _broken_copy(small_set / "train.parquet", broken)
    report = validate.validate(broken, decode="all")
    assert dict(report.counts) == {"box_outside": 1, "placeholder_in_question": 1, "image_corrupt": 1,
                                   "duplicate_sample_id": 1, "image_path_escapes_root": 1}
    result = subprocess.run([sys.executable, "-m", "data_prep.validate", str(broken)], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "FAIL: 5 problems in 5 rows" in result.stdout and "box_outside" in result.stdout


def test_validate_schema_and_unreadable(tmp_path):
    wrong = tmp_path / "wrong.parquet"
    pq.write_table(pa.table({"sample_id": ["a"], "question": [1]}), wrong)
    report = validate.validate(wrong)
    assert report.counts["schema_missing_column"] > 5 and report.counts["schema_type_mismatch"] == 1
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet")
    assert validate.main([str(garbage)]) == 1


def test_validate_fails_on_an_empty_file(tmp_path, capsys):
    empty = tmp_path / "empty.parquet"
    with RecordWriter(empty):
        pass
    assert pq.read_metadata(empty).num_rows == 0
    assert validate.main([str(empty)]) == 1
    assert "empty_file" in capsys.readouterr().out


def test_validate_stats_every_path_mode_image_without_decoding(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i in range(300):
        Image.new("RGB", (40, 30)).save(images / f"{i}.png")
        lines.append(json.dumps({"id": str(i), "image": f"{i}.png", "question": "q", "answer": "a"}))
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "paths.parquet"
    assert generic.main(["--input", str(tmp_path / "in.jsonl"), "--out", str(out), "--image-root", str(images),
                         "--quiet"]) == 0
    (images / "137.png").unlink()
    (images / "211.png").write_bytes(b"")
    report = validate.validate(out, images, decode="none")
    assert dict(report.counts) == {"image_missing": 1, "image_empty": 1}
    assert report.bad_rows == {137, 211}


def test_inspect_reports_and_shared_prefix(high_res_set, small_set, tmp_path, capsys):
    assert inspect_cli.main([str(high_res_set / "train.parquet"), "--json", "--prefix-samples", "2",
                             "--render", "2", str(tmp_path / "png")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == 4 and report["kinds"] == {"grounded": 4}
    assert report["image_longest_side"]["<4096"] + report["image_longest_side"][">=4096"] == 4
    assert report["box_short_side_model_px"]["max"] < report["box_short_side_px"]["max"]  # downscaled to ~1M px
    prefix = report["shared_prefix"]
    assert prefix["samples"] == 2 and prefix["max_pixels"] == 1280 * 28 * 28
    assert prefix["mean_ratio"] >= 0.9 and prefix["min_ratio"] >= 0.9
    assert prefix["grounded_prompt_tokens"]["min"] > 1000  # image tokens are counted
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == 2 and Image.open(pngs[0]).size[0] >= 2000
    # small images: far fewer image tokens, so a lower ratio (and the human-readable output)
    assert inspect_cli.main([str(small_set / "val.parquet"), "--prefix-samples", "2"]) == 0
    text = capsys.readouterr().out
    assert "rows per data source" in text and "shared-prefix ratio" in text and "synthetic/shapes [grounded]" in text


def _path_mode_set(tmp_path: Path, n: int = 4) -> tuple[Path, Path]:
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i in range(n):
        Image.new("RGB", (200, 150), (250, 250, 250)).save(images / f"{i}.png")
        line = {"id": str(i), "image": f"{i}.png", "question": f"Where is thing {i}?", "answer": ["left", "west"]}
        if i % 2 == 0:
            line["boxes"] = [[20, 30, 120, 130]]
        lines.append(json.dumps(line))
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "data" / "set.parquet"
    assert generic.main(["--input", str(tmp_path / "in.jsonl"), "--out", str(out), "--image-root", str(images),
                         "--quiet"]) == 0
    return out, images


def test_inspect_reports_missing_images_and_writes_a_gallery(tmp_path, capsys):
    out, images = _path_mode_set(tmp_path)
    (images / "2.png").unlink()  # a grounded row's image disappears after conversion
    gallery = tmp_path / "gallery"
    assert inspect_cli.main([str(out), "--json", "--prefix-samples", "4", "--render", "4", str(gallery),
                             "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    # one missing image, met by both the prefix ratio and the gallery, is one bad row
    assert report["bad_rows"]["count"] == 1 and report["bad_rows"]["reasons"] == {"image_missing": 1}
    assert report["shared_prefix"]["samples"] == 1  # the other grounded row could not be opened
    page = (gallery / "index.html").read_text(encoding="utf-8")
    assert page.count("class='row'") == 4 and page.count("<img ") == 3 and "image not shown: image_missing" in page
    for i in range(4):
        assert f"Where is thing {i}?" in page
    assert "left | west" in page and "grounded prompt" in page and "textual prompt" in page
    assert "Think step by step" in page and "localize every object" in page  # both prompts' text
    drawn = Image.open(gallery / "generic_0.png").convert("RGB")
    assert drawn.getpixel((20, 80)) == (255, 0, 255) and drawn.getpixel((70, 80)) == (250, 250, 250)


def test_validate_and_inspect_show_progress_bars(tmp_path, capsys):
    out, _ = _path_mode_set(tmp_path)
    assert validate.main([str(out)]) == 0
    assert "validate: 100%" in capsys.readouterr().err
    assert inspect_cli.main([str(out), "--prefix-samples", "0"]) == 0
    assert "inspect: 100%" in capsys.readouterr().err
    assert validate.main([str(out), "--quiet"]) == 0
    assert "validate:" not in capsys.readouterr().err
