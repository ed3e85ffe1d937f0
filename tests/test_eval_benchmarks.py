"""Benchmark converters on synthetic files in each public format; deterministic option shuffling."""

from __future__ import annotations

import io
import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
from eval_helpers import (
    b64,
    image_bytes,
    make_cvbench_parquet,
    make_hrbench_tsv,
    make_mme_json,
    make_pope_original,
    make_pope_parquet,
    make_realworldqa_parquet,
    make_treebench_tsv,
    make_vstar,
    make_vstar_jsonl,
    write_tsv,
)
from PIL import Image

from recipe.ivgr.eval import converter
from recipe.ivgr.eval.converter import convert, shuffle_order
from recipe.ivgr.eval.schema import EVAL_SCHEMA, iter_eval_rows
from recipe.ivgr.eval.sources import split_embedded_options


def rows(path):
    return list(iter_eval_rows(path))


def check_choice_rows(items):
    """Every multiple-choice row: the shown letter names the correct option text."""
    for row in items:
        if row["answer_type"] != "choice":
            continue
        assert row["choices"][ord(row["answer"]) - 65] == row["answer_text"]
        assert sorted(row["choice_order"]) == list(range(len(row["choices"])))
        assert row["choices"][row["choice_order"].index(ord(row["source_answer"]) - 65)] == row["answer_text"]


def test_vstar_folder(tmp_path):
    src = make_vstar(tmp_path / "vstar_bench")
    summary = convert("vstar", [src], tmp_path / "vstar.parquet")
    assert summary["written"] == 3 and summary["rejected"] == 0
    assert summary["subsets"] == {"direct_attributes": 1, "relative_position": 2}
    items = {r["item_id"]: r for r in rows(tmp_path / "vstar.parquet")}
    cup = items["vstar:direct_attributes/sa_1"]
    # V* lists the correct option first; the converter records that and shuffles
    assert cup["answer_text"] == "white" and cup["source_answer"] == "A" and cup["shuffle_seed"] == 0
    assert cup["gt_boxes"] == [[60.0, 80.0, 100.0, 110.0]]  # [x, y, w, h] -> [x1, y1, x2, y2]
    assert cup["image_size"] == [400, 300]
    assert cup["images"][0]["bytes"] and cup["images"][0]["path"] == "direct_attributes/sa_1.jpg"
    assert Image.open(io.BytesIO(cup["images"][0]["bytes"])).size == (400, 300)
    check_choice_rows(items.values())
    parquet = pq.ParquetFile(tmp_path / "vstar.parquet")
    assert parquet.schema_arrow.remove_metadata().equals(EVAL_SCHEMA.remove_metadata())
    assert parquet.schema_arrow.metadata[b"ivgr.benchmark"] == b"vstar"
    assert json.loads((tmp_path / "vstar.summary.json").read_text())["written"] == 3


def test_vstar_question_file_gives_the_same_items_as_the_folder(tmp_path):
    src = make_vstar_jsonl(tmp_path / "v")
    convert("vstar", [src], tmp_path / "a.parquet")
    convert("vstar", [tmp_path / "v"], tmp_path / "b.parquet")
    from_lines = {r["item_id"]: r for r in rows(tmp_path / "a.parquet")}
    from_folder = {r["item_id"]: r for r in rows(tmp_path / "b.parquet")}
    assert set(from_lines) == {"vstar:direct_attributes/sa_1", "vstar:relative_position/sa_2"}
    for item_id, row in from_lines.items():
        other = from_folder[item_id]
        for key in ("question", "choices", "answer", "answer_text", "choice_order", "gt_boxes", "image_size"):
            assert row[key] == other[key], key
    assert "letter" in json.loads(from_lines["vstar:direct_attributes/sa_1"]["meta"])["instruction"]


def test_hrbench_tsv_with_image_references(tmp_path):
    src = make_hrbench_tsv(tmp_path / "hr_bench_4k.tsv")
    summary = convert("hrbench4k", [src], tmp_path / "hr.parquet")
    assert summary["written"] == 3 and summary["subsets"] == {"FCP": 1, "FSP": 2}
    items = rows(tmp_path / "hr.parquet")
    check_choice_rows(items)
    # row 1's image cell names row 0's index: it gets row 0's image
    assert items[1]["images"][0]["bytes"] == items[0]["images"][0]["bytes"]
    assert items[0]["image_size"] == [640, 360] and items[2]["image_size"] == [500, 500]
    assert [r["answer_text"] for r in items] == ["red", "red", "yield"]
    assert json.loads(items[1]["meta"])["cycle_category"] == "cycle_1"
    assert items[0]["category"] == "single" and items[0]["subset"] == "FSP"


