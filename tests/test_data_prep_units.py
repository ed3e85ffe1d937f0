"""Unit tests of data_prep's building blocks: boxes, image paths and sizes, prompts, offline processor."""

from __future__ import annotations

import io
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from data_prep import prompts
from data_prep.boxes import BoxError, check_box, prepare_boxes, to_pixels
from data_prep.images import (
    ImageError,
    safe_relative_path,
    size_of_bytes,
    size_of_file,
    upscale_to_min_side,
)


def _png(size=(64, 48), colour=(10, 200, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


# -- boxes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, raw, expected", [
    ("xyxy", [10, 20, 110, 220], (10, 20, 110, 220)),
    ("xywh", [10, 20, 100, 200], (10, 20, 110, 220)),
    ("norm1", [0.1, 0.1, 0.5, 0.5], (40, 30, 200, 150)),
    ("norm1000", [100, 100, 500, 500], (40, 30, 200, 150)),
])
def test_box_formats_convert_to_original_pixels(fmt, raw, expected):
    assert prepare_boxes([raw], fmt, (400, 300)) == [pytest.approx(expected)]


@pytest.mark.parametrize("fmt, raw, reason", [
    ("xyxy", [100, 10, 10, 100], "box_inverted"),
    ("xyxy", [10, 10, 10.5, 100], "box_degenerate"),
    ("xyxy", [10, 10, 10, 100], "box_degenerate"),
    ("xyxy", [10, 10, 1000, 100], "box_outside"),
    ("xyxy", [-50, 10, 100, 100], "box_outside"),
    ("xyxy", [0.1, 0.2, 0.5, 0.6], "box_looks_normalized"),
    ("xyxy", [1, 2, 3], "box_malformed"),
    ("xyxy", [1, 2, float("nan"), 4], "box_malformed"),
    ("xyxy", ["a", 2, 3, 4], "box_malformed"),
    ("norm1", [0.1, 0.2, 5, 0.6], "box_wrong_frame"),
    ("norm1000", [100, 100, 1500, 500], "box_wrong_frame"),
    ("cxcywh", [1, 2, 3, 4], "box_format_unknown"),
])
def test_bad_boxes_have_reasons(fmt, raw, reason):
    with pytest.raises(BoxError) as err:
        prepare_boxes([raw], fmt, (400, 300))
    assert err.value.reason == reason


def test_box_clipping_tolerance():
    # 1% of 400 = 4 px beyond the right edge is clipped; 10 px is rejected
    assert check_box([390, 0, 404, 10], (400, 300)) == (390, 0, 400, 10)
    assert check_box([-2, -2, 10, 10], (400, 300)) == (0, 0, 10, 10)
    with pytest.raises(BoxError):
        check_box([390, 0, 410, 10], (400, 300))
    # integer pixel boxes in [0, 1] are legal (a 1-px box at the corner), not "normalized"
    assert prepare_boxes([[0, 0, 1, 1]], "xyxy", (400, 300)) == [(0, 0, 1, 1)]


def test_to_pixels_keeps_floats():
    assert to_pixels([0.25, 0.5, 0.75, 1.0], "norm1", (3, 5)) == pytest.approx((0.75, 2.5, 2.25, 5.0))


# -- images -----------------------------------------------------------------------------------
def test_safe_relative_path_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.png").write_bytes(_png())
    (tmp_path / "outside.png").write_bytes(_png())
    os.symlink(tmp_path / "outside.png", root / "link.png")
    assert safe_relative_path("sub/./a.png", root)[0] == "sub/a.png"
    assert safe_relative_path("sub/../sub/a.png", root)[0] == "sub/a.png"
    for path, reason in [("/etc/passwd", "image_path_absolute"), ("../outside.png", "image_path_escapes_root"),
                         ("sub/../../outside.png", "image_path_escapes_root"), ("link.png", "image_path_escapes_root"),
                         ("http://x/y.png", "image_path_url"), ("file:///etc/passwd", "image_path_url"),
                         ("C:\\images\\a.png", "image_path_absolute")]:
        with pytest.raises(ImageError) as err:
            safe_relative_path(path, root)
        assert err.value.reason == reason, path


def test_image_sizes_and_failures(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(_png((64, 48)))
    assert size_of_file(good) == (64, 48)
    assert size_of_bytes(_png((30, 40))) == (30, 40)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "junk.png").write_bytes(b"this is not an image")
    cases = [(tmp_path / "missing.png", "image_missing"), (tmp_path / "empty.png", "image_empty"),
             (tmp_path / "junk.png", "image_corrupt")]
    for path, reason in cases:
        with pytest.raises(ImageError) as err:
            size_of_file(path)
        assert err.value.reason == reason
    with pytest.raises(ImageError) as err:
        size_of_bytes(b"")
    assert err.value.reason == "image_empty"
    skinny = io.BytesIO()
    Image.new("RGB", (4000, 10)).save(skinny, format="PNG")
    with pytest.raises(ImageError) as err:
        size_of_bytes(skinny.getvalue())
    assert err.value.reason == "image_aspect_ratio"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_truncated_image_is_caught_without_full_decode(tmp_path, fmt):
    """A file cut in half: PIL's full decode fails on it (the oracle), and so does the default
    header + end-marker check; the complete file passes both."""
    buffer = io.BytesIO()
    image = Image.effect_noise((256, 256), 50).convert("RGB")
    (image.convert("P") if fmt == "GIF" else image).save(buffer, format=fmt)
    whole = buffer.getvalue()
    full, cut = tmp_path / f"full.{fmt.lower()}", tmp_path / f"cut.{fmt.lower()}"
    full.write_bytes(whole)
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(OSError):
        Image.open(cut).load()
    assert size_of_file(full) == (256, 256) and size_of_bytes(whole) == (256, 256)
    for check in (lambda: size_of_file(cut), lambda: size_of_bytes(cut.read_bytes()),
                  lambda: size_of_file(cut, decode=True)):
        with pytest.raises(ImageError) as err:
            check()
        assert err.value.reason in ("image_truncated", "image_corrupt")
    if fmt != "WEBP":  # PIL already refuses to open the cut WebP (image_corrupt)
        with pytest.raises(ImageError) as err:
            size_of_file(cut)
        assert err.value.reason == "image_truncated"


