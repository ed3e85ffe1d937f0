"""The evaluation pipeline end to end: every mode through the transformers backend with a tiny offline
Qwen2.5-VL, exact scoring/crops/failure counts with scripted responses, resume, CLI, judge."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from eval_helpers import (
    MAX_PIXELS,
    MIN_PIXELS,
    ScriptedBackend,
    make_hrbench_tsv,
    make_pope_original,
    make_pope_parquet,
    make_realworldqa_parquet,
    make_treebench_tsv,
    make_vstar,
    tiny_qwen,
)

from recipe.ivgr.eval.backends import GenerationResult, SamplingSettings, TransformersBackend
from recipe.ivgr.eval.config import FAILURES, MODES, EvalConfig
from recipe.ivgr.eval.converter import convert
from recipe.ivgr.eval.main import BenchInput, main, run_eval
from recipe.ivgr.eval.record import read_records
from recipe.ivgr.eval.schema import iter_eval_rows
from reward_score.frames import resized_size, to_model_frame

BOUNDS = (MIN_PIXELS, MAX_PIXELS)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Eval files converted from synthetic public-format sources."""
    root = tmp_path_factory.mktemp("eval_data")
    files = {}
    for name, maker, source in [("vstar", make_vstar, root / "vstar_bench"),
                                ("hrbench4k", make_hrbench_tsv, root / "hr_bench_4k.tsv"),
                                ("pope", make_pope_parquet, root / "pope.parquet"),
                                ("treebench", make_treebench_tsv, root / "tree.tsv"),
                                ("realworldqa", make_realworldqa_parquet, root / "rwqa.parquet")]:
        if not source.suffix:
            source.mkdir()
        files[name] = root / f"{name}.parquet"
        convert(name, [maker(source)], files[name])
    orig = make_pope_original(root / "pope_orig")
    files["pope_missing"] = root / "pope_missing.parquet"
    convert("pope", [orig], files["pope_missing"], image_root=root / "pope_orig" / "val2014")
    files["sources"] = root
    return files


def rows_of(path):
    return {r["item_id"]: r for r in iter_eval_rows(path)}


def gt_box_text(row, bounds=BOUNDS, frame="qwen2_5_vl"):
    """The item's GT boxes written the way the model would write them (model frame)."""
    boxes = to_model_frame(row["gt_boxes"], row["image_size"], frame, *bounds)
    return " ".join("<box>[" + ", ".join(f"{v:.2f}" for v in box) + "]</box>" for box in boxes)


class HybridBackend(TransformersBackend):
    """The real tiny model for textual and tool passes; the grounded pass answers with the item's GT
    box (a random tiny model writes no boxes, and the tool pass needs some to crop)."""

    def __init__(self, rows, **kwargs):
        model, processor = tiny_qwen()
        super().__init__(model, processor, sampling=SamplingSettings(max_new_tokens=4), batch_size=4, **kwargs)
        self.rows = rows
        self.seen = []

    def _generate_batch(self, requests):
        self.seen.extend((r.pass_name, len(r.images)) for r in requests)
        if all(r.pass_name == "grounded" for r in requests):
            out = []
            for r in requests:
                row = self.rows.get(r.item_id)
                boxes = gt_box_text(row) if row and row["gt_boxes"] else "<box>[0,0,20,20]</box>"
                out.append(GenerationResult(text=f"<think>here {boxes}</think><answer>A</answer>",
                                            finish_reason="stop"))
            return out
        return super()._generate_batch(requests)


