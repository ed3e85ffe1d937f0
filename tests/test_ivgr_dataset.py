"""`recipe.ivgr.dataset.DualStreamDataset` and `recipe.ivgr.sampler` through verl's real classes.

Synthetic records (`data_prep.synthetic`, plus single-stream samples and one image stored by path),
the offline tiny Qwen2.5-VL processor, the data config composed from verl's own `ppo_trainer`, verl's
`create_rl_dataset` (`pkg://recipe.ivgr.dataset`), `collate_fn`, `StatefulDataLoader` and the v1
trainer's own `_fetch_one_gen_batch` (which restarts the iterator at the end of an epoch).
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import os
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from data_prep import synthetic
from data_prep.images import ImageError, ImageItem
from data_prep.offline_processor import build_processor
from data_prep.prompts import GROUNDED_INSTRUCTIONS, SINGLE_INSTRUCTION, TEXTUAL_INSTRUCTION
from data_prep.schema import Sample
from data_prep.writer import RecordWriter
from recipe.ivgr.sampler import PairBatchSampler, build_train_dataloader
from reward_score import compute_score, resized_size, to_model_frame

SEED = 5
NUM_GROUNDED = 8  # embedded images, plus one more stored by path
NUM_SINGLE = 5
BATCH = 6
MAX_PIXELS = 160 * 28 * 28  # below every synthetic image's area: every image is downscaled
PATH_SAMPLE = "test:path:0"


def _single(sample: Sample, index: int) -> Sample:
    return Sample(sample_id=f"test:single:{index}", data_source="test/single", question=sample.question,
                  answer=sample.answer, images=sample.images, image_size=sample.image_size, gt_boxes=[],
                  answer_type=sample.answer_type, choices=sample.choices)


def _write(path: Path, samples: list[Sample]) -> None:
    with RecordWriter(path) as writer:
        for i, sample in enumerate(samples):
            assert writer.add(sample, f"row{i}"), sample.sample_id


def compose_data(extra_overrides=()):
    """The `data` node of verl's own `ppo_trainer` composed by Hydra (struct mode, as the trainer sees it),
    with the recipe's keys given as command-line overrides."""
    from hydra import compose, initialize_config_dir
    from verl.trainer.config import __file__ as verl_config_init

    overrides = [
        "data.custom_cls.path=pkg://recipe.ivgr.dataset", "data.custom_cls.name=DualStreamDataset",
        f"data.train_batch_size={BATCH}", "data.shuffle=false", "data.seed=7", "data.dataloader_num_workers=0",
        "data.filter_overlong_prompts=false", "data.max_prompt_length=4096", f"+data.ivgr_max_pixels={MAX_PIXELS}",
        *extra_overrides,
    ]
    with initialize_config_dir(config_dir=os.path.dirname(verl_config_init), version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides).data


def _merged(config, overrides):
    from omegaconf import open_dict

    config = copy.deepcopy(config)
    with open_dict(config):  # what a recipe yaml adds under data:
        config.merge_with(overrides)
    return config


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    import datasets

    tmp = tmp_path_factory.mktemp("ivgr_dataset")
    grounded = [synthetic.make_sample(SEED, i) for i in range(NUM_GROUNDED)]
    singles = [_single(synthetic.make_sample(SEED, 100 + i), i) for i in range(NUM_SINGLE)]
    donor = synthetic.make_sample(SEED, 200)  # one grounded sample whose image is stored by path
    (tmp / "images").mkdir()
    (tmp / "images" / "p0.png").write_bytes(donor.images[0].data)
    by_path = Sample(sample_id=PATH_SAMPLE, data_source="test/path", question=donor.question, answer=donor.answer,
                     images=[ImageItem(None, "images/p0.png")], image_size=donor.image_size,
                     gt_boxes=donor.gt_boxes, answer_type=donor.answer_type, choices=donor.choices,
                     question_textual="In the picture: " + donor.question)  # iVGR's `query` next to `problem`
    # records interleave kinds; the dataset must still put pairs first
    records = [grounded[0], singles[0], grounded[1], by_path, singles[1], *grounded[2:5], singles[2],
               *grounded[5:], *singles[3:]]
    _write(tmp / "train.parquet", records)

    data_config = compose_data([f"+data.cache_dir={tmp / 'verl_cache'}"])
    patch = pytest.MonkeyPatch()
    patch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp / "hf_cache"))
    env = {"tmp": tmp, "records": records, "config": data_config, "processor": build_processor(),
           "files": [str(tmp / "train.parquet")]}
    yield env
    patch.undo()


