"""Parsing of <think>/<answer>/<box>: tolerant syntax, invalid boxes counted, never an exception."""

import pytest

from reward_score.parsing import parse_boxes, parse_response


def test_strict_structure_splits_think_and_answer():
    parsed = parse_response("  <think>look left</think>\n<answer>B</answer>\n")
    assert parsed.structure_ok
    assert parsed.think == "look left"
    assert parsed.answer == "B"


@pytest.mark.parametrize(
    "text",
    [
        "preamble <think>a</think><answer>b</answer>",
        "<think>a</think> chatter <answer>b</answer>",
        "<think>a</think><answer>b</answer> trailing",
        "<think>a</think><answer>b</answer><answer>c</answer>",
        "<think>a<think>b</think><answer>c</answer>",
        "<think>a</think><answer>b",
        "<answer>b</answer><think>a</think>",
    ],
)
def test_structure_rejects_extra_text_duplicates_and_unclosed_tags(text):
    assert not parse_response(text).structure_ok


def test_tags_tolerate_inner_spaces_and_case():
    parsed = parse_response("< think >a</ THINK ><Answer>b< /answer>")
    assert parsed.structure_ok and parsed.answer == "b"


def test_answer_found_without_strict_structure():
    parsed = parse_response("I think so. <answer> 42 </answer> bye")
    assert not parsed.structure_ok
    assert parsed.answer == " 42 "
    assert parsed.think is None


def test_box_syntax_variants_all_parse():
    text = (
        "<box>[10,20,30,40]</box> <box>[ 10 , 20 , 30 , 40 ]</box> <box>[1.5, 2.5, 30.25, 40]</box>"
        '<box>{"bbox_2d": [5, 6, 7, 8], "label": "cat"}</box> <box>[-5, -6, 7, 8]</box> <box>[1e1,2e1,3e1,4e1]</box>'
    )
    boxes = parse_boxes(text)
    assert boxes.valid == (
        (10, 20, 30, 40), (10, 20, 30, 40), (1.5, 2.5, 30.25, 40), (5, 6, 7, 8), (-5, -6, 7, 8), (10, 20, 30, 40)
    )
    assert boxes.total == 6 and not boxes.invalid


@pytest.mark.parametrize(
    "payload, reason",
    [
        ("[1,2,3]", "arity"),
        ("[1,2,3,4,5]", "arity"),
        ("[nan,2,3,4]", "non_finite"),
        ("[1,2,inf,4]", "non_finite"),
        ("[1,2,1e400,4]", "non_finite"),
        ("[1,2,1e9,4]", "out_of_range"),
        ("[30,20,10,40]", "inverted"),
        ("[10,20,10,40]", "inverted"),
        ("[a,b,c,d]", "not_number"),
        ("left of the cat", "no_list"),
    ],
)
def test_invalid_boxes_are_counted_by_reason(payload, reason):
    boxes = parse_boxes(f"<box>{payload}</box>")
    assert boxes.valid == ()
    assert boxes.invalid == {reason: 1}
    assert boxes.total == 1


def test_boxes_beyond_limit_are_counted_not_parsed():
    text = "<box>[1,2,3,4]</box>" * 10
    boxes = parse_boxes(text, max_boxes=4)
    assert len(boxes.valid) == 4
    assert boxes.invalid["over_limit"] == 6


def test_strict_syntax_reproduces_official_regex():
    boxes = parse_boxes("<box>[10,20,30,40]</box><box>[10, 20, 30, 40]</box><box>[1.5,2,3,4]</box>", strict=True)
    assert boxes.valid == ((10, 20, 30, 40),)
    assert boxes.invalid["not_number"] == 2


def test_box_positions_tell_think_boxes_from_answer_boxes():
    text = "<think>x</think><answer><box>[1,2,3,4]</box></answer>"
    parsed = parse_response(text)
    boxes = parse_boxes(text)
    assert len(boxes.valid) == 1
    assert not boxes.any_within(parsed.think_span)


@pytest.mark.timeout(30)  # quadratic regex backtracking would take hours on these
def test_pathological_inputs_parse_in_linear_time():
    nasty = "<think>" + "</think><answer>" * 50_000 + "x" * 200_000
    assert not parse_response(nasty).structure_ok
    assert parse_boxes("<box>" * 100_000 + "[1,2,3,4]").total == 0
