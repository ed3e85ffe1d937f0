"""The eval's pictures: the summary chart, the per-item HTML gallery, and the demo benchmark of the CPU smoke
(`data_prep.synthetic`'s held-out split through the `generic` benchmark) evaluated by `python -m recipe.ivgr.eval`
with the tiny checkpoint, writing summary.md, the chart and the gallery."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pyarrow.parquet as pq
from eval_helpers import MAX_PIXELS, MIN_PIXELS, ScriptedBackend, make_vstar
from PIL import Image

from recipe.ivgr.eval.charts import chart_series
from recipe.ivgr.eval.config import EvalConfig
from recipe.ivgr.eval.converter import convert
from recipe.ivgr.eval.gallery import GT_COLOUR, THUMB, pick
from recipe.ivgr.eval.main import BenchInput, run_eval
from recipe.ivgr.eval.record import read_records
from recipe.ivgr.eval.schema import iter_eval_rows
from reward_score.frames import to_model_frame


def test_chart_series_per_benchmark_mode_and_protocol():
    summary = {"results": {
        "vstar": {"textual": {"score": 0.5, "reference_score": 0.25}, "tool": {"score": 1.0, "reference_score": 0.75}},
        "generic": {"textual": {"score": 0.2, "reference_score": None}},
    }}
    labels, series = chart_series(summary, ["textual", "tool"])
    assert labels == ["vstar", "generic"]
    assert series == [("textual", "graded", [50.0, 20.0]), ("textual", "reference", [25.0, None]),
                      ("tool", "graded", [100.0, None]), ("tool", "reference", [75.0, None])]


def test_gallery_puts_protocol_disagreements_first():
    records = [{"item_id": "a", "correct": True, "reference_correct": True},
               {"item_id": "b", "correct": True, "reference_correct": False},
               {"item_id": "c", "correct": False, "reference_correct": None},
               {"item_id": "d", "correct": False, "reference_correct": True}]
    assert [r["item_id"] for r in pick(records, 3)] == ["b", "d", "a"]


def test_run_writes_chart_and_gallery_with_boxes_and_crops(tmp_path):
    src = make_vstar(tmp_path / "vstar_bench")
    data = convert("vstar", [src], tmp_path / "vstar.parquet")
    assert data["written"] == 3
    rows = {r["item_id"]: r for r in iter_eval_rows(tmp_path / "vstar.parquet")}

    def script(request):  # grounded: the GT box in the model frame; every pass answers A
        row = rows[request.item_id]
        if request.pass_name != "grounded":
            return "<think>looked</think><answer>A</answer>"
        (box,) = to_model_frame(row["gt_boxes"], row["image_size"], "qwen2_5_vl", MIN_PIXELS, MAX_PIXELS)
        return "<think>the thing <box>[" + ", ".join(f"{v:.1f}" for v in box) + "]</box></think><answer>A</answer>"

    out = tmp_path / "out"
    summary = run_eval([BenchInput("vstar", tmp_path / "vstar.parquet")], EvalConfig(modes=("grounded", "tool")),
                       out, backend=ScriptedBackend(script), progress=False, gallery=2)
    assert summary["pictures"] == {"chart": "summary.png", "gallery": "gallery/index.html"}
    markdown = (out / "summary.md").read_text()
    assert "![scores per benchmark, mode and protocol](summary.png)" in markdown and "gallery/index.html" in markdown
    with Image.open(out / "summary.png") as chart:
        assert chart.format == "PNG" and chart.width > 300
    page = (out / "gallery" / "index.html").read_text()
    assert page.count("<div class='row'>") == 4  # 2 items x 2 modes
    assert "2 of 3 items" in page and "reference" in page and "grounded response" in page
    tool = read_records(out / "vstar" / "tool.jsonl")[:2]
    for number, record in enumerate(tool):
        assert record["crops"]  # the GT box was predicted, so there is a crop
        for k, region in enumerate(record["crops"]):
            with Image.open(out / "gallery" / f"vstar_tool_{number}_crop{k}.png") as crop:
                w, h = region[2] - region[0], region[3] - region[1]
                assert max(crop.size) <= 160 and abs(crop.width / crop.height - w / h) < 0.1
    # the drawn image: the GT box's top edge at the thumbnail's scale, in green, or in magenta where the
    # prediction (the same box, drawn after it) covers it
    grounded = read_records(out / "vstar" / "grounded.jsonl")[0]
    with Image.open(out / "gallery" / "vstar_grounded_0.png") as drawn:
        drawn = drawn.convert("RGB")
        x1, y1, x2, y2 = grounded["gt_boxes"][0]
        scale = min(1.0, THUMB / max(grounded["image_size"]))
        assert drawn.size == (round(grounded["image_size"][0] * scale), round(grounded["image_size"][1] * scale))
        edge = [drawn.getpixel((x, round(y1 * scale))) for x in range(round(x1 * scale) + 3, round(x2 * scale) - 3)]
        assert edge and set(edge) <= {GT_COLOUR, (255, 0, 255)}
    # re-rendered from the finished run (run.json names the eval file), one item per mode
    from recipe.ivgr.eval import gallery

    assert gallery.main([str(out), "--per-mode", "1"]) == 0
    assert (out / "gallery" / "index.html").read_text().count("<div class='row'>") == 2


def test_demo_benchmark_with_the_tiny_checkpoint_on_cpu(tmp_path):
    """The CPU smoke's demo benchmark (scripts/smoke_cpu.sh `export_and_eval`), with the tiny checkpoint,
    through the documented command line."""
    from recipe.ivgr.eval import tiny_checkpoint

    demo = tmp_path / "demo_data"
    subprocess.run([sys.executable, "-m", "data_prep.synthetic", "--out", str(demo), "--num", "3", "--seed", "1",
                    "--val-every", "1", "--no-sft", "--quiet"], check=True)
    held_out = pq.read_table(demo / "val.parquet").to_pylist()
    assert len(held_out) == 3
    ckpt = tmp_path / "tiny"
    assert tiny_checkpoint.main([str(ckpt)]) == 0
    out = tmp_path / "eval"
    done = subprocess.run([sys.executable, "-m", "recipe.ivgr.eval", "--model", str(ckpt), "--backend", "transformers",
                           "--offline-processor", "--bench", f"generic={demo / 'val.parquet'}", "--mode", "textual",
                           "grounded", "--max-new-tokens", "8", "--min-pixels", "3136", "--max-pixels", "9408",
                           "--out", str(out), "--no-progress"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    markdown = (out / "summary.md").read_text()
    assert "| generic | textual | 3 |" in markdown and "| generic | grounded | 3 |" in markdown
    assert "(summary.png)" in markdown
    with Image.open(out / "summary.png") as chart:
        assert chart.format == "PNG"
    page = (out / "gallery" / "index.html").read_text()
    for record in held_out:  # every held-out sample, in both modes
        assert page.count(f"<div class='meta'>generic:{record['sample_id']} ") == 2
    images = re.findall(r"src='([^']+)'", page)
    assert len(images) == 6
    for name in images:
        with Image.open(out / "gallery" / name) as picture:
            assert picture.width > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["results"]["generic"]["grounded"]["items"] == 3