def test_every_mode_end_to_end_with_the_tiny_model(data, tmp_path):
    rows = {**rows_of(data["vstar"]), **rows_of(data["pope"]), **rows_of(data["hrbench4k"])}
    backend = HybridBackend(rows)
    benches = [BenchInput("vstar", data["vstar"]), BenchInput("pope", data["pope"]),
               BenchInput("hrbench4k", data["hrbench4k"])]
    cfg = EvalConfig(modes=MODES, chunk_size=4)
    summary = run_eval(benches, cfg, tmp_path, backend=backend, model="tiny", progress=False)

    assert backend.stats["errors"] == 0
    tool_calls = [n for name, n in backend.seen if name == "tool"]
    assert tool_calls and all(n >= 2 for n in tool_calls)  # full image + crops through the real model
    assert Counter(name for name, _ in backend.seen)["textual"] == len(rows)
    for bench in benches:
        for mode in MODES:
            records = read_records(tmp_path / bench.label / f"{mode}.jsonl")
            assert sorted(r["item_id"] for r in records) == sorted(rows_of(bench.path))
            for r in records:
                assert r["mode"] == mode and isinstance(r["response"], str) and isinstance(r["correct"], bool)
                assert isinstance(r["reference_correct"], bool)  # both protocols' verdicts on every item
                assert "internal_error" not in r["failures"] and "generation_error" not in r["failures"]
                placeholders = sum(m["content"].count("<image>") for m in r["prompt"])
                assert placeholders == r["num_images"]
                if mode in ("tool", "tool-each", "tool-union"):
                    assert r["crops"] and r["tool_fallback"] is None
                    assert r["num_images"] == 1 + len(r["crops"])
            if bench.label == "vstar" and mode != "textual":
                assert all(r["iou"] > 0.97 for r in records)  # GT boxes written back in the model frame
    results = summary["results"]
    assert set(results) == {"vstar", "pope", "hrbench4k"} and set(results["vstar"]) == set(MODES)
    assert results["pope"]["textual"]["metric"] == "f1" and results["hrbench4k"]["tool"]["metric"] == "subset_mean"
    assert results["vstar"]["grounded"]["grounding"]["items_with_gt"] == 3
    md = (tmp_path / "summary.md").read_text()
    assert "| mode | protocol | V* | HR4K | POPE | Avg |" in md and "| tool-union | graded |" in md
    assert "| tool-union | reference |" in md and "## Protocols" in md
    assert all(results[b][m]["reference_score"] is not None for b in results for m in results[b])
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["backend"]["backend"] == "transformers" and run["backend"]["sampling"]["temperature"] == 0.0
    assert run["pixel_bounds"] == [MIN_PIXELS, MAX_PIXELS]  # narrowed to the processor's bounds


def script_for(rows, bounds=BOUNDS):
    """Hand-made model outputs that exercise every failure path (see the test below)."""
    v1, v2, v3 = (rows[f"vstar:{k}"] for k in ("direct_attributes/sa_1", "relative_position/sa_2",
                                                "relative_position/sa_3"))

    def script(request):
        row = rows[request.item_id]
        if request.pass_name == "grounded":
            if row is v1:  # the GT box plus an invalid payload
                return f"<think>the cup {gt_box_text(v1, bounds)} <box>[1, 2, 3]</box></think><answer>C</answer>"
            if row is v2:  # a box entirely outside the image: no usable crop
                return "<think><box>[5000, 10, 5100, 60]</box></think><answer>left</answer>"
            if row is v3:  # no box at all
                return "<think>no boxes here</think><answer>right</answer>"
            return "<think>x</think><answer>yes</answer>"
        if request.pass_name == "tool":  # answers by option TEXT after seeing the crops
            return f"<think>zoomed in on {len(request.images) - 1} crops</think><answer>{row['answer_text']}</answer>"
        if row is v1:
            return ""  # unparsable
        if row is v2:
            return "<think>it is on the left</think> left"  # no answer tag: fallback text, correct
        if row is v3:
            return GenerationResult(text="<think>very long", finish_reason="length")
        return "<think>x</think><answer>Yes, there is.</answer>"
    return script


