"""`python -m recipe.ivgr.distill` on a run written by the recipe's own writers (the trainer's
`save_stage_states`, `recipe.ivgr.dump.write_step_dump`, a `data_prep.synthetic` record Parquet), against a
real HTTP judge on 127.0.0.1 (tests/judge_server.py); the output is read back through verl's
`MultiTurnSFTDataset` and `data_prep.validate`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from judge_server import Reply, dead_port, ok, status

K = 5
RUN_BOUNDS = {"min_pixels": 3136, "max_pixels": 768 * 28 * 28}  # what the RL dataset put in extra_info


def _valid(answer: str, words: str) -> str:
    return f"<think>{words}</think><answer>{answer}</answer>"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 6-step RL run folder: archive at global_step_6, dumps at steps 2, 4, 6, and its record Parquet."""
    from data_prep import synthetic
    from recipe.ivgr.archive import Reference, RolloutArchive
    from recipe.ivgr.dump import write_step_dump
    from recipe.ivgr.stage import ConsistencySettings, ConsistencyStage, RolloutRecord
    from recipe.ivgr.trainer import save_stage_states
    from reward_score.result import RewardScore

    base = tmp_path_factory.mktemp("distill_run")
    assert synthetic.main(["--out", str(base / "data"), "--num", "10", "--seed", "0", "--quiet"]) == 0
    rows = pq.read_table(base / "data" / "train.parquet", columns=["sample_id", "question", "answer"]).to_pylist()
    ids = [r["sample_id"] for r in rows]
    info = {r["sample_id"]: r for r in rows}
    # 0-4: weak textual stream (<= 0.4 in every step) with an archive reference; 5: weak, reference only in
    # a dump; 6: weak, no reference at all; 7: 0.6 in one step (not selected); 8: not weak.
    archive = RolloutArchive()
    for sid in ids[:5]:
        archive.offer(sid, Reference(think=f"The target <box>[10,20,110,220]</box> answers it: {info[sid]['answer']}.",
                                     acc=1.0, iou=0.7, step=4))
    run_dir = base / "ckpt"
    save_stage_states([ConsistencyStage(ConsistencySettings(), archive)], str(run_dir / "global_step_6"))
    (run_dir / "latest_checkpointed_iteration.txt").write_text("6")
    textual_acc = {**{sid: [0.0, 0.0, 0.2, 0.4] for sid in ids[:8]}, ids[8]: [1.0] * 4}
    for step in (2, 4, 6):
        records, responses = [], []
        for sid in ids[:9]:
            accs = [1.0, 1.0, 0.2, 0.4] if (sid == ids[7] and step == 2) else textual_acc[sid]
            for acc in accs:
                records.append(RolloutRecord(sid, "textual", info[sid]["question"], "x", RewardScore(acc=acc, format=1.0),
                                             RUN_BOUNDS))
                responses.append(_valid("no", "A guess."))
            if sid == ids[5] and step == 6:
                think = f"The object <box>[30,40,130,240]</box> settles it: {info[sid]['answer']}."
                records.append(RolloutRecord(sid, "grounded", info[sid]["question"], think,
                                             RewardScore(acc=1.0, format=1.0, box_valid=1.0, iou=0.5), RUN_BOUNDS))
                responses.append(_valid(info[sid]["answer"], think))
        write_step_dump(str(run_dir / "rollout_dumps"), step, records, responses, [0.0] * len(records), archive)
    with open(run_dir / "rollout_dumps" / "step_6.jsonl", "a", encoding="utf-8") as handle:
        handle.write("{torn line\n")
    return {"run": run_dir, "data": base / "data" / "train.parquet", "ids": ids, "info": info}


def _answer_of(body: dict) -> tuple[str, str]:
    user = body["messages"][1]["content"]
    return re.search(r"\nQuestion: (.*)\n", user).group(1), re.search(r"\nFinal answer: (.*)\n", user).group(1)


