"""SFT converters (iVGR-SFT-35K sharegpt records, generic JSONL) -> SFT Parquet, read from the consumer's
side: verl's own `MultiTurnSFTDataset` with the offline Qwen2.5-VL-style processor, the RL reward's box
frame (`reward_score.compute_score`), `data_prep.validate` / `data_prep.inspect`.

verl's SFT dataset resizes images through `qwen_vl_utils.fetch_image`, which imports torchvision (absent
on CPU boxes): the `fetch_image` fixture installs the stand-in of tests/sft_helpers.py where it is missing;
on a GPU node the real one runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep import generic_sft, ivgr_sft35k, validate
from data_prep.inspect import main as inspect_main
from data_prep.schema import Sample, to_row
from data_prep.images import ImageItem
from data_prep.prompts import record_messages
from data_prep.sft import SFT_SCHEMA

GROUNDED = "<think>The mug <box>[100,200,300,400]</box> is red.</think><answer>red</answer>"
OFFICIAL_GROUNDED = ("\nA conversation between user and assistant. The user asks a question... localize the object "
                     "with bounding box coordinates between <box> and </box>.")
OFFICIAL_TEXTUAL = "\nWhen the user asks a question, your response must include two parts: ..."


def _turns(human: str, gpt: str) -> list[dict]:
    return [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A small iVGR-SFT-35K-style release: sharegpt JSON array + images/ folder."""
    root = tmp_path_factory.mktemp("sft35k")
    (root / "images").mkdir()
    Image.new("RGB", (1000, 800), "white").save(root / "images" / "a.jpg")
    Image.new("RGB", (640, 480), "red").save(root / "images" / "b.png")
    # above the RL max_pixels (3,211,264) but below qwen_vl_utils' default (12,845,056): only the stored
    # bounds make verl's loader show it at the size the boxes were mapped to
    Image.new("RGB", (2400, 1800), "white").save(root / "images" / "big.jpg")
    (root / "images" / "broken.jpg").write_bytes(b"not an image")
    records = [
        {"id": "g1", "images": ["images/a.jpg"], "system": "You are a helpful assistant.",
         "conversations": _turns("<image>What colour is the mug?" + OFFICIAL_GROUNDED, GROUNDED)},
        {"id": "t1", "images": ["images/b.png"],
         "conversations": _turns("<image>How many cups are there?\nA. 2\nB. 3" + OFFICIAL_TEXTUAL,
                                 "<think>I count three cups on the table.</think><answer>B</answer>")},
        {"id": "m1", "images": ["images/b.png"],  # LLaMA-Factory's OpenAI flavour, instruction not recognised
         "messages": [{"role": "user", "content": "<image>Is it red?"},
                      {"role": "assistant", "content": "<think>The whole image is red.</think><answer>yes</answer>"}]},
        {"id": "bad_box", "images": ["images/b.png"],
         "conversations": _turns("<image>Where?",
                                 "<think>It <box>[100,200,3000,400]</box>.</think><answer>x</answer>")},
        {"id": "bad_format", "images": ["images/b.png"],
         "conversations": _turns("<image>Where?", "It is on the left. <answer>left</answer>")},
        {"id": "multi", "images": ["images/b.png"],
         "conversations": [*_turns("<image>A?", "<think>a</think><answer>a</answer>"),
                           *_turns("B?", "<think>b</think><answer>b</answer>")]},
        {"id": "two_placeholders", "images": ["images/b.png"],
         "conversations": _turns("<image><image>Where?", "<think>a</think><answer>a</answer>")},
        {"id": "missing", "images": ["images/nope.jpg"],
         "conversations": _turns("<image>Where?", "<think>a</think><answer>a</answer>")},
        {"id": "corrupt", "images": ["images/broken.jpg"],
         "conversations": _turns("<image>Where?", "<think>a</think><answer>a</answer>")},
        {"id": "g1", "images": ["images/a.jpg"], "conversations": _turns("<image>Again?", GROUNDED)},
        {"id": "empty_box", "images": ["images/a.jpg"],
         "conversations": _turns("<image>Where?", "<think>It is here <box></box>.</think><answer>x</answer>")},
        {"id": "g2", "images": ["images/big.jpg"],
         "conversations": _turns("<image>What colour is the mug?" + OFFICIAL_GROUNDED, GROUNDED)},
    ]
    (root / "ivgr_sft35k.json").write_text(json.dumps(records), encoding="utf-8")
    return root