def make(env, files=None, **overrides):
    """A dataset built exactly as verl's trainer builds it (create_rl_dataset + data.custom_cls)."""
    from verl.trainer.ppo.utils import create_rl_dataset

    config = _merged(env["config"], overrides)
    processor = env["processor"]
    return create_rl_dataset(files or env["files"], config, processor.tokenizer, processor, is_train=True,
                             max_samples=-1)


@pytest.fixture(scope="module")
def ds(env):
    return make(env)


def _expected_rows(records):
    """(sample, stream) per dataset index: two-row samples first (2k, 2k+1), then single samples."""
    pairs = [(s, stream) for s in records if s.gt_boxes for stream in ("grounded", "textual")]
    return pairs + [(s, "single") for s in records if not s.gt_boxes]


def _image_items(raw_prompt):
    return [item for message in raw_prompt if isinstance(message["content"], list)
            for item in message["content"] if item.get("type") == "image"]


def _messages(raw_prompt):
    return [{"role": m["role"], "content": [dict(c) for c in m["content"]]} for m in raw_prompt]


# ---------------------------------------------------------------------------------------- items
def test_loaded_through_verl_custom_cls(env, ds):
    from verl.utils.dataset.rl_dataset import get_dataset_class

    from recipe.ivgr.dataset import DualStreamDataset

    assert get_dataset_class(env["config"]) is DualStreamDataset
    assert type(ds) is DualStreamDataset
    assert len(ds) == 2 * (NUM_GROUNDED + 1) + NUM_SINGLE
    assert ds.units == [(2 * k, 2 * k + 1) for k in range(NUM_GROUNDED + 1)] + [
        (i,) for i in range(2 * (NUM_GROUNDED + 1), len(ds))]


def test_items_carry_stream_prompt_and_reward_inputs(env, ds):
    expected = _expected_rows(env["records"])
    assert [ds.stream_of(i) for i in range(len(ds))] == [stream for _, stream in expected]
    for index, (sample, stream) in enumerate(expected):
        item = ds[index]
        extra = item["extra_info"]
        assert item["data_source"] == f"{sample.data_source}/{stream}"
        assert item["reward_model"]["ground_truth"] == sample.answer
        assert item["index"] == extra["index"] == index
        assert "images" not in item and "prompt_grounded" not in item and "prompt_textual" not in item
        assert extra["stream"] == stream and extra["sample_id"] == sample.sample_id
        asked = (stream != "grounded" and sample.question_textual) or sample.question  # the stream's own question
        assert extra["data_source"] == sample.data_source and extra["question"] == asked
        assert extra["answer_type"] == sample.answer_type and extra["choices"] == sample.choices
        # ground truth stays in ORIGINAL pixels, with the original size and the frame
        assert extra["gt_boxes"] == [list(map(float, box)) for box in sample.gt_boxes]
        assert extra["image_size"] == list(sample.image_size) and extra["box_frame"] == "qwen2_5_vl"
        assert (extra["min_pixels"], extra["max_pixels"]) == (56 * 56, MAX_PIXELS)
        # the stream's own prompt, images in front with the same bounds
        system, user = item["raw_prompt"]
        instruction = {"grounded": GROUNDED_INSTRUCTIONS["qwen2_5_vl"], "textual": TEXTUAL_INSTRUCTION,
                       "single": SINGLE_INSTRUCTION}[stream]
        assert user["content"][-1]["text"].endswith(instruction)
        assert user["content"][-1]["text"].startswith(asked)
        (image,) = _image_items(item["raw_prompt"])
        seen = resized_size(*sample.image_size, "qwen2_5_vl", 56 * 56, MAX_PIXELS)
        assert isinstance(image["image"], Image.Image) and image["image"].size == seen  # resized, not original
        assert (image["min_pixels"], image["max_pixels"]) == (56 * 56, MAX_PIXELS)
    # the image stored by path (resolved under the parquet's folder) is the same picture
    index = next(i for i, (s, _) in enumerate(expected) if s.sample_id == PATH_SAMPLE)
    stored = Image.open(env["tmp"] / "images" / "p0.png").convert("RGB")
    stored = stored.resize(resized_size(*stored.size, "qwen2_5_vl", 56 * 56, MAX_PIXELS))
    assert _image_items(ds[index]["raw_prompt"])[0]["image"].tobytes() == stored.tobytes()


