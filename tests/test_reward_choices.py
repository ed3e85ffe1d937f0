"""The one choice parser (`reward_score.choices`) and the answer text helpers (`reward_score.text`).

Expected values are what a reader of the prompt sees: a record's options are shown as "A. text"
lines in order, and a careful grader reads which option an answer names. The end-to-end verdicts
are in tests/test_reward_answer_table.py and tests/test_eval_scoring.py.
"""

from __future__ import annotations

import pytest

from data_prep.prompts import question_block
from reward_score.answers import Verdict, acceptable_answers, best_verdict
from reward_score.choices import (
    LETTERS,
    NEGATED,
    choice_letters,
    letter_of,
    named_options,
    option_by_text,
    option_texts,
    options_from_choices,
    render_options,
    split_option_line,
)
from reward_score.text import affirmed, final_statement, latex_unicode_math, negated_before, strip_answer

COLOURS = {"A": "red", "B": "green", "C": "blue"}
AI2D = {"A": "D", "B": "A", "C": "C", "D": "B"}  # letter-valued option texts


# ------------------------------------------------------------------------------------------ options
def test_alphabet_is_ten_upper_case_letters_in_order():
    assert LETTERS == "ABCDEFGHIJ"


@pytest.mark.parametrize("line, expected", [
    ("A. red", ("A", "red")), ("(b) blue", ("B", "blue")), ("C) green", ("C", "green")),
    ("D: a yellow car", ("D", "a yellow car")), ("  E .  five ", ("E", "five")), ("J. ten", ("J", "ten")),
    ("K. eleven", None), ("red", None), ("A red car", None), ("Apple. pie", None), ("", None),
])
def test_split_option_line(line, expected):
    assert split_option_line(line) == expected


@pytest.mark.parametrize("choices, texts", [
    (["A. red", "B. blue"], ["red", "blue"]),  # a source that kept its labels
    (["(A) red", "(B) blue", "(C) green"], ["red", "blue", "green"]),
    (["red", "blue"], ["red", "blue"]),
    # an option whose text looks like a lettered line keeps its position and its text
    (["b: none of them", "the cat"], ["b: none of them", "the cat"]),
    (["yes", "b: none of them"], ["yes", "b: none of them"]),
    (["A. red", "blue"], ["A. red", "blue"]),  # not every entry labelled: texts as given
    (["B. red", "A. blue"], ["B. red", "A. blue"]),  # labels out of order: texts as given
    (["D", "A", "C", "B"], ["D", "A", "C", "B"]),  # AI2D: texts that are letters
    (["A. D", "B. A", "C. C", "D. B"], ["D", "A", "C", "B"]),
    (["A. red"], ["red"]),  # one labelled option
    ([f"{letter}. o{letter}" for letter in LETTERS], [f"o{letter}" for letter in LETTERS]),  # all ten
    ([f"{letter}. o" for letter in LETTERS] + ["K. o"], [f"{letter}. o" for letter in LETTERS] + ["K. o"]),
    ([], []), (None, []),
])
def test_option_texts(choices, texts):
    assert option_texts(choices) == texts


def test_options_from_choices_letters_by_position():
    assert options_from_choices(["red", "green"]) == {"A": "red", "B": "green"}
    assert options_from_choices(["A. D", "B. A"]) == {"A": "D", "B": "A"}
    assert options_from_choices({"(a)": " red ", "B": "green"}) == {"A": "red", "B": "green"}
    assert options_from_choices(None) == {} and options_from_choices([]) == {}
    assert options_from_choices(["only"]) == {"A": "only"}
    assert len(options_from_choices([f"o{i}" for i in range(12)])) == len(LETTERS)