def test_jpeg_with_bytes_after_its_end_marker_is_complete(tmp_path):
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buffer, format="JPEG")
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(buffer.getvalue() + b"\0" * 100)
    Image.open(padded).load()  # PIL decodes it: it is a good file
    assert size_of_file(padded) == (64, 64)


def test_upscale_tiny_image_scales_boxes_consistently():
    data, size, sx, sy = upscale_to_min_side(_png((20, 10)), (20, 10))
    assert size == (56, 28) and min(size) >= 28
    assert Image.open(io.BytesIO(data)).size == size
    assert (sx, sy) == (56 / 20, 28 / 10)


# -- prompts ----------------------------------------------------------------------------------
def test_prompt_layout_images_first_instruction_last():
    grounded = prompts.grounded_messages("What colour is the mug?", ["red", "blue"], 2, "qwen2_5_vl")
    textual = prompts.textual_messages("What colour is the mug?", ["red", "blue"], 2)
    assert grounded[0] == textual[0] == {"role": "system", "content": prompts.SYSTEM_PROMPT}
    g, t = grounded[1]["content"], textual[1]["content"]
    assert g.startswith("<image><image>What colour is the mug?\nOptions:\nA. red\nB. blue\n\n")
    assert g.endswith(prompts.GROUNDED_INSTRUCTIONS["qwen2_5_vl"]) and t.endswith(prompts.TEXTUAL_INSTRUCTION)
    common = os.path.commonprefix([g, t])
    assert len(common) > len(g) - len(prompts.GROUNDED_INSTRUCTIONS["qwen2_5_vl"])  # instructions share an opening
    assert "<box>" in g and "<box>" not in t
    assert prompts.count_placeholders(grounded) == 2


def test_prompt_wording_follows_the_box_frame():
    qwen25 = prompts.GROUNDED_INSTRUCTIONS["qwen2_5_vl"]
    qwen3 = prompts.GROUNDED_INSTRUCTIONS["qwen3_vl"]
    assert "pixels" in qwen25 and "0-1000" not in qwen25
    assert "0-1000" in qwen3 and "pixels" not in qwen3
    with pytest.raises(ValueError):
        prompts.grounded_messages("q", None, 1, "qwen2_vl")


def test_clean_question_removes_placeholders():
    assert prompts.clean_question("<image>\n What is <image>this?  ") == "What is this?"


# -- offline processor ------------------------------------------------------------------------
def test_offline_processor_expands_image_tokens():
    from data_prep.offline_processor import QWEN_SPECIAL_TOKENS, build_processor, build_tokenizer

    tokenizer = build_tokenizer()
    assert build_tokenizer() is tokenizer  # cached
    for token in QWEN_SPECIAL_TOKENS:
        assert len(tokenizer(token)["input_ids"]) == 1, token
    processor = build_processor(max_pixels=1280 * 28 * 28)
    image = Image.new("RGB", (812, 1008))
    messages = prompts.to_content_lists(prompts.textual_messages("q?", None, 1), [image])
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert "<|vision_start|><|image_pad|><|vision_end|>q?" in text and text.endswith("<|im_start|>assistant\n")
    out = processor(text=[text], images=[image])
    pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert list(out["image_grid_thw"][0]) == [1, 1008 // 14, 812 // 14]
    assert list(out["input_ids"][0]).count(pad) == (1008 // 28) * (812 // 28)


# -- property: every declared format lands on the same ORIGINAL-pixel box ----------------------
@settings(max_examples=200, deadline=None)
@given(width=st.integers(8, 8000), height=st.integers(8, 8000), data=st.data())
def test_formats_agree_on_original_pixels(width, height, data):
    x1 = data.draw(st.floats(0, width - 2))
    y1 = data.draw(st.floats(0, height - 2))
    # sides >= 2 px: a box of fractional pixels all within [0, 1] is refused as "looks normalized"
    x2 = data.draw(st.floats(x1 + 2, width))
    y2 = data.draw(st.floats(y1 + 2, height))
    expected = pytest.approx((x1, y1, x2, y2), abs=1e-6 * max(width, height))
    assert prepare_boxes([[x1, y1, x2 - x1, y2 - y1]], "xywh", (width, height)) == [expected]
    assert prepare_boxes([[x1 / width, y1 / height, x2 / width, y2 / height]], "norm1", (width, height)) == [expected]
    scaled = [1000 * x1 / width, 1000 * y1 / height, 1000 * x2 / width, 1000 * y2 / height]
    assert prepare_boxes([scaled], "norm1000", (width, height)) == [expected]
    (box,) = prepare_boxes([[x1, y1, x2, y2]], "xyxy", (width, height))
    assert box == expected and 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height


def test_transparent_pixels_decode_to_white_as_in_qwen_vl_utils():
    import io as _io

    from PIL import Image as _Image

    from data_prep.images import open_image

    rgba = _Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.putpixel((0, 0), (0, 0, 255, 255))
    buffer = _io.BytesIO()
    rgba.save(buffer, format="PNG")
    image = open_image({"bytes": buffer.getvalue(), "path": None}, None)
    assert image.mode == "RGB"
    assert image.getpixel((1, 1)) == (255, 255, 255)  # fully transparent red -> white background
    assert image.getpixel((0, 0)) == (0, 0, 255)