def test_images_reach_the_model_with_the_bounds_the_reward_uses(env, ds):
    """What verl's agent loop does: dataset_cls.process_multi_modal_info, then the processor."""
    from recipe.ivgr.dataset import DualStreamDataset

    processor = env["processor"]
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for index in range(0, len(ds), 3):
        item = ds[index]
        extra = item["extra_info"]
        images, videos, _ = asyncio.run(DualStreamDataset.process_multi_modal_info(
            _messages(item["raw_prompt"]), image_patch_size=14, config=env["config"]))
        width, height = extra["image_size"]
        seen = resized_size(width, height, "qwen2_5_vl", extra["min_pixels"], extra["max_pixels"])
        assert videos is None and images[0].size == seen
        assert seen != resized_size(width, height, "qwen2_5_vl")  # the bounds matter for these images
        text = processor.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
        out = processor(text=[text], images=images)
        t, h, w = (int(v) for v in out["image_grid_thw"][0])
        assert (w * 14, h * 14) == seen  # the processor does not resize again
        assert list(out["input_ids"][0]).count(pad) == t * h * w // 4


def test_images_travel_resized_and_the_later_resize_is_the_identity(env, ds):
    """verl stores raw_prompt's images with every trajectory: they must already be the model-sized
    picture, so qwen_vl_utils-style resizing in the agent loop changes nothing (same size, same pixels)."""
    import numpy as np

    from recipe.ivgr.image_bounds import fetch_image

    for index in range(0, len(ds), 2):
        item = ds[index]
        extra = item["extra_info"]
        (image_item,) = _image_items(item["raw_prompt"])
        width, height = extra["image_size"]  # the ORIGINAL size: the reward maps boxes from it
        seen = resized_size(width, height, "qwen2_5_vl", extra["min_pixels"], extra["max_pixels"])
        assert image_item["image"].size == seen and seen[0] * seen[1] < width * height
        again = fetch_image(dict(image_item), image_patch_size=14)
        assert again.size == seen
        assert np.array_equal(np.asarray(again), np.asarray(image_item["image"]))


def test_perfect_grounded_response_scores_iou_1(ds):
    worse = 0
    for index in range(len(ds)):
        item = ds[index]
        extra, answer = item["extra_info"], item["reward_model"]["ground_truth"]
        if extra["stream"] == "grounded":
            boxes = to_model_frame(extra["gt_boxes"], extra["image_size"], extra["box_frame"],
                                   extra["min_pixels"], extra["max_pixels"])
            think = "Looking. " + " ".join(f"It is at <box>[{b[0]!r},{b[1]!r},{b[2]!r},{b[3]!r}]</box>." for b in boxes)
            response = f"<think>{think}</think><answer>{answer}</answer>"
            result = compute_score(item["data_source"], response, answer, extra)
            assert result["iou"] == pytest.approx(1.0, abs=1e-9), (index, result)
            assert (result["format"], result["acc"], result["box_valid"], result["gt_error"]) == (1, 1, 1, 0)
            # the row carries the boxes already mapped where the image was resized; a row without
            # them (written before) scores the same
            assert extra["gt_boxes_model"] == [list(b) for b in boxes]
            old_row = {k: v for k, v in extra.items() if k != "gt_boxes_model"}
            assert compute_score(item["data_source"], response, answer, old_row) == result
            # without the bounds in extra_info the reward would map GT with other bounds
            unbounded = {k: v for k, v in old_row.items() if k not in ("min_pixels", "max_pixels")}
            worse += compute_score(item["data_source"], response, answer, unbounded)["iou"] < 0.99
        else:
            result = compute_score(item["data_source"], f"<think>Plain words.</think><answer>{answer}</answer>",
                                   answer, extra)
            assert (result["format"], result["acc"]) == (1, 1), (index, extra["stream"], result)
    assert worse == NUM_GROUNDED + 1