def _responder(body: dict) -> Reply:
    """k choices: 2 valid and distinct, 1 repeat, 1 with a box, 1 with another answer (and coordinates for
    one question)."""
    question, answer = _answer_of(body)
    choices = [_valid(answer, f"Looking at the image, the relevant object shows the answer {answer}."),
               _valid(answer, f"The object near the top left gives {answer}."),
               _valid(answer, f"Looking at the image, the relevant object shows the answer {answer}."),
               _valid(answer, "The object <box>[10,20,110,220]</box> is it."),
               _valid("something else", "I changed my mind.")]
    if "purple shapes" in question:
        choices[1] = _valid(answer, "The object at [10, 20, 110, 220] is it.")
    return ok(*choices, delay_s=0.2)  # slow enough that requests overlap


def _distill(run, out: Path, url: str, *extra: str) -> int:
    from recipe.ivgr.distill import main

    return main(["--run", str(run["run"]), "--data", str(run["data"]), "--out", str(out), "--judge-base-url", url,
                 "--timeout", "5", "--quiet", *extra])


def _rejects(out: Path) -> dict[str, str]:
    lines = out.with_name(out.stem + ".rejects.jsonl").read_text().splitlines()
    return {json.loads(line)["row"]: json.loads(line)["reason"] for line in lines}


def test_selects_rewrites_checks_and_writes_sft(run, judge_server, tmp_path):
    judge_server.reset()
    judge_server.responder = _responder
    out = tmp_path / "distill.parquet"
    assert _distill(run, out, judge_server.url, "--concurrency", "2") == 0
    ids = run["ids"]
    requests = [r["body"] for r in judge_server.requests]
    assert len(requests) == 6  # ids 0-5; 6 has no reference, 7 and 8 are not weak
    assert all(b["n"] == K and b["temperature"] == 0.7 for b in requests)
    asked = {_answer_of(b)[0] for b in requests}
    assert asked == {run["info"][sid]["question"] for sid in ids[:6]}
    by_question = {_answer_of(b)[0]: b["messages"][1]["content"] for b in requests}
    info = run["info"]
    assert "The target <box>[10,20,110,220]</box> answers it" in by_question[info[ids[0]]["question"]]  # archive
    assert "The object <box>[30,40,130,240]</box> settles it" in by_question[info[ids[5]]["question"]]  # dump
    assert f"Final answer: {info[ids[5]]['answer']}" in by_question[info[ids[5]]["question"]]
    assert judge_server.max_inflight == 2  # --concurrency 2: bounded, and used

    summary = json.loads(out.with_name("distill.summary.json").read_text())
    rejects = _rejects(out)
    assert rejects[ids[6]] == "no_reference"
    purple = next(sid for sid in ids[:6] if "purple shapes" in run["info"][sid]["question"])
    for sid in ids[:6]:
        assert rejects[f"{sid}#r2"] == "duplicate_rewrite"
        assert rejects[f"{sid}#r3"] == "box_in_textual"
        assert rejects[f"{sid}#r4"] == "answer_changed"
    assert rejects[f"{purple}#r1"] == "coordinates_left"
    assert summary["written"] == 2 * 6 - 1 and summary["streams"] == {"textual": 11}
    assert summary["notes"]["selected"] == 7 and summary["notes"]["dump_bad_lines"] == 1
    assert summary["data_sources"] == {"distill/archive": 9, "distill/dump": 2}

    from data_prep.validate import validate

    assert validate(out, decode="all").ok
    table = pq.read_table(out).to_pylist()
    assert {r["sample_id"].split("#")[0] for r in table} == {f"distill:{sid}" for sid in ids[:6]}
    row = table[0]
    assert row["messages"][1]["content"].endswith("Describe what you see in words only, without boxes or coordinates.")
    assert "<box>" not in row["messages"][2]["content"]
    assert {(i["min_pixels"], i["max_pixels"]) for r in table for i in r["images"]} == {(3136, 768 * 28 * 28)}


def test_loads_in_verl_sft_dataset(run, judge_server, tmp_path):
    from omegaconf import OmegaConf
    from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset

    from data_prep.offline_processor import build_processor
    from sft_helpers import fetch_image_available

    judge_server.reset()
    judge_server.responder = _responder
    out = tmp_path / "d.parquet"
    assert _distill(run, out, judge_server.url) == 0
    processor = build_processor()
    config = OmegaConf.create({"max_length": 8192, "pad_mode": "no_padding", "messages_key": "messages"})
    dataset = MultiTurnSFTDataset([str(out)], processor.tokenizer, config, processor=processor)
    rows = pq.read_table(out).to_pylist()
    with fetch_image_available():
        item = dataset[0]
    assert processor.tokenizer.decode(item["input_ids"][item["loss_mask"].bool()]) == \
        rows[0]["messages"][2]["content"] + "<|im_end|>\n"


