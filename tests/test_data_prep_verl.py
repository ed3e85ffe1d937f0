"""The record Parquet read by a plain verl trainer's dataset factory (`create_rl_dataset` with the recipe's
`data.custom_cls`, an `RLHFDataset` subclass; offline processor, no filtering, the textual stream only, as
a plain verl run trains) and scored by `reward_score.compute_score` with the record's ground truth."""

from __future__ import annotations

import os

import pytest
from PIL import Image

from data_prep import synthetic
from data_prep.offline_processor import build_processor
from data_prep.schema import RECORD_SCHEMA
from reward_score import compute_score, to_model_frame

MAX_PIXELS = 1280 * 28 * 28


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    import datasets
    from hydra import compose, initialize_config_dir
    from verl.trainer.config import __file__ as verl_config_init
    from verl.trainer.ppo.utils import create_rl_dataset

    tmp = tmp_path_factory.mktemp("verl")
    assert synthetic.main(["--out", str(tmp), "--num", "8", "--seed", "11", "--val-every", "4", "--quiet"]) == 0
    cache = pytest.MonkeyPatch()
    cache.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp / "hf_cache"))
    overrides = ["data.custom_cls.path=pkg://recipe.ivgr.dataset", "data.custom_cls.name=DualStreamDataset",
                 "data.filter_overlong_prompts=false", "data.max_prompt_length=4096", "+data.ivgr_streams=[textual]",
                 f"+data.cache_dir={tmp / 'verl_cache'}", f"+data.ivgr_max_pixels={MAX_PIXELS}"]
    with initialize_config_dir(config_dir=os.path.dirname(verl_config_init), version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides).data
    processor = build_processor(max_pixels=MAX_PIXELS)
    try:
        yield create_rl_dataset([str(tmp / "train.parquet")], config, processor.tokenizer, processor), processor
    finally:
        cache.undo()


def _images(raw_prompt):
    return [item["image"] for message in raw_prompt if isinstance(message["content"], list)
            for item in message["content"] if item["type"] == "image"]


def test_rlhf_dataset_reads_the_file(dataset):
    from verl.utils.dataset.rl_dataset import collate_fn

    ds, processor = dataset
    assert len(ds) == 6
    item = ds[1]
    assert set(RECORD_SCHEMA.names) - {"images"} <= set(item) and "images" not in item
    assert item["index"] == 1 and item["extra_info"]["sample_id"] == item["sample_id"]
    system, user = item["raw_prompt"]
    assert system["content"] == [{"type": "text", "text": system["content"][0]["text"]}]
    assert user["content"][0]["type"] == "image" and isinstance(user["content"][0]["image"], Image.Image)
    assert user["content"][1]["text"].startswith(item["question"])
    # what the agent loop does next: chat template + processor on the raw prompt
    images = [image.convert("RGB") for image in _images(item["raw_prompt"])]
    text = processor.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
    out = processor(text=[text], images=images)
    t, h, w = out["image_grid_thw"][0]
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert list(out["input_ids"][0]).count(pad) == t * h * w // 4
    batch = collate_fn([ds[0], ds[1]])
    assert batch["dummy_tensor"].shape == (2, 1) and len(batch["raw_prompt"]) == 2


def test_stored_ground_truth_scores_a_perfect_rollout(dataset):
    ds, _ = dataset
    for index in range(len(ds)):
        item = ds[index]
        extra = dict(item["extra_info"], stream="grounded", max_pixels=MAX_PIXELS)
        boxes = to_model_frame(extra["gt_boxes"], extra["image_size"], extra["box_frame"], max_pixels=MAX_PIXELS)
        think = "I look at the image. " + " ".join(f"There <box>[{b[0]:.0f},{b[1]:.0f},{b[2]:.0f},{b[3]:.0f}]</box>."
                                                   for b in boxes)
        answer = item["reward_model"]["ground_truth"]
        result = compute_score(item["data_source"], f"<think>{think}</think><answer>{answer}</answer>", answer, extra)
        assert result["format"] == 1 and result["acc"] == 1 and result["gt_error"] == 0
        assert result["iou"] > 0.95, (index, result)
        textual = compute_score(item["data_source"], f"<think>It is there.</think><answer>{answer}</answer>", answer,
                                dict(item["extra_info"], stream="textual"))
        assert textual["format"] == 1 and textual["acc"] == 1