def _convert(source: Path, out: Path, *extra: str) -> dict:
    # the fixture is mostly broken rows (8 of 12): below the default --min-keep-ratio 0.5
    assert ivgr_sft35k.main(["--input", str(source / "ivgr_sft35k.json"), "--out", str(out), "--quiet",
                             "--min-keep-ratio", "0.3", *extra]) == 0
    return json.loads(out.with_name(out.stem + ".summary.json").read_text())


def test_a_run_that_keeps_too_little_fails_and_writes_nothing(source, tmp_path):
    out = tmp_path / "sft.parquet"
    assert ivgr_sft35k.main(["--input", str(source / "ivgr_sft35k.json"), "--out", str(out), "--quiet"]) == 1
    assert not out.exists()


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft_out") / "sft.parquet"
    _convert(source, out)
    return out


@pytest.fixture(scope="module")
def fetch_image():
    """qwen_vl_utils.fetch_image, or a stand-in with its image behaviour where torchvision is missing."""
    from sft_helpers import fetch_image_available

    with fetch_image_available() as which:
        yield which


def _sft_dataset(path: Path, processor):
    from omegaconf import OmegaConf
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    # the keys scripts/sft_ivgr_7b.sh sets (verl's defaults for messages/images columns)
    config = OmegaConf.create({"max_length": 8192, "pad_mode": "no_padding", "truncation": "error",
                               "messages_key": "messages"})
    return MultiTurnSFTDataset([str(path)], processor.tokenizer, config, processor=processor)


# --------------------------------------------------------------------------- the converter
def test_counts_and_reject_reasons(converted):
    summary = json.loads(converted.with_name("sft.summary.json").read_text())
    rejects = [json.loads(line) for line in converted.with_name("sft.rejects.jsonl").read_text().splitlines()]
    assert summary["read"] == 12 and summary["written"] == 4 and summary["rejected"] == 8
    assert summary["streams"] == {"grounded": 2, "textual": 2}
    assert summary["data_sources"] == {"ivgr_sft35k/default": 4}
    assert summary["notes"] == {"official_instruction_not_found": 1}
    assert {r["row"].split(":", 1)[1]: r["reason"] for r in rejects} == {
        "[3]": "box_outside", "[4]": "format_invalid", "[5]": "multi_turn_unsupported",
        "[6]": "placeholder_mismatch", "[7]": "image_missing", "[8]": "image_corrupt", "[9]": "duplicate_id",
        "[10]": "box_malformed"}
    assert summary["max_pixels"] == 4096 * 28 * 28 and summary["min_pixels"] == 4 * 28 * 28


def test_prompts_are_the_rl_stage_prompts(converted, source):
    """The cold start sees exactly the prompt the RL dataset renders for the same question's record
    (data_prep.schema.to_row, data_prep.prompts.record_messages)."""
    rows = {r["sample_id"]: r for r in pq.read_table(converted).to_pylist()}
    grounded, textual = rows["ivgr_sft35k:g1"], rows["ivgr_sft35k:t1"]
    rl_grounded = to_row(Sample("x", "x", "What colour is the mug?", "red", [ImageItem(b"", "a.jpg")], (1000, 800),
                                [(100.0, 200.0, 300.0, 400.0)]))
    assert grounded["messages"][:2] == record_messages(rl_grounded, "grounded", "qwen2_5_vl")
    assert grounded["question"] == "What colour is the mug?" and grounded["answer"] == "red"
    rl_textual = to_row(Sample("y", "y", "How many cups are there?\nA. 2\nB. 3", "B", [ImageItem(b"", "b.png")],
                               (640, 480), [(1.0, 1.0, 9.0, 9.0)]))
    assert textual["messages"][:2] == record_messages(rl_textual, "textual", "qwen2_5_vl")
    assert "A conversation between" not in json.dumps(textual["messages"])  # official instruction removed
    assert rows["ivgr_sft35k:m1"]["question"] == "Is it red?"


