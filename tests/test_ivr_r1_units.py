"""IVR-R1 pure parts: step segmentation, group screening, strict attribution parsing."""

import pytest

from recipe.ivr_r1.attribution import classify_failure, parse_attribution, parse_attribution_json
from recipe.ivr_r1.screening import ScreenSettings, screen_group, screened_share
from recipe.ivr_r1.segment import numbered, segment_steps


# ------------------------------------------------------------------ segmentation
def test_markers_win_in_auto_and_offsets_are_exact():
    think = "Intro line.\nStep 1: the cup is red.\nStep 2: so the answer is red.\n"
    steps = segment_steps(think)
    assert [s.text for s in steps] == ["Intro line.", "Step 1: the cup is red.", "Step 2: so the answer is red."]
    for s in steps:
        assert think[s.start:s.end] == s.text
    assert [s.index for s in steps] == [1, 2, 3]


def test_paragraphs_then_sentences():
    para = "First I look at the left.\n\nThen the right side. It has a dog.\n\n  Finally count.  "
    assert [s.text for s in segment_steps(para)] == [
        "First I look at the left.", "Then the right side. It has a dog.", "Finally count."]
    sent = "There are two cats. One is black! Is the other white? Yes it is"
    assert [s.text for s in segment_steps(sent)] == [
        "There are two cats.", "One is black!", "Is the other white?", "Yes it is"]
    assert [s.text for s in segment_steps(para, "sentence")][:2] == ["First I look at the left.", "Then the right side."]


def test_empty_and_bounded():
    assert segment_steps(None) == [] and segment_steps("  \n\n ") == []
    many = " ".join(f"Fact {i}." for i in range(10))
    steps = segment_steps(many, "sentence", max_steps=3)
    assert len(steps) == 3 and steps[-1].text.startswith("Fact 2.") and steps[-1].text.endswith("Fact 9.")
    assert numbered(steps[:2]) == "[1] Fact 0.\n[2] Fact 1."
    with pytest.raises(ValueError):
        segment_steps("x", "words")


# ------------------------------------------------------------------ screening
@pytest.mark.parametrize("qualify, correct, selected", [
    ("all", {0: True, 1: False, 2: False, 3: None}, (1, 2)),
    ("has_correct", {0: True, 1: False, 2: False}, (1, 2)),
    ("has_correct", {0: False, 1: False}, ()),
    ("all_wrong", {0: False, 1: False, 2: False}, (0, 1)),
    ("all_wrong", {0: True, 1: False}, ()),
])
def test_screen_group(qualify, correct, selected):
    s = screen_group(correct, ScreenSettings(qualify=qualify, cap_per_group=2))
    assert s.selected == selected
    assert set(s.reason) == set(correct)


def test_screen_reasons_cap_and_share():
    s = screen_group({0: False, 1: True, 2: False, 3: False, 4: None}, ScreenSettings("all", cap_per_group=1))
    assert s.selected == (0,)
    assert s.reason == {0: "selected", 1: "correct", 2: "over_cap", 3: "over_cap", 4: "undecided"}
    uncapped = screen_group({0: False, 1: False, 2: False}, ScreenSettings("all", cap_per_group=0))
    assert uncapped.selected == (0, 1, 2)
    assert screened_share([s, uncapped]) == pytest.approx(4 / 8)
    with pytest.raises(ValueError):
        ScreenSettings("some")


# ------------------------------------------------------------------ attribution parsing
@pytest.mark.parametrize("text, expected", [
    ('{"step": 2, "reason": "the cup is blue"}', (2, "the cup is blue")),
    ('```json\n{"step": 1, "reason": "x"}\n```', (1, "x")),
    ('{"step": null, "reason": "all fine"}', (None, "all fine")),
    ('<think>the cup is red</think><answer>{"step": 3, "reason": "x"}</answer>', (3, "x")),
    ('<answer>```json\n{"step": 1, "reason": "x"}\n```</answer>', (1, "x")),
    ('I checked every step.\n```json\n{"step": 2, "reason": "x"}\n```\nDone.', (2, "x")),
])
def test_parse_attribution_ok(text, expected):
    parsed = parse_attribution(text, 3)
    assert (parsed.step, parsed.reason) == expected


@pytest.mark.parametrize("text", [
    'The first wrong step is 2. {"step": 2, "reason": "x"}',  # prose around the object
    '{"step": "2", "reason": "x"}', '{"step": 2.0, "reason": "x"}', '{"step": true, "reason": "x"}',
    '{"step": 2}', '{"step": 2, "reason": "x", "confidence": 1}', '[2, "x"]', "", "Step 2",
    '{"step": 4, "reason": "x"}', '{"step": 0, "reason": "x"}', '{"step": -1, "reason": "x"}',
    '<answer>Step 2 is wrong</answer>',
    '```json\n{"step": 1, "reason": "x"}\n```\n```json\n{"step": 2, "reason": "y"}\n```',  # two fenced blocks
])
def test_parse_attribution_rejects(text):
    assert parse_attribution(text, 3) is None


def test_classify_failure():
    assert classify_failure('{"step": 7, "reason": "x"}', 3) == "out_of_range"
    assert classify_failure('{"step": 0, "reason": "x"}', 3) == "out_of_range"
    assert classify_failure("nonsense", 3) == "malformed"
    assert classify_failure(None, 3) == "malformed"
    assert parse_attribution_json('{"step": 7, "reason": "x"}').step == 7


def test_truncated_flawed_rollouts_are_skipped_before_the_cap():
    verdicts = {0: False, 1: False, 2: True, 3: False}
    s = screen_group(verdicts, ScreenSettings("all", cap_per_group=1), truncated={0, 2})
    assert s.selected == (1,) and s.reason == {0: "truncated", 1: "selected", 2: "correct", 3: "over_cap"}
    kept = screen_group(verdicts, ScreenSettings("all", cap_per_group=1, skip_truncated=False), truncated={0})
    assert kept.selected == (0,) and kept.reason[1] == "over_cap"