def test_pope_parquet_and_original_json(tmp_path):
    convert("pope", [make_pope_parquet(tmp_path / "pope.parquet")], tmp_path / "p1.parquet")
    items = rows(tmp_path / "p1.parquet")
    assert [r["answer"] for r in items] == ["yes", "no", "yes", "no"]
    assert {r["answer_type"] for r in items} == {"yes_no"} and all(r["choices"] is None for r in items)
    assert [r["subset"] for r in items] == ["random", "random", "popular", "adversarial"]

    src = make_pope_original(tmp_path / "orig")
    summary = convert("pope", [src], tmp_path / "p2.parquet", image_root=tmp_path / "orig" / "val2014")
    assert summary["written"] == 2 and summary["kept_with_problems"] == {"missing_image": 1}
    first, missing = rows(tmp_path / "p2.parquet")
    assert first["subset"] == "adversarial" and first["image_size"] == [200, 150]
    # the missing image keeps its item (denominator unchanged) with its path and no size
    assert missing["image_size"] is None and missing["images"][0]["path"] == "COCO_val2014_000000000404.jpg"
    assert "image_missing" in json.loads(missing["meta"])["image_errors"][0]


def test_mme_realworld_lite_json(tmp_path):
    src = make_mme_json(tmp_path / "mme")
    convert("mme_realworld_lite", [src], tmp_path / "mme.parquet")
    ocr, lanes = rows(tmp_path / "mme.parquet")
    assert sorted(ocr["choices"]) == sorted(["STOP", "GO", "EXIT", "OPEN", "The image does not feature the text."])
    assert ocr["answer_text"] == "EXIT" and ocr["subset"] == "Perception" and ocr["category"] == "OCR/text"
    assert lanes["answer_text"] == "2" and lanes["source_answer"] == "B"  # "(B)" ground truth
    check_choice_rows([ocr, lanes])


def test_realworldqa_embedded_options_and_open_questions(tmp_path):
    convert("realworldqa", [make_realworldqa_parquet(tmp_path / "rw.parquet")], tmp_path / "out.parquet")
    mc, count = rows(tmp_path / "out.parquet")
    assert mc["question"] == "In which direction is the front wheel of the car facing?"
    assert sorted(mc["choices"]) == ["Left", "Right", "Straight"] and mc["answer_text"] == "Right"
    assert "only the letter" in json.loads(mc["meta"])["instruction"]
    assert count["question"] == "How many traffic lights are visible?"
    assert count["answer_type"] == "number" and count["answer"] == "2" and count["choices"] is None


def test_cvbench_splits_2d_and_3d(tmp_path):
    src = make_cvbench_parquet(tmp_path / "cv.parquet")
    s2 = convert("cvbench2d", [src], tmp_path / "cv2.parquet")
    s3 = convert("cvbench3d", [src], tmp_path / "cv3.parquet")
    assert (s2["written"], s2["skipped_other_split"]) == (2, 1)
    assert (s3["written"], s3["skipped_other_split"]) == (1, 2)
    two = rows(tmp_path / "cv2.parquet")
    assert [r["subset"] for r in two] == ["ADE20K", "COCO"] and [r["category"] for r in two] == ["Count", "Relation"]
    assert two[0]["answer_text"] == "2"  # "(C)" of ["0", "1", "2", "3"]
    assert rows(tmp_path / "cv3.parquet")[0]["answer_text"] == "TV"


def test_treebench_boxes(tmp_path):
    convert("treebench", [make_treebench_tsv(tmp_path / "tree.tsv")], tmp_path / "tree.parquet")
    kite, lamp = rows(tmp_path / "tree.parquet")
    assert kite["gt_boxes"] == [[100.0, 50.0, 140.0, 90.0]] and kite["subset"] == "Perception"
    assert lamp["gt_boxes"] == [[10.0, 10.0, 60.0, 60.0], [200.0, 100.0, 260.0, 180.0]]
    assert len(lamp["choices"]) == 5 and lamp["answer_text"] == "chair"