def test_scripted_exact_scores_crops_and_failure_counts(data, tmp_path):
    rows = {**rows_of(data["vstar"]), **rows_of(data["pope_missing"])}
    pope_ok = next(k for k, r in rows.items() if r["image_size"] is not None and k.startswith("pope"))
    backend = ScriptedBackend(script_for(rows))
    benches = [BenchInput("vstar", data["vstar"]), BenchInput("pope", data["pope_missing"])]
    cfg = EvalConfig(modes=MODES, chunk_size=2)
    summary = run_eval(benches, cfg, tmp_path, backend=backend, progress=False)
    res = summary["results"]

    textual = {r["item_id"]: r for r in read_records(tmp_path / "vstar" / "textual.jsonl")}
    assert textual["vstar:direct_attributes/sa_1"]["failures"] == ["unparsable_output"]
    fallback = textual["vstar:relative_position/sa_2"]
    assert fallback["answer"] == "left" and fallback["correct"] and fallback["failures"] == ["no_answer_tag"]
    assert set(textual["vstar:relative_position/sa_3"]["failures"]) == {"truncated_output", "unparsable_output"}
    assert res["vstar"]["textual"]["failures"]["unparsable_output"] == 2
    assert res["vstar"]["textual"]["accuracy"] == pytest.approx(1 / 3)

    grounded = {r["item_id"]: r for r in read_records(tmp_path / "vstar" / "grounded.jsonl")}
    g1 = grounded["vstar:direct_attributes/sa_1"]
    assert g1["iou"] > 0.98 and g1["invalid_boxes"] == 1 and g1["failures"] == ["invalid_box"]
    assert g1["boxes"][0] == pytest.approx(rows["vstar:direct_attributes/sa_1"]["gt_boxes"][0], abs=0.5)
    assert g1["correct"] is (rows["vstar:direct_attributes/sa_1"]["answer"] == "C")
    assert set(grounded["vstar:relative_position/sa_2"]["failures"]) == {"box_outside_image"}
    assert grounded["vstar:relative_position/sa_2"]["iou"] == 0.0
    assert grounded["vstar:relative_position/sa_3"]["failures"] == ["no_boxes"]
    assert res["vstar"]["grounded"]["failures"]["box_outside_image"] == 1
    assert res["vstar"]["grounded"]["grounding"]["items_with_gt"] == 3

    tool = {r["item_id"]: r for r in read_records(tmp_path / "vstar" / "tool.jsonl")}
    t1 = tool["vstar:direct_attributes/sa_1"]
    assert t1["crops"] == [[60, 80, 100, 110]] and t1["crop_kinds"] == ["box"]  # box == union: kept once
    assert t1["correct"] and t1["answer"] == "white" and t1["num_images"] == 2
    t2 = tool["vstar:relative_position/sa_2"]
    assert t2["tool_fallback"] == "no_usable_crop" and t2["empty_crops"] == 1
    assert {"empty_crop", "box_outside_image", "tool_fallback"} <= set(t2["failures"])
    assert t2["response"] == textual["vstar:relative_position/sa_2"]["response"]  # textual answer stands
    t3 = tool["vstar:relative_position/sa_3"]
    assert t3["tool_fallback"] == "no_boxes" and t3["crops"] == []
    assert res["vstar"]["tool"]["failures"]["tool_fallback"] == 2
    assert res["vstar"]["tool"]["failures"]["empty_crop"] == 1
    # one tool prompt for all three tool variants (the same single crop), with the crop after the image
    tool_requests = [r for r in backend.requests if r.pass_name == "tool"]
    assert [r.item_id for r in tool_requests] == ["vstar:direct_attributes/sa_1"]
    (request,) = tool_requests
    assert request.images[1].size == resized_size(40, 30, "qwen2_5_vl", *BOUNDS)  # the 40x30 crop, upscaled
    text = " ".join(c["text"] for c in request.messages[-1]["content"] if c["type"] == "text")
    assert "zoomed-in crop" in text and "Options:" in text

    pope = {r["item_id"]: r for r in read_records(tmp_path / "pope" / "textual.jsonl")}
    missing = next(r for k, r in pope.items() if k != pope_ok)
    assert missing["failures"] == ["missing_image"] and missing["correct"] is False and missing["response"] is None
    assert pope[pope_ok]["correct"]
    assert res["pope"]["textual"]["items"] == 2 and res["pope"]["textual"]["accuracy"] == 0.5
    assert res["pope"]["grounded"]["failures"]["missing_image"] == 1
    for bench in res.values():
        for mode_summary in bench.values():
            assert set(mode_summary["failures"]) == set(FAILURES)
            assert mode_summary["failures"]["internal_error"] == 0
    md = (tmp_path / "summary.md").read_text()
    assert "missing_image" in md and "box_outside_image" in md and "## Grounding" in md


