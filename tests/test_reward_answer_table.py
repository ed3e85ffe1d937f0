"""A grader's table: answer/ground-truth pairs and what a careful human grader decides from the two
texts alone (without the question or the image).

R: the answer is right; W: it is wrong; U: a grader cannot decide from the texts alone (the rules
must defer: undecided, so the judge sees it). The verdicts were written down before looking at what
the implementation returns; a rule that decides a U pair, or decides an R/W pair the other way, fails.
"""

import pytest

from reward_score.answers import match_answer
from reward_score.mathcheck import math_pool

CHOICES = ["A. red", "B. blue", "C. green", "D. a yellow car"]
NUM_CHOICES = ["A. 3", "B. 4", "C. 5", "D. 6"]

# (prediction, ground truth, choices, grader)
TABLE = [
    # --- multiple choice, letters -------------------------------------------------------------
    ("B", "B", None, "R"),
    ("b", "B", None, "R"),
    ("(B)", "B", None, "R"),
    ("B.", "B", None, "R"),
    ("[B]", "B", None, "R"),
    ("B) blue", "B", None, "R"),
    ("(B) blue", "B", None, "R"),
    ("B. blue", "B", CHOICES, "R"),
    ("Option B", "B", None, "R"),
    ("option (b)", "B", None, "R"),
    ("The answer is (B).", "B", None, "R"),
    ("The answer is B", "B", CHOICES, "R"),
    ("Answer: C", "C", None, "R"),
    ("Final answer: D", "D", None, "R"),
    ("I think it is B", "B", None, "R"),
    ("C", "B", None, "W"),
    ("(A)", "B", None, "W"),
    ("A. red", "B", CHOICES, "W"),
    ("Option D", "B", None, "W"),
    ("The answer is (C).", "B", None, "W"),
    ("A", "a", None, "R"),
    ("(a)", "a", None, "R"),
    ("B", "a", None, "W"),
    ("c", "(C)", None, "R"),
    ("D", "d.", None, "R"),
    # hedges: two or more distinct options are wrong
    ("B or C", "B", None, "W"),
    ("B or C", "B", CHOICES, "W"),
    ("A, B", "A", None, "W"),
    ("A, B", "B", CHOICES, "W"),
    ("A/B", "B", None, "W"),
    ("(A) and (B)", "B", None, "W"),
    ("B C", "B", None, "W"),
    ("A, B, C, D", "C", CHOICES, "W"),
    ("Option A or option B", "A", None, "W"),
    ("red or blue", "B", CHOICES, "W"),
    ("B) red", "B", CHOICES, "W"),  # letter B, text of option A
    ("B or B", "B", None, "R"),
    ("B!", "B", None, "R"),
    ("C!", "B", None, "W"),
    # option texts need the options
    ("blue", "B", CHOICES, "R"),
    ("Blue.", "B", CHOICES, "R"),
    ("yellow car", "D", CHOICES, "R"),
    ("red", "B", CHOICES, "W"),
    ("B", "blue", CHOICES, "R"),
    ("A", "blue", CHOICES, "W"),
    ("5", "C", NUM_CHOICES, "R"),
    ("4", "C", NUM_CHOICES, "W"),
    # without options, free text that starts with a capital is not a letter
    ("A balloon", "B", None, "U"),
    ("I am not sure", "B", None, "U"),
    ("blue", "B", None, "U"),
    ("A dog is on the sofa", "A", None, "U"),
    ("It could be the one on the left", "C", CHOICES, "U"),
    ("the answer is a dog", "B", None, "U"),
    # --- yes / no -----------------------------------------------------------------------------
    ("Yes", "yes", None, "R"),
    ("yes.", "Yes", None, "R"),
    ("YES", "yes", None, "R"),
    ("Yes, it is on the left.", "yes", None, "R"),
    ("No.", "no", None, "R"),
    ("No, there is no dog.", "no", None, "R"),
    ("no", "yes", None, "W"),
    ("Yes", "no", None, "W"),
    ("No, it is not.", "yes", None, "W"),
    ("true", "yes", None, "R"),
    ("False", "no", None, "R"),
    ("Right side", "yes", None, "U"),
    ("right", "yes", None, "U"),
    ("correct", "no", None, "U"),
    ("left", "no", None, "U"),
    ("maybe", "yes", None, "U"),
    ("probably yes", "yes", None, "U"),
    ("yes or no", "yes", None, "W"),  # a hedge between the two answers (issue 18)
    ("Yes/No", "no", None, "W"),
    # --- numbers --------------------------------------------------------------------------------
    ("3", "3", None, "R"),
    ("three", "3", None, "R"),
    ("Three.", "3", None, "R"),
    ("3.0", "3", None, "R"),
    ("There are 3 cars.", "3", None, "R"),
    ("3 cars", "3", None, "R"),
    ("4", "3", None, "W"),
    ("four", "3", None, "W"),
    ("3.1", "3", None, "W"),
    ("101", "100", None, "W"),
    ("twenty-one", "21", None, "R"),
    ("twenty one", "21", None, "R"),
    ("forty-two", "42", None, "R"),
    ("ninety-nine", "99", None, "R"),
    ("one hundred", "100", None, "R"),
    ("a hundred", "100", None, "R"),
    ("one hundred and five", "105", None, "R"),
    ("two thousand", "2000", None, "R"),
    ("eleven", "12", None, "W"),
    ("1,200", "1200", None, "R"),
    ("1200", "1,200", None, "R"),
    ("1,234,567", "1234567", None, "R"),
    ("12,000", "1200", None, "W"),
    ("-5", "-5", None, "R"),
    ("−5", "-5", None, "R"),
    ("5", "-5", None, "W"),
    ("between 3 and 4", "3", None, "W"),  # a range around the value commits to none (issue 18)
    ("3 or 4", "3", None, "W"),  # a hedge between two values (issue 18)
    ("several", "3", None, "U"),
    ("a few", "3", None, "U"),
    ("3 cars and 2 trucks", "3", None, "U"),
    # decimals, fractions, percent: exact rational comparison
    ("1/2", "0.5", None, "R"),
    ("0.5", "1/2", None, "R"),
    ("0.75", "3/4", None, "R"),
    ("3/4", "0.75", None, "R"),
    ("5/2", "2.5", None, "R"),
    ("2.50", "2.5", None, "R"),
    ("\\frac{1}{2}", "0.5", None, "R"),
    ("0.5", "\\frac{1}{2}", None, "R"),
    ("\\dfrac{3}{4}", "0.75", None, "R"),
    ("$\\frac{1}{2}$", "1/2", None, "R"),
    ("2/4", "1/2", None, "R"),
    ("1/3", "0.5", None, "W"),
    ("2/3", "1/2", None, "W"),
    ("0.6", "0.5", None, "W"),
    ("50%", "50%", None, "R"),
    ("50%", "0.5", None, "R"),
    ("0.5", "50%", None, "R"),
    ("50 percent", "50%", None, "R"),
    ("25%", "1/4", None, "R"),
    ("40%", "50%", None, "W"),
    ("12.1", "12.0", None, "R"),  # within 1%
    ("12.5", "12.0", None, "W"),
    ("3.14", "3.1416", None, "R"),
    # units: compared when both sides have one
    ("2 m", "2 m", None, "R"),
    ("200 cm", "2 m", None, "R"),
    ("2 m", "200 cm", None, "R"),
    ("2 meters", "2 m", None, "R"),
    ("35 mm", "3.5 cm", None, "R"),
    ("1 km", "1000 m", None, "R"),
    ("2 cm", "2 m", None, "W"),
    ("20 cm", "2 m", None, "W"),
    ("5 kg", "5 m", None, "W"),
    ("5 kg", "5000 g", None, "R"),
    ("5 kg", "5 g", None, "W"),
    ("2 hours", "120 minutes", None, "R"),
    ("90 s", "1.5 min", None, "R"),
    ("3 hours", "2 hours", None, "W"),
    ("12 inches", "1 ft", None, "R"),
    ("500 ml", "0.5 l", None, "R"),
    ("5 m", "5", None, "R"),
    ("5", "5 m", None, "R"),
    ("6", "5 m", None, "W"),
    ("5 apples", "5 pears", None, "U"),
    ("$5", "5 dollars", None, "R"),
    ("$5", "$6", None, "W"),
    ("5 dollars", "5 euros", None, "U"),
    ("20 °C", "68 °F", None, "U"),
    # degrees
    ("30°", "30", None, "R"),
    ("30", "30°", None, "R"),
    ("30 degrees", "30°", None, "R"),
    ("30^\\circ", "30°", None, "R"),
    ("$30^{\\circ}$", "30", None, "R"),
    ("45°", "30°", None, "W"),
    ("30 °C", "30 degrees", None, "R"),
    # --- math (math-verify) --------------------------------------------------------------------
    ("x^2+2x+1", "(x+1)^2", None, "R"),
    ("$x^2+2x+1$", "(x+1)^2", None, "R"),
    ("\\sqrt{2}", "\\sqrt{2}", None, "R"),
    ("2\\sqrt{2}", "\\sqrt{8}", None, "R"),
    ("\\sqrt{3}", "\\sqrt{2}", None, "W"),
    ("\\frac{1}{3}", "\\frac{2}{6}", None, "R"),
    ("\\pi/2", "\\frac{\\pi}{2}", None, "R"),
    ("\\boxed{4}", "4", None, "R"),
    ("2^3", "8", None, "R"),
    ("2^3", "9", None, "W"),
    ("\\sqrt{4}", "2", None, "R"),
    ("x+1", "x+2", None, "W"),
    # --- open text ----------------------------------------------------------------------------
    ("The Blue one.", "blue one", None, "R"),
    ("red", "red", None, "R"),
    ("Red.", "red", None, "R"),
    ("the red car", "red car", None, "R"),
    ("red car", "the red car", None, "R"),
    ("\"umbrella\"", "umbrella", None, "R"),
    ("**umbrella**", "umbrella", None, "R"),
    ("navy", "blue", None, "U"),
    ("crimson", "red", None, "U"),
    ("It is red", "red", None, "U"),
    ("a red umbrella near the door", "red umbrella", None, "U"),
    ("left", "right", None, "U"),
    ("cat", "dog", None, "U"),
    ("Paris, France", "Paris", None, "U"),
    ("not red", "red", None, "W"),  # a negation of the right value (issue 18)
    ("red and blue", "red", None, "U"),
    ("I don't know", "umbrella", None, "U"),
    ("scarlet", "red", None, "U"),
    ("sedan", "car", None, "U"),
    ("on the table", "table", None, "U"),
    ("a small dog", "puppy", None, "U"),
    ("the left one", "left", None, "U"),
    # --- empty / overlong -------------------------------------------------------------------------
    ("", "3", None, "W"),
    ("   ", "yes", None, "W"),
    ("B" * 1001, "B", None, "W"),
]


