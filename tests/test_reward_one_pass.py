"""Several acceptable answers: the format and box terms are computed once per rollout and only the
accuracy is decided per answer; the result is the one the per-answer scoring gives."""

import pytest

from reward_score import compute_score, scoring

SIZE, BOUNDS = [800, 1000], {"min_pixels": 3136, "max_pixels": 1280 * 28 * 28}
GT = [[100, 200, 400, 500], [500, 100, 700, 300]]
BOX = "<box>[101.5, 201.6, 406.0, 504.0]</box>"  # GT[0] in the model frame (812 x 1008)


def grounded(**extra):
    return {"stream": "grounded", "gt_boxes": GT, "image_size": SIZE, "box_frame": "qwen2_5_vl", **BOUNDS, **extra}


CASES = [
    # (response, acceptable answers, extra_info)
    (f"<think>the cup {BOX} {BOX}</think><answer>crimson</answer>", ["red", "crimson", "scarlet"], grounded()),
    (f"<think>the cup {BOX}</think><answer>navy</answer>", ["blue", "dark blue"], grounded()),  # none decides
    (f"<think>the cup {BOX}</think><answer>3</answer>", ["three", "3", "4"], grounded()),
    ("<think>count</think><answer>5</answer>", ["4", "6"], {"stream": "textual"}),  # all wrong
    ("<think>look</think><answer>B</answer>", ["A", "B"], {"stream": "single", "choices": ["A. red", "B. blue"]}),
    ("<think>look</think><answer>the blue one</answer>", ["green", "blue one"], {"stream": "single"}),
    ("no tags at all", ["red", "blue"], {"stream": "textual"}),
]


def _per_answer(text, answers, extra, **settings):
    """The rollout scored against each answer alone; the first decisive match, else the best."""
    best = None
    for answer in answers:
        result = compute_score("s", text, answer, extra, **settings)
        if best is None or (result["acc"], -result["acc_undecided"]) > (best["acc"], -best["acc_undecided"]):
            best = result
        if result["acc"] == 1.0 and not result["acc_undecided"]:
            break
    return best


@pytest.mark.parametrize("text,answers,extra", CASES)
@pytest.mark.parametrize("fallback", ["zero", "contains"])
def test_any_acceptable_answer_scores_as_the_best_single_answer(text, answers, extra, fallback):
    together = compute_score("s", text, answers[0], {**extra, "answers": answers}, undecided_fallback=fallback)
    assert together == _per_answer(text, answers, extra, undecided_fallback=fallback)


def test_the_rule_part_runs_once_for_several_answers(monkeypatch):
    calls = {"parse_response": 0, "parse_boxes": 0, "box_scores": 0}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    for name in calls:
        monkeypatch.setattr(scoring, name, counted(name, getattr(scoring, name)))
    text, answers, extra = CASES[1]
    result = compute_score("s", text, answers[0], {**extra, "answers": ["blue", "dark blue", "cobalt"]})
    assert result["acc_undecided"] == 1.0  # every answer was tried
    assert calls == {"parse_response": 1, "parse_boxes": 1, "box_scores": 1}