# ---------------------------------------------------------------------------------------- config
def test_stream_ablations(env):
    from verl.trainer.ppo.utils import create_rl_dataset

    config = compose_data([f"+data.cache_dir={env['tmp'] / 'verl_cache'}", "+data.ivgr_streams=[textual,single]"])
    processor = env["processor"]
    textual_only = create_rl_dataset(env["files"], config, processor.tokenizer, processor)
    assert len(textual_only) == NUM_GROUNDED + 1 + NUM_SINGLE
    assert all(len(unit) == 1 for unit in textual_only.units)
    assert Counter(map(textual_only.stream_of, range(len(textual_only)))) == {
        "textual": NUM_GROUNDED + 1, "single": NUM_SINGLE}
    pairs_only = make(env, ivgr_streams=["grounded", "textual"])
    assert len(pairs_only) == 2 * (NUM_GROUNDED + 1) and all(len(u) == 2 for u in pairs_only.units)
    assert pairs_only[1]["extra_info"]["stream"] == "textual"
    with pytest.raises(ValueError, match="ivgr_streams"):
        make(env, ivgr_streams=["grounded", "visual"])


def test_box_frame_override_and_patch_size_check(env):
    qwen3 = make(env, ivgr_box_frame="qwen3_vl")
    grounded = qwen3[0]
    assert grounded["extra_info"]["box_frame"] == "qwen3_vl"
    assert grounded["raw_prompt"][1]["content"][-1]["text"].endswith(GROUNDED_INSTRUCTIONS["qwen3_vl"])
    # the frame's own default minimum (4 tokens of 32 px) is above the processor's 56*56
    assert (grounded["extra_info"]["min_pixels"], grounded["extra_info"]["max_pixels"]) == (4 * 32 * 32, MAX_PIXELS)
    with pytest.raises(ValueError, match="image_patch_size"):  # Qwen3-VL resize, Qwen2.5-VL pixel boxes
        make(env, image_patch_size=16, ivgr_box_frame="qwen2_5_vl")
    # no frame configured: the family of the patch size (verl's own key) decides prompts and frame
    patch16 = make(env, image_patch_size=16)[0]
    assert patch16["extra_info"]["box_frame"] == "qwen3_vl"
    assert patch16["raw_prompt"][1]["content"][-1]["text"].endswith(GROUNDED_INSTRUCTIONS["qwen3_vl"])


def test_processor_bounds_narrow_the_requested_ones(env):
    narrowed = make(env, ivgr_max_pixels=None, mm_processor_kwargs={"max_pixels": 100 * 28 * 28})
    assert narrowed[0]["extra_info"]["max_pixels"] == 100 * 28 * 28
    default = make(env, ivgr_max_pixels=None)  # frame default 4096 tokens, narrowed by the processor's 1280
    assert default[0]["extra_info"]["max_pixels"] == 1280 * 28 * 28


