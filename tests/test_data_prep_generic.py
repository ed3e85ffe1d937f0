"""The generic converter end to end: every bad input gets a reason, atomic and idempotent writes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import generic
from data_prep.images import ImageItem
from data_prep.prompts import record_messages
from data_prep.schema import RECORD_SCHEMA, Sample
from data_prep.writer import RecordWriter

REPO = Path(__file__).resolve().parents[1]

# (line, expected reason or None when the line must be kept)
CASES = [
    ({"id": "ok", "image": "a.png", "question": "Où est le chat? 猫 🐱", "answer": "à gauche",
      "boxes": [[10, 10, 100, 100]]}, None),
    ({"id": "single", "image": "a.png", "question": "Is it sunny?", "answer": "yes", "answer_type": "yes_no"}, None),
    ({"id": "xywh", "image": "a.png", "question": "q", "answer": "a", "boxes": [[10, 10, 50, 50]], "box_format": "xywh"}, None),
    ({"id": "n1", "image": "a.png", "question": "q", "answer": "a", "boxes": [[0.1, 0.1, 0.5, 0.5]], "box_format": "norm1"}, None),
    ({"id": "n1000", "image": "a.png", "question": "q", "answer": "a", "boxes": [[100, 100, 500, 500]], "box_format": "norm1000"}, None),
    ({"id": "tiny", "image": "tiny.png", "question": "q", "answer": "a", "boxes": [[1, 1, 5, 5]]}, None),
    ({"id": "two", "images": ["a.png", "sub/b.jpg"], "question": "Compare.", "answer": "same"}, None),
    ({"id": "ok", "image": "a.png", "question": "again", "answer": "a"}, "duplicate_id"),
    ({"id": "e1", "image": "a.png", "question": "   ", "answer": "a"}, "empty_question"),
    ({"id": "e2", "image": "a.png", "question": "q", "answer": ""}, "empty_answer"),
    ({"id": "e3", "question": "q", "answer": "a"}, "no_image"),
    ({"id": "p1", "image": "/etc/hosts", "question": "q", "answer": "a"}, "image_path_absolute"),
    ({"id": "p2", "image": "../outside.png", "question": "q", "answer": "a"}, "image_path_escapes_root"),
    ({"id": "i1", "image": "missing.png", "question": "q", "answer": "a"}, "image_missing"),
    ({"id": "i2", "image": "zero.png", "question": "q", "answer": "a"}, "image_empty"),
    ({"id": "i3", "image": "corrupt.png", "question": "q", "answer": "a"}, "image_corrupt"),
    ({"id": "b1", "image": "a.png", "question": "q", "answer": "a", "boxes": [[10, 10, 700, 100]]}, "box_outside"),
    ({"id": "b2", "image": "a.png", "question": "q", "answer": "a", "boxes": [[100, 10, 10, 100]]}, "box_inverted"),
    ({"id": "b3", "image": "a.png", "question": "q", "answer": "a", "boxes": [[10, 10, 10, 100]]}, "box_degenerate"),
    ({"id": "b4", "image": "a.png", "question": "q", "answer": "a", "boxes": [[0.1, 0.1, 0.5, 0.5]]}, "box_looks_normalized"),
    ({"id": "b5", "image": "a.png", "question": "q", "answer": "a", "boxes": [[100, 100, 1500, 500]], "box_format": "norm1000"}, "box_wrong_frame"),
    ({"id": "b6", "image": "a.png", "question": "q", "answer": "a", "boxes": [[1, 2, 3]]}, "box_malformed"),
    ({"id": "t1", "image": "a.png", "question": "q", "answer": "a", "answer_type": "essay"}, "bad_answer_type"),
    ({"id": "u1", "image": "a.png", "question": "bad \ud800 surrogate", "answer": "a"}, "invalid_unicode"),
    ({"id": "v1", "image": "a.png", "question": "<video> what happens?", "answer": "a"}, "unsupported_placeholder"),
]


def make_images(root: Path) -> None:
    (root / "sub").mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (640, 480), (200, 30, 30)).save(root / "a.png")
    Image.new("RGB", (300, 200), (30, 30, 200)).save(root / "sub" / "b.jpg")
    Image.new("RGB", (20, 10), (0, 0, 0)).save(root / "tiny.png")
    (root / "zero.png").write_bytes(b"")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.new("RGB", (10, 10)).save(root.parent / "outside.png")


def _dataset_items(path: Path, tmp_path: Path) -> dict[str, dict]:
    """Every row of the recipe dataset (`DualStreamDataset`, as verl builds it) over one converted file,
    by sample id (the last stream of a sample wins)."""
    from omegaconf import OmegaConf

    from data_prep.offline_processor import build_processor
    from recipe.ivgr.dataset import DualStreamDataset

    processor = build_processor()
    config = OmegaConf.create({"max_prompt_length": 4096, "filter_overlong_prompts": False,
                               "cache_dir": str(tmp_path / "verl_cache"), "image_key": "images"})
    dataset = DualStreamDataset([str(path)], processor.tokenizer, config, processor)
    return {item["extra_info"]["sample_id"]: item for item in (dataset[i] for i in range(len(dataset)))}


def write_jsonl(path: Path, lines: list, extra: str = "") -> Path:
    with open(path, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")
        handle.write(extra)
    return path


@pytest.fixture()
def source(tmp_path):
    make_images(tmp_path / "images")
    return write_jsonl(tmp_path / "in.jsonl", [line for line, _ in CASES], "{this is not json}\n")


def convert(source: Path, out: Path, *extra: str) -> None:
    """CASES keeps 7 of 26 rows on purpose, below the default --min-keep-ratio 0.5."""
    assert generic.main(["--input", str(source), "--image-root", str(source.parent / "images"),
                         "--out", str(out), "--quiet", "--min-keep-ratio", "0", *extra]) == 0


def test_every_bad_input_has_a_reason_and_a_count(source, tmp_path):
    out = tmp_path / "out" / "mine.parquet"
    convert(source, out)
    rejects = [json.loads(line) for line in (tmp_path / "out" / "mine.rejects.jsonl").read_text().splitlines()]
    expected = {f"in.jsonl:{n}": reason for n, (_, reason) in enumerate(CASES, 1) if reason}
    expected[f"in.jsonl:{len(CASES) + 1}"] = "bad_json"
    assert {r["row"]: r["reason"] for r in rejects} == expected
    summary = json.loads((tmp_path / "out" / "mine.summary.json").read_text())
    assert summary["reasons"] == dict(Counter(expected.values()))
    kept = [line["id"] for line, reason in CASES if reason is None]
    assert summary["written"] == len(kept) and summary["read"] == len(CASES) + 1
    assert summary["rejected"] + summary["written"] == summary["read"]
    table = pq.read_table(out)
    assert table.schema.equals(RECORD_SCHEMA, check_metadata=False)
    rows = {r["sample_id"]: r for r in table.to_pylist()}
    assert list(rows) == [f"generic:{k}" for k in kept]
    ok = rows["generic:ok"]
    assert ok["question"] == "Où est le chat? 猫 🐱" and ok["answer"] == "à gauche"
    assert ok["kind"] == "grounded" and ok["gt_boxes"] == [[10, 10, 100, 100]] and ok["image_size"] == [640, 480]
    assert ok["images"] == [{"bytes": None, "path": "a.png"}]
    assert rows["generic:single"]["kind"] == "single"
    assert rows["generic:xywh"]["gt_boxes"] == [[10, 10, 60, 60]]
    assert rows["generic:n1"]["gt_boxes"] == rows["generic:n1000"]["gt_boxes"] == [[64, 48, 320, 240]]
    tiny = rows["generic:tiny"]  # 20x10 upscaled to 56x28, boxes with it, bytes embedded
    assert tiny["image_size"] == [56, 28] and tiny["gt_boxes"] == [pytest.approx([2.8, 2.8, 14.0, 14.0])]
    assert tiny["images"][0]["bytes"] and tiny["images"][0]["path"] == "tiny.png"
    two = rows["generic:two"]
    assert [i["path"] for i in two["images"]] == ["a.png", "sub/b.jpg"]
    assert record_messages(two, "grounded", "qwen2_5_vl")[1]["content"].startswith("<image><image>Compare.")


def test_rerun_is_idempotent_byte_for_byte(source, tmp_path):
    first, second = tmp_path / "a" / "x.parquet", tmp_path / "b" / "x.parquet"
    convert(source, first)
    convert(source, second)
    convert(source, first)  # re-run over an existing output
    for name in ("x.parquet", "x.rejects.jsonl", "x.summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_embed_images_and_limit(source, tmp_path):
    out = tmp_path / "emb.parquet"
    convert(source, out, "--embed-images", "--limit", "2")
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == 2
    assert rows[0]["images"][0]["bytes"] == (source.parent / "images" / "a.png").read_bytes()


def test_interrupted_run_leaves_no_partial_output(tmp_path):
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous good output")

    def sample(i: int) -> Sample:
        return Sample(sample_id=f"s:{i}", data_source="t", question="q", answer="a",
                      images=[ImageItem(b"x", None)], image_size=(10, 10))

    with pytest.raises(RuntimeError):
        with RecordWriter(out, row_group_rows=2) as writer:
            for i in range(5):  # row groups already flushed to the temporary file
                writer.add(sample(i), str(i))
            writer.reject("5", "image_missing")
            raise RuntimeError("killed mid-write")
    assert out.read_bytes() == b"previous good output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]  # no temp, rejects or summary files


def test_row_groups_stream(source, tmp_path):
    out = tmp_path / "rg.parquet"
    convert(source, out, "--row-group-rows", "2")
    parquet = pq.ParquetFile(out)
    assert parquet.num_row_groups == 4 and parquet.metadata.num_rows == 7


def test_coco_style_input(tmp_path):
    root = tmp_path / "images"
    make_images(root)
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": 640, "height": 480},
                   {"id": 2, "file_name": "sub/b.jpg", "width": 999, "height": 200}],
        "annotations": [{"id": 10, "image_id": 1, "bbox": [10, 20, 30, 40]},
                        {"id": 11, "image_id": 1, "bbox": [100, 100, 50, 50]},
                        {"id": 12, "image_id": 2, "bbox": [1, 1, 5, 5]}],
        "questions": [
            {"id": "q1", "image_id": 1, "question": "Which is bigger?", "answer": "B", "annotation_ids": [10, 11],
             "answer_type": "choice", "choices": ["left", "right"]},
            {"id": "q2", "image_id": 2, "question": "What?", "answer": "x", "annotation_ids": [12]},
            {"id": "q3", "image_id": 7, "question": "Where?", "answer": "x"},
            {"id": "q4", "image_id": 1, "question": "Count?", "answer": "2", "annotation_ids": [99]},
        ],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    out = tmp_path / "coco.parquet"
    assert generic.main(["--input", str(path), "--image-root", str(root), "--out", str(out), "--quiet",
                         "--name", "mycoco", "--min-keep-ratio", "0"]) == 0
    rows = pq.read_table(out).to_pylist()
    assert [r["sample_id"] for r in rows] == ["mycoco:q1"]
    assert rows[0]["gt_boxes"] == [[10, 20, 40, 60], [100, 100, 150, 150]]
    assert rows[0]["choices"] == ["left", "right"]
    assert "A. left\nB. right" in record_messages(rows[0], "textual", "qwen2_5_vl")[1]["content"]
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "coco.rejects.jsonl").read_text().splitlines()]
    assert reasons == ["image_size_mismatch", "dangling_reference", "dangling_reference"]


def test_cli_module_entry_point(tmp_path):
    make_images(tmp_path / "images")
    source = write_jsonl(tmp_path / "in.jsonl", [CASES[0][0]])
    out = tmp_path / "cli.parquet"
    result = subprocess.run([sys.executable, "-m", "data_prep.generic", "--input", str(source), "--image-root",
                             str(tmp_path / "images"), "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert result.returncode == 0, result.stderr
    assert "wrote 1, rejected 0" in result.stderr
    assert pq.read_metadata(out).num_rows == 1


def test_failure_while_flushing_the_last_row_group_publishes_nothing(tmp_path):
    out = tmp_path / "out.parquet"
    bad = Sample(sample_id="s:1", data_source=123, question="q", answer="a",  # type: ignore[arg-type]
                 images=[ImageItem(b"x", None)], image_size=(10, 10))
    with pytest.raises(TypeError):  # Arrow refuses the row only when the buffer is written, in __exit__
        with RecordWriter(out) as writer:
            assert writer.add(bad, "1")
    assert list(tmp_path.iterdir()) == []


# -- safe outputs: a run that keeps too little never replaces good output --------------------------
def _good_lines(n: int, image: str = "a.png") -> list[dict]:
    return [{"id": f"g{i}", "image": image, "question": f"q{i}", "answer": "a"} for i in range(n)]


def _publish_good(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    make_images(tmp_path / "images")
    out = tmp_path / "out" / "good.parquet"
    source = write_jsonl(tmp_path / "good.jsonl", _good_lines(10))
    assert generic.main(["--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out),
                         "--quiet"]) == 0
    return source, out, {p.name: p.read_bytes() for p in out.parent.iterdir()}


def test_image_root_typo_fails_before_the_run_and_keeps_previous_output(tmp_path, capsys):
    source, out, before = _publish_good(tmp_path)
    assert generic.main(["--input", str(source), "--image-root", str(tmp_path / "imagse"), "--out", str(out),
                         "--quiet"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before


def test_run_that_keeps_nothing_exits_1_and_keeps_previous_output(tmp_path, capsys):
    """The issue's case: a wrong (but existing) image root rejects every row."""
    source, out, before = _publish_good(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    status = generic.main(["--input", str(source), "--image-root", str(tmp_path / "elsewhere"), "--out", str(out),
                           "--quiet"])
    assert status == 1
    assert "(the previous good.parquet is kept)" in capsys.readouterr().err
    after = {p.name: p.read_bytes() for p in out.parent.iterdir() if ".failed." not in p.name}
    assert after == before
    failed = json.loads((out.parent / "good.failed.summary.json").read_text())
    assert failed["written"] == 0 and failed["reasons"] == {"image_missing": 10}


def test_wrong_image_root_stops_after_the_probe_rows(tmp_path, capsys):
    make_images(tmp_path / "images")
    source = write_jsonl(tmp_path / "many.jsonl", _good_lines(1000, image="images/a.png"))
    out = tmp_path / "many.parquet"
    assert generic.main(["--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out),
                         "--quiet"]) == 1
    assert "first 200 rows all name image files that do not exist" in capsys.readouterr().err
    assert not out.exists()
    # the same file with the right root converts
    assert generic.main(["--input", str(source), "--image-root", str(tmp_path), "--out", str(out), "--quiet"]) == 0
    assert pq.read_metadata(out).num_rows == 1000


def test_min_keep_ratio(tmp_path):
    make_images(tmp_path / "images")
    lines = _good_lines(4) + [{"id": f"m{i}", "image": "missing.png", "question": "q", "answer": "a"} for i in range(6)]
    source = write_jsonl(tmp_path / "mixed.jsonl", lines)
    out = tmp_path / "mixed.parquet"
    base = ["--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out), "--quiet"]
    assert generic.main(base) == 1 and not out.exists()  # 4/10 < 0.5
    assert generic.main([*base, "--min-keep-ratio", "0.4"]) == 0
    assert pq.read_metadata(out).num_rows == 4


# -- values: lists of acceptable answers, booleans, string choices ---------------------------------
def test_generic_values_answers_list_booleans_and_string_choices(tmp_path):
    from reward_score import compute_score
    from reward_score.scoring import compute_score_async

    make_images(tmp_path / "images")
    lines = [
        {"id": "list", "image": "a.png", "question": "What colour is the mug?", "answer": ["red", "crimson"]},
        {"id": "bool", "image": "a.png", "question": "Is the mug red?", "answer": True},
        {"id": "strchoices", "image": "a.png", "question": "Which colour?", "answer": "A", "choices": "red"},
        {"id": "nested", "image": "a.png", "question": "q", "answer": [["red"]]},
        {"id": "num", "image": "a.png", "question": "How many?", "answer": 3, "choices": [1, 2, 3]},
    ]
    source = write_jsonl(tmp_path / "values.jsonl", lines)
    out = tmp_path / "values.parquet"
    assert generic.main(["--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out),
                         "--quiet"]) == 0
    rows = {r["sample_id"]: r for r in pq.read_table(out).to_pylist()}
    listed = rows["generic:list"]
    assert listed["answer"] == "red" and listed["answers"] == ["red", "crimson"]
    assert rows["generic:bool"]["answer"] == "yes" and rows["generic:bool"]["answers"] is None
    assert rows["generic:num"]["answer"] == "3" and rows["generic:num"]["choices"] == ["1", "2", "3"]
    reasons = {json.loads(line)["row"]: json.loads(line)["reason"]
               for line in (tmp_path / "values.rejects.jsonl").read_text().splitlines()}
    assert reasons == {"values.jsonl:3": "bad_choices", "values.jsonl:4": "bad_answer"}
    # the consumer: the recipe dataset's row gives verl's reward ground_truth "red" plus extra_info; any
    # listed answer is correct
    items = _dataset_items(out, tmp_path)
    extra = items["generic:list"]["extra_info"]
    ground_truth = items["generic:list"]["reward_model"]["ground_truth"]
    assert ground_truth == "red" and extra["answers"] == ["red", "crimson"] and extra["stream"] == "single"
    for said, acc in (("crimson", 1.0), ("red", 1.0), ("blue", 0.0)):
        text = f"<think>I look at the mug.</think><answer>{said}</answer>"
        assert compute_score(listed["data_source"], text, ground_truth, extra)["acc"] == acc, said
        assert asyncio.run(compute_score_async(listed["data_source"], text, ground_truth, extra))["acc"] == acc
    single = items["generic:bool"]["extra_info"]
    assert compute_score("s", "<think>t</think><answer>Yes</answer>", "yes", single)["acc"] == 1.0


# -- the image root travels with the file -----------------------------------------------------------
def test_image_root_is_stored_and_used_by_validate_and_inspect(tmp_path, capsys):
    from data_prep import inspect as inspect_cli
    from data_prep import validate
    from data_prep.schema import image_root_of

    make_images(tmp_path / "work" / "images")
    source = write_jsonl(tmp_path / "work" / "in.jsonl", _good_lines(3) + [
        {"id": "box", "image": "sub/b.jpg", "question": "q", "answer": "a", "boxes": [[10, 10, 100, 100]]}])
    out = tmp_path / "work" / "data" / "set.parquet"
    assert generic.main(["--input", str(source), "--image-root", str(tmp_path / "work" / "images"),
                         "--out", str(out), "--quiet"]) == 0
    assert pq.read_schema(out).metadata[b"ivgr.image_root"] == b"../images"
    assert json.loads(out.with_name("set.summary.json").read_text())["image_root"] == "../images"
    # validate and inspect find the images without --image-root (the Parquet's folder holds none)
    assert validate.main([str(out), "--decode", "all"]) == 0
    assert "OK: no problems found" in capsys.readouterr().out
    assert inspect_cli.main([str(out), "--prefix-samples", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shared_prefix"]["samples"] == 1
    # the relative entry wins: moving the whole folder keeps the file usable
    moved = tmp_path / "moved"
    (tmp_path / "work").rename(moved)
    assert image_root_of(moved / "data" / "set.parquet") == (moved / "images").resolve()
    assert validate.main([str(moved / "data" / "set.parquet"), "--decode", "all"]) == 0
