"""Build `tests/data/reference_rules.json`: varied model answers and the verdicts of VLMEvalKit's OWN
matching functions on them (the expected values of `tests/test_eval_reference.py`).

    python scripts/make_reference_table.py --ref /tmp/vlmeval_ref --out tests/data/reference_rules.json

`--ref`: a scratch copy of VLMEvalKit's source OUTSIDE this repository (its code is never
committed here), holding `vlmeval/utils/matching_util.py`, `vlmeval/dataset/utils/multiple_choice.py`,
`vlmeval/dataset/utils/yorn.py`, `vlmeval/dataset/utils/wemath.py`, `vlmeval/smp/misc.py` and a `COMMIT` file naming the commit, e.g.
`git --git-dir=VLMEvalKit/.git show HEAD:vlmeval/utils/matching_util.py > /tmp/vlmeval_ref/...`.
Only the needed top-level functions are taken from those files (Python's `ast`), so vlmeval's
heavy imports (torch, judges) are never loaded; its logger is replaced by `logging`. Needs pandas
(WeMath's extraction is a pandas chain).
"""

from __future__ import annotations

import argparse
import ast
import copy
import importlib.metadata
import itertools
import json
import logging
import os
import platform
import random
import re
import string
from pathlib import Path


def load_functions(path: Path, names: set[str], **extra) -> dict:
    """Top-level functions and assignments named in `names` from a source file, executed in a
    namespace with the standard modules they use."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    keep = [node for node in tree.body
            if (isinstance(node, ast.FunctionDef) and node.name in names)
            or (isinstance(node, ast.Assign) and any(getattr(t, "id", None) in names for t in node.targets))]
    namespace = {"re": re, "os": os, "cp": copy, "string": string, "logger": logging.getLogger("vlmeval"), **extra}
    exec(compile(ast.Module(body=keep, type_ignores=[]), str(path), "exec"), namespace)  # noqa: S102
    return namespace


# ------------------------------------------------------------------------------------ answers
MCQ_OPTION_SETS = [
    ["red", "blue", "green", "yellow"],
    ["left", "right"],
    ["A", "B", "C", "D"],  # AI2D: diagram points labelled by letters
    ["D", "C", "B", "A"],
    ["b: none of them", "a: all of them", "c: some", "d: one"],
    ["2", "3", "4", "5"],
    ["yes", "no"],
    ["The cat is on the left", "The cat is on the right", "There is no cat", "Cannot tell"],
    ["12", "1", "21", "121", "0.5"],
    ["apple", "pineapple", "grape"],
]
MCQ_TEMPLATES = [
    "{L}", "{l}", "({L})", "{L}.", "{L}. {T}", "{L}: {T}", "{T}", "{t}", "The answer is {L}.", "the answer is {l}",
    "The correct answer is **{L}**.", "Answer: {L}", "\\boxed{{{L}}}", "I think the answer is {L}, but maybe {M}.",
    "{L} or {M}", "Option {L} ({T}) is correct.", "It is {T}.", "A", "A. {T}", "Z",
    "Based on the image, the answer is {L}.", "The answer is {T}.", "Cannot determine the answer",
    "I'm not sure.", "", "  {L}  ", "{L} is correct because {M} does not fit the picture at all, clearly.",
    "Looking at the image carefully, I can see several objects; the one asked about is {T}.",
    "not {T}", "{T} and {U}", "[{L}]", "**{L}**", "{L})", "Final answer: {L}", "the answer is because of {T}",
]
YORN_ANSWERS = [
    "Yes", "No", "yes", "no", "Yes.", "No.", "Yep", "Nope", "YES", "NO!", "yes, there is.", "No, there is not.",
    "Yes, there is no doubt.", "I don't think so.", "There is a dog in the image.", "not sure", "yes:", "no:",
    "\\boxed{yes}", "\\boxed{No}", "(yes)", "Answer: yes", "The answer is no.", "yes/no", "yes-ish", "no-one",
    "Yes, 1,000 of them.", "Y", "N", "Certainly yes", "absolutely not", "there are no cars but yes a bus",
    "Yes. No.", "", "yes.no", "yes...", "no; maybe yes", "Yes? I think so", "<yes>", "yes`", "Is there? No",
    "It's \"yes\"", "yes_", "NO.", "no.", "nO", "yes\n", "Yes, 3.5 m away", "no, 2,5 of them",
    "no-1,000", "yes-2,5", "." * 40 + " yes.", "yes. " * 3 + "." * 30 + " ok",
]
REGEX_ANSWERS = [
    "A", "B", "C", "D", "E", "a", "b", "c", "(b)", "(C)", "b)", "The answer is C", "The correct answer is D.",
    "The best answer is (E)", "Best option: b", "the answer is c", "Based on the image, it is D.",
    "I believe D", "D. red car", "option c", "", "   ", "\\boxed{B}", "\\boxed{c}", "It is located on the left side",
    "There are many objects in this picture and none of them is clearly the right one here", "The answer: C",
    "CD", "d or e", "Answer: E", "e", "The best option is A", "f", "(e)", "none", "The answer is (B) because",
]

WEMATH_ANSWERS = [
    "A", "B", "C", "D", "E", "a", "b", "(B)", "B. blue", "B: 3 cm", "Answer: C", "Answer: (C)", "Final Answer: D.",
    "The answer is C", "answer: c", "Blue", "Correct: A", "Dog", "Answer>E", "<Answer> B", "Answer:: .A",
    "\\boxed{B}", "", "  ", "Answer", "The Answer: B. The other Answer: C", "F", "G", "H", "I", "E. 12",
    "Option A", "A or B", "...B", ":D", "Hmm. Answer: A", "Answer\nB", "Because of the angle, Answer: B",
]


def mcq_rows(fns: dict, rng: random.Random) -> list[dict]:
    rows = []
    for options in MCQ_OPTION_SETS:
        letters = string.ascii_uppercase[:len(options)]
        for template in MCQ_TEMPLATES:
            idx = rng.randrange(len(options))
            other = (idx + 1 + rng.randrange(len(options) - 1)) % len(options)
            answer = template.format(L=letters[idx], l=letters[idx].lower(), T=options[idx], t=options[idx].upper(),
                                     M=letters[other], U=options[other])
            truth = letters[rng.choice([idx, idx, other])]
            choices = dict(zip(letters, options))
            got = fns["can_infer"](answer, dict(choices))
            rows.append({"answer": answer, "choices": options, "truth": truth, "extracted": got or None,
                         "hit": bool(got == truth)})
    for gold, answer in itertools.product(["24", "3.5 cm", "other"], ["24", "The answer is 24", "A", "B",
                                                                      "3.5", "3.5 cm", "Other Answers", "other"]):
        choices = {"A": gold, "B": "Other Answers"}  # MMMU_preproc of an open question; truth "A"
        got = fns["can_infer"](answer, dict(choices))
        rows.append({"answer": answer, "choices": None, "truth": gold, "extracted": got or None, "hit": got == "A"})
    return rows


def regex_rows(fns: dict) -> list[dict]:
    rows = []
    for answer, tagged, truth in itertools.product(REGEX_ANSWERS, (True, False), ("B", "C")):
        pred = f"<think>x</think><answer>{answer}</answer>" if tagged else answer
        found = re.search(r"<answer>(.*?)</answer>", pred, re.DOTALL)  # the evaluate() loop of MMERealWorld
        pred = found.group(1).strip().upper() if found else pred
        got = fns["extract_characters_regex"](pred)
        rows.append({"answer": answer, "tagged": tagged, "truth": truth, "extracted": got or None,
                     "hit": bool(got) and got == truth})
    return rows


def yorn_rows(fns: dict) -> list[dict]:
    rows = []
    for answer, truth in itertools.product(YORN_ANSWERS, ("yes", "no")):
        got = fns["YOrN_Extraction"](answer)
        rows.append({"answer": answer, "truth": truth, "extracted": got, "hit": got == truth.capitalize()})
    return rows


def wemath_rows(fns: dict) -> list[dict]:
    import pandas as pd  # only this generator needs pandas (VLMEvalKit's WeMath code is a pandas chain)

    pairs = list(itertools.product(WEMATH_ANSWERS, ("B", "C")))
    frame = pd.DataFrame({"prediction": [a for a, _ in pairs], "answer": [t for _, t in pairs]})
    fns["load_and_process_data"].__globals__["load"] = lambda _path: frame.copy()
    out = fns["load_and_process_data"]("unused")
    return [{"answer": a, "truth": t, "extracted": None if pd.isna(got) else got, "hit": bool(hit)}
            for (a, t), got, hit in zip(pairs, out["processed_answer"], out["joker"])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    fns = load_functions(args.ref / "vlmeval/utils/matching_util.py",
                         {"_VERBOSE_ANSWER_RE", "can_infer_option", "can_infer_text", "can_infer"})
    fns.update(load_functions(args.ref / "vlmeval/dataset/utils/multiple_choice.py", {"extract_characters_regex"}))
    misc = load_functions(args.ref / "vlmeval/smp/misc.py", {"process_punctuation"})
    fns.update(load_functions(args.ref / "vlmeval/dataset/utils/yorn.py", {"YOrN_Extraction"}))
    fns["YOrN_Extraction"].__globals__["process_punctuation"] = misc["process_punctuation"]
    fns.update(load_functions(args.ref / "vlmeval/dataset/utils/wemath.py", {"load_and_process_data"}))
    commit = (args.ref / "COMMIT").read_text().strip()
    rng = random.Random(0)
    table = {
        "reference": "open-compass/VLMEvalKit",
        "commit": commit,
        "made_by": "scripts/make_reference_table.py (runs the reference's own functions)",
        "python": platform.python_version(),
        "pandas": importlib.metadata.version("pandas"),
        "families": {
            "vlmeval_mcq": {"functions": "vlmeval/utils/matching_util.py can_infer (GT comparison of "
                                         "multiple_choice.py eval_vanilla; MMMU_preproc for choices=null)",
                            "rows": mcq_rows(fns, rng)},
            "vlmeval_regex": {"functions": "vlmeval/dataset/utils/multiple_choice.py extract_characters_regex "
                                           "after image_mcq.py MMERealWorld.evaluate's <answer> upper-casing",
                              "rows": regex_rows(fns)},
            "vlmeval_yorn": {"functions": "vlmeval/dataset/utils/yorn.py YOrN_Extraction + "
                                          "vlmeval/smp/misc.py process_punctuation",
                             "rows": yorn_rows(fns)},
            "vlmeval_wemath": {"functions": "vlmeval/dataset/utils/wemath.py load_and_process_data (the "
                                            "exact-matching path of image_mcq.py WeMath.evaluate: no 'hit' column)",
                               "rows": wemath_rows(fns)},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(table, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print({k: len(v["rows"]) for k, v in table["families"].items()})


if __name__ == "__main__":
    main()