def test_image_paths_stay_under_the_root(env):
    tmp = env["tmp"] / "paths"
    (tmp / "root").mkdir(parents=True)
    donor = synthetic.make_sample(SEED, 300)
    (tmp / "root" / "ok.png").write_bytes(donor.images[0].data)
    (tmp / "outside.png").write_bytes(donor.images[0].data)
    samples = [Sample(sample_id=f"test:{name}", data_source="test/paths", question=donor.question,
                      answer=donor.answer, images=[ImageItem(None, path)], image_size=donor.image_size,
                      gt_boxes=donor.gt_boxes, answer_type=donor.answer_type, choices=donor.choices)
               for name, path in (("ok", "ok.png"), ("escape", "../outside.png"))]
    _write(tmp / "data" / "paths.parquet", samples)
    files = [str(tmp / "data" / "paths.parquet")]
    loose = make(env, files, image_root=str(tmp / "root"))
    assert _image_items(loose[0]["raw_prompt"])[0]["image"].size == resized_size(
        *donor.image_size, "qwen2_5_vl", 56 * 56, MAX_PIXELS)
    substitute = loose[2]  # the escaping sample's row is served by the next readable one, marked
    assert (substitute["extra_info"]["sample_id"], substitute["extra_info"]["substituted_for"],
            substitute["extra_info"]["substitute_reason"]) == ("test:ok", "test:escape", "image_path_escapes_root")
    with pytest.raises(ImageError, match="image_missing"):  # default root: the parquet's own folder, nothing loads
        make(env, files)[0]
    filtered = make(env, files, image_root=str(tmp / "root"), filter_overlong_prompts=True)
    assert [filtered[i]["extra_info"]["sample_id"] for i in range(len(filtered))] == ["test:ok", "test:ok"]
    assert filtered.filter_stats["errors"] == 1 and filtered.filter_stats["dropped_sample_ids"] == ["test:escape"]


def test_an_image_deleted_during_training_is_a_counted_skip(env):
    """The file of a path-mode image disappears after the dataset was built (length filter off: no
    decode at load): both rows of that sample are served by the next readable grounded sample, marked
    for the step stage, instead of an ImageError crashing the run."""
    tmp = env["tmp"] / "deleted"
    (tmp / "images").mkdir(parents=True)
    samples = []
    for i in range(3):
        donor = synthetic.make_sample(SEED, 400 + i)
        (tmp / "images" / f"{i}.png").write_bytes(donor.images[0].data)
        samples.append(Sample(sample_id=f"test:del:{i}", data_source="test/del", question=donor.question,
                              answer=donor.answer, images=[ImageItem(None, f"images/{i}.png")],
                              image_size=donor.image_size, gt_boxes=donor.gt_boxes, answer_type=donor.answer_type,
                              choices=donor.choices))
    _write(tmp / "del.parquet", samples)
    ds = make(env, [str(tmp / "del.parquet")])
    assert ds[2]["extra_info"]["sample_id"] == "test:del:1"
    (tmp / "images" / "1.png").unlink()
    grounded, textual = ds[2], ds[3]
    for item, stream in ((grounded, "grounded"), (textual, "textual")):
        info = item["extra_info"]
        assert (info["sample_id"], info["stream"], info["substituted_for"], info["substitute_reason"]) == \
            ("test:del:2", stream, "test:del:1", "image_missing")
        assert info["index"] == (2 if stream == "grounded" else 3)
    assert ds.substitutions == 2 and "substituted_for" not in ds[0]["extra_info"]
    for i in (0, 2):
        (tmp / "images" / f"{i}.png").unlink()
    with pytest.raises(ImageError, match="none of the next"):
        ds[0]


