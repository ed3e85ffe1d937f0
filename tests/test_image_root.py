"""One image root for every reader (data_prep.schema.resolve_image_root), from the user's side: data
converted in the default path mode with `--image-root` (images in one folder, the Parquet in another)
must then work with NO image root given to the training preflight, validate, inspect, the recipe
dataset (tests/test_ivgr_dataset.py), distill, the rollout-dump renderer and the eval (whose own
converter stores paths in path mode too)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

NUM = 6
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def path_mode(tmp_path_factory):
    """`python -m data_prep.generic` in path mode: images under pics/, the Parquet under data/."""
    from data_prep import generic, synthetic

    base = tmp_path_factory.mktemp("path_mode")
    (base / "pics").mkdir()
    lines = []
    for i in range(NUM):
        sample = synthetic.make_sample(7, i)
        (base / "pics" / f"img{i}.png").write_bytes(sample.images[0].data)
        lines.append({"id": f"s{i}", "image": f"img{i}.png", "question": sample.question, "answer": sample.answer,
                      "boxes": [list(b) for b in sample.gt_boxes]})
    (base / "src").mkdir()
    (base / "src" / "in.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    out = base / "data" / "train.parquet"
    assert generic.main(["--input", str(base / "src" / "in.jsonl"), "--image-root", str(base / "pics"),
                         "--out", str(out), "--quiet"]) == 0
    images = [item for row in pq.read_table(out, columns=["images"]).column("images").to_pylist() for item in row]
    assert images and all(item["path"] and not item["bytes"] for item in images)  # path mode indeed
    assert not list((base / "data").glob("*.png"))
    return {"base": base, "file": out, "ids": [f"generic:s{i}" for i in range(NUM)]}


def test_resolution_order(path_mode, tmp_path):
    from data_prep.schema import resolve_image_root

    pics = (path_mode["base"] / "pics").resolve()
    assert resolve_image_root(path_mode["file"]) == pics  # stored by the converter
    assert resolve_image_root([str(path_mode["file"])], tmp_path) == tmp_path.resolve()  # explicit wins
    plain = tmp_path / "plain.parquet"
    pq.write_table(pq.read_table(path_mode["file"]).replace_schema_metadata(None), plain)
    assert resolve_image_root(plain) == tmp_path.resolve()  # nothing stored: the file's folder
    assert resolve_image_root(["hdfs://x/y.parquet"]) is None


def test_training_preflight_passes_without_image_root(path_mode, tmp_path):
    """The issue's command: `TRAIN_FILES=that.parquet bash scripts/train_ivgr_7b.sh --dry-run`, no IMAGE_ROOT."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "WANDB_", "IMAGE_ROOT"))}
    env.update(PYTHON=os.environ.get("PYTHON", sys.executable), TRAIN_FILES=str(path_mode["file"]),
               VAL_FILES=str(path_mode["file"]), CKPT_DIR=str(tmp_path / "ckpt"), LOGGER="console")
    result = subprocess.run(["bash", str(REPO / "scripts" / "train_ivgr_7b.sh"), "--dry-run", "--decode", "all",
                             "data.train_batch_size=8", "actor_rollout_ref.actor.ppo_mini_batch_size=8"],
                            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    report = result.stdout + result.stderr
    assert "image_missing" not in report and result.returncode == 0, report
    assert f"{NUM} samples valid, images and boxes decoded for {NUM} rows" in report


def test_validate_and_inspect_without_image_root(path_mode, tmp_path, capsys):
    from data_prep import inspect, validate

    assert validate.main([str(path_mode["file"]), "--decode", "all", "--quiet"]) == 0
    capsys.readouterr()
    assert inspect.main([str(path_mode["file"]), "--render", str(NUM), str(tmp_path / "gallery"), "--json",
                         "--quiet", "--prefix-samples", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bad_rows"]["count"] == 0 and len(report["rendered"]) == NUM
    assert report["shared_prefix"]["samples"] == 2


def test_dump_renderer_without_image_root(path_mode, tmp_path):
    from recipe.ivgr.dump import render, write_step_dump
    from recipe.ivgr.stage import RolloutRecord
    from reward_score.result import RewardScore

    row = pq.read_table(path_mode["file"]).to_pylist()[0]
    info = {"gt_boxes": row["gt_boxes"], "image_size": row["image_size"], "box_frame": "qwen2_5_vl"}
    record = RolloutRecord(row["sample_id"], "grounded", row["question"], "x", RewardScore(iou=0.5), info)
    dump = write_step_dump(str(tmp_path / "dumps"), 1, [record], ["<think><box>[1,1,20,20]</box></think>"], [0.0],
                           None)
    assert render(dump, str(path_mode["file"]), str(tmp_path / "html")) == 1


def test_distill_without_image_root(path_mode, judge_server, tmp_path):
    from judge_server import ok

    from recipe.ivgr.archive import Reference, RolloutArchive
    from recipe.ivgr.distill import main
    from recipe.ivgr.dump import write_step_dump
    from recipe.ivgr.stage import ConsistencySettings, ConsistencyStage, RolloutRecord
    from recipe.ivgr.trainer import save_stage_states
    from reward_score.result import RewardScore

    rows = {r["sample_id"]: r for r in pq.read_table(path_mode["file"]).to_pylist()}
    sid = path_mode["ids"][0]
    archive = RolloutArchive()
    archive.offer(sid, Reference(think="The shape <box>[10,20,110,220]</box> is it.", acc=1.0, iou=0.7, step=1))
    run = tmp_path / "ckpt"
    save_stage_states([ConsistencyStage(ConsistencySettings(), archive)], str(run / "global_step_2"))
    (run / "latest_checkpointed_iteration.txt").write_text("2")
    record = RolloutRecord(sid, "textual", rows[sid]["question"], "x", RewardScore(acc=0.0, format=1.0),
                           {"min_pixels": 3136, "max_pixels": 512 * 28 * 28})
    write_step_dump(str(run / "rollout_dumps"), 2, [record], ["<think>a</think><answer>b</answer>"], [0.0], archive)
    answer = rows[sid]["answer"]
    judge_server.reset()
    judge_server.responder = lambda body: ok(f"<think>The shape near the top left shows it.</think>"
                                             f"<answer>{answer}</answer>")
    out = tmp_path / "sft" / "distill.parquet"
    assert main(["--run", str(run), "--data", str(path_mode["file"]), "--out", str(out), "--judge-base-url",
                 judge_server.url, "--k", "1", "--timeout", "5", "--quiet"]) == 0
    summary = json.loads(out.with_name("distill.summary.json").read_text())
    rejects = out.with_name("distill.rejects.jsonl").read_text()
    assert summary["written"] == 1 and "image_unreadable" not in summary["reasons"], (summary, rejects)


def test_eval_of_a_path_mode_benchmark_without_image_root(tmp_path):
    from eval_helpers import MAX_PIXELS, MIN_PIXELS, ScriptedBackend, make_vstar

    from recipe.ivgr.eval.converter import convert
    from recipe.ivgr.eval.main import main
    from recipe.ivgr.eval.record import read_records

    source = make_vstar(tmp_path / "downloads" / "vstar_bench")
    data = tmp_path / "eval_data" / "vstar.parquet"
    convert("vstar", [source], data, image_root=source, embed=False)
    images = [i for row in pq.read_table(data, columns=["images"]).column("images").to_pylist() for i in row]
    assert images and all(i["path"] and not i["bytes"] for i in images)
    backend = ScriptedBackend(lambda r: "<think>ok</think><answer>A</answer>")
    out = tmp_path / "out"
    assert main(["--model", "dummy", "--box-frame", "qwen2_5_vl", "--bench", str(data), "--mode", "textual",
                 "--out", str(out), "--no-progress", "--min-pixels", str(MIN_PIXELS), "--max-pixels",
                 str(MAX_PIXELS)], backend=backend) == 0
    records = read_records(out / "vstar" / "textual.jsonl")
    assert len(records) == 3 and not [r for r in records if "missing_image" in r["failures"]]
