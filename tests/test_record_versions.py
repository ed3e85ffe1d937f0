"""Files written by the converters before record schema 3 keep working: the committed schema-2 fixture
(tests/fixtures/schema_v2, written by the old `RecordWriter`) loads through the recipe dataset as verl
builds it, its rows carry the prompts the old writer stored (now rendered from the facts, so a change of
model family needs no stored text), its reward inputs score a perfect answer, and validate and the
preflight's data checks pass. New files hold each fact once and no prompt."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "schema_v2" / "data" / "records.parquet"


@pytest.fixture(scope="module")
def stored():
    """The schema-2 rows as the old writer stored them (the expected values)."""
    assert pq.read_schema(FIXTURE).metadata[b"ivgr.schema_version"] == b"2"
    return {row["sample_id"]: row for row in pq.read_table(FIXTURE).to_pylist()}


def _dataset(tmp_path, *extra: str):
    import datasets
    from hydra import compose, initialize_config_dir
    from verl.trainer.config import __file__ as verl_config_init
    from verl.trainer.ppo.utils import create_rl_dataset

    from data_prep.offline_processor import build_processor

    overrides = ["data.custom_cls.path=pkg://recipe.ivgr.dataset", "data.custom_cls.name=DualStreamDataset",
                 "data.filter_overlong_prompts=false", "data.max_prompt_length=4096",
                 f"+data.cache_dir={tmp_path / 'verl_cache'}", *extra]
    with initialize_config_dir(config_dir=os.path.dirname(verl_config_init), version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides).data
    processor = build_processor()
    patch = pytest.MonkeyPatch()
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    try:
        return create_rl_dataset([str(FIXTURE)], config, processor.tokenizer, processor)
    finally:
        patch.undo()


def _text(raw_prompt) -> list[dict]:
    """raw_prompt content lists back to the stored string form (<image> placeholders)."""
    out = []
    for message in raw_prompt:
        content = message["content"]
        if isinstance(content, list):
            content = "".join("<image>" if part["type"] == "image" else part["text"] for part in content)
        out.append({"role": message["role"], "content": content})
    return out


def test_schema_2_file_trains_through_the_dataset(stored, tmp_path):
    from reward_score import compute_score, to_model_frame

    ds = _dataset(tmp_path)
    assert len(ds) == 2 * 4 + 2 and ds.box_frame == "qwen2_5_vl"
    seen = set()
    for index in range(len(ds)):
        item = ds[index]
        extra = item["extra_info"]
        old = stored[extra["sample_id"]]
        column = "prompt_grounded" if extra["stream"] == "grounded" else "prompt_textual"
        assert _text(item["raw_prompt"]) == old[column]  # what the old writer stored, rendered again
        for key in ("sample_id", "kind", "answer", "answers", "answer_type", "choices", "gt_boxes", "image_size"):
            assert extra[key] == old["extra_info"][key], key
        assert item["reward_model"]["ground_truth"] == old["reward_model"]["ground_truth"]
        expected_question = old["question"] if extra["stream"] == "grounded" else (old["question_textual"]
                                                                                   or old["question"])
        assert extra["question"] == expected_question
        if extra["stream"] == "grounded":
            boxes = to_model_frame(extra["gt_boxes"], extra["image_size"], extra["box_frame"],
                                   extra["min_pixels"], extra["max_pixels"])
            think = " ".join(f"<box>[{b[0]:.1f},{b[1]:.1f},{b[2]:.1f},{b[3]:.1f}]</box>" for b in boxes)
            result = compute_score(item["data_source"], f"<think>Here {think}.</think><answer>{old['answer']}</answer>",
                                   item["reward_model"]["ground_truth"], extra)
            assert result["acc"] == 1.0 and result["iou"] > 0.95 and result["format"] == 1.0
        seen.add((extra["sample_id"], extra["stream"]))
    assert ("fixture:path:0", "textual") in seen  # the path-mode image, found under the stored root


def test_schema_2_file_in_another_family_needs_no_stored_text(stored, tmp_path):
    from data_prep.prompts import GROUNDED_INSTRUCTIONS

    ds = _dataset(tmp_path, "data.image_patch_size=16")  # a Qwen3-VL run on the old file
    item = ds[0]
    assert item["extra_info"]["box_frame"] == "qwen3_vl"
    assert _text(item["raw_prompt"])[-1]["content"].endswith(GROUNDED_INSTRUCTIONS["qwen3_vl"])


def test_schema_2_file_validates_and_passes_the_preflight_data_checks(tmp_path):
    from data_prep.validate import validate
    from recipe.ivgr.preflight.config import compose_config
    from recipe.ivgr.preflight.data import check_data
    from recipe.ivgr.preflight.report import Findings

    report = validate(FIXTURE, decode="all")
    assert report.ok and report.rows == 6 and report.decoded == 6, report.render(FIXTURE)
    config = compose_config([f"data.train_files=[{FIXTURE}]", f"data.val_files=[{FIXTURE}]",
                             "data.max_prompt_length=8192"])
    findings = Findings()
    stats = check_data(config, findings, "all", 64)
    assert not findings.problems, findings.problems
    assert stats["train"].samples == 6 and stats["train"].rows == 10 and stats["train"].max_images == 1


def test_new_files_hold_each_fact_once(tmp_path):
    from data_prep import synthetic
    from data_prep.schema import RECORD_COLUMNS, SCHEMA_VERSION

    assert synthetic.main(["--out", str(tmp_path), "--num", "4", "--seed", "3", "--quiet"]) == 0
    schema = pq.read_schema(tmp_path / "train.parquet")
    assert tuple(schema.names) == RECORD_COLUMNS and schema.metadata[b"ivgr.schema_version"] == SCHEMA_VERSION.encode()
    assert not {"prompt", "prompt_grounded", "prompt_textual", "extra_info", "reward_model", "box_frame"} & set(
        schema.names)