def test_verl_sft_dataset_trains_on_the_response_only(converted, fetch_image):
    from data_prep.offline_processor import build_processor

    processor = build_processor(max_pixels=16384 * 28 * 28)  # wider than the stored bounds: they must win
    dataset = _sft_dataset(converted, processor)
    rows = pq.read_table(converted).to_pylist()
    assert len(dataset) == len(rows) == 4
    pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    for index, row in enumerate(rows):
        item = dataset[index]
        ids, mask = item["input_ids"], item["loss_mask"].bool()
        assert processor.tokenizer.decode(ids[mask]) == row["messages"][2]["content"] + "<|im_end|>\n"
        t, h, w = item["multi_modal_inputs"]["image_grid_thw"][0].tolist()
        assert (ids == pad).sum().item() == t * h * w // 4  # one image, expanded as the model expects
        assert processor.tokenizer.decode(ids[~mask]).count(row["messages"][1]["content"].split("\n\n")[-1]) == 1


def test_grounded_boxes_point_at_the_same_pixels_the_model_sees(converted, fetch_image):
    """The response's box is in pixels of the image as verl's SFT dataset feeds it (qwen2_5_vl frame), and the RL
    reward, given the source box as ground truth with the same bounds, scores it IoU ~1."""
    from data_prep.offline_processor import build_processor
    from reward_score import compute_score, parse_boxes

    processor = build_processor(max_pixels=16384 * 28 * 28)
    dataset = _sft_dataset(converted, processor)
    rows = pq.read_table(converted).to_pylist()
    grounded = [i for i, r in enumerate(rows) if r["stream"] == "grounded"]
    assert [rows[i]["image_size"] for i in grounded] == [[1000, 800], [2400, 1800]]
    for index in grounded:
        width, height = rows[index]["image_size"]
        _, grid_h, grid_w = dataset[index]["multi_modal_inputs"]["image_grid_thw"][0].tolist()
        seen_w, seen_h = grid_w * 14, grid_h * 14  # what the vision tower got
        response = rows[index]["messages"][2]["content"]
        (box,) = parse_boxes(response).valid
        expected = (100 * seen_w / width, 200 * seen_h / height, 300 * seen_w / width, 400 * seen_h / height)
        assert max(abs(a - b) for a, b in zip(box, expected)) <= 0.5 + 1e-9, (box, expected, seen_w, seen_h)
        image = rows[index]["images"][0]
        extra = {"stream": "grounded", "gt_boxes": [[100, 200, 300, 400]], "image_size": [width, height],
                 "box_frame": "qwen2_5_vl", "min_pixels": image["min_pixels"], "max_pixels": image["max_pixels"],
                 "question": rows[index]["question"]}
        result = compute_score("ivgr_sft35k/default", response, "red", extra)
        assert result["format"] == 1 and result["acc"] == 1 and result["iou"] > 0.99


def test_qwen3_frame_writes_0_to_1000(source, tmp_path):
    out = tmp_path / "q3.parquet"
    _convert(source, out, "--box-frame", "qwen3_vl")
    row = next(r for r in pq.read_table(out).to_pylist() if r["sample_id"] == "ivgr_sft35k:g1")
    assert "<box>[100,250,300,500]</box>" in row["messages"][2]["content"]
    assert "0-1000 scale" in row["messages"][1]["content"]
    assert row["images"][0]["max_pixels"] == _rl_yaml_bounds()[1]  # the RL stage's, not the frame's 4096 tokens


