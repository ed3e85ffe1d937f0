"""Answer extraction and matching (letters and option texts), lenient rules, IoU of boxes."""

from __future__ import annotations

import pytest

from recipe.ivgr.eval.scoring import box_metrics, extract_answer, in_judge_scope, judge_reference, score_answer

# shown order after a shuffle: the correct option "blue" is shown as C
MC = {"answer_type": "choice", "choices": ["red", "green", "blue", "dark blue"], "answer": "C", "answer_text": "blue"}
YES = {"answer_type": "yes_no", "answer": "yes", "choices": None}
NUM = {"answer_type": "number", "answer": "2", "choices": None}
TEXT = {"answer_type": "text", "answer": "left", "choices": None}


def wrap(answer: str) -> str:
    return f"<think>looking</think><answer>{answer}</answer>"


def test_extract_answer():
    assert extract_answer(wrap(" B ")) == ("B", "tag")
    assert extract_answer("<think>so it is</think> B") == ("B", "fallback")
    assert extract_answer("B") == ("B", "fallback")  # baselines that ignore the format
    assert extract_answer("<think>never finished") == (None, "none")  # truncated reasoning
    assert extract_answer("<think>x</think>") == (None, "none")
    assert extract_answer("B", strict=True) == (None, "none")
    assert extract_answer("") == (None, "none") and extract_answer(None) == (None, "none")


@pytest.mark.parametrize("answer", ["C", "(C)", "C.", "C. blue", "blue", "Blue", "The answer is C", "Option C", "c"])
def test_choice_by_letter_or_option_text(answer):
    assert score_answer(MC, wrap(answer)).correct


@pytest.mark.parametrize("answer", ["A", "red", "D. dark blue", "dark blue", "B"])
def test_choice_wrong(answer):
    score = score_answer(MC, wrap(answer))
    assert not score.correct and score.decided_by in ("rule", "lenient")


def test_choice_lenient_rules_and_undecided():
    sentence = score_answer(MC, wrap("The car in the picture is green."))
    assert (sentence.correct, sentence.decided_by, sentence.rule) == (False, "lenient", "lenient_option_text")
    assert score_answer(MC, wrap("It looks blue to me")).correct  # only "blue" is named as a whole option
    # a hedge between two options is decisively wrong (reward_score's choice rule, issue 11)
    hedge = score_answer(MC, wrap("either red or green"))
    assert (hedge.correct, hedge.rule, hedge.undecided) == (False, "choice_hedge", False)
    assert score_answer(MC, wrap("either red or green"), lenient=False).rule == "choice_hedge"
    assert score_answer(MC, wrap("it is blue"), lenient=False).undecided


def test_yes_no_number_text():
    assert score_answer(YES, wrap("Yes, there is a dog.")).decided_by == "rule"
    lenient = score_answer(YES, wrap("I can see that there is no dog"))
    assert (lenient.correct, lenient.decided_by) == (False, "lenient")
    assert score_answer(YES, wrap("maybe")).undecided
    assert score_answer(NUM, wrap("two")).correct and not score_answer(NUM, wrap("3")).correct
    assert score_answer(TEXT, wrap("Left")).correct
    assert score_answer(TEXT, wrap("on the left side")).decided_by == "lenient"


def test_empty_and_unparsable():
    score = score_answer(MC, "")
    assert (score.correct, score.decided_by, score.answer_source) == (False, "empty", "none")
    assert score_answer(MC, "<think>hmm</think><answer></answer>").decided_by == "empty"
    assert score_answer(MC, "C", strict=True).decided_by == "empty"
    assert score_answer(MC, "x" * 2000).correct is False  # over-long answers are wrong


def test_judge_helpers():
    assert judge_reference(MC) == "C. blue" and judge_reference(NUM) == "2"
    assert not in_judge_scope(MC, "open") and in_judge_scope(MC, "all") and in_judge_scope(TEXT, "open")
    assert not in_judge_scope(TEXT, "none")


def test_box_metrics():
    gt = [(0.0, 0.0, 10.0, 10.0)]
    assert box_metrics([(0.0, 0.0, 10.0, 10.0)], gt) == {"iou": 1.0, "recall_iou": 1.0, "precision_iou": 1.0}
    m = box_metrics([(0.0, 0.0, 10.0, 10.0), (50.0, 50.0, 60.0, 60.0)], gt)
    assert m["recall_iou"] == 1.0 and m["precision_iou"] == 0.5 and m["iou"] == 0.75
    assert box_metrics([], gt) == {"iou": 0.0, "recall_iou": 0.0, "precision_iou": 0.0}
    assert box_metrics([(0.0, 0.0, 1.0, 1.0)], []) == {}
