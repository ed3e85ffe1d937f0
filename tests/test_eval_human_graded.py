"""The `graded` protocol against a human grader: tests/data/human_graded.jsonl holds realistic model answers
across benchmark kinds (multiple choice, with letter-valued options too; yes/no; numbers with and without
units; math; ChartQA; free-form text), each with the verdict a careful human grader gives from the question,
the options and the ground truth (`human`: right | wrong), and a note on the tricky cases. The verdicts were
written before running the grader; where it disagreed, the grader was fixed (reward_score.choices: a lone
non-option letter that is an option's text, "(B) A" for letter-valued options; reward_score.text: "on
closer inspection" as a self-correction; reward_score.numbers: "minus 5"; scoring._lenient: numeric options
by value, options sharing a frame by their own words, existence statements for "Is there ...?";
benchmarks.chartqa.graded_relaxed: the stated value, exact years, labels in a sentence)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from recipe.ivgr.eval.scoring import reference_score, score_answer

TABLE = [json.loads(line) for line in (Path(__file__).parent / "data" / "human_graded.jsonl").read_text().splitlines()
         if line.strip()]
ITEM_FIELDS = ("benchmark", "question", "choices", "answer", "answer_text", "answers", "answer_type")


def test_the_table_covers_every_kind_of_answer():
    kinds = Counter(row["kind"] for row in TABLE)
    assert set(kinds) == {"mcq", "mcq_letter_options", "yes_no", "number", "math", "chart", "text"}
    assert len(TABLE) >= 100 and min(kinds.values()) >= 9
    assert {row["human"] for row in TABLE} == {"right", "wrong"}
    assert len({row["id"] for row in TABLE}) == len(TABLE)


@pytest.mark.parametrize("row", TABLE, ids=[row["id"] for row in TABLE])
def test_graded_agrees_with_the_human_grader(row):
    item = {field: row[field] for field in ITEM_FIELDS}
    score = score_answer(item, f"<think>Looking at the image.</think><answer>{row['response']}</answer>")
    assert score.correct is (row["human"] == "right"), (row["response"], row["note"], score)


def test_where_the_reference_protocol_parts_from_the_human_grader():
    """Not a requirement on the reference (it reproduces VLMEvalKit, quirks included): the count of rows where
    it differs from the human grader, so a change of either shows up here."""
    differ = []
    for row in TABLE:
        item = {field: row[field] for field in ITEM_FIELDS}
        verdict = reference_score(item, row["response"], True)
        if verdict is not None and verdict.correct is not (row["human"] == "right"):
            differ.append(row["id"])
    assert 0 < len(differ) < len(TABLE) // 2, differ