def test_failed_run_leaves_previous_output_untouched(source, tmp_path):
    out = tmp_path / "sft.parquet"
    _convert(source, out)
    before = out.read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "an array"}')
    with pytest.raises(SystemExit):
        ivgr_sft35k.main(["--input", str(bad), "--image-root", str(source), "--out", str(out), "--quiet"])
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "sft.parquet", "sft.rejects.jsonl",
                                                           "sft.summary.json"]


# --------------------------------------------------------------------------- generic JSONL
def test_generic_sft_lines(source, tmp_path, fetch_image):
    lines = [
        {"id": 1, "image": "images/a.jpg", "question": "Where is the mug?", "answer": "left",
         "response": "<think>The mug <box>[0.1,0.25,0.3,0.5]</box> is left.</think><answer>left</answer>",
         "box_format": "norm1"},
        {"id": 2, "image": "images/a.jpg", "question": "Colour?", "answer": "blue",
         "response": "<think>It looks red.</think><answer>red</answer>"},
        {"id": 3, "image": "images/a.jpg", "question": "Colour?", "stream": "textual",
         "response": "<think>The mug <box>[1,2,30,40]</box>.</think><answer>red</answer>"},
        {"id": 4, "image": "images/a.jpg", "question": "Colour?", "stream": "grounded",
         "response": "<think>It is red.</think><answer>red</answer>"},
        {"id": 5, "image": "images/a.jpg", "question": "Which one?", "choices": ["cat", "dog"], "answer": "B",
         "response": "<think>A dog sits there.</think><answer>B</answer>"},
    ]
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    out = tmp_path / "mine.parquet"
    assert generic_sft.main(["--input", str(data), "--image-root", str(source), "--out", str(out), "--name", "mine",
                             "--min-keep-ratio", "0.3", "--quiet"]) == 0
    rejects = {json.loads(line)["row"]: json.loads(line)["reason"]
               for line in out.with_name("mine.rejects.jsonl").read_text().splitlines()}
    assert rejects == {"mine.jsonl:2": "answer_mismatch", "mine.jsonl:3": "box_in_textual",
                       "mine.jsonl:4": "no_box_in_grounded", "mine.jsonl:6": "bad_json"}
    rows = {r["sample_id"]: r for r in pq.read_table(out).to_pylist()}
    assert set(rows) == {"mine:1", "mine:5"}
    assert "<box>[101,203,302,406]</box>" in rows["mine:1"]["messages"][2]["content"]  # 1000x800 -> 1008x812
    assert "Options:\nA. cat\nB. dog" in rows["mine:5"]["messages"][1]["content"]
    from data_prep.offline_processor import build_processor

    assert len(_sft_dataset(out, build_processor())) == 2


# --------------------------------------------------------------------------- validate / inspect
def test_validate_accepts_the_output_and_catches_broken_rows(converted, tmp_path):
    assert validate.validate(converted, decode="all").ok
    rows = pq.read_table(converted).to_pylist()
    rows[0]["messages"][2]["content"] = rows[0]["messages"][2]["content"].replace("[101,203,302,406]",
                                                                                  "[101,203,3020,406]")
    rows[1]["messages"][1]["content"] = "<image>" + rows[1]["messages"][1]["content"]
    rows[2]["images"][0]["min_pixels"] = None
    rows[2]["sample_id"] = rows[1]["sample_id"]
    broken = tmp_path / "broken.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=SFT_SCHEMA), broken)
    report = validate.validate(broken, decode="all")
    assert set(report.counts) == {"box_outside_frame", "placeholder_mismatch", "bad_pixel_bounds",
                                  "duplicate_sample_id"}
    assert validate.main([str(broken)]) == 1


