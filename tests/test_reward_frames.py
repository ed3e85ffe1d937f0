"""Box frames: GT boxes land in exactly the frame the Qwen processors give the model."""

import pytest
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from reward_score.frames import resized_size, to_model_frame, to_original_pixels

# (width, height) of real benchmark/training images: V* 2246x1582, HR-Bench 4K/8K, VisDrone,
# COCO portrait, a thin banner, a tiny thinklite crop.
REAL_SIZES = [(2246, 1582), (3840, 2160), (7680, 4320), (1360, 765), (480, 640), (1920, 96), (27, 19)]
BOUNDS = [(3136, 1280 * 28 * 28), (3136, 4096 * 28 * 28), (256 * 28 * 28, 16384 * 28 * 28)]


def processor_seen_size(width, height, min_pixels, max_pixels, patch_size):
    """(width, height) of the resized image, read back from what the real image processor does."""
    processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch_size)
    grid = processor(images=[Image.new("RGB", (width, height))], return_tensors="np")["image_grid_thw"][0]
    return int(grid[2]) * patch_size, int(grid[1]) * patch_size


@pytest.mark.parametrize("size", REAL_SIZES)
@pytest.mark.parametrize("bounds", BOUNDS)
def test_qwen2_5_vl_frame_equals_processor_resize(size, bounds):
    assert resized_size(*size, "qwen2_5_vl", *bounds) == processor_seen_size(*size, *bounds, patch_size=14)


@pytest.mark.parametrize("size", REAL_SIZES)
def test_qwen3_vl_resize_uses_factor_32(size):
    bounds = (4 * 32 * 32, 1280 * 32 * 32)
    assert resized_size(*size, "qwen3_vl", *bounds) == processor_seen_size(*size, *bounds, patch_size=16)


def test_documented_example_800x1000():
    assert resized_size(800, 1000, "qwen2_5_vl", 3136, 1280 * 28 * 28) == (812, 1008)


def test_qwen2_5_vl_boxes_scale_to_resized_pixels():
    (box,) = to_model_frame([[100, 200, 400, 500]], (800, 1000), "qwen2_5_vl", 3136, 1280 * 28 * 28)
    assert box == pytest.approx((100 * 812 / 800, 200 * 1008 / 1000, 400 * 812 / 800, 500 * 1008 / 1000))


def test_qwen3_vl_boxes_are_relative_0_1000_whatever_the_bounds():
    for bounds in [(4096, 1280 * 32 * 32), (4096, 64 * 32 * 32)]:
        (box,) = to_model_frame([[0, 100, 400, 1000]], (800, 1000), "qwen3_vl", *bounds)
        assert box == pytest.approx((0, 100, 500, 1000))


@pytest.mark.parametrize("frame", ["qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("size", REAL_SIZES)
def test_round_trip_to_model_frame_and_back(frame, size):
    width, height = size
    boxes = [[0.1 * width, 0.2 * height, 0.7 * width, 0.9 * height], [0, 0, width, height]]
    there = to_model_frame(boxes, size, frame, 3136, 1280 * 28 * 28)
    back = to_original_pixels(there, size, frame, 3136, 1280 * 28 * 28)
    for original, restored in zip(boxes, back):
        assert restored == pytest.approx(original)


def test_bad_sizes_and_frames_raise_clear_errors():
    with pytest.raises(ValueError, match="positive"):
        resized_size(0, 10)
    with pytest.raises(ValueError, match="aspect ratio"):
        resized_size(10_000, 10)
    with pytest.raises(ValueError, match="unknown box_frame"):
        to_model_frame([[0, 0, 1, 1]], (10, 10), "llava")


def test_resize_comes_from_transformers_when_qwen_vl_utils_cannot_import():
    from reward_score.frames import resize_source

    try:
        import qwen_vl_utils  # noqa: F401
    except Exception:  # noqa: BLE001  (needs torchvision: absent on CPU machines)
        assert resize_source() == "transformers"
    else:
        assert resize_source() == "qwen_vl_utils"


def _qwen_vl_utils_smart_resize():
    """qwen_vl_utils' own smart_resize (what GPU nodes use), taken from the installed package's source:
    the module imports torchvision at the top, which CPU machines lack, but the function is plain maths."""
    import ast
    import importlib.util
    import math
    import os

    spec = importlib.util.find_spec("qwen_vl_utils")
    if spec is None:
        pytest.skip("qwen-vl-utils not installed (pip install --no-deps qwen-vl-utils)")
    path = os.path.join(spec.submodule_search_locations[0], "vision_process.py")
    tree = ast.parse(open(path, encoding="utf-8").read())
    wanted = {"smart_resize", "round_by_factor", "ceil_by_factor", "floor_by_factor"}
    import typing

    namespace = {"math": math, "os": os, "Optional": typing.Optional, "Tuple": typing.Tuple}
    for node in tree.body:  # module constants (MAX_RATIO, token bounds) and the resize functions
        constant = isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id.isupper()
                                                        for t in node.targets)
        if constant and isinstance(node.value, ast.Constant) or (isinstance(node, ast.FunctionDef)
                                                                  and node.name in wanted):
            exec(compile(ast.Module(body=[node], type_ignores=[]), path, "exec"), namespace)  # noqa: S102
    return namespace["smart_resize"]


@pytest.mark.parametrize("size", REAL_SIZES)
@pytest.mark.parametrize("bounds, factor, patch", [((3136, 1280 * 28 * 28), 28, 14), ((3136, 4096 * 28 * 28), 28, 14),
                                                    ((4 * 32 * 32, 1280 * 32 * 32), 32, 16)])
def test_qwen_vl_utils_resize_maths_equals_processor_grid_and_our_frame(size, bounds, factor, patch):
    smart_resize = _qwen_vl_utils_smart_resize()
    width, height = size
    new_h, new_w = smart_resize(height, width, factor, min_pixels=bounds[0], max_pixels=bounds[1])
    assert (new_w, new_h) == processor_seen_size(width, height, *bounds, patch_size=patch)
    frame = "qwen2_5_vl" if factor == 28 else "qwen3_vl"
    assert resized_size(width, height, frame, *bounds) == (new_w, new_h)


@pytest.mark.parametrize("size, bounds", [((32, 580), (3136, 12544)), ((580, 32), (3136, 12544)),
                                           ((40, 3000), (3136, 16 * 32 * 32)), ((800, 1000), (3136, 1003520))])
def test_resized_size_is_a_fixed_point_of_the_processors_resize(size, bounds):
    """A thin image under tight bounds changes size on a second smart-resize (a side clamped to the
    factor); the size the recipe resizes to must survive every later resize unchanged."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    for frame, factor in (("qwen2_5_vl", 28), ("qwen3_vl", 32)):
        width, height = resized_size(*size, frame, *bounds)
        again = smart_resize(height, width, factor=factor, min_pixels=bounds[0], max_pixels=bounds[1])
        assert again == (height, width), (frame, size, (width, height), again)
