"""Hub converters on fixtures built to each source's published schema (iVGR-RL-51K, TreeVGR-RL-37K,
DeepEyes-47k). The fixtures follow the dataset cards and peer code, not the real files."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import deepeyes_47k, ivgr_rl51k, treevgr_rl37k
from data_prep.prompts import record_messages


def _png(size, colour=(120, 60, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _rejects(out: Path) -> dict[str, str]:
    path = out.with_name(out.stem + ".rejects.jsonl")
    return {r["row"]: r["reason"] for r in map(json.loads, path.read_text().splitlines())}


# -- iVGR-RL-51K ------------------------------------------------------------------------------
IVGR_SCHEMA = pa.schema([
    ("problem", pa.string()), ("answer", pa.string()), ("images", pa.list_(pa.string())),
    ("target_instances", pa.list_(pa.struct([("bbox", pa.list_(pa.float64())), ("category", pa.string())]))),
    ("datasource", pa.string()), ("question_type", pa.string()), ("query", pa.string()),
])


def _ivgr_row(source, problem, answer, image, boxes=(), question_type="multiple_choice", query=""):
    return {"problem": problem, "answer": answer, "images": [image], "datasource": source,
            "target_instances": [{"bbox": list(b), "category": "obj"} for b in boxes],
            "question_type": question_type, "query": query}


@pytest.fixture()
def ivgr_dir(tmp_path):
    (tmp_path / "images").mkdir()
    Image.new("RGB", (1600, 1200)).save(tmp_path / "images" / "vstar_1.jpg")
    Image.new("RGB", (800, 600)).save(tmp_path / "images" / "mmk12_1.png")
    rows = [
        _ivgr_row("treevgr", "<image>\nWhat is the colour of the bag?\n(A) red\n(B) blue", "A",
                  "images/vstar_1.jpg", [(100, 200, 300, 400), (1500, 1100, 1601, 1201)],
                  query="<image>What is the colour of the bag? Options: (A) red (B) blue"),
        _ivgr_row("ours_mmk12", "<image>Find x.", "5", "images/mmk12_1.png", question_type="math",
                  query="<image>Find x in centimetres."),
        _ivgr_row("ours_arxivqa", "", "B", "images/mmk12_1.png", query="Which curve rises fastest?"),
        _ivgr_row("geoqa_extra", "<image>Some other source", "3", "images/mmk12_1.png"),
        _ivgr_row("treevgr", "<image>Where is the dog?", "left", "images/vstar_1.jpg"),  # no boxes
        _ivgr_row("treevgr", "<image>Where is the cat?", "left", "images/vstar_1.jpg", [(100, 100, 50, 150)]),
        _ivgr_row("treevgr", "<image>Where is the cow?", "left", "images/missing.jpg", [(1, 1, 50, 50)]),
        _ivgr_row("treevgr", "<image>Where is the owl?", "left", "../../etc/passwd", [(1, 1, 50, 50)]),
        _ivgr_row("treevgr", "<image>\nWhat is the colour of the bag?\n(A) red\n(B) blue", "A",
                  "images/vstar_1.jpg", [(100, 200, 300, 400), (1500, 1100, 1601, 1201)],
                  query="<image>What is the colour of the bag? Options: (A) red (B) blue"),  # same as row 0
        _ivgr_row("ours_newsource", "<image>Not in the official list", "3", "images/mmk12_1.png"),
        _ivgr_row("treevgr", "<image>Is the lamp on?", "yes", "images/vstar_1.jpg", [(10, 10, 60, 60)],
                  query="<image>Is the lamp on?"),  # same text twice: stored once
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=IVGR_SCHEMA), tmp_path / "gvqa_and_mathdata.parquet",
                   row_group_size=4)
    return tmp_path


def test_ivgr_rl51k_follows_the_official_field_mapping(ivgr_dir, capsys):
    """Official loader: grounded prompt from `problem`, textual and single prompts from `query`,
    an explicit datasource list (an unknown `ours_*` source is filtered)."""
    out = ivgr_dir / "out" / "ivgr.parquet"
    assert ivgr_rl51k.main(["--input", str(ivgr_dir / "gvqa_and_mathdata.parquet"), "--out", str(out), "--quiet",
                            "--min-keep-ratio", "0"]) == 0
    rows = pq.read_table(out).to_pylist()
    assert [(r["data_source"], r["kind"]) for r in rows] == [
        ("ivgr_rl51k/treevgr", "grounded"), ("ivgr_rl51k/ours_mmk12", "single"), ("ivgr_rl51k/ours_arxivqa", "single"),
        ("ivgr_rl51k/treevgr", "grounded")]
    vstar = rows[0]
    assert vstar["question"] == "What is the colour of the bag?\n(A) red\n(B) blue"
    assert vstar["question_textual"] == "What is the colour of the bag? Options: (A) red (B) blue"
    grounded_user = record_messages(vstar, "grounded", "qwen2_5_vl")[1]["content"]
    textual_user = record_messages(vstar, "textual", "qwen2_5_vl")[1]["content"]
    assert grounded_user.startswith("<image>What is the colour of the bag?\n(A) red\n(B) blue\n\n")
    assert textual_user.startswith("<image>What is the colour of the bag? Options: (A) red (B) blue\n\n")
    assert vstar["gt_boxes"] == [[100, 200, 300, 400], [1500, 1100, 1600, 1200]]  # 1 px overshoot clipped
    assert vstar["image_size"] == [1600, 1200] and vstar["answer_type"] == "choice"
    assert vstar["images"] == [{"bytes": None, "path": "images/vstar_1.jpg"}]
    assert grounded_user.count("<image>") == 1
    mmk12 = rows[1]
    assert mmk12["answer_type"] == "math" and mmk12["kind"] == "single"
    assert mmk12["question"] == "Find x in centimetres." and mmk12["question_textual"] is None  # `query`
    assert record_messages(mmk12, "single", "qwen2_5_vl")[1]["content"].startswith("<image>Find x in centimetres.\n\n")
    assert rows[2]["question"] == "Which curve rises fastest?"  # `query`
    assert rows[3]["question"] == "Is the lamp on?" and rows[3]["question_textual"] is None
    assert _rejects(out) == {
        "gvqa_and_mathdata.parquet:3": "source_filtered", "gvqa_and_mathdata.parquet:4": "no_gt_boxes",
        "gvqa_and_mathdata.parquet:5": "box_inverted", "gvqa_and_mathdata.parquet:6": "image_missing",
        "gvqa_and_mathdata.parquet:7": "image_path_escapes_root", "gvqa_and_mathdata.parquet:8": "duplicate_id",
        "gvqa_and_mathdata.parquet:9": "source_filtered",
    }
    err = capsys.readouterr().err
    assert "TreeVGR (grounded)         2 rows (paper 37K)" in err
    assert "OpenMMReasoner             1 rows (paper 12K)" in err and "ours_mmk12 1" in err
    assert "ArxivQA                    1 rows (paper 2K)" in err
    assert "total                      4 rows (paper 51K)" in err
    # sample ids are content hashes: stable across runs and independent of row order
    again = ivgr_dir / "again.parquet"
    ivgr_rl51k.main(["--input", str(ivgr_dir / "gvqa_and_mathdata.parquet"), "--out", str(again), "--quiet",
                     "--min-keep-ratio", "0", "--image-root", str(ivgr_dir)])
    assert [r["sample_id"] for r in pq.read_table(again).to_pylist()] == [r["sample_id"] for r in rows]
    # an explicit list of single sources
    only = ivgr_dir / "only.parquet"
    assert ivgr_rl51k.main(["--input", str(ivgr_dir / "gvqa_and_mathdata.parquet"), "--out", str(only), "--quiet",
                            "--min-keep-ratio", "0", "--single-sources", "ours_newsource"]) == 0
    assert [r["data_source"] for r in pq.read_table(only).to_pylist()] == [
        "ivgr_rl51k/treevgr", "ivgr_rl51k/ours_newsource", "ivgr_rl51k/treevgr"]


# -- TreeVGR-RL-37K ---------------------------------------------------------------------------
def test_treevgr_rl37k_jsonl_and_norm1000(tmp_path):
    Image.new("RGB", (2000, 1000)).save(tmp_path / "visdrone_1.jpg")
    lines = [
        {"id": 7, "question": "How many cars are parked?", "answer": "2", "image": "visdrone_1.jpg",
         "bboxes": [[100, 100, 200, 200], [500, 500, 600, 700]], "source": "visdrone", "question_type": "counting"},
        {"id": 8, "question": "Where?", "answer": "x", "image": "visdrone_1.jpg", "bboxes": []},
    ]
    source = tmp_path / "treevgr.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "tree.parquet"
    assert treevgr_rl37k.main(["--input", str(source), "--out", str(out), "--quiet", "--box-format", "norm1000"]) == 0
    (row,) = pq.read_table(out).to_pylist()
    assert row["sample_id"] == "treevgr_rl37k:7" and row["data_source"] == "treevgr_rl37k/visdrone"
    assert row["gt_boxes"] == [[200, 100, 400, 200], [1000, 500, 1200, 700]] and row["answer_type"] == "number"
    assert _rejects(out) == {"treevgr.jsonl:2": "no_gt_boxes"}


def test_treevgr_rl37k_parquet_with_embedded_images(tmp_path):
    table = pa.Table.from_pylist([
        {"problem": "<image>What is on the table?", "answer": "a cup",
         "images": [{"bytes": _png((640, 480)), "path": "vstar/a.jpg"}],
         "target_instances": [{"bbox": [10.5, 20.5, 100.0, 200.0]}]},
    ])
    pq.write_table(table, tmp_path / "train.parquet")
    out = tmp_path / "tree.parquet"
    assert treevgr_rl37k.main(["--input", str(tmp_path / "train.parquet"), "--out", str(out), "--quiet"]) == 0
    (row,) = pq.read_table(out).to_pylist()
    assert row["images"][0]["bytes"] == _png((640, 480)) and row["gt_boxes"] == [[10.5, 20.5, 100.0, 200.0]]


# -- DeepEyes-47k -----------------------------------------------------------------------------
_TOOL_SYSTEM = "You are a helpful assistant. # Tools You may call one or more functions ..."


def _deepeyes_row(source, user, answer, image_bytes, extra=None):
    return {"data_source": source,
            "prompt": [{"role": "system", "content": _TOOL_SYSTEM}, {"role": "user", "content": user}],
            "images": [{"bytes": image_bytes, "path": None}], "ability": "vqa", "env_name": "visual_toolbox_v2",
            "reward_model": {"style": "model", "ground_truth": answer},
            "extra_info": extra or {"index": 0, "split": "train"}}


def test_deepeyes_47k(tmp_path):
    rows = [
        _deepeyes_row("vstar", "<image>\nWhat is the colour of the umbrella?\nThink first, call **image_zoom_in_tool** "
                      "if needed, then answer. Format strictly as: <think>...</think> <answer>...</answer>",
                      "blue", _png((1200, 900))),
        _deepeyes_row("thinklite_eureka", "<image>\nYou FIRST think about the reasoning process ...\nQuestion:\n"
                      "What is the area of the square?", "16", _png((20, 12))),
        _deepeyes_row("chart", "<image>\nWhich bar is tallest?", "B", _png((800, 600)),
                      {"index": 3, "question": "Which bar is tallest? Options: A. x B. y"}),
        _deepeyes_row("vstar", "<image>\nBroken image?", "no", b""),
        _deepeyes_row("vstar", "<image>\nCorrupt image?", "no", b"\xff\xd8\xff garbage"),
        _deepeyes_row("chart", "<image>\nWhat does the chart show?", "growth", _png((300, 200))),
        _deepeyes_row("chart", "<image><image>\nWhich chart has more bars?", "left", _png((300, 200))),
    ]
    rows[5]["images"].append({"bytes": _png((64, 64), (9, 9, 9)), "path": None})  # one placeholder, two images
    rows[6]["images"].append({"bytes": _png((64, 64), (9, 9, 9)), "path": None})  # two placeholders, two images
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data_0.1.2_visual_toolbox_v2.parquet")
    out = tmp_path / "deepeyes.parquet"
    assert deepeyes_47k.main(["--input", str(tmp_path / "data_0.1.2_visual_toolbox_v2.parquet"),
                              "--out", str(out), "--quiet"]) == 0
    kept = pq.read_table(out).to_pylist()
    assert [r["question"] for r in kept] == ["What is the colour of the umbrella?", "What is the area of the square?",
                                             "Which bar is tallest? Options: A. x B. y", "What does the chart show?",
                                             "Which chart has more bars?"]
    # multi-image rows: the images the prompt refers to (upstream keeps only the first one)
    prompts = [record_messages(row, "single", "qwen2_5_vl")[1]["content"] for row in kept]
    assert len(kept[3]["images"]) == 1 and prompts[3].count("<image>") == 1
    assert len(kept[4]["images"]) == 2 and prompts[4].startswith("<image><image>Which chart")
    summary = json.loads((tmp_path / "deepeyes.summary.json").read_text())
    assert summary["notes"] == {"extra_images_dropped": 1, "multi_image_kept_all": 1, "multi_image_rows": 2}
    assert all(r["kind"] == "single" and r["images"][0]["bytes"] for r in kept)
    tiny = kept[1]  # 20x12 thinklite image upscaled so its shorter side is 28 px
    assert tiny["image_size"] == [47, 28]
    assert Image.open(io.BytesIO(tiny["images"][0]["bytes"])).size == (47, 28)
    assert kept[0]["answer"] == "blue" and kept[0]["data_source"] == "deepeyes_47k/vstar"
    assert _rejects(out) == {"data_0.1.2_visual_toolbox_v2.parquet:3": "image_empty",
                             "data_0.1.2_visual_toolbox_v2.parquet:4": "image_corrupt"}