def test_image_root_stored_by_the_converter_is_the_default(env):
    """A path-mode file from data_prep.generic, images in a sibling folder: no data.image_root needed."""
    from data_prep import generic

    tmp = env["tmp"] / "stored_root"
    (tmp / "pics").mkdir(parents=True)
    donor = synthetic.make_sample(SEED, 301)
    (tmp / "pics" / "d.png").write_bytes(donor.images[0].data)
    line = {"id": "d", "image": "d.png", "question": donor.question, "answer": donor.answer,
            "boxes": [list(b) for b in donor.gt_boxes]}
    (tmp / "in.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp / "data" / "d.parquet"
    assert generic.main(["--input", str(tmp / "in.jsonl"), "--image-root", str(tmp / "pics"), "--out", str(out),
                         "--quiet"]) == 0
    item = make(env, [str(out)])[0]
    assert _image_items(item["raw_prompt"])[0]["image"].size == resized_size(  # resized once by the dataset
        *donor.image_size, "qwen2_5_vl", 56 * 56, MAX_PIXELS)


# ---------------------------------------------------------------------------------------- length filter
def test_length_filter_keeps_rows_on_cpu(env, ds):
    filtered = make(env, filter_overlong_prompts=True, filter_overlong_prompts_workers=2)
    assert len(filtered) == len(ds) and filtered.units == ds.units
    assert filtered.filter_stats["samples_kept"] == NUM_GROUNDED + 1 + NUM_SINGLE
    assert filtered.filter_stats["samples_dropped"] == 0 and filtered.filter_stats["errors"] == 0


def test_length_filter_drops_whole_samples(env, ds):
    """Lengths measured on the agent-loop path; a limit between a sample's textual and grounded
    prompt lengths must drop BOTH of its rows."""
    from recipe.ivgr.dataset import DualStreamDataset

    processor = env["processor"]
    lengths: dict[str, dict[str, int]] = {}
    for index in range(len(ds)):
        item = ds[index]
        images, _, _ = DualStreamDataset._process_multi_modal_info(_messages(item["raw_prompt"]), 14, env["config"])
        text = processor.apply_chat_template(item["raw_prompt"], add_generation_prompt=True, tokenize=False)
        n = len(processor(text=[text], images=images)["input_ids"][0])
        lengths.setdefault(item["extra_info"]["sample_id"], {})[item["extra_info"]["stream"]] = n

    def split_by(limit):
        kept = {sid for sid, by_stream in lengths.items() if max(by_stream.values()) <= limit}
        split_pairs = [sid for sid, s in lengths.items() if "grounded" in s and s["textual"] <= limit < s["grounded"]]
        return kept, split_pairs

    candidates = sorted({n for by_stream in lengths.values() for n in by_stream.values()})
    limit = next(n for n in candidates if split_by(n)[1] and any("grounded" in lengths[s] for s in split_by(n)[0]))
    kept, split_pairs = split_by(limit)
    filtered = make(env, filter_overlong_prompts=True, max_prompt_length=limit)
    rows = [filtered[i]["extra_info"] for i in range(len(filtered))]
    assert {r["sample_id"] for r in rows} == kept
    assert not {r["sample_id"] for r in rows} & set(split_pairs)  # the textual row went with its grounded row
    expected_rows = sum(len(lengths[sid]) for sid in kept)
    assert len(filtered) == expected_rows and sum(map(len, filtered.units)) == expected_rows
    for unit in filtered.units:  # kept pairs stay pairs
        if len(unit) == 2:
            assert [rows[i]["stream"] for i in unit] == ["grounded", "textual"]
            assert rows[unit[0]]["sample_id"] == rows[unit[1]]["sample_id"]
    stats = filtered.filter_stats
    assert stats["samples_dropped"] == stats["too_long"] == len(lengths) - len(kept) and stats["errors"] == 0
    assert stats["rows_dropped"] == len(ds) - expected_rows and stats["max_kept_length"] <= limit


# ---------------------------------------------------------------------------------------- dataloader
class _Fetcher:
    """verl's v1 trainer fetching prompts: `_fetch_one_gen_batch` restarts the iterator on StopIteration."""

    def __init__(self, dataloader):
        from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

        self.trainer = PPOTrainerSync.__new__(PPOTrainerSync)
        self.trainer.train_dataloader = dataloader
        self.trainer.train_dataloader_it = None

    def batches(self, n):
        out = []
        for _ in range(n):
            batch = self.trainer._fetch_one_gen_batch()
            out.append([(e["sample_id"], e["stream"]) for e in batch["extra_info"]])
        return out


def _loader(ds, config, **overrides):
    from verl.utils.dataset.rl_dataset import collate_fn

    return build_train_dataloader(ds, _merged(config, overrides), collate_fn)


def _check_pairing(batch):
    assert len(batch) == BATCH
    counts = Counter(sid for sid, _ in batch)
    for position, (sid, stream) in enumerate(batch):
        if stream == "single":
            assert counts[sid] == 1
        else:  # both rows of the sample, grounded then textual, side by side
            assert counts[sid] == 2
            partner = batch[position + 1] if stream == "grounded" else batch[position - 1]
            assert partner == (sid, "textual" if stream == "grounded" else "grounded")


def test_pairs_share_every_batch_across_epochs(env, ds):
    loader = _loader(ds, env["config"])
    per_epoch = len(ds) // BATCH
    assert len(loader) == per_epoch == 3
    batches = _Fetcher(loader).batches(3 * per_epoch)
    epochs = [sum(batches[e * per_epoch:(e + 1) * per_epoch], []) for e in range(3)]
    for batch in batches:
        _check_pairing(batch)
    all_rows = {(s.sample_id, stream) for s, stream in _expected_rows(env["records"])}
    for rows in epochs:
        assert len(set(rows)) == len(rows)
        missing = all_rows - set(rows)  # 23 rows, 18 per epoch: whole units left over, never half a pair
        for sid, stream in missing:
            assert stream == "single" or {(sid, "grounded"), (sid, "textual")} <= missing
    assert len({tuple(rows) for rows in epochs}) == 3  # a new order every epoch
    assert _Fetcher(_loader(ds, env["config"])).batches(3 * per_epoch) == batches  # same seed, same order
    assert _Fetcher(_loader(ds, env["config"], seed=8)).batches(per_epoch) != batches[:per_epoch]
    fixed = _Fetcher(_loader(ds, env["config"], ivgr_shuffle=False)).batches(2 * per_epoch)
    assert fixed[:per_epoch] == fixed[per_epoch:] and fixed[0][:2] == [(env["records"][0].sample_id, "grounded"),
                                                                        (env["records"][0].sample_id, "textual")]


@pytest.mark.parametrize("stop, workers", [(2, 0), (3, 0), (4, 0), (3, 2), (5, 2)])
def test_resume_continues_at_the_next_batch(env, ds, stop, workers):
    """verl saves `train_dataloader.state_dict()` to data.pt and loads it into a fresh dataloader."""
    import torch

    total = 9  # three epochs; stop=3 is exactly an epoch boundary
    reference = _Fetcher(_loader(ds, env["config"])).batches(total)
    first = _Fetcher(_loader(ds, env["config"], dataloader_num_workers=workers))
    assert first.batches(stop) == reference[:stop]
    buffer = io.BytesIO()
    torch.save(first.trainer.train_dataloader.state_dict(), buffer)
    buffer.seek(0)
    fresh = make(env)  # a new process would rebuild the dataset too
    loader = _loader(fresh, env["config"], dataloader_num_workers=workers)
    loader.load_state_dict(torch.load(buffer, weights_only=False))
    assert _Fetcher(loader).batches(total - stop) == reference[stop:]


# ---------------------------------------------------------------------------------------- sampler unit
def test_sampler_pulls_a_single_forward_and_refuses_impossible_sizes():
    odd = PairBatchSampler([(0, 1), (2, 3), (4,)], batch_size=3, shuffle=False)
    assert list(odd) == [0, 1, 4] and len(odd) == 3  # (2, 3) cannot complete a batch: it sits out
    even = PairBatchSampler([(0, 1), (2,), (3, 4), (5,), (6,)], batch_size=4, shuffle=False)
    assert list(even) == [0, 1, 2, 5]  # one slot left, a pair next: the next single comes forward
    postponed = PairBatchSampler([(0,), (1,), (2, 3)], batch_size=3, shuffle=False)
    assert list(postponed) == [0, 2, 3]  # taking (1,) first would leave the pair no room
    with pytest.raises(ValueError, match="even"):
        PairBatchSampler([(0, 1), (2, 3)], batch_size=3)
    with pytest.raises(ValueError, match="batch_size 1"):
        PairBatchSampler([(0, 1), (2,)], batch_size=1)
    with pytest.raises(ValueError, match="fill no batch"):
        PairBatchSampler([(0, 1), (2,)], batch_size=4)


@settings(max_examples=60, deadline=None)
@given(pairs=st.integers(0, 12), singles=st.integers(0, 12), batch_size=st.integers(2, 9), seed=st.integers(0, 3),
       mix=st.randoms(use_true_random=False))
def test_sampler_properties(pairs, singles, batch_size, seed, mix):
    units = [(2 * k, 2 * k + 1) for k in range(pairs)] + [(2 * pairs + i,) for i in range(singles)]
    mix.shuffle(units)
    rows = 2 * pairs + singles
    # the most batches the units can fill: even sizes lose at most an odd single, odd sizes need a single each
    most = (rows - singles % 2) // batch_size if batch_size % 2 == 0 else min(singles, rows // batch_size)
    try:
        sampler = PairBatchSampler(units, batch_size, seed=seed)
    except ValueError:
        assert most == 0
        return
    assert sampler.batches_per_epoch == most
    unit_of = {row: unit for unit in units for row in unit}
    epochs = []
    for _ in range(3):
        expected_len = len(sampler)
        rows = list(sampler)
        assert len(rows) == expected_len == most * batch_size
        assert len(set(rows)) == len(rows)
        for start in range(0, len(rows), batch_size):
            batch = rows[start:start + batch_size]
            for i, row in enumerate(batch):  # whole units, a pair's rows adjacent and in order
                unit = unit_of[row]
                if len(unit) == 2 and row == unit[0]:
                    assert batch[i + 1] == unit[1]
                elif len(unit) == 2:
                    assert i > 0 and batch[i - 1] == unit[0]
        epochs.append(rows)
    # resume from the state after any batch of epoch 1 gives the same rest of the run
    for cut in range(0, len(epochs[1]) + 1, batch_size):
        again = PairBatchSampler(units, batch_size, seed=seed)
        first, it = list(again), iter(again)
        assert first == epochs[0]
        head = [next(it) for _ in range(cut)]
        state = it.state_dict()
        resumed = PairBatchSampler(units, batch_size, seed=seed)
        resumed.load_state_dict(state)
        assert head + list(resumed) == epochs[1] and list(resumed) == epochs[2]


def test_recipe_yaml_data_section_builds_the_dataset_and_pair_loader(env):
    """The `data:` node of recipe/ivgr/config/ivgr_trainer.yaml (not hand-written overrides) drives the
    dataset and the pair sampler; ivgr.box_frame reaches the rows."""
    from hydra import compose, initialize_config_dir
    from verl.trainer.ppo.utils import create_rl_dataset
    from verl.utils.dataset.rl_dataset import collate_fn

    from recipe.ivgr.dataset import DualStreamDataset

    config_dir = os.path.join(os.path.dirname(__file__), "..", "recipe", "ivgr", "config")
    with initialize_config_dir(config_dir=os.path.abspath(config_dir), version_base=None):
        config = compose(config_name="ivgr_trainer", overrides=[
            "actor_rollout_ref.model.path=/nonexistent", f"data.train_batch_size={BATCH}",
            "data.dataloader_num_workers=0", "data.filter_overlong_prompts=false", "ivgr.box_frame=qwen3_vl",
            "data.image_patch_size=16", f"+data.cache_dir={env['tmp'] / 'verl_cache_yaml'}"])
    processor = env["processor"]
    ds = create_rl_dataset(env["files"], config.data, processor.tokenizer, processor, is_train=True, max_samples=-1)
    assert isinstance(ds, DualStreamDataset)
    item = ds[0]
    assert item["extra_info"]["box_frame"] == "qwen3_vl"
    # the yaml asks for the paper's 3,136..3,211,264 pixels; the processor's own max (1280*28*28) narrows it
    processor_max = processor.image_processor.size["longest_edge"]
    assert (item["extra_info"]["min_pixels"], item["extra_info"]["max_pixels"]) == (3136, min(3211264, processor_max))
    loader = build_train_dataloader(ds, config.data, collate_fn)
    for batch in _Fetcher(loader).batches(2 * len(loader)):
        _check_pairing(batch)


def test_split_is_refused_because_it_would_separate_pairs(ds):
    with pytest.raises(ValueError, match="two rows of a sample"):
        ds.split(2)