def test_judge_failures_are_counted_and_the_rerun_resumes(run, judge_server, tmp_path):
    ids, info = run["ids"], run["info"]
    failing = info[ids[1]]["question"]
    judge_server.reset()
    judge_server.responder = lambda body: status(500) if _answer_of(body)[0] == failing else _responder(body)
    out = tmp_path / "resume.parquet"
    assert _distill(run, out, judge_server.url, "--concurrency", "3") == 1  # exit 1: a sample still needs the judge
    first = json.loads(out.with_name("resume.summary.json").read_text())
    assert _rejects(out)[ids[1]] == "judge_server_error"
    assert first["notes"]["judge_server_error"] == 1 and first["written"] == 11 - 2
    assert len(out.with_name("resume.journal.jsonl").read_text().splitlines()) == 5

    judge_server.reset()
    judge_server.responder = _responder
    assert _distill(run, out, judge_server.url) == 0
    assert [_answer_of(r["body"])[0] for r in judge_server.requests] == [failing]  # only the missing sample
    second = json.loads(out.with_name("resume.summary.json").read_text())
    assert second["written"] == 11 and second["notes"]["resumed"] == 5

    judge_server.reset()
    assert _distill(run, out, judge_server.url) == 0 and judge_server.count == 0  # nothing left to ask


def test_judge_down_and_bad_run_folders(run, tmp_path):
    out = tmp_path / "down.parquet"
    assert _distill(run, out, f"http://127.0.0.1:{dead_port()}/v1", "--k", "2") == 1
    assert not out.exists()  # nothing to publish: the failed run's counts sit beside it
    summary = json.loads(out.with_name("down.failed.summary.json").read_text())
    assert summary["written"] == 0 and summary["notes"]["judge_connection_error"] == 6
    assert set(summary["reasons"]) == {"judge_connection_error", "no_reference"}
    from recipe.ivgr.distill import main

    with pytest.raises(SystemExit, match="ivgr_stages.json not found"):
        main(["--run", str(run["run"]), "--step", "3", "--data", str(run["data"]), "--out", str(out),
              "--judge-base-url", "http://127.0.0.1:1/v1"])


# --------------------------------------------------------------------------- review defects
def test_one_rewrite_per_sample(run, judge_server, tmp_path):
    """k = 1: the judge client hands back the one parsed choice itself (a string), not a list."""
    judge_server.reset()
    judge_server.responder = lambda body: ok(_valid(_answer_of(body)[1], "Looking at the image, it shows it."))
    out = tmp_path / "k1.parquet"
    assert _distill(run, out, judge_server.url, "--k", "1") == 0
    assert all(r["body"]["n"] == 1 for r in judge_server.requests)
    summary = json.loads(out.with_name("k1.summary.json").read_text())
    assert summary["written"] == 6 and set(summary["reasons"]) == {"no_reference"}


def test_empty_result_exits_non_zero_and_keeps_the_previous_output(run, judge_server, tmp_path):
    judge_server.reset()
    judge_server.responder = lambda body: ok(*[_valid("something else", f"Guess {i}.") for i in range(K)])
    out = tmp_path / "empty.parquet"
    out.write_bytes(b"previous")
    assert _distill(run, out, judge_server.url) == 1  # the judge answered every request: no failure to blame
    assert out.read_bytes() == b"previous"
    failed = json.loads(out.with_name("empty.failed.summary.json").read_text())
    assert failed["written"] == 0 and failed["reasons"]["answer_changed"] == 6 * K
    # most samples lost: --min-keep-ratio (samples with a reference that got a row) refuses it too
    judge_server.responder = lambda body: (_responder(body) if _answer_of(body)[0] == run["info"][run["ids"][0]][
        "question"] else ok(*[_valid("something else", f"Guess {i}.") for i in range(K)]))
    assert _distill(run, out, judge_server.url, "--fresh") == 1 and out.read_bytes() == b"previous"
    assert _distill(run, out, judge_server.url, "--min-keep-ratio", "0.1") == 0  # journal reused
    kept = {r["sample_id"].split("#")[0] for r in pq.read_table(out).to_pylist()}
    assert kept == {f"distill:{run['ids'][0]}"}