# Issue 18/20 classes, each verdict written from reading the question (the fourth column; None: no
# question given). Letter-valued options: AI2D labels diagram points with letters, so the options'
# TEXTS are letters; the prompt shows them as "A. D / B. A / C. C / D. B".
AI2D = ["D", "A", "C", "B"]
AI2D_LINES = ["A. D", "B. A", "C. C", "D. B"]
AI2D_Q = "Which label marks the pupa stage in the diagram?"
COLOURS = ["red", "green", "blue"]
NONE_FIRST = ["b: none of them", "the cat", "the dog"]  # option A's text looks like a lettered line
PIE_Q = "What percentage of the pie chart is red?"
COUNT_Q = "How many students are in the class?"

# (prediction, ground truth, choices, question, grader)
CONTEXT_TABLE = [
    # --- letter-valued options: a letter is a letter, an option's text only by its text -----
    ("A", "D", AI2D, AI2D_Q, "W"),
    ("A", "D", AI2D_LINES, AI2D_Q, "W"),
    ("B", "D", AI2D, AI2D_Q, "W"),
    ("C", "D", AI2D, AI2D_Q, "W"),
    ("D", "D", AI2D, AI2D_Q, "R"),
    ("d", "D", AI2D, AI2D_Q, "R"),
    ("Option D", "D", AI2D, AI2D_Q, "R"),
    ("Option D", "D", AI2D_LINES, AI2D_Q, "R"),
    ("option A", "D", AI2D, AI2D_Q, "W"),
    ("D. B", "D", AI2D, AI2D_Q, "R"),
    ("D. B", "D", AI2D_LINES, AI2D_Q, "R"),
    ("A. D", "D", AI2D, AI2D_Q, "W"),
    ("(D)", "D", AI2D, AI2D_Q, "R"),
    ("(A)", "D", AI2D, AI2D_Q, "W"),
    ("\\boxed{D}", "D", AI2D, AI2D_Q, "R"),
    ("\\boxed{A}", "D", AI2D, AI2D_Q, "W"),
    ("The answer is D.", "D", AI2D, AI2D_Q, "R"),
    ("The answer is A.", "D", AI2D, AI2D_Q, "W"),
    ("B", "B", AI2D, AI2D_Q, "R"),
    ("A", "B", AI2D_LINES, AI2D_Q, "W"),
    ("C. C", "C", AI2D, AI2D_Q, "R"),
    # --- an option text that looks like a lettered line keeps its position ------------------
    ("A", "A", NONE_FIRST, "Which animals are in the picture?", "R"),
    ("B", "A", NONE_FIRST, "Which animals are in the picture?", "W"),
    ("B", "B", NONE_FIRST, "Which animals are in the picture?", "R"),
    ("the cat", "B", NONE_FIRST, "Which animals are in the picture?", "R"),
    ("b: none of them", "A", NONE_FIRST, "Which animals are in the picture?", "R"),
    ("b: none of them", "B", NONE_FIRST, "Which animals are in the picture?", "W"),
    # --- a lone "A" or "A. text" is the letter A, not the article "a" -------------------------
    ("A", "A", COLOURS, "What colour is the car?", "R"),
    ("A", "B", COLOURS, "What colour is the car?", "W"),
    ("A.", "A", COLOURS, "What colour is the car?", "R"),
    ("A. red", "A", COLOURS, "What colour is the car?", "R"),
    ("A. green", "B", COLOURS, "What colour is the car?", "W"),
    ("A. blue", "C", COLOURS, "What colour is the car?", "W"),
    ("A", "A", ["a red car", "a green car"], "Which car is parked?", "R"),
    ("A", "B", ["a red car", "a green car"], "Which car is parked?", "W"),
    # --- unicode roots equal LaTeX roots -------------------------------------------------------
    ("2√3", "2\\sqrt{3}", None, "What is the length of the diagonal?", "R"),
    ("2\\sqrt{3}", "2√3", None, "What is the length of the diagonal?", "R"),
    ("√12", "2\\sqrt{3}", None, "What is the length of the diagonal?", "R"),
    ("3√2", "\\sqrt{18}", None, "What is the length of the diagonal?", "R"),
    ("2√3", "2\\sqrt{2}", None, "What is the length of the diagonal?", "W"),
    ("2√3", "3\\sqrt{2}", None, "What is the length of the diagonal?", "W"),
    # --- the final value of an explanatory sentence --------------------------------------------
    ("The value is 12 because 3 x 4 = 12", "12", None, "What is the area of the rectangle?", "R"),
    ("The value is 12 because 3 x 4 = 12", "13", None, "What is the area of the rectangle?", "W"),
    ("It is 7 since 3 + 4 = 7.", "7", None, "How many apples are there in total?", "R"),
    ("The area is 20 because 4 × 5 = 20.", "20", None, "What is the area of the rectangle?", "R"),
    ("3 x 4 = 12, so the value is 12", "12", None, "What is the area of the rectangle?", "R"),
    ("3 x 4 = 12, so the value is 12", "7", None, "What is the area of the rectangle?", "W"),
    # --- negations and comparisons around the right value are not that value ----------------
    ("not 2", "2", None, "How many dogs are there?", "W"),
    ("It is not 2.", "2", None, "How many dogs are there?", "W"),
    ("less than 2", "2", None, "How many dogs are there?", "W"),
    ("fewer than 3", "2", None, "How many dogs are there?", "W"),
    ("at least 2", "2", None, "How many dogs are there?", "W"),
    ("at most 2", "2", None, "How many dogs are there?", "W"),
    ("more than 2", "2", None, "How many dogs are there?", "W"),
    ("no more than 2", "2", None, "How many dogs are there?", "W"),
    ("over 2", "2", None, "How many dogs are there?", "W"),
    ("> 2", "2", None, "How many dogs are there?", "W"),
    ("There are 2 dogs.", "2", None, "How many dogs are there?", "R"),
    ("No, there are 2.", "2", None, "How many dogs are there?", "R"),
    ("not red", "red", None, "What colour is the car?", "W"),
    ("It is not red.", "red", None, "What colour is the car?", "W"),
    ("isn't blue", "blue", None, "What colour is the car?", "W"),
    ("not B", "B", None, "Which option is correct?", "W"),
    ("It is not red.", "A", COLOURS, "What colour is the car?", "W"),
    ("The car is red, not blue.", "blue", None, "What colour is the car?", "W"),
    # ... but a rejected alternative beside a committed answer leaves the answer
    ("A, not B", "A", None, "Which option is correct?", "R"),
    ("green, not red", "B", COLOURS, "What colour is the car?", "R"),
    ("not red but green", "B", COLOURS, "What colour is the car?", "R"),
    ("not red but green", "A", COLOURS, "What colour is the car?", "W"),
    ("B. The car is not red", "B", COLOURS, "What colour is the car?", "R"),
    ("He has 2 dogs, not 3", "2", None, "How many dogs does he have?", "R"),
    ("He has 2 dogs, not 3", "3", None, "How many dogs does he have?", "W"),
    # --- a percentage where a plain number is asked ----------------------------------------------
    ("40%", "40", None, COUNT_Q, "W"),
    ("40 percent", "40", None, COUNT_Q, "W"),
    ("40", "40", None, COUNT_Q, "R"),
    ("40%", "40", None, PIE_Q, "R"),
    ("40 percent", "40", None, PIE_Q, "R"),
    ("40", "40", None, PIE_Q, "R"),
    ("45%", "40", None, PIE_Q, "W"),
    ("40%", "0.4", None, "What fraction of the pie chart is red?", "R"),
    # --- self-reversals: the last stated decision wins ---------------------------------------
    ("Yes. No wait, no.", "yes", None, "Is there a dog?", "W"),
    ("Yes. No wait, no.", "no", None, "Is there a dog?", "R"),
    ("No. Actually, yes.", "yes", None, "Is there a dog?", "R"),
    ("No. Actually, yes.", "no", None, "Is there a dog?", "W"),
    ("Yes, it is. Actually no.", "yes", None, "Is there a dog?", "W"),
    ("Yes, there is a dog on the sofa.", "yes", None, "Is there a dog?", "R"),
    ("B... actually C", "C", None, "Which option is correct?", "R"),
    ("B... actually C", "B", None, "Which option is correct?", "W"),
    ("B... actually C", "C", COLOURS, "What colour is the car?", "R"),
    ("A, wait, no: B", "B", COLOURS, "What colour is the car?", "R"),
    ("3, no wait, 4", "4", None, "How many dogs are there?", "R"),
    ("3, no wait, 4", "3", None, "How many dogs are there?", "W"),
    # --- hedges between two answers are wrong -------------------------------------------------
    ("either red or green", "red", None, "What colour is the car?", "W"),
    ("red or green", "red", None, "What colour is the car?", "W"),
    ("either red or green", "A", COLOURS, "What colour is the car?", "W"),
    ("either 3 or 4", "3", None, "How many dogs are there?", "W"),
    # ... and what only looks like them
    ("3 / 4", "0.75", None, "What fraction of the cake is left?", "R"),
    ("It has been open since 1990.", "1990", None, "Since what year has the shop been open?", "R"),
    ("so-so", "so-so", None, "How was the weather?", "R"),
    ("yes or no", "yes", None, "Is there a dog?", "W"),
]