def test_generation_errors_are_isolated_and_counted(data, tmp_path):
    rows = rows_of(data["treebench"])
    bad = "treebench:1"
    backend = ScriptedBackend(lambda r: "<think>x</think><answer>A</answer>", batch_size=8,
                              fail_on=lambda r: r.item_id == bad and r.pass_name == "textual")
    summary = run_eval([BenchInput("treebench", data["treebench"])], EvalConfig(modes=("textual",)), tmp_path,
                       backend=backend, progress=False)
    records = {r["item_id"]: r for r in read_records(tmp_path / "treebench" / "textual.jsonl")}
    assert records[bad]["failures"] == ["generation_error"] and "scripted failure" in records[bad]["error"]
    other = next(k for k in rows if k != bad)
    assert records[other]["failures"] == [] and records[other]["answer"] == "A"
    assert summary["results"]["treebench"]["textual"]["failures"]["generation_error"] == 1


def test_resume_reuses_earlier_responses(data, tmp_path):
    rows = rows_of(data["vstar"])
    first = ScriptedBackend(script_for({**rows, **rows_of(data["pope_missing"])}))
    bench = [BenchInput("vstar", data["vstar"])]
    run_eval(bench, EvalConfig(modes=("textual",)), tmp_path, backend=first, progress=False)
    assert Counter(r.pass_name for r in first.requests) == {"textual": 3}
    with pytest.raises(SystemExit, match="--resume"):
        run_eval(bench, EvalConfig(modes=("textual",)), tmp_path, backend=first, progress=False)

    second = ScriptedBackend(script_for({**rows, **rows_of(data["pope_missing"])}))
    run_eval(bench, EvalConfig(modes=("textual", "grounded", "tool")), tmp_path, backend=second, resume=True,
             progress=False)
    # textual records are kept; tool fallbacks reuse the earlier textual responses
    assert Counter(r.pass_name for r in second.requests) == {"grounded": 3, "tool": 1}
    assert len(read_records(tmp_path / "vstar" / "textual.jsonl")) == 3

    third = ScriptedBackend(script_for({**rows, **rows_of(data["pope_missing"])}))
    summary = run_eval(bench, EvalConfig(modes=("tool-each", "tool-union")), tmp_path, backend=third, resume=True,
                       progress=False)
    assert third.requests == []  # grounded, textual and tool responses all come from the records
    assert summary["results"]["vstar"]["tool-union"]["items"] == 3

    with pytest.raises(SystemExit, match="other settings"):
        run_eval(bench, EvalConfig(modes=("textual",), max_crops=2), tmp_path, backend=third, resume=True,
                 progress=False)


def test_cli_converts_on_the_fly_and_writes_outputs(data, tmp_path, capsys):
    src = data["sources"]
    rows = rows_of(data["treebench"])
    backend = ScriptedBackend(lambda r: "<think>ok <box>[1,1,40,40]</box></think><answer>B</answer>")
    out = tmp_path / "out"
    args = ["--model", "dummy", "--bench", f"treebench={src / 'tree.tsv'}", f"rwqa={data['realworldqa']}",
            "--mode", "textual", "--mode", "grounded,tool-union", "--out", str(out), "--no-progress",
            "--min-pixels", str(MIN_PIXELS), "--max-pixels", str(MAX_PIXELS)]
    with pytest.raises(SystemExit, match="cannot tell the box frame"):  # "dummy" names no architecture
        main(args, backend=backend)
    code = main([*args, "--box-frame", "qwen2_5_vl"], backend=backend)
    assert code == 0
    assert (out / "data" / "treebench.parquet").exists()  # converted from the public TSV
    for label in ("treebench", "rwqa"):
        for mode in ("textual", "grounded", "tool-union"):
            assert (out / label / f"{mode}.jsonl").exists()
    records = read_records(out / "treebench" / "textual.jsonl")
    assert len(records) == len(rows)
    assert {r["correct"] for r in records} == {r["answer"] == "B" for r in rows.values()}
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["results"]) == {"treebench", "rwqa"}
    assert summary["run"]["argv"][0] == "--model"
    assert "| mode |" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # results exist and neither --resume nor --overwrite
        main(["--model", "dummy", "--bench", f"treebench={out / 'data' / 'treebench.parquet'}", "--out", str(out),
              "--no-progress"], backend=backend)
    assert main(["--model", "dummy", "--bench", f"treebench={out / 'data' / 'treebench.parquet'}", "--out", str(out),
                 "--no-progress", "--overwrite", "--min-pixels", str(MIN_PIXELS), "--max-pixels", str(MAX_PIXELS)],
                backend=backend) == 0
    with pytest.raises(SystemExit, match="not found"):
        main(["--model", "dummy", "--bench", "vstar", "--data-dir", str(tmp_path / "none"), "--out",
              str(tmp_path / "o2")], backend=backend)
    with pytest.raises(SystemExit, match="unknown"):
        main(["--model", "dummy", "--bench", str(data["vstar"]), "--mode", "telepathy"], backend=backend)


