"""data_prep.subset: the first N samples of a record file, readable by the recipe's dataset from another folder."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from data_prep import generic, subset


def _path_mode_set(tmp_path: Path, samples: int = 6) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    lines = []
    for i in range(samples):
        Image.new("RGB", (300, 200), (30 * i, 90, 160)).save(images / f"{i}.png")
        lines.append(json.dumps({"id": str(i), "image": f"{i}.png", "question": f"Where is thing {i}?",
                                 "answer": "left", "boxes": [[20, 30, 120, 130]]}))
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "data" / "train.parquet"
    assert generic.main(["--input", str(tmp_path / "in.jsonl"), "--image-root", str(images), "--out", str(out),
                         "--quiet"]) == 0
    return out


def test_the_subset_keeps_the_first_rows_and_its_images_resolve_from_another_folder(tmp_path):
    from omegaconf import OmegaConf

    from data_prep.offline_processor import build_processor
    from recipe.ivgr.dataset import DualStreamDataset

    source = _path_mode_set(tmp_path)
    copy = tmp_path / "elsewhere" / "deep" / "train.parquet"
    assert subset.main(["--input", str(source), "--num", "4", "--out", str(copy)]) == 0
    assert pq.read_table(copy, columns=["sample_id"]).column(0).to_pylist() == [f"generic:{i}" for i in range(4)]
    processor = build_processor(min_pixels=3136, max_pixels=12544)
    config = OmegaConf.create({"prompt_key": "prompt", "image_key": "images", "max_prompt_length": 4096,
                               "truncation": "error", "filter_overlong_prompts": False, "return_raw_chat": True,
                               "ivgr_shuffle": False, "ivgr_min_pixels": 3136, "ivgr_max_pixels": 12544})
    dataset = DualStreamDataset(data_files=[str(copy)], tokenizer=processor.tokenizer, config=config,
                                processor=processor)
    assert len(dataset) == 8  # 4 grounded samples, two streams each
    row = dataset[0]
    images = [item["image"] for message in row["raw_prompt"] for item in message["content"]
              if isinstance(item, dict) and item.get("type") == "image"]
    assert images and images[0].size[0] > 0


def test_an_empty_or_unreadable_input_publishes_nothing(tmp_path, capsys):
    source = _path_mode_set(tmp_path, 1)
    empty = tmp_path / "empty.parquet"
    pq.write_table(pq.read_table(source).slice(0, 0), empty)
    assert subset.main(["--input", str(empty), "--num", "3", "--out", str(tmp_path / "o.parquet")]) == 2
    assert "has no rows" in capsys.readouterr().err and not (tmp_path / "o.parquet").exists()
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    assert subset.main(["--input", str(tmp_path / "junk.parquet"), "--num", "3",
                        "--out", str(tmp_path / "o.parquet")]) == 2
    assert "cannot read" in capsys.readouterr().err and not list(tmp_path.glob(".o.parquet*"))
