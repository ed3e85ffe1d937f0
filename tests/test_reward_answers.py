"""Rule-based answer matching: decisive where rules can be sure, undecided otherwise.
The grader's table of answer/GT pairs is tests/test_reward_answer_table.py; this file holds the
examples of issue 11 and the math time bound."""

import asyncio
import threading
import time

import pytest

from reward_score.answers import detect_answer_type, match_answer
from reward_score.mathcheck import math_pool

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
        ("35 mm", "3.5 cm", True),
    ],
)
def test_numbers_with_units_and_tolerance(pred, gt, correct):
    verdict = match_answer(pred, gt)
    assert verdict.rule.startswith("number") and verdict.correct is correct


@pytest.mark.parametrize("pred", ["several", "a few"])
def test_numbers_the_rules_cannot_judge_are_undecided(pred):
    assert not match_answer(pred, "3").decisive


@pytest.mark.parametrize("pred", ["between 3 and 4", "3 or 4", "at least 3", "not 3"])
def test_ranges_hedges_and_comparisons_commit_to_no_number(pred):
    # issue 18: a careful grader credits none of these for 3
    assert match_answer(pred, "3").correct is False


def test_math_via_math_verify():
    assert math_pool().wait_idle(timeout_s=60)
    assert match_answer("\\frac{1}{2}", "0.5", "math").correct is True
    assert match_answer("$x^2+2x+1$", "(x+1)^2", "math").correct is True
    assert match_answer("\\frac{1}{3}", "0.5", "math").correct is False


def test_math_works_off_the_main_thread():
    assert math_pool().wait_idle(timeout_s=60)
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
    "gt, kind", [("B", "choice"), ("(c)", "choice"), ("a", "choice"), ("Yes", "yes_no"), ("12 cm", "number"),
                 ("\\frac{1}{2}", "number"), ("1/2", "number"), ("30°", "number"), ("\\sqrt{2}", "math"),
                 ("x^2+1", "math"), ("the red car", "text"), ("A balloon", "text")]
)
def test_answer_type_detection(gt, kind):
    # "(c)" is an option letter (it was locked as "text"); a simple LaTeX fraction is a number
    assert detect_answer_type(gt) == kind


def test_answer_type_detection_with_options():
    # an option's text as ground truth is multiple choice once the options are known (found by mutmut)
    assert detect_answer_type("blue", CHOICES) == "choice"
    assert detect_answer_type("blue") == "text"
    assert detect_answer_type("3", ["A. 3", "B. 4"]) == "choice"


# ------------------------------------------------------------------------------ issue 11 examples
@pytest.mark.parametrize("choices", [None, CHOICES])
@pytest.mark.parametrize("pred, gt", [("B or C", "B"), ("A, B", "B"), ("A, B", "A"), ("A/B", "B"),
                                      ("(A) and (B)", "B"), ("(A) and (B)", "A"), ("B C", "B")])
def test_hedges_between_options_are_decisively_wrong(pred, gt, choices):
    verdict = match_answer(pred, gt, choices=choices)
    assert verdict.correct is False and verdict.rule == "choice_hedge"


def test_free_text_starting_with_a_capital_is_not_an_option_letter_without_choices():
    assert match_answer("I think it is B", "B").correct is True  # it names B, it was scored wrong
    assert match_answer("A balloon", "B").correct is None  # was decided against B
    # with the options given, "A balloon" is option B's text
    assert match_answer("A balloon", "B", choices=["A. kite", "B. balloon"]).correct is True


def test_lower_case_ground_truth_letter_is_decided():
    assert match_answer("A", "a").correct is True
    assert match_answer("(a)", "a").correct is True
    assert match_answer("B", "a").correct is False


@pytest.mark.parametrize("pred, gt, correct", [("2 cm", "2 m", False), ("5 kg", "5 m", False),
                                               ("200 cm", "2 m", True), ("5 m", "500 cm", True)])
def test_units_are_compared_before_numbers(pred, gt, correct):
    assert match_answer(pred, gt).correct is correct