def test_cli_transformers_backend_from_a_saved_checkpoint(data, tmp_path):
    from recipe.ivgr.eval import tiny_checkpoint

    ckpt = tmp_path / "tiny-ckpt"
    assert tiny_checkpoint.main([str(ckpt)]) == 0  # the README's one command
    out = tmp_path / "out"
    assert main(["--model", str(ckpt), "--backend", "transformers", "--offline-processor", "--bench",
                 str(data["hrbench4k"]), "--mode", "textual", "--max-new-tokens", "3", "--min-pixels",
                 str(MIN_PIXELS), "--max-pixels", str(MAX_PIXELS), "--out", str(out), "--no-progress"]) == 0
    records = read_records(out / "hrbench4k" / "textual.jsonl")
    assert len(records) == 3 and all("generation_error" not in r["failures"] for r in records)
    run = json.loads((out / "run.json").read_text())
    assert run["backend"]["backend"] == "transformers" and run["box_frame"] == "qwen2_5_vl"
    assert run["backend_stats"]["requests"] == 3


def test_judge_decides_open_answers_only(data, tmp_path, judge_server):
    judge_server.reset()
    rows = rows_of(data["realworldqa"])
    backend = ScriptedBackend(lambda r: "<think>x</think><answer>a couple of them</answer>")
    cfg = EvalConfig(modes=("textual",), judge={"base_url": judge_server.url, "model": "judge"})
    summary = run_eval([BenchInput("rwqa", data["realworldqa"])], cfg, tmp_path, backend=backend, progress=False)
    records = {r["item_id"]: r for r in read_records(tmp_path / "rwqa" / "textual.jsonl")}
    open_id = next(k for k, r in rows.items() if r["answer_type"] == "number")
    mc_id = next(k for k, r in rows.items() if r["answer_type"] == "choice")
    assert records[open_id]["decided_by"] == "judge" and records[open_id]["correct"]  # fake judge: "Verdict: 1"
    assert records[mc_id]["decided_by"] == "undecided" and not records[mc_id]["correct"]  # MC: never judged
    assert judge_server.count == 1
    prompt = judge_server.requests[0]["body"]["messages"][-1]["content"]
    assert "a couple of them" in prompt and re.search(r"reference_answer>\s*2\s*<", prompt)
    assert summary["run"]["judge_stats"]["calls"] == 1.0


def test_qwen3_frame_boxes_are_relative_and_images_use_factor_32(data, tmp_path):
    rows = rows_of(data["treebench"])
    bounds = (4 * 32 * 32, 64 * 32 * 32)

    def script(request):
        row = rows[request.item_id]
        if request.pass_name == "grounded":
            box = gt_box_text(row, bounds, "qwen3_vl")
            return f"<think>{box}</think><answer>{row['answer']}</answer>"
        return f"<think>x</think><answer>{row['answer_text']}</answer>"

    backend = ScriptedBackend(script, bounds=bounds)
    cfg = EvalConfig(modes=("grounded", "tool-each"), box_frame="qwen3_vl")
    summary = run_eval([BenchInput("treebench", data["treebench"])], cfg, tmp_path, backend=backend, progress=False)
    grounded = {r["item_id"]: r for r in read_records(tmp_path / "treebench" / "grounded.jsonl")}
    for item_id, record in grounded.items():
        assert record["iou"] > 0.98 and record["correct"]
        assert all(side % 32 == 0 for side in record["model_image_size"])
        assert "0-1000" in record["prompt"][-1]["content"]
    kite = read_records(tmp_path / "treebench" / "tool-each.jsonl")[0]
    assert kite["crops"] == [[100, 50, 140, 90]] and kite["correct"]
    assert summary["results"]["treebench"]["grounded"]["grounding"]["iou"] > 0.98