@pytest.mark.parametrize("pred, gt, choices, question, grade", CONTEXT_TABLE,
                         ids=[f"{p!r:.30}|{g!r:.15}|{q!r:.12}" for p, g, _, q, _ in CONTEXT_TABLE])
def test_rules_decide_as_a_grader_who_reads_the_question(pred, gt, choices, question, grade):
    assert math_pool().wait_idle(timeout_s=60)
    verdict = match_answer(pred, gt, choices=choices, question=question)
    expected = {"R": True, "W": False, "U": None}[grade]
    assert verdict.correct is expected, verdict


def test_table_is_large_and_covers_every_family():
    assert len(TABLE) >= 150
    grades = [row[3] for row in TABLE]
    assert min(grades.count(g) for g in "RWU") >= 30


@pytest.mark.parametrize("pred, gt, choices, grade", TABLE, ids=[f"{p!r:.30}|{g!r:.15}" for p, g, _, _ in TABLE])
def test_rules_decide_as_a_grader_would(pred, gt, choices, grade):
    # math-verify rows need the math pool's workers up (other tests kill stuck ones on purpose)
    assert math_pool().wait_idle(timeout_s=60)
    verdict = match_answer(pred, gt, choices=choices)
    expected = {"R": True, "W": False, "U": None}[grade]
    assert verdict.correct is expected, verdict