def test_bad_rows_are_counted_not_fatal(tmp_path):
    img = b64(image_bytes((64, 64)))
    write_tsv(tmp_path / "bad.tsv", [
        {"index": 0, "question": "ok?", "A": "x", "B": "y", "answer": "B", "category": "single", "image": img},
        {"index": 1, "question": "letter out of range", "A": "x", "B": "y", "answer": "D", "category": "single",
         "image": img},
        {"index": 2, "question": "one option", "A": "x", "answer": "A", "category": "cross", "image": img},
        {"index": 3, "question": "broken image", "A": "x", "B": "y", "answer": "A", "category": "cross",
         "image": b64(b"not an image at all" * 10)},
        {"index": 0, "question": "duplicate id", "A": "x", "B": "y", "answer": "A", "category": "cross",
         "image": img},
    ])
    summary = convert("hrbench4k", [tmp_path / "bad.tsv"], tmp_path / "bad.parquet")
    assert summary["written"] == 2 and summary["read"] == 5
    assert summary["reasons"] == {"answer_not_in_options": 1, "duplicate_id": 1, "no_options": 1}
    assert summary["kept_with_problems"] == {"missing_image": 1}
    (tmp_path / "lines.jsonl").write_text('{"image": "a/x.jpg", "text": "Q?\\n(A) a\\n(B) b", "label": "A"}\n'
                                          "{not json\n")
    summary = convert("vstar", [tmp_path / "lines.jsonl"], tmp_path / "v.parquet")
    assert summary["written"] == 1 and summary["reasons"] == {"bad_json": 1}
    assert summary["kept_with_problems"] == {"missing_image": 1}


def test_shuffle_is_deterministic_recorded_and_per_item(tmp_path):
    src = make_hrbench_tsv(tmp_path / "hr.tsv")
    convert("hrbench4k", [src], tmp_path / "a.parquet", seed=7)
    convert("hrbench4k", [src], tmp_path / "b.parquet", seed=7)
    convert("hrbench4k", [src], tmp_path / "c.parquet", seed=8)
    convert("hrbench4k", [src], tmp_path / "d.parquet", seed=None)
    convert("hrbench4k", [src], tmp_path / "e.parquet", seed=7, limit=1)
    a, b, c, d, e = (rows(tmp_path / f"{x}.parquet") for x in "abcde")
    assert a == b  # same seed, same rows (and bytes-identical content)
    assert [r["shuffle_seed"] for r in a] == [7, 7, 7] and [r["shuffle_seed"] for r in d] == [None] * 3
    assert [r["choice_order"] for r in d] == [[0, 1, 2, 3]] * 3
    assert [r["choices"] for r in d][0] == ["red", "blue", "green", "white"]
    assert any(x["choice_order"] != y["choice_order"] for x, y in zip(a, c))
    assert e[0]["choice_order"] == a[0]["choice_order"]  # an item's order does not depend on the others
    for rowset in (a, c, d):
        check_choice_rows(rowset)
    # positions of the (originally first) correct option are spread evenly over many items
    positions = Counter(shuffle_order(4, 0, f"vstar:item{i}").index(0) for i in range(800))
    assert set(positions) == {0, 1, 2, 3} and min(positions.values()) > 150
    assert shuffle_order(5, None, "x") == [0, 1, 2, 3, 4]


def test_embedded_option_parsing():
    q, options, instruction = split_embedded_options("Which?\nA. one\nB. two\nC. three\nAnswer with the letter.")
    assert (q, options) == ("Which?", ["one", "two", "three"]) and instruction == "Answer with the letter."
    q, options, instruction = split_embedded_options("Select the option that shows the number of legs.")
    assert options is None and instruction is None and q.startswith("Select the option")
    q, options, _ = split_embedded_options("A. lonely line\nnot an option")
    assert options is None


def test_cli_lists_and_converts(tmp_path, capsys):
    assert converter.main(["--list"]) == 0
    assert "hrbench8k" in capsys.readouterr().out
    src = make_treebench_tsv(tmp_path / "tree.tsv")
    assert converter.main(["treebench", "--input", str(src), "--out", str(tmp_path / "t.parquet"),
                            "--no-shuffle"]) == 0
    assert [r["choice_order"] for r in rows(tmp_path / "t.parquet")] == [[0, 1, 2, 3], [0, 1, 2, 3, 4]]
    with pytest.raises(FileNotFoundError):
        convert("treebench", [tmp_path / "nope.tsv"], tmp_path / "x.parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_converter_shows_a_progress_bar_and_caps_row_groups_in_bytes(tmp_path, capsys):
    src = make_pope_parquet(tmp_path / "pope.parquet")
    assert converter.main(["pope", "--input", str(src), "--out", str(tmp_path / "p.parquet")]) == 0
    err = capsys.readouterr().err
    assert "pope: 100%" in err and "4/4" in err  # total known from the Parquet footer
    # a 1-byte cap gives one item per row group
    convert("pope", [src], tmp_path / "small_groups.parquet", row_group_bytes=1)
    assert pq.ParquetFile(tmp_path / "small_groups.parquet").num_row_groups == 4
    assert pq.ParquetFile(tmp_path / "p.parquet").num_row_groups == 1
