"""The chart and multidisciplinary table (ChartQA, AI2D, WeMath, MMStar, MMMU, MMK12): converters on
fixtures written to each source's public schema, and each benchmark's official scoring rule.

Expected verdicts come from the rules as the reference libraries implement them, applied by hand
to the fixture items: ChartQA from pix2struct's `relaxed_correctness` (vendored by VLMEvalKit
`vlmeval/dataset/utils/vqa_eval.py` and lmms-eval `tasks/chartqa/utils.py`), WeMath from lmms-eval
`tasks/wemath/wemath_utils.py` (the official We-Math four-dimensional metric).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from eval_helpers import ScriptedBackend, b64, image_bytes, write_tsv

from recipe.ivgr.eval.benchmarks.chartqa import relaxed_correctness
from recipe.ivgr.eval.config import EvalConfig
from recipe.ivgr.eval.converter import convert
from recipe.ivgr.eval.main import BenchInput, run_eval
from recipe.ivgr.eval.report import render_markdown
from recipe.ivgr.eval.schema import iter_eval_rows
from recipe.ivgr.eval.scoring import score_answer


def rows(path):
    return {r["item_id"]: r for r in iter_eval_rows(path)}


def _image(i=0):
    return {"bytes": image_bytes((120 + 8 * i, 90)), "path": None}


def answer_of(item_row):
    """A scripted model that answers from a table keyed by the question text."""
    def script(request):
        text = request.messages[-1]["content"][-1]["text"]
        for question, said in item_row.items():
            if text.startswith(question) or f"{question}\n" in text:
                return f"<think>looking</think><answer>{said}</answer>"
        return "<think>?</think><answer>no idea</answer>"
    return script


def evaluate(tmp_path, label, path, script):
    summary = run_eval([BenchInput(label, path)], EvalConfig(modes=("textual",), min_pixels=4 * 28 * 28,
                                                             max_pixels=12 * 28 * 28),
                       tmp_path / f"out_{label}", backend=ScriptedBackend(script), progress=False)
    return summary["results"][label]["textual"], summary


# -- ChartQA --------------------------------------------------------------------------------------
# (prediction, target, pix2struct/VLMEvalKit verdict)
RELAXED = [("14.5", "14", True), ("15", "14", False), ("25%", "0.25", True), ("yes", "Yes", True),
           ("0.01", "0", False), ("0", "0", True), ("1,000", "1000", False), ("13.3", "14", True),
           ("Ireland", "ireland", True), ("12.9", "12.28", False)]


@pytest.mark.parametrize("prediction,target,verdict", RELAXED)
def test_chartqa_relaxed_correctness_matches_the_reference_rule(prediction, target, verdict):
    assert relaxed_correctness(prediction, target) is verdict


def test_chartqa_hf_parquet_and_relaxed_accuracy(tmp_path):
    src = tmp_path / "test-00000-of-00001.parquet"  # HuggingFaceM4/ChartQA, split test
    items = [("What is the peak value?", ["14"], 0), ("Which country is highest?", ["Ireland"], 0),
             ("What share is blue?", ["0.25"], 1), ("How many bars exceed 10?", ["3"], 1)]
    pq.write_table(pa.Table.from_pylist([{"image": _image(i), "query": q, "label": label, "human_or_machine": h}
                                         for i, (q, label, h) in enumerate(items)]), src)
    out = tmp_path / "chartqa.parquet"
    summary = convert("chartqa", [src], out)
    assert summary["written"] == 4 and summary["subsets"] == {"augmented": 2, "human": 2}
    converted = rows(out)
    assert converted["chartqa:0"]["answer"] == "14" and converted["chartqa:0"]["subset"] == "human"
    said = {"What is the peak value?": "14.5", "Which country is highest?": "ireland",
            "What share is blue?": "25%", "How many bars exceed 10?": "4"}
    result, full = evaluate(tmp_path, "chartqa", out, answer_of(said))
    assert result["score"] == pytest.approx(3 / 4)  # verdicts by the reference rule: T, T, T, F
    assert "Chart and multidisciplinary scores" in render_markdown(full)


# -- AI2D -----------------------------------------------------------------------------------------
def test_ai2d_lmms_parquet_and_vlmevalkit_tsv(tmp_path):
    src = tmp_path / "ai2d.parquet"  # lmms-lab/ai2d: answer is the option's index
    pq.write_table(pa.Table.from_pylist([
        {"question": "Which stage comes after the egg?", "options": ["adult", "larva", "pupa", "egg"], "answer": "1",
         "image": _image()}]), src)
    tsv = write_tsv(tmp_path / "AI2D_TEST.tsv", [
        {"index": 7, "question": "What eats the grass?", "A": "rabbit", "B": "hawk", "C": "sun", "D": "soil",
         "answer": "A", "image": b64(image_bytes())}])
    a, b = convert("ai2d", [src], tmp_path / "a.parquet", seed=None), convert("ai2d", [tsv], tmp_path / "b.parquet")
    assert a["written"] == b["written"] == 1
    (larva,) = rows(tmp_path / "a.parquet").values()
    assert larva["answer"] == "B" and larva["answer_text"] == "larva"
    (rabbit,) = rows(tmp_path / "b.parquet").values()
    assert rabbit["answer_text"] == "rabbit" and rabbit["choices"][ord(rabbit["answer"]) - 65] == "rabbit"
    # option matching: the letter or the option's text
    for said, correct in (("B", True), ("larva", True), ("(C)", False)):
        assert score_answer(larva, f"<answer>{said}</answer>").correct is correct, said


# -- MMStar ---------------------------------------------------------------------------------------
def test_mmstar_inline_options(tmp_path):
    src = tmp_path / "mmstar.parquet"  # Lin-Chen/MMStar
    pq.write_table(pa.Table.from_pylist([
        {"index": 0, "question": "How many apples are on the table?\nOptions: A: 11, B: 8, C: 4, D: 6",
         "answer": "C", "category": "fine-grained perception", "l2_category": "counting", "image": image_bytes()},
        {"index": 1, "question": "Which is warmer?\nOptions: A: red tone, B: blue tone", "answer": "A",
         "category": "coarse perception", "l2_category": "style", "image": image_bytes()}]), src)
    convert("mmstar", [src], tmp_path / "m.parquet", seed=None)
    items = rows(tmp_path / "m.parquet")
    apples = items["mmstar:0"]
    assert apples["question"] == "How many apples are on the table?" and apples["choices"] == ["11", "8", "4", "6"]
    assert apples["answer"] == "C" and apples["subset"] == "fine-grained perception"
    assert items["mmstar:1"]["choices"] == ["red tone", "blue tone"]
    result, _ = evaluate(tmp_path, "mmstar", tmp_path / "m.parquet",
                         answer_of({"How many apples": "C. 4", "Which is warmer?": "B"}))
    assert result["score"] == pytest.approx(0.5)


# -- MMMU -----------------------------------------------------------------------------------------
def test_mmmu_parquet_multiple_choice_and_open(tmp_path):
    folder = tmp_path / "MMMU" / "Physics"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([
        {"id": "validation_Physics_1", "question": "<image 1> Which force acts on the block?",
         "options": "['gravity', 'friction', 'tension']", "answer": "B", "image_1": _image(0), "image_2": None,
         "question_type": "multiple-choice", "subfield": "Mechanics"},
        {"id": "validation_Physics_2", "question": "Compare <image 1> and <image 2>: how many metres?",
         "options": "[]", "answer": "['24', '24.0']", "image_1": _image(1), "image_2": _image(2),
         "question_type": "open", "subfield": "Mechanics"}]), folder / "validation-00000-of-00001.parquet")
    convert("mmmu", [tmp_path / "MMMU"], tmp_path / "mmmu.parquet", seed=None)
    items = rows(tmp_path / "mmmu.parquet")
    mc, open_ = items["mmmu:validation_Physics_1"], items["mmmu:validation_Physics_2"]
    assert mc["choices"] == ["gravity", "friction", "tension"] and mc["answer"] == "B" and mc["subset"] == "Physics"
    assert len(open_["images"]) == 2 and open_["answer"] == "24" and open_["answers"] == ["24", "24.0"]
    assert open_["answer_type"] == "number"
    assert score_answer(mc, "<answer>friction</answer>").correct
    assert score_answer(open_, "<answer>24 m</answer>").correct
    assert not score_answer(open_, "<answer>25</answer>").correct


# -- WeMath ---------------------------------------------------------------------------------------
# (problem ID, steps, sub-problem verdicts, composite verdict) -> four-dimensional class (lmms-eval)
WEMATH = [("1", 2, (True, True), True),     # CM strict & loose
          ("2", 2, (True, False), True),    # RM strict, CM loose
          ("3", 2, (False, False), True),   # RM strict & loose
          ("4", 2, (True, True), False),    # IG
          ("5", 2, (False, True), False),   # IK
          ("6", 3, (True, True, True), True),  # CM
          ("7", 3, (True, False, True), False)]  # IK


def test_wemath_testmini_json_and_strict_loose_scores(tmp_path):
    images = tmp_path / "We-Math" / "image"
    images.mkdir(parents=True)
    lines, script = [], {}
    for group, steps, singles, multi in WEMATH:
        for key, right in [*((f"{steps}steps_{i + 1}", v) for i, v in enumerate(singles)),
                           (f"{steps}steps_multi", multi)]:
            name = f"{group}_{key}.png"
            (images / name).write_bytes(image_bytes())
            question = f"Problem {group} part {key}: what is the length?"
            lines.append({"ID": group, "split": "testmini", "knowledge concept": "length", "question": question,
                          "option": "A. 3 cm; B. 4 cm; C. 5 cm; D. 6 cm", "answer": "B", "key": key,
                          "image_path": f"image/{name}"})
            script[question] = "B" if right else "D"
    lines.append({"ID": "99", "key": "1steps", "question": "One-step only?", "option": "A. yes; B. no",
                  "answer": "A", "image_path": "image/1_2steps_1.png"})
    script["One-step only?"] = "A"
    src = tmp_path / "We-Math" / "testmini.json"
    src.write_text(json.dumps(lines))
    summary = convert("wemath", [src], tmp_path / "wemath.parquet", image_root=tmp_path / "We-Math", seed=None)
    assert summary["written"] == len(lines) and summary["kept_with_problems"] == {}
    item = rows(tmp_path / "wemath.parquet")["wemath:1@2steps_multi"]
    assert item["choices"] == ["3 cm", "4 cm", "5 cm", "6 cm"] and item["answer"] == "B"
    result, full = evaluate(tmp_path, "wemath", tmp_path / "wemath.parquet", answer_of(script))
    w = result["wemath"]
    # lmms-eval's counts for these verdicts: IK 2, IG 1, RM strict 2 / loose 1, CM strict 2 / loose 3
    assert (w["problems"], w["IK"], w["IG"], w["RM_strict"], w["RM_loose"], w["CM_strict"], w["CM_loose"]) == (
        7, 2, 1, 2, 1, 2, 3)
    assert w["score_strict"] == pytest.approx((7 - 0.5 * 1 - 2 - 2) / 7)
    assert w["score_loose"] == pytest.approx((7 - 0.5 * 1 - 1 - 2) / 7)
    assert result["score"] == w["score_strict"]
    assert "## WeMath" in render_markdown(full)


# -- MMK12 ----------------------------------------------------------------------------------------
def test_mmk12_math_answers_through_the_reward_rules(tmp_path):
    src = tmp_path / "mmk12_test.parquet"  # FanqingM/MMK12, split test
    pq.write_table(pa.Table.from_pylist([
        {"id": "math_1", "subject": "math", "question": "<image>Find the slope of the line.", "answer": "\\frac{1}{2}",
         "image": _image()},
        {"id": "phys_1", "subject": "physics",
         "question": "<image>Which direction does the current flow?\nA. left\nB. right\nC. up\nD. down",
         "answer": "B", "image": _image(1)}]), src)
    convert("mmk12", [src], tmp_path / "k.parquet", seed=None)
    items = rows(tmp_path / "k.parquet")
    slope, current = items["mmk12:math_1"], items["mmk12:phys_1"]
    assert slope["answer_type"] == "math" and slope["subset"] == "math"
    assert current["answer_type"] == "choice" and current["choices"] == ["left", "right", "up", "down"]
    assert score_answer(slope, "<answer>0.5</answer>").correct  # math_verify: 1/2 == 0.5
    assert score_answer(slope, "<answer>$\\dfrac{1}{2}$</answer>").correct
    assert not score_answer(slope, "<answer>2</answer>").correct
    assert score_answer(current, "<answer>right</answer>").correct