@pytest.fixture(scope="module")
def path_run(run, tmp_path_factory):
    """The run's samples re-written with images BY PATH under an image root elsewhere (stored in the Parquet's
    metadata) and a textual question of their own (`question_textual`)."""
    from data_prep import synthetic
    from data_prep.images import ImageItem
    from data_prep.writer import RecordWriter

    base = tmp_path_factory.mktemp("path_mode")
    images = base / "images"
    images.mkdir()
    out = base / "records" / "train.parquet"
    with RecordWriter(out, image_root=images) as writer:
        for index in range(9):  # train indices of the 10-sample set (index 9 went to val)
            sample = synthetic.make_sample(0, index)
            (images / f"{index}.png").write_bytes(sample.images[0].data)
            sample.images = [ImageItem(None, f"{index}.png")]
            sample.question_textual = f"In words only: {sample.question}"
            writer.add(sample, str(index))
    assert writer.committed
    return {**run, "data": out}


def test_path_mode_uses_the_stored_image_root_and_the_textual_question(path_run, judge_server, tmp_path):
    from data_prep.images import ImageItem
    from data_prep.prompts import record_messages
    from data_prep.schema import Sample, to_row

    judge_server.reset()
    judge_server.responder = _responder
    out = tmp_path / "path.parquet"
    assert _distill(path_run, out, judge_server.url) == 0
    summary = json.loads(out.with_name("path.summary.json").read_text())
    assert "image_unreadable" not in summary["reasons"] and summary["written"] == 11
    records = {r["sample_id"]: r for r in pq.read_table(path_run["data"]).to_pylist()}
    for row in pq.read_table(out).to_pylist():
        record = records[row["sample_id"].removeprefix("distill:").split("#")[0]]
        sample = Sample(record["sample_id"], "x", record["question"], record["answer"], [ImageItem(b"", "x.png")],
                        record["image_size"],
                        record["gt_boxes"], choices=record["choices"], question_textual=record["question_textual"])
        # what the RL textual stream shows for this sample
        assert row["messages"][:2] == record_messages(to_row(sample), "textual", "qwen2_5_vl")
        assert row["messages"][1]["content"].startswith("<image>In words only: ")


def test_the_reference_needs_format_and_box_validity(run, judge_server, tmp_path):
    """Archive entries are stored without format or box checks; the official SFT data tool requires both."""
    import shutil

    from recipe.ivgr.archive import Reference, RolloutArchive
    from recipe.ivgr.stage import ConsistencySettings, ConsistencyStage
    from recipe.ivgr.trainer import save_stage_states

    ids, info = run["ids"], run["info"]
    copy = tmp_path / "ckpt"
    shutil.copytree(run["run"], copy)
    archive = RolloutArchive()
    for sid in ids[:5]:
        archive.offer(sid, Reference(think=f"The target <box>[10,20,110,220]</box> answers it: {info[sid]['answer']}.",
                                     acc=1.0, iou=0.7, step=4))
    archive.offer(ids[0], Reference(think="It is clearly the answer.", acc=1.0, iou=0.9, step=6))  # no box: format 0
    archive.offer(ids[1], Reference(think="The target <box>[110,20,10,220]</box> and <box>[10,20,110,220]</box>.",
                                    acc=1.0, iou=0.9, step=6))  # an inverted box: box_valid 0.5
    save_stage_states([ConsistencyStage(ConsistencySettings(), archive)], str(copy / "global_step_6"))
    judge_server.reset()
    judge_server.responder = _responder
    out = tmp_path / "refs.parquet"
    assert _distill({**run, "run": copy}, out, judge_server.url) == 0
    asked = {_answer_of(r["body"])[0] for r in judge_server.requests}
    assert asked == {info[sid]["question"] for sid in ids[2:6]}
    rejects = _rejects(out)
    assert rejects[ids[0]] == "reference_invalid" and rejects[ids[1]] == "reference_invalid"