def test_inspect_reports_streams_and_tokens(converted, capsys):
    assert inspect_main([str(converted), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["kind"] == "sft" and report["rows"] == 4
    assert report["streams"] == {"grounded": 2, "textual": 2}
    # 2400x1800 at <= 4096 tokens -> 2044x1540 = 73x55 merged patches = 4015 tokens
    assert report["image_tokens_first_image"]["max"] == 4015


# --------------------------------------------------------------------------- bad input and RL parity
def _png_with_broken_pixels(size=(10, 10)) -> bytes:
    """A PNG whose header (size, mode) and chunk layout read fine (IEND present, CRCs right) but whose
    deflate stream is garbage: PIL opens it and fails only when decoding pixels."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    at = data.find(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    payload = bytes(b ^ 0x5A if i >= 2 else b for i, b in enumerate(data[at + 4:at + 4 + length]))
    data[at + 4:at + 4 + length] = payload
    data[at + 4 + length:at + 8 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + payload) & 0xFFFFFFFF)
    return bytes(data)


def test_a_tiny_png_with_a_broken_pixel_stream_is_a_counted_reject(source, tmp_path):
    """10x10 (below the 28 px the processors need, so the converter upscales it): the upscale decodes the
    pixels and must turn the failure into a reject, in both converters."""
    (tmp_path / "tiny.png").write_bytes(_png_with_broken_pixels())
    with Image.open(tmp_path / "tiny.png") as image:
        assert image.size == (10, 10)  # the header reads
    Image.new("RGB", (64, 48), "blue").save(tmp_path / "ok.png")
    lines = [{"id": "ok", "image": "ok.png", "question": "Colour?", "response": "<think>Blue.</think><answer>blue</answer>"},
             {"id": "tiny", "image": "tiny.png", "question": "Colour?",
              "response": "<think>Red.</think><answer>red</answer>"}]
    (tmp_path / "lines.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "generic.parquet"
    assert generic_sft.main(["--input", str(tmp_path / "lines.jsonl"), "--out", str(out), "--quiet"]) == 0
    rejects = [json.loads(line) for line in out.with_name("generic.rejects.jsonl").read_text().splitlines()]
    assert [(r["row"], r["reason"]) for r in rejects] == [("lines.jsonl:2", "image_corrupt")]
    assert pq.read_table(out).num_rows == 1

    records = [{"id": "ok", "images": ["ok.png"], "conversations": _turns("<image>Colour?", lines[0]["response"])},
               {"id": "tiny", "images": ["tiny.png"], "conversations": _turns("<image>Colour?", lines[1]["response"])}]
    (tmp_path / "sft35k.json").write_text(json.dumps(records))
    out = tmp_path / "sft35k.parquet"
    assert ivgr_sft35k.main(["--input", str(tmp_path / "sft35k.json"), "--out", str(out), "--quiet"]) == 0
    summary = json.loads(out.with_name("sft35k.summary.json").read_text())
    assert summary["written"] == 1 and summary["reasons"] == {"image_corrupt": 1}


def test_nothing_kept_exits_non_zero_and_keeps_the_previous_output(source, tmp_path):
    (tmp_path / "tiny.png").write_bytes(_png_with_broken_pixels())
    line = {"id": "tiny", "image": "tiny.png", "question": "Colour?", "response": "<think>Red.</think><answer>red</answer>"}
    (tmp_path / "lines.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous")
    assert generic_sft.main(["--input", str(tmp_path / "lines.jsonl"), "--out", str(out), "--quiet",
                             "--min-keep-ratio", "0"]) == 1
    assert out.read_bytes() == b"previous"
    assert json.loads(out.with_name("out.failed.summary.json").read_text())["reasons"] == {"image_corrupt": 1}


def test_validate_decodes_every_image_of_a_row(converted, tmp_path):
    """verl's SFT dataset opens every image of a row: a corrupt second image must fail `--decode all`."""
    rows = pq.read_table(converted).to_pylist()
    row = rows[0]
    row["images"] = [row["images"][0], {**row["images"][0], "bytes": _png_with_broken_pixels((64, 64))}]
    row["messages"][1]["content"] = "<image>" + row["messages"][1]["content"]
    broken = tmp_path / "two_images.parquet"
    pq.write_table(pa.Table.from_pylist([row], schema=SFT_SCHEMA), broken)
    report = validate.validate(broken, decode="all")
    assert set(report.counts) == {"image_corrupt"} and "image 1" in report.examples["image_corrupt"][0]


def _rl_yaml_bounds(frame: str = "qwen3_vl") -> tuple[int, int]:
    """What the RL launch composes for that family: its model group's data.ivgr_min/max_pixels."""
    from omegaconf import OmegaConf

    group = {"qwen2_5_vl": "qwen2_5_vl_7b", "qwen3_vl": "qwen3_vl_8b"}[frame]
    config = OmegaConf.load(Path(__file__).resolve().parents[1] / "recipe" / "ivgr" / "config" / "model" /
                            f"{group}.yaml")
    assert config.ivgr.box_frame == frame
    return config.data.ivgr_min_pixels, config.data.ivgr_max_pixels


@pytest.mark.parametrize("frame", ["qwen2_5_vl", "qwen3_vl"])
def test_pixel_bounds_are_the_rl_stages_for_both_families(source, tmp_path, frame):
    """The RL dataset resizes with data.ivgr_min/max_pixels of the family's model group: so must SFT."""
    out = tmp_path / f"{frame}.parquet"
    _convert(source, out, "--box-frame", frame)
    bounds = {(i["min_pixels"], i["max_pixels"]) for r in pq.read_table(out).to_pylist() for i in r["images"]}
    assert bounds == {_rl_yaml_bounds(frame)}


def test_single_stream_rows_get_the_rl_single_instruction(source, tmp_path):
    line = {"id": "s", "image": "images/a.jpg", "question": "What is 2 + 3?", "stream": "single",
            "response": "<think>Two plus three is five.</think><answer>5</answer>"}
    (tmp_path / "single.jsonl").write_text(json.dumps(line) + "\n")
    out = tmp_path / "single.parquet"
    assert generic_sft.main(["--input", str(tmp_path / "single.jsonl"), "--image-root", str(source), "--out", str(out),
                             "--quiet"]) == 0
    (row,) = pq.read_table(out).to_pylist()
    from reward_score.streams import streams_of

    rl = to_row(Sample("x", "x", "What is 2 + 3?", "5", [ImageItem(b"", "a.jpg")], (1000, 800), []))
    assert rl["kind"] == "single" and streams_of("single") == ("single",) and row["stream"] == "single"
    assert row["messages"][:2] == record_messages(rl, "single", "qwen2_5_vl")  # what the RL dataset shows it
    assert validate.validate(out, decode="all").ok


def test_inspect_renders_sft_rows_with_the_responses_boxes(converted, tmp_path, capsys):
    gallery = tmp_path / "gallery"
    assert inspect_main([str(converted), "--render", "4", str(gallery)]) == 0
    page = (gallery / "index.html").read_text()
    rows = pq.read_table(converted).to_pylist()
    pngs = sorted(gallery.glob("*.png"))
    assert len(pngs) == 4 and page.count("class='row'") == 4
    assert "What colour is the mug?" in page and "&lt;answer&gt;red&lt;/answer&gt;" in page  # the conversation
    g1 = next(r for r in rows if r["sample_id"] == "ivgr_sft35k:g1")
    with Image.open(gallery / "ivgr_sft35k_g1.png") as image:  # the source box [100,200,300,400] of a.jpg, drawn
        assert image.size == tuple(g1["image_size"])
        rgb = image.convert("RGB")
        assert any(rgb.getpixel((x, 300)) == (255, 0, 255) for x in range(98, 104))  # left edge
        assert any(rgb.getpixel((200, y)) == (255, 0, 255) for y in range(398, 404))  # bottom edge
        assert rgb.getpixel((200, 300)) != (255, 0, 255) and rgb.getpixel((50, 300)) != (255, 0, 255)