def test_rendered_options_are_what_the_model_sees():
    assert render_options(["red", "blue"]) == "A. red\nB. blue"
    assert render_options(["A. red", "B. blue"]) == "A. red\nB. blue"  # never "A. A. red"
    assert render_options(["b: none of them", "x"]) == "A. b: none of them\nB. x"
    assert question_block("Which?", ["A. red", "B. blue"]) == "Which?\nOptions:\nA. red\nB. blue"
    assert render_options([str(i) for i in range(10)]).splitlines()[-1] == "J. 9"  # ten options fit
    with pytest.raises(ValueError, match="at most 10"):
        render_options([str(i) for i in range(11)])


@pytest.mark.parametrize("answer, letter", [
    ("B", "B"), ("b", "B"), ("(B)", "B"), ("[c]", "C"), ("D.", "D"), (" A: ", "A"), ("J", "J"),
    ("K", None), ("AB", None), ("B blue", None), ("", None), (None, None), ("1", None),
])
def test_letter_of(answer, letter):
    assert letter_of(answer) == letter


def test_letter_of_upper_only_refuses_lower_case():
    assert letter_of("a", upper_only=True) is None and letter_of("(A)", upper_only=True) == "A"


# ------------------------------------------------------------------------------------------ answers
def test_option_by_text_exact_then_up_to_articles():
    assert option_by_text("Green", COLOURS) == "B"
    assert option_by_text("the green", COLOURS) == "B"
    assert option_by_text("the green", COLOURS, loose=False) is None
    assert option_by_text("D", AI2D) == "A" and option_by_text("a", AI2D) == "B"  # "A" is not an article here
    assert option_by_text("purple", COLOURS) is None
    assert option_by_text("red", {"A": "red", "B": "Red"}) is None  # two options with that text
    assert option_by_text("", COLOURS) is None


@pytest.mark.parametrize("answer, options, letters", [
    # a lone letter is the letter, also when option texts are letters
    ("A", AI2D, {"A"}), ("d", AI2D, {"D"}), ("(D)", AI2D, {"D"}), ("\\boxed{D}", AI2D, {"D"}),
    ("D. B", AI2D, {"D"}), ("A. D", AI2D, {"A"}), ("D. A", AI2D, {"D", "B"}), ("Option D", AI2D, {"D"}),
    # option texts
    ("green", COLOURS, {"B"}), ("The green.", COLOURS, {"B"}), ("A. red", COLOURS, {"A"}),
    ("A. green", COLOURS, {"A", "B"}), ("(B) green", COLOURS, {"B"}), ("B) red", COLOURS, {"B", "A"}),
    # hedges
    ("B or C", COLOURS, {"B", "C"}), ("A, B", {}, {"A", "B"}), ("either red or green", COLOURS, {"A", "B"}),
    ("red/blue", COLOURS, {"A", "C"}),
    # phrases
    ("The answer is (C).", COLOURS, {"C"}), ("I think it is B", {}, {"B"}), ("choice (c)", {}, {"C"}),
    # negations
    ("not B", {}, NEGATED), ("It is not red.", COLOURS, NEGATED), ("isn't option C", COLOURS, NEGATED),
    ("B. The car is not red", COLOURS, {"B"}), ("not red", COLOURS, NEGATED),
    ("not (b)", {}, NEGATED), ("not b", {}, None),  # a lower-case letter only in parentheses
    ("not a dog", COLOURS, None),  # the article, not option A
    ("not red", {"A": "", "B": "red"}, NEGATED),  # an empty option text is skipped, not the end
    # nothing named
    ("A balloon", {}, None), ("the answer is a dog", {}, None), ("purple", COLOURS, None), ("", COLOURS, None),
])
def test_choice_letters(answer, options, letters):
    found = choice_letters(answer, options)
    assert (None if found is None else set(found)) == (None if letters is None else set(letters))


def test_ground_truth_letters_are_never_relabelled_by_option_text():
    assert choice_letters("D", AI2D, is_gt=True) == {"D"}
    assert choice_letters("green", COLOURS, is_gt=True) == {"B"}
    assert choice_letters("The answer is B", COLOURS, is_gt=True) == {"B"}  # the lead-in goes
    assert choice_letters("I think it is B", COLOURS, is_gt=True) is None  # no phrases in a ground truth
    assert choice_letters("purple", COLOURS, is_gt=True) is None


