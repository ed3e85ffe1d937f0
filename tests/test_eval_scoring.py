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


# ------------------------------------------------------------------------- issue 18/20 grader table
# Eval items as the converter writes them (options as shown texts, the ground truth the shown letter,
# the question). The verdicts are a careful human grader's, written from the question and options
# (an answer the rules leave undecided scores wrong in the eval, so U does not occur here).
def _mc(question, choices, answer):
    return {"answer_type": "choice", "question": question, "choices": choices, "answer": answer,
            "answer_text": choices[ord(answer) - 65]}


def _open(question, answer, kind):
    return {"answer_type": kind, "question": question, "answer": answer, "choices": None}


AI2D_ITEM = _mc("Which letter marks the larva?", ["C", "D", "A", "B"], "B")  # shown "A. C, B. D, C. A, D. B"
LINE_ITEM = _mc("Which statement is true?", ["a: all of them", "b: none of them", "only the red one"], "C")
COLOUR_ITEM = _mc("What colour is the umbrella?", ["green", "yellow", "black"], "B")
ROOT_ITEM = _open("What is the length of the hypotenuse?", "3\\sqrt{2}", "math")
SUM_ITEM = _open("What is the total cost in dollars?", "15", "number")
COUNT_ITEM = _open("How many birds are on the wire?", "3", "number")
SHARE_ITEM = _open("What percentage of voters chose the blue party?", "35", "number")
PEOPLE_ITEM = _open("How many people voted for the blue party?", "35", "number")
YES_ITEM = _open("Is the door open?", "yes", "yes_no")
TEXT_ITEM = _open("What colour is the umbrella?", "yellow", "text")

EVAL_TABLE = [
    # letter-valued options
    (AI2D_ITEM, "B", True), (AI2D_ITEM, "D", False), (AI2D_ITEM, "A", False), (AI2D_ITEM, "b", True),
    (AI2D_ITEM, "Option B", True), (AI2D_ITEM, "option D", False), (AI2D_ITEM, "B. D", True),
    (AI2D_ITEM, "D. B", False), (AI2D_ITEM, "(B)", True), (AI2D_ITEM, "(D)", False),
    (AI2D_ITEM, "\\boxed{B}", True), (AI2D_ITEM, "\\boxed{D}", False), (AI2D_ITEM, "The answer is B.", True),
    # option texts that look like lettered lines keep their positions
    (LINE_ITEM, "C", True), (LINE_ITEM, "B", False), (LINE_ITEM, "only the red one", True),
    (LINE_ITEM, "b: none of them", False), (LINE_ITEM, "A", False),
    # a lone letter is a letter
    (COLOUR_ITEM, "B", True), (COLOUR_ITEM, "A", False), (COLOUR_ITEM, "A. yellow", False),
    (COLOUR_ITEM, "B. yellow", True), (COLOUR_ITEM, "C. yellow", False), (COLOUR_ITEM, "A.", False),
    # unicode roots
    (ROOT_ITEM, "3√2", True), (ROOT_ITEM, "√18", True), (ROOT_ITEM, "2√3", False),
    # final value of an explanatory sentence
    (SUM_ITEM, "The total is 15 because 5 x 3 = 15", True), (SUM_ITEM, "It costs 15 since 10 + 5 = 15.", True),
    (SUM_ITEM, "The total is 16 because 5 x 3 = 15", False), (SUM_ITEM, "10 + 5 = 15, so the total is 15", True),
    # negations and comparisons
    (COUNT_ITEM, "not 3", False), (COUNT_ITEM, "more than 3", False), (COUNT_ITEM, "at least 3", False),
    (COUNT_ITEM, "fewer than 3", False), (COUNT_ITEM, "There are 3 birds.", True),
    (COUNT_ITEM, "between 3 and 4", False), (COUNT_ITEM, "3 or 4", False),
    (TEXT_ITEM, "not yellow", False), (TEXT_ITEM, "It is not yellow.", False), (TEXT_ITEM, "yellow", True),
    (COLOUR_ITEM, "It is not yellow.", False), (COLOUR_ITEM, "not yellow", False),
    # percentages
    (PEOPLE_ITEM, "35%", False), (PEOPLE_ITEM, "35", True), (SHARE_ITEM, "35%", True), (SHARE_ITEM, "35", True),
    (SHARE_ITEM, "53%", False),
    # self-reversals and hedges
    (YES_ITEM, "Yes. Wait, no.", False), (YES_ITEM, "No. Actually, yes.", True), (YES_ITEM, "yes or no", False),
    (COLOUR_ITEM, "A... actually B", True), (COLOUR_ITEM, "B... actually A", False),
    (COUNT_ITEM, "4, no wait, 3", True), (COUNT_ITEM, "3, no wait, 4", False),
    (TEXT_ITEM, "either yellow or black", False), (TEXT_ITEM, "yellow or black", False),
    (COLOUR_ITEM, "either yellow or black", False),
]


@pytest.mark.parametrize("item, answer, correct", EVAL_TABLE,
                         ids=[f"{i['question'][:18]!r}|{a!r:.30}" for i, a, _ in EVAL_TABLE])
def test_eval_grades_as_a_careful_grader(item, answer, correct):
    from reward_score.mathcheck import math_pool

    assert math_pool().wait_idle(timeout_s=60)
    assert score_answer(item, wrap(answer)).correct is correct