def test_directions_are_not_yes():
    assert match_answer("Right side", "yes").correct is None
    assert match_answer("right", "no").correct is None


@pytest.mark.parametrize("pred, gt", [("1/2", "0.5"), ("0.75", "3/4"), ("5/2", "2.5"), ("\\frac{1}{2}", "0.5"),
                                      ("30", "30°")])
def test_equal_values_are_decided_right(pred, gt):
    verdict = match_answer(pred, gt)
    assert verdict.correct is True, verdict


# ---------------------------------------------------------------------------------- math time bound
PATHOLOGICAL = [("10^{10^{10}}", "\\frac{1}{2}"), ("2^{10^{9}}", "3"), ("1000000!", "7")]
TIMEOUT_S = 2.0


@pytest.fixture
def warm_pool():
    """The default pool with all its workers up (the first call of a process may wait for start-up,
    and a killed worker's replacement starts in the background)."""
    pool = math_pool()
    assert pool.wait_idle(timeout_s=60)
    return pool


class Ticker:
    """A thread that counts 10 ms sleeps: it stops counting if another thread holds the GIL."""

    def __init__(self):
        self.ticks, self._stop = 0, False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop:
            time.sleep(0.01)
            self.ticks += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop = True
        self._thread.join()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pred, gt", PATHOLOGICAL)
def test_pathological_math_returns_within_the_bound_and_freezes_no_thread(warm_pool, pred, gt):
    before = warm_pool.stats()
    with Ticker() as ticker:
        start = time.monotonic()
        verdict = match_answer(pred, gt, "math")
        elapsed = time.monotonic() - start
    assert verdict.correct is None and verdict.rule == "math_timeout"
    assert elapsed < TIMEOUT_S + 0.5
    assert ticker.ticks >= 0.25 * elapsed / 0.01  # the other thread kept running the whole time
    after = warm_pool.stats()
    assert after["timeouts"] == before["timeouts"] + 1 and after["killed"] == before["killed"] + 1


@pytest.mark.timeout(60)
def test_stuck_worker_is_replaced_and_math_keeps_working(warm_pool):
    for pred, gt in [("10^{10^{12}}", "2"), ("3^{10^{10}}", "2")]:
        assert match_answer(pred, gt, "math").rule == "math_timeout"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # replacements start in the background
        verdict = match_answer("\\frac{2}{6}", "\\frac{1}{3}", "math")
        if verdict.rule != "math_timeout":
            break
    assert verdict.correct is True


@pytest.mark.timeout(60)
def test_math_bound_holds_off_the_main_thread_and_in_an_event_loop(warm_pool):
    out = {}

    def worker():
        start = time.monotonic()
        out["verdict"] = match_answer("10^{10^{11}}", "\\frac{1}{2}", "math")
        out["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(TIMEOUT_S + 5)
    assert out["verdict"].rule == "math_timeout" and out["elapsed"] < TIMEOUT_S + 0.5

    async def loop_ticks():
        # compute_score_async runs math off the loop: a timer on the same loop keeps firing
        from reward_score import compute_score_async

        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        start = time.monotonic()
        result = await compute_score_async("s", "<think>x</think><answer>7^{10^{10}}</answer>", "\\frac{1}{2}",
                                           {"answer_type": "math"})
        elapsed = time.monotonic() - start
        ticker.cancel()
        return result, ticks, elapsed

    result, ticks, elapsed = asyncio.run(loop_ticks())
    assert result["math_timeout"] == 1.0 and result["acc_undecided"] == 1.0
    assert elapsed < TIMEOUT_S + 0.5 and ticks >= 0.25 * elapsed / 0.01


@pytest.mark.timeout(60)
def test_a_repeated_pathological_answer_costs_the_deadline_once(warm_pool):
    pair = ("5^{10^{10}}", "\\frac{1}{3}")
    assert match_answer(*pair, "math").rule == "math_timeout"
    start = time.monotonic()
    assert match_answer(*pair, "math").rule == "math_timeout"  # cached verdict, no new worker killed
    assert time.monotonic() - start < 0.1