def test_named_options_skip_negated_ones():
    assert named_options("It looks green to me", COLOURS) == {"B"}
    assert named_options("It is not green", COLOURS) == set()
    assert named_options("red, not green", COLOURS) == {"A"}
    assert named_options("red and blue", COLOURS) == {"A", "C"}


# ------------------------------------------------------------------------------------------ text
@pytest.mark.parametrize("text, latex", [
    ("2√3", "2\\sqrt{3}"), ("√(x+1)", "\\sqrt{x+1}"), ("∛8", "\\sqrt[3]{8}"), ("x²", "x^2"),
    ("2π", "2\\pi"), ("3 × 4", "3 \\times 4"), ("plain", "plain"), ("−5", "-5"),
])
def test_unicode_math_as_latex(text, latex):
    assert latex_unicode_math(text) == latex


@pytest.mark.parametrize("answer, final", [
    ("B... actually C", "C"), ("3, no wait, 4", "4"), ("A, wait, no: B", "B"),
    ("The value is 12 because 3 x 4 = 12", "The value is 12"), ("3 x 4 = 12, so the value is 12", "the value is 12"),
    ("Because 3 x 4 = 12, the value is 12", "the value is 12"), ("It is 7 since 3 + 4 = 7.", "It is 7"),
    ("The answer is therefore 5", "5"), ("red", "red"), ("because of the rain", "because of the rain"),
    ("It is so big", "It is so big"), ("B, wait.", "B, wait"), ("The answer is (B).", "(B)"),
])
def test_final_statement(answer, final):
    assert final_statement(answer) == final


@pytest.mark.parametrize("text, value, negated", [
    ("not 2", "2", True), ("It is not 2", "2", True), ("less than 2", "2", True), ("at least 2", "2", True),
    ("no more than 2", "2", True), ("> 2", "2", True), ("between 2 and 3", "2", True), ("isn't red", "red", True),
    ("It is not a red car", "red", True), ("There are 2", "2", False), ("No, there are 2", "2", False),
    ("2", "2", False), ("It is not clear, but 2", "2", False), ("cannot see, 2", "2", False),
])
def test_negated_before(text, value, negated):
    assert negated_before(text, text.rindex(value)) is negated


@pytest.mark.parametrize("text, kept", [
    ("A, not B", "A"), ("He has 2 dogs, not 3", "He has 2 dogs"), ("not red but green", "green"),
    ("not 2", "not 2"), ("red, blue", "red, blue"), ("It is not clear, but 3", "It is not clear, but 3"),
])
def test_affirmed(text, kept):
    assert affirmed(text) == kept


def test_strip_answer():
    assert strip_answer("The answer is B.") == "B."
    assert strip_answer("**\"umbrella\"**") == "umbrella"
    assert strip_answer("\\boxed{2√3}") == "2\\sqrt{3}"


# ------------------------------------------------------------------------------- acceptable answers
def test_acceptable_answers_reference_first_then_listed_others():
    assert acceptable_answers("2", ["2", "two", "", "2", None]) == ["2", "two"]
    assert acceptable_answers("cat", None) == ["cat"]
    assert acceptable_answers(None, ["dog", "puppy"]) == ["dog", "puppy"]
    assert acceptable_answers("", []) == [""]
    assert acceptable_answers(3, ["3.0"]) == ["3", "3.0"]


def test_best_verdict_any_right_else_all_wrong_else_undecided():
    right, wrong, open_ = Verdict(True, "r"), Verdict(False, "w"), Verdict(None, "u")
    assert best_verdict([wrong, right]) is right
    assert best_verdict([wrong, Verdict(False, "w2")]) is wrong
    assert best_verdict([wrong, open_]) is open_
    with pytest.raises(ValueError):
        best_verdict([])
