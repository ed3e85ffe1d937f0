"""Tool-mode crops: model frame -> original pixels, clipping, union, enlargement, empty crops."""

from __future__ import annotations

import pytest
from PIL import Image, ImageDraw

from recipe.ivgr.eval.crops import crop_images, default_min_side, plan_crops
from reward_score.frames import resized_size, to_model_frame

BOUNDS = (4 * 28 * 28, 1280 * 28 * 28)


def test_boxes_map_back_through_the_frame_module():
    size = (2000, 1500)  # resized for the model, so the model frame differs from original pixels
    rw, rh = resized_size(*size, "qwen2_5_vl", *BOUNDS)
    assert (rw, rh) != size
    gt = [(400.0, 300.0, 800.0, 600.0)]
    model_box = to_model_frame(gt, size, "qwen2_5_vl", *BOUNDS)
    plan = plan_crops(model_box, size, "qwen2_5_vl", *BOUNDS, include=("each",))
    assert plan.boxes_original[0] == pytest.approx(gt[0])
    assert plan.regions == [(400, 300, 800, 600)] and plan.kinds == ["box"]
    assert (plan.outside, plan.empty, plan.enlarged) == (0, 0, 0)


def test_qwen3_frame_is_relative_1000():
    plan = plan_crops([(100.0, 200.0, 500.0, 600.0)], (3000, 1000), "qwen3_vl", include=("each",))
    assert plan.regions == [(300, 200, 1500, 600)]
    assert default_min_side("qwen3_vl") == 32 and default_min_side("qwen2_5_vl") == 28


def test_each_union_dedupe_and_truncation():
    size = (1000, 800)
    boxes = [(10.0, 10.0, 110.0, 110.0), (500.0, 400.0, 600.0, 500.0), (700.0, 100.0, 800.0, 200.0)]
    model = to_model_frame(boxes, size, "qwen2_5_vl", *BOUNDS)
    both = plan_crops(model, size, "qwen2_5_vl", *BOUNDS)
    assert both.kinds == ["box", "box", "box", "union"]
    assert both.regions[-1] == (10, 10, 800, 500)
    union = plan_crops(model, size, "qwen2_5_vl", *BOUNDS, include=("union",))
    assert union.regions == [(10, 10, 800, 500)] and union.kinds == ["union"]
    capped = plan_crops(model, size, "qwen2_5_vl", *BOUNDS, max_crops=2)
    assert capped.kinds == ["box", "box", "union"] and capped.truncated == 1
    assert capped.regions[-1] == (10, 10, 800, 500)  # the union still covers the dropped box
    single = plan_crops(model[:1], size, "qwen2_5_vl", *BOUNDS)
    assert single.regions == [(10, 10, 110, 110)] and single.duplicates == 1  # box == union: kept once


def test_outside_boxes_are_clipped_and_disjoint_ones_give_no_crop():
    size = (400, 300)  # below max_pixels: model frame = 392 x 308 after the 28-multiple rounding
    rw, rh = resized_size(*size, "qwen2_5_vl", *BOUNDS)
    boxes = [(-50.0, -20.0, 100.0, 100.0),  # reaches beyond the top-left corner: clipped
             (rw + 10.0, 10.0, rw + 60.0, 50.0),  # entirely right of the image: empty
             (200.0, 150.0, 260.0, 200.0)]
    plan = plan_crops(boxes, size, "qwen2_5_vl", *BOUNDS, include=("each",))
    assert plan.outside == 2 and plan.empty == 1
    assert len(plan.regions) == 2 and plan.regions[0][:2] == (0, 0)
    assert all(0 <= x1 < x2 <= 400 and 0 <= y1 < y2 <= 300 for x1, y1, x2, y2 in plan.regions)
    nothing = plan_crops([(rw + 10.0, 10.0, rw + 60.0, 50.0)], size, "qwen2_5_vl", *BOUNDS)
    assert nothing.regions == [] and nothing.empty == 1
    assert plan_crops([], size, "qwen2_5_vl", *BOUNDS).regions == []


def test_small_and_thin_crops_are_enlarged_inside_the_image():
    size = (1000, 1000)
    model = to_model_frame([(500.0, 500.0, 503.0, 504.0), (0.0, 0.0, 2.0, 2.0), (100.0, 300.0, 900.0, 301.0)],
                           size, "qwen2_5_vl", *BOUNDS)
    plan = plan_crops(model, size, "qwen2_5_vl", *BOUNDS, include=("each",), max_aspect=50)
    tiny, corner, thin = plan.regions
    assert tiny[2] - tiny[0] >= 28 and tiny[3] - tiny[1] >= 28
    assert tiny[0] <= 500 and tiny[2] >= 503  # still covers the box, centred on it
    assert corner[:2] == (0, 0) and corner[2] >= 28 and corner[3] >= 28  # shifted inside, not cut
    assert (thin[2] - thin[0]) / (thin[3] - thin[1]) <= 50
    assert plan.enlarged == 3
    with pytest.raises(ValueError):
        plan_crops(model, size, "qwen2_5_vl", *BOUNDS, include=("everything",))


def test_crop_pixels_come_from_the_original_image():
    image = Image.new("RGB", (1600, 1200), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((600, 500, 679, 579), fill=(0, 0, 255))
    model = to_model_frame([(600.0, 500.0, 680.0, 580.0)], image.size, "qwen2_5_vl", *BOUNDS)
    plan = plan_crops(model, image.size, "qwen2_5_vl", *BOUNDS, include=("each",))
    (crop,) = crop_images(image, plan, 28)
    assert crop.size == (80, 80)  # full resolution: the crop is not downscaled with the image
    colours = crop.getcolors(maxcolors=10_000)
    blue = sum(count for count, rgb in colours if rgb == (0, 0, 255))
    assert blue / (80 * 80) > 0.95


def test_crops_of_a_tiny_image_are_upscaled():
    image = Image.new("RGB", (20, 12), (10, 200, 10))
    plan = plan_crops([(0.0, 0.0, 10.0, 10.0)], image.size, "qwen3_vl", include=("each",))
    assert plan.regions == [(0, 0, 20, 12)]  # grown to the whole (too small) image
    (crop,) = crop_images(image, plan, 32)
    assert min(crop.size) >= 32 and crop.size[0] > crop.size[1]
