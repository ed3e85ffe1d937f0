"""Rule-based answer matching: decisive where rules can be sure, undecided otherwise."""

import threading

import pytest

from reward_score.answers import detect_answer_type, match_answer

CHOICES = ["A. red", "B. blue", "(C) green", "D) a yellow car"]


@pytest.mark.parametrize(
    "pred, gt, choices, correct",
    [
        ("B", "B", None, True),
        ("(B)", "B", None, True),
        ("B. blue", "B", CHOICES, True),
        ("blue", "B", CHOICES, True),
        ("The answer is C", "C", CHOICES, True),
        ("Option D", "D", CHOICES, True),
        ("yellow car", "D", CHOICES, True),
        ("A", "blue", CHOICES, False),  # ground truth given as option text
        ("B", "blue", CHOICES, True),
        ("C", "B", None, False),
        ("(A) red", "B", CHOICES, False),
        ("c", "C", CHOICES, True),
        ("(b).", "B", None, True),
    ],
)
def test_multiple_choice_letters_and_option_texts(pred, gt, choices, correct):
    verdict = match_answer(pred, gt, "choice", choices)
    assert verdict.decisive and verdict.correct is correct


def test_choice_without_letter_is_undecided():
    assert not match_answer("I am not sure", "B", "choice", CHOICES).decisive


@pytest.mark.parametrize(
    "pred, gt, correct",
    [("Yes", "yes", True), ("yes, it is on the left.", "Yes", True), ("No.", "yes", False), ("true", "yes", True)],
)
def test_yes_no(pred, gt, correct):
    verdict = match_answer(pred, gt)
    assert verdict.rule == "yes_no" and verdict.correct is correct


def test_yes_no_hedge_is_undecided():
    assert not match_answer("maybe", "yes").decisive


@pytest.mark.parametrize(
    "pred, gt, correct",
    [
        ("3", "3", True),
        ("three", "3", True),
        ("There are 3 cars.", "3", True),
        ("4", "3", False),
        ("3.0", "3", True),
        ("1,200", "1200", True),
        ("12.1 cm", "12.0 cm", True),  # within 1% relative tolerance
        ("12.5 cm", "12.0 cm", False),
        ("101", "100", False),  # integer answers (counts) compare exactly
        ("50%", "50", True),
        ("0.5", "50%", True),
        ("5 m", "5", True),
    ],
)
def test_numbers_with_units_and_tolerance(pred, gt, correct):
    verdict = match_answer(pred, gt)
    assert verdict.rule == "number" and verdict.correct is correct


@pytest.mark.parametrize("pred", ["35 mm", "between 3 and 4", "several"])
def test_numbers_the_rules_cannot_judge_are_undecided(pred):
    gt = "3.5 cm" if pred == "35 mm" else "3"
    assert not match_answer(pred, gt).decisive


def test_math_via_math_verify():
    assert match_answer("\\frac{1}{2}", "0.5", "math").correct is True
    assert match_answer("$x^2+2x+1$", "(x+1)^2", "math").correct is True
    assert match_answer("\\frac{1}{3}", "0.5", "math").correct is False


def test_math_works_off_the_main_thread():
    # verl calls compute_score in executor threads, where SIGALRM timeouts cannot be installed
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("v", match_answer("\\frac{2}{4}", "1/2", "math")))
    thread.start()
    thread.join()
    assert out["v"].correct is True


def test_free_text_exact_after_normalization_else_undecided():
    assert match_answer("The Blue one.", "blue one").correct is True
    verdict = match_answer("navy", "blue")
    assert verdict.correct is None and verdict.rule == "text"


def test_empty_and_overlong_answers_are_decisively_wrong():
    assert match_answer(None, "3") .correct is False
    assert match_answer("   ", "3").rule == "empty"
    assert match_answer("3" * 1001, "3").rule == "too_long"


@pytest.mark.parametrize(
    "gt, kind", [("B", "choice"), ("(c)", "text"), ("Yes", "yes_no"), ("12 cm", "number"),
                 ("\\frac{1}{2}", "math"), ("the red car", "text")]
)
def test_answer_type_detection(gt, kind):
    assert detect_answer_type(gt) == kind
