"""A researcher's first day with their own data: the inputs people actually have give one-line reasons,
never a traceback, and the messages say what is true (issue: "first day with their own data")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import generic
from data_prep.schema import RECORD_SCHEMA  # noqa: F401  (the record schema the converter writes)

REPO = Path(__file__).resolve().parents[1]


def _images(root: Path, n: int = 3) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (320, 240), (40 * i, 90, 160)).save(root / f"img{i}.png")


def _record(i: int) -> dict:
    return {"id": str(i), "image": f"img{i % 3}.png", "question": f"Where is object {i}?", "answer": "left",
            "boxes": [[10, 20, 110, 140]]}


def _convert(*args: str) -> int:
    return generic.main([*args, "--quiet"])


def _rejects(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.with_name(out.stem + ".rejects.jsonl").read_text().splitlines()]


def test_a_json_array_of_records_converts_like_jsonl(tmp_path):
    _images(tmp_path / "images")
    source = tmp_path / "mine.json"
    source.write_text(json.dumps([_record(i) for i in range(5)] + ["not a record"]))
    out = tmp_path / "out" / "mine.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 0
    assert pq.read_metadata(out).num_rows == 5
    (bad,) = _rejects(out)
    assert bad["row"] == "mine.json:[5]" and bad["reason"] == "bad_json" and "str" in bad["detail"]


def test_truncated_json_file_is_one_line_with_the_position(tmp_path, capsys):
    _images(tmp_path / "images")
    text = json.dumps([_record(i) for i in range(5)], indent=1)
    source = tmp_path / "cut.json"
    source.write_text(text[: len(text) // 2])
    out = tmp_path / "cut.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "cut.json: invalid JSON at line" in err and "truncated" in err
    assert not out.exists()


def test_coco_object_without_questions_says_what_is_missing(tmp_path, capsys):
    _images(tmp_path / "images")
    source = tmp_path / "instances.json"
    source.write_text(json.dumps({"images": [{"id": 1, "file_name": "img0.png", "width": 320, "height": 240}],
                                  "annotations": [{"id": 7, "image_id": 1, "bbox": [1, 2, 30, 40]}],
                                  "categories": []}))
    out = tmp_path / "coco.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert "needs a `questions` list" in err and "annotations" in err and "kept 0 of 0" not in err


def test_bad_json_reject_names_the_file_line_and_the_column_not_the_documents_line_1(tmp_path):
    _images(tmp_path / "images")
    lines = [json.dumps(_record(i)) for i in range(18)] + ['{"id": "18", "image": "img0.png",, }']
    source = tmp_path / "data.jsonl"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "data.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 0
    (bad,) = _rejects(out)
    assert bad["row"] == "data.jsonl:19"
    assert "line" not in bad["detail"] and "column" in bad["detail"]


def test_invalid_utf8_detail_names_the_byte_without_surrogate_escapes(tmp_path):
    _images(tmp_path / "images")
    good = json.dumps(_record(0)).encode()
    bad = json.dumps({**_record(1), "question": "caf@ menu?"}).encode().replace(b"@", b"\xe9")
    source = tmp_path / "latin1.jsonl"
    source.write_bytes(good + b"\n" + bad + b"\n")
    out = tmp_path / "latin1.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 0
    (reject,) = _rejects(out)
    assert reject["reason"] == "invalid_unicode"
    assert "0xe9" in reject["detail"] and "\\udc" not in reject["detail"] and "udc" not in reject["detail"]


@pytest.mark.parametrize("change, reason, detail", [
    ({"answer": None}, "missing_answer", "no answer field"),
    ({"answer": "  "}, "empty_answer", "answer is '  '"),
    ({"answer": []}, "empty_answer", "answer is []"),
    ({"question": None}, "missing_question", "no question field"),
    ({"question": ""}, "empty_question", "question is ''"),
])
def test_missing_and_empty_answers_are_told_apart(tmp_path, change, reason, detail):
    _images(tmp_path / "images")
    row = {**_record(1), **change}
    row = {k: v for k, v in row.items() if v is not None}
    source = tmp_path / "d.jsonl"
    source.write_text(json.dumps(_record(0)) + "\n" + json.dumps(row) + "\n")
    out = tmp_path / "d.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 0
    (reject,) = _rejects(out)
    assert (reject["reason"], reject["detail"]) == (reason, detail)


def test_empty_input_does_not_claim_a_previous_output(tmp_path, capsys):
    source = tmp_path / "empty.jsonl"
    source.write_text("")
    out = tmp_path / "empty.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path), "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "the input has no rows" in err and "there was no previous output" in err and "is kept" not in err


def test_a_later_success_removes_the_stale_failed_diagnosis(tmp_path):
    _images(tmp_path / "images")
    source = tmp_path / "d.jsonl"
    source.write_text("\n".join(json.dumps(_record(i)) for i in range(4)) + "\n")
    out = tmp_path / "d.parquet"
    (tmp_path / "empty").mkdir()
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "empty"), "--out", str(out)) == 1
    assert (tmp_path / "d.failed.summary.json").exists()
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 0
    assert not list(tmp_path.glob("*.failed.*"))


@pytest.mark.parametrize("module, words", [
    ("data_prep.generic", ["JSONL line", "COCO-style", "annotation_ids", "JSON array"]),
    ("data_prep.generic_sft", ["JSONL line", "response"]),
    ("data_prep.validate", ["python -m data_prep.validate"]),
    ("data_prep.inspect", ["python -m data_prep.inspect"]),
])
def test_help_shows_the_input_format(module, words):
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO,
                         check=True).stdout
    for word in words:
        assert word in out, (module, word)


def test_sft_converter_does_not_offer_an_option_it_ignores():
    out = subprocess.run([sys.executable, "-m", "data_prep.generic_sft", "--help"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout
    assert "--no-embed-images" not in out and "--embed-images" not in out
    assert "--no-progress" in out  # the eval's spelling of --quiet works here too


def test_inspect_gallery_counts_a_bad_row_once_and_prints_clean_numbers(tmp_path, capsys):
    from data_prep import inspect

    _images(tmp_path / "images")
    rows = [_record(i) for i in range(3)]
    rows[0]["boxes"] = [[0.1, 0.2, 0.5, 0.7]]
    rows[0]["box_format"] = "norm1"  # 0.1 * 320 = 32.000000000000004 in floating point
    rows[1].pop("answer_type", None)
    source = tmp_path / "d.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "d.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 0
    (tmp_path / "images" / "img2.png").unlink()  # one row's image disappears after conversion
    assert inspect.main([str(out), "--render", "3", str(tmp_path / "gallery"), "--json", "--quiet"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["bad_rows"]["count"] == 1
    page = (tmp_path / "gallery" / "index.html").read_text()
    assert "[32, 48, 160, 168]" in page
    assert "0000000" not in page and "(None" not in page and "answer type not given" in page


def _readme_json_blocks() -> list[str]:
    text = (REPO / "data_prep" / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own data: input formats", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```json\n")[1:]]


def test_the_readme_input_examples_convert(tmp_path):
    """The formats the README shows are the formats the converters read."""
    from data_prep import generic_sft

    jsonl, coco, sft_line = _readme_json_blocks()
    images = tmp_path / "images"
    (images / "sub" / "dir").mkdir(parents=True)
    Image.new("RGB", (640, 480), (200, 40, 40)).save(images / "sub" / "dir" / "a.jpg")
    Image.new("RGB", (640, 480), (200, 40, 40)).save(images / "a.jpg")
    (tmp_path / "mine.jsonl").write_text(json.dumps(json.loads(jsonl)) + "\n")
    (tmp_path / "coco.json").write_text(coco)
    (tmp_path / "sft.jsonl").write_text(json.dumps(json.loads(sft_line)) + "\n")
    for source, out in (("mine.jsonl", "mine.parquet"), ("coco.json", "coco.parquet")):
        assert _convert("--input", str(tmp_path / source), "--image-root", str(images),
                        "--out", str(tmp_path / out)) == 0
        assert pq.read_metadata(tmp_path / out).num_rows == 1
    assert generic_sft.main(["--input", str(tmp_path / "sft.jsonl"), "--image-root", str(images),
                             "--out", str(tmp_path / "sft.parquet"), "--quiet"]) == 0
    assert pq.read_metadata(tmp_path / "sft.parquet").num_rows == 1


@pytest.mark.parametrize("module", ["recipe.ivgr.preflight", "recipe.ivgr.sft_preflight", "recipe.ivr_r1.preflight"])
def test_a_preflight_under_the_wrong_python_says_so_instead_of_blaming_hydra(module):
    """`-S`: a Python without site-packages, i.e. without the project's environment."""
    done = subprocess.run([sys.executable, "-S", "-m", module, "data.train_batch_size=8"], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 2
    assert "not the project's environment" in done.stderr and "bash scripts/test.sh --setup" in done.stderr
    assert "Hydra cannot compose" not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_data_prep_under_the_wrong_python_names_the_environment():
    done = subprocess.run([sys.executable, "-S", "-m", "data_prep.generic", "--help"], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode != 0
    assert "data_prep needs pyarrow" in done.stderr and "bash scripts/test.sh --setup" in done.stderr


def test_the_rl_preflight_refuses_an_sft_file(tmp_path):
    """An SFT Parquet is valid SFT data, so validate passes it; RL must refuse it, as the SFT launch refuses a
    record file."""
    import io

    from data_prep import generic_sft
    from recipe.ivgr.preflight import run as preflight

    _images(tmp_path / "images")
    line = {"id": "1", "image": "img0.png", "question": "Where is it?", "stream": "grounded",
            "response": "<think>It is here <box>[10,20,110,140]</box>.</think><answer>left</answer>"}
    (tmp_path / "sft.jsonl").write_text(json.dumps(line) + "\n")
    sft_file = tmp_path / "sft.parquet"
    assert generic_sft.main(["--input", str(tmp_path / "sft.jsonl"), "--image-root", str(tmp_path / "images"),
                             "--out", str(sft_file), "--quiet"]) == 0
    out = io.StringIO()
    code = preflight([f"data.train_files=[{sft_file}]", f"data.val_files=[{sft_file}]",
                      "actor_rollout_ref.model.path=/nonexistent", f"trainer.default_local_dir={tmp_path / 'ckpt'}"],
                     decode="none", out=out)
    assert code == 1
    assert f"data.train_files: {sft_file} is an SFT file" in out.getvalue()
    assert "PREFLIGHT OK" not in out.getvalue()


def _small_set(tmp_path: Path, samples: int = 20) -> Path:
    _images(tmp_path / "images")
    source = tmp_path / "mine.jsonl"
    source.write_text("\n".join(json.dumps(_record(i)) for i in range(samples)) + "\n")
    out = tmp_path / "data" / "train.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 0
    return out


def _launch(*args: str, **env: str) -> subprocess.CompletedProcess:
    import os

    full = {**os.environ, "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(REPO / "scripts" / "train_ivgr_7b.sh"), *args], capture_output=True,
                          text=True, cwd=REPO, env=full, timeout=600)


def test_the_preflight_variables_are_the_launch_scripts(tmp_path):
    """Each variable the preflight tells a user to set is the one the launch script turns into that key."""
    from recipe.ivgr.preflight.sizes import launch_variables

    train = _small_set(tmp_path, 4)
    variables = launch_variables()
    assert {"data.train_batch_size", "actor_rollout_ref.actor.ppo_mini_batch_size", "actor_rollout_ref.rollout.n"} \
        <= set(variables)  # the size keys the preflight's messages name
    values = {variable: str(12 + 2 * i) for i, variable in enumerate(sorted(set(variables.values())))}
    done = _launch("--print-overrides", TRAIN_FILES=str(train), CKPT_DIR=str(tmp_path / "ckpt"), **values)
    assert done.returncode == 0, done.stderr
    overrides = done.stdout.splitlines()
    for key, variable in variables.items():
        assert f"{key}={values[variable]}" in overrides, (key, variable)


def test_a_small_dataset_gets_one_problem_naming_the_variables_and_passes_at_the_suggested_size(tmp_path):
    train = _small_set(tmp_path, 20)
    env = {"TRAIN_FILES": str(train), "CKPT_DIR": str(tmp_path / "ckpt")}
    done = _launch("--dry-run", **env)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("PROBLEM")]
    assert done.returncode != 0
    assert len(problems) == 1, problems
    assert "40 rows (20 samples" in problems[0] and "TRAIN_BATCH_SIZE=512" in problems[0]
    suggested = dict(part.split("=") for part in problems[0].split("set ", 1)[1].split(" (or smaller)")[0].split())
    assert set(suggested) == {"TRAIN_BATCH_SIZE", "PPO_MINI_BATCH_SIZE"}
    again = _launch("--dry-run", **env, **suggested)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "PREFLIGHT OK" in again.stdout + again.stderr


def test_a_held_out_split_converts_and_evaluates_with_the_tiny_checkpoint(tmp_path):
    """Your own held-out split, both as data_prep lines and as the record Parquet data_prep made of them, into
    the eval schema (stored image root found, options lettered, GT boxes kept), then `python -m recipe.ivgr.eval`
    on it with the tiny checkpoint (transformers backend, CPU)."""
    from recipe.ivgr.eval import converter, tiny_checkpoint
    from recipe.ivgr.eval.main import main as eval_main

    _images(tmp_path / "images")
    lines = [{**_record(0), "choices": ["left", "right"], "answer": "A"},
             {**_record(1), "choices": ["up", "down", "left"], "answer": "left"},
             {**_record(2), "answer": ["3", "three"], "answer_type": "number"}]
    heldout = tmp_path / "heldout.jsonl"
    heldout.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    record = tmp_path / "data" / "heldout.parquet"
    assert _convert("--input", str(heldout), "--image-root", str(tmp_path / "images"), "--out", str(record)) == 0

    eval_from_record = tmp_path / "eval" / "mine.parquet"
    assert converter.main(["generic", "--input", str(record), "--out", str(eval_from_record), "--no-shuffle",
                            "--quiet"]) == 0  # no --image-root: the record's stored root is used
    rows = {r["item_id"]: r for r in pq.read_table(eval_from_record).to_pylist()}
    assert set(rows) == {"generic:generic:0", "generic:generic:1", "generic:generic:2"}
    assert rows["generic:generic:0"]["answer"] == "A" and rows["generic:generic:0"]["answer_text"] == "left"
    assert rows["generic:generic:1"]["answer"] == "C" and rows["generic:generic:1"]["choices"] == ["up", "down", "left"]
    assert rows["generic:generic:2"]["answers"] == ["3", "three"]
    assert all(r["image_size"] == [320, 240] for r in rows.values())  # every image found
    assert rows["generic:generic:2"]["gt_boxes"] == [[10.0, 20.0, 110.0, 140.0]]

    eval_from_lines = tmp_path / "eval" / "lines.parquet"
    assert converter.main(["generic", "--input", str(heldout), "--image-root", str(tmp_path / "images"),
                            "--out", str(eval_from_lines), "--no-shuffle", "--quiet"]) == 0
    from_lines = {r["item_id"].split(":")[-1]: r for r in pq.read_table(eval_from_lines).to_pylist()}
    for key, row in rows.items():
        other = from_lines[key.split(":")[-1]]
        assert (other["answer"], other["choices"], other["gt_boxes"]) == (row["answer"], row["choices"], row["gt_boxes"])

    ckpt = tmp_path / "tiny-ckpt"
    assert tiny_checkpoint.main([str(ckpt)]) == 0
    out = tmp_path / "results"
    assert eval_main(["--model", str(ckpt), "--backend", "transformers", "--offline-processor", "--bench",
                      str(eval_from_record), "--mode", "textual", "--max-new-tokens", "3", "--min-pixels", "3136",
                      "--max-pixels", "12544", "--out", str(out), "--no-progress"]) == 0
    assert (out / "summary.md").exists()
    records = [json.loads(line) for line in (out / "mine" / "textual.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all("generation_error" not in r["failures"] for r in records)


def test_a_multi_image_question_keeps_its_placeholders_where_it_put_them(tmp_path):
    """"<image>Compare <image> ..." must not become "<image><image>Compare  ...": the dataset's prompt shows
    each image where the question refers to it (checked on what verl's agent loop receives: raw_prompt)."""
    from omegaconf import OmegaConf

    from data_prep.offline_processor import build_processor
    from recipe.ivgr.dataset import DualStreamDataset

    _images(tmp_path / "images")
    rows = [{"id": "two", "images": ["img0.png", "img1.png"], "question": "<image>Compare <image> which is darker?",
             "answer": "the second", "boxes": [[10, 20, 110, 140]]},
            {"id": "one", "image": "img2.png", "question": "What is in <image> this picture?", "answer": "a square"}]
    source = tmp_path / "d.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "d.parquet"
    assert _convert("--input", str(source), "--image-root", str(tmp_path / "images"), "--out", str(out)) == 0
    processor = build_processor(min_pixels=3136, max_pixels=12544)
    config = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096,
                               "truncation": "error", "filter_overlong_prompts": False, "return_raw_chat": True,
                               "ivgr_shuffle": False, "ivgr_min_pixels": 3136, "ivgr_max_pixels": 12544})
    dataset = DualStreamDataset(data_files=[str(out)], tokenizer=processor.tokenizer, config=config,
                                processor=processor)
    by_id = {}
    for i in range(len(dataset)):
        row = dataset[i]
        by_id.setdefault(row["extra_info"]["sample_id"], []).append(row)
    for row in by_id["generic:two"]:  # both streams
        user = row["raw_prompt"][-1]["content"]
        kinds = [item["type"] for item in user]
        assert kinds[:4] == ["image", "text", "image", "text"], kinds
        assert user[1]["text"] == "Compare " and user[3]["text"].startswith(" which is darker?")
    (single,) = by_id["generic:one"]
    user = single["raw_prompt"][-1]["content"]
    assert user[0]["type"] == "image" and user[1]["text"].startswith("What is in this picture?")
