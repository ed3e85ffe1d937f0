"""The `reference` protocol reproduces VLMEvalKit's own verdicts (tests/data/reference_rules.json,
made by scripts/make_reference_table.py running VLMEvalKit's functions at the named commit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recipe.ivgr.eval import reference
from recipe.ivgr.eval.benchmarks import BENCHMARKS, REFERENCE_RULES
from recipe.ivgr.eval.benchmarks.chartqa import vlmeval_relaxed
from recipe.ivgr.eval.scoring import reference_score

TABLE = json.loads((Path(__file__).parent / "data" / "reference_rules.json").read_text(encoding="utf-8"))
RULES = {"vlmeval_mcq": reference.vlmeval_mcq, "vlmeval_regex": reference.vlmeval_regex,
         "vlmeval_yorn": reference.vlmeval_yorn, "vlmeval_wemath": reference.vlmeval_wemath}


def _rows(family: str) -> list[dict]:
    return TABLE["families"][family]["rows"]


def test_table_names_the_reference_commit():
    assert TABLE["reference"] == reference.REFERENCE
    assert TABLE["commit"] == reference.REFERENCE_COMMIT
    assert all(len(f["rows"]) >= 70 for f in TABLE["families"].values())
    assert set(TABLE["families"]) == set(RULES)


@pytest.mark.parametrize("benchmark", sorted(REFERENCE_RULES))
def test_each_benchmark_reproduces_its_reference_table(benchmark):
    """Through the registry (`reference_score`), every benchmark reproduces the rows of its family."""
    rule = REFERENCE_RULES[benchmark].score
    family = next((name for name, fn in RULES.items() if fn is rule), None)
    if family is None:  # ChartQA: relaxed accuracy, pinned by tests/test_eval_reasoning.py
        assert rule is vlmeval_relaxed
        return
    for row in _rows(family):
        item = {"benchmark": benchmark, "choices": row.get("choices"), "answer": row["truth"]}
        verdict = reference_score(item, row["answer"], bool(row.get("tagged", False)))
        assert (verdict.correct, verdict.extracted) == (row["hit"], row["extracted"]), row


@pytest.mark.parametrize("family", sorted(RULES))
def test_reference_rule_reproduces_every_row(family):
    rule = RULES[family]
    mismatches = []
    for row in _rows(family):
        item = {"choices": row.get("choices"), "answer": row["truth"]}
        verdict = rule(row["answer"], item, bool(row.get("tagged", False)))
        if (verdict.correct, verdict.extracted) != (row["hit"], row["extracted"]):
            mismatches.append((row, verdict))
    assert not mismatches, f"{len(mismatches)} of {len(_rows(family))} rows differ, first: {mismatches[:3]}"


def test_every_benchmark_has_a_rule_or_is_declared_without_one():
    no_reference = {"mmk12", "generic"}
    assert set(REFERENCE_RULES) == set(BENCHMARKS) - no_reference
    for name in no_reference:
        assert reference_score({"benchmark": name, "answer": "x"}, "x", True) is None


def test_rule_families_per_benchmark():
    rules = REFERENCE_RULES
    assert rules["pope"].score is reference.vlmeval_yorn
    assert rules["wemath"].score is reference.vlmeval_wemath
    assert rules["treebench"].score is rules["mme_realworld_lite"].score is reference.vlmeval_regex
    assert all(rules[b].score is reference.vlmeval_mcq for b in ("vstar", "hrbench4k", "ai2d", "mmstar", "mmmu"))


def test_no_answer_is_wrong():
    assert reference_score({"benchmark": "vstar", "answer": "A", "choices": ["x", "y"]}, None, False) \
        == reference.ReferenceVerdict(False, None)


def _record(bench, truth, correct, ref_correct, ref_extracted=None, subset=None):
    return {"benchmark": bench, "ground_truth": truth, "correct": correct, "decided_by": "rule",
            "reference_correct": ref_correct, "reference_extracted": ref_extracted, "subset": subset, "failures": []}


def test_summary_reports_both_protocols_and_flags_a_gap():
    from recipe.ivgr.eval.report import protocol_flags, render_markdown, summarize_records

    records = [_record("vstar", "A", True, True), _record("vstar", "B", True, False),
               _record("vstar", "C", True, True), _record("vstar", "D", False, False)]
    s = summarize_records(records)
    assert (s["score"], s["reference_score"]) == (0.75, 0.5)
    assert s["protocol_gap"] == pytest.approx(0.25) and s["protocols_differ"]
    same = summarize_records([_record("vstar", "A", True, True)] * 3)
    assert same["protocol_gap"] == 0 and not same["protocols_differ"]
    assert protocol_flags({"vstar": {"textual": s, "grounded": same}}) == ["vstar/textual"]
    md = render_markdown({"run": {}, "results": {"vstar": {"textual": s}}})
    assert "| textual | graded | 75.0 |" in md and "| textual | reference | 50.0 |" in md
    assert "| vstar | textual | 75.0 | 50.0 | +25.0 ⚠ |" in md


def test_reference_pope_f1_counts_unknown_as_no():
    from recipe.ivgr.eval.report import summarize_records

    # truth yes/read Yes (tp), truth no/read Unknown (VLMEvalKit: predicted no -> tn), truth yes/Unknown (fn)
    records = [_record("pope", "yes", True, True, "Yes"), _record("pope", "no", True, False, "Unknown"),
               _record("pope", "yes", True, False, "Unknown")]
    s = summarize_records(records)
    assert s["reference_f1"] == {"f1": pytest.approx(2 / 3), "precision": 1.0, "recall": 0.5}
    assert s["reference_score"] == pytest.approx(2 / 3) and s["reference_accuracy"] == pytest.approx(1 / 3)


def test_reference_subset_mean_and_missing_verdicts():
    from recipe.ivgr.eval.report import summarize_records

    records = [_record("hrbench4k", "A", True, True, subset="FSP"), _record("hrbench4k", "A", True, None,
                                                                             subset="FCP"),
               _record("hrbench4k", "A", True, True, subset="FCP")]
    assert summarize_records(records)["reference_score"] == pytest.approx((1.0 + 0.5) / 2)  # None = wrong
    legacy = [{k: v for k, v in r.items() if not k.startswith("reference")} for r in records]
    assert summarize_records(legacy)["reference_score"] is None  # written before the protocol existed
    assert summarize_records([_record("mmk12", "3", True, None)])["reference_score"] is None
