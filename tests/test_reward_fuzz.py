"""Property-based fuzzing: adversarial rollouts never raise and every score stays finite and in range."""

import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reward_score import compute_score, parse_boxes, parse_response

RANGES = {"grounded": 4.0, "textual": 2.0, "single": 2.5}  # max score per stream at default weights
BOUNDED = {"format", "acc", "acc_undecided", "iou", "box_valid", "consistency", "gt_error"}

number = st.one_of(
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x1F", "１２", "٣", "", " ", "1_000", "--3"]),
)
box = st.one_of(
    st.lists(number, min_size=0, max_size=6).map(lambda xs: "<box>[" + ",".join(xs) + "]</box>"),
    st.lists(number, min_size=4, max_size=4).map(lambda xs: '<box>{"bbox_2d": [' + ", ".join(xs) + "]}</box>"),
    st.sampled_from(["<box>", "</box>", "<box></box>", "<box>[1,2,3,4]", "<box>[[1,2,3,4]]</box>"]),
)
fragment = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["<think>", "</think>", "<answer>", "</answer>", "< think >", "</ answer>", "<", ">", "/",
                     "\\boxed{", "}", "$", "A", "(B)", "yes", "no", "3", "½", "𝟘", "\u202e", "\x00"]),
    box,
)
rollout = st.lists(fragment, max_size=60).map("".join)
extra = st.fixed_dictionaries(
    {
        "stream": st.sampled_from(["grounded", "textual", "single"]),
        "gt_boxes": st.lists(st.lists(st.floats(-1e6, 1e6), min_size=4, max_size=4), max_size=4),
        "image_size": st.one_of(st.tuples(st.integers(-5, 5000), st.integers(-5, 5000)), st.none()),
        "box_frame": st.sampled_from(["qwen2_5_vl", "qwen3_vl"]),
        "answer_type": st.sampled_from([None, "choice", "yes_no", "number", "math", "text", "bogus"]),
    }
)


def check(result, stream):
    assert all(math.isfinite(v) for v in result.values()), result
    assert 0.0 <= result["score"] <= RANGES[stream] + 1e-9, result
    for key in BOUNDED:
        assert 0.0 <= result[key] <= 1.0, (key, result)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=rollout, gt=st.text(max_size=20), info=extra)
def test_compute_score_is_total_on_adversarial_text(text, gt, info):
    check(compute_score("fuzz", text, gt, info), info["stream"])


@settings(max_examples=200, deadline=None)
@given(text=rollout)
def test_parsers_never_raise(text):
    parsed = parse_response(text)
    boxes = parse_boxes(text)
    assert boxes.total >= len(boxes.valid)
    assert all(math.isfinite(c) for b in boxes.valid for c in b)
    # an independent statement of the structure rule: the text is exactly one think block and one
    # answer block (tags with inner spaces/case tolerated), nothing but whitespace around them
    tag = r"<\s{0,8}/?\s{0,8}(?:think|answer)\s{0,8}>"
    reference = re.fullmatch(r"\s*<\s{0,8}think\s{0,8}>((?:(?!" + tag + r").)*)<\s{0,8}/\s{0,8}think\s{0,8}>\s*"
                             r"<\s{0,8}answer\s{0,8}>((?:(?!" + tag + r").)*)<\s{0,8}/\s{0,8}answer\s{0,8}>\s*",
                             text, re.IGNORECASE | re.DOTALL)
    ok = reference is not None
    assert parsed.structure_ok == ok, text
    if ok:
        assert (parsed.think, parsed.answer) == (reference.group(1), reference.group(2))


@pytest.mark.parametrize("stream", ["grounded", "textual", "single"])
def test_ten_thousand_boxes(stream):
    text = "<think>" + "<box>[10, 10, 50, 50]</box>" * 10_000 + "</think><answer>A</answer>"
    info = {"stream": stream, "gt_boxes": [[10, 10, 50, 50]], "image_size": [800, 600]}
    result = compute_score("fuzz", text, "A", info)
    check(result, stream)
    if stream == "grounded":
        assert result["num_boxes"] == 10_000 and result["box_valid"] < 0.01


@pytest.mark.parametrize("filler", ["x", "é", "<", "<think>", "[1,2,3,4]", "9" * 50])
def test_one_megabyte_responses(filler):
    text = "<think>" + filler * (1_000_000 // len(filler)) + "</think><answer>" + "7" * 5000 + "</answer>"
    for stream in RANGES:
        check(compute_score("fuzz", text, "7", {"stream": stream, "gt_boxes": [[1, 1, 5, 5]], "image_size": [9, 9]}),
              stream)


def test_huge_numbers_in_answers_and_boxes():
    text = "<think><box>[1e308, 1e308, 1e309, 1e309]</box><box>[0,0," + "9" * 400 + ",5]</box></think><answer>" + \
        "9" * 400 + "</answer>"
    check(compute_score("fuzz", text, "9" * 400, {"stream": "grounded", "gt_boxes": [[0, 0, 5, 5]],
                                                   "image_size": [10, 10]}), "grounded")
