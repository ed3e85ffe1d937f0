"""The distillation's rewrite request and its checks: the judge is asked to restate a grounded
reasoning trace without boxes or coordinates (`rewrite_messages`, our wording), and each choice it returns
must be a valid textual-stream SFT target with the reference answer (`check_rewrite`)."""

from __future__ import annotations

import re
from collections.abc import Sequence

from reward_score.families import DEFAULT_FAMILY

# a bracketed list of four numbers: a box the rewrite forgot to turn into words
_COORDINATES = re.compile(r"\[\s*-?\d+(?:\.\d+)?(?:\s*,\s*-?\d+(?:\.\d+)?){3}\s*\]")
_FENCE = re.compile(r"^```[a-zA-Z]*\n(.*)\n```$", re.DOTALL)

_SYSTEM = ("You edit reasoning traces that will be used as training data. You change how things are said, "
           "never what is said.")
_USER = """A model answered a question about an image. Its reasoning trace below is correct, and it marks the \
image regions it talks about with <box>[x1,y1,x2,y2]</box> tags ({frame}).

Rewrite the trace so that it has no boxes and no coordinates at all:
- keep every statement about what is visible (objects, colours, counts, text, positions, sizes) and every \
reasoning step, in the same order;
- where a box located something, say where it is in words (for example "near the top left", "in the middle \
of the image"), judging from the coordinates;
- add nothing that the trace does not say, and do not change the conclusion;
- use your own wording.

Question: {question}

Reasoning trace:
{think}

Final answer: {answer}

Reply with exactly <think>the rewritten reasoning</think><answer>{answer}</answer> and nothing else."""


def rewrite_messages(question: str, think: str, answer: str, frame: str = DEFAULT_FAMILY,
                     model_size: Sequence[int] | None = None) -> list[dict]:
    """The judge request for one sample: system + user message (our wording; see module doc)."""
    from reward_score.families import get_family

    w, h = (model_size or (0, 0))[:2]
    words = get_family(frame).coordinate_words.format(w=w, h=h)
    user = _USER.format(frame=words, question=question.strip(), think=think.strip(), answer=answer.strip())
    return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]


def parse_rewrite(text: str) -> str | None:
    """A judge choice as a candidate response: stripped, one surrounding code fence removed; None when empty."""
    text = (text or "").strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    return text or None


def check_rewrite(text: str, reference_answer: str, choices: Sequence[str] | None) -> tuple[str | None, str]:
    """(reason, detail) of a rejected rewrite, or (None, "") when it is a valid textual SFT target."""
    from data_prep.schema import RecordError
    from data_prep.sft import check_response
    from reward_score.answers import match_answer
    from reward_score.text import normalize_text

    try:
        answer = check_response(text, "textual")
    except RecordError as err:
        return err.reason, err.detail
    if _COORDINATES.search(text):
        return "coordinates_left", _COORDINATES.search(text).group(0)
    verdict = match_answer(answer, reference_answer, choices=choices)
    same = verdict.correct if verdict.decisive else normalize_text(answer) == normalize_text(reference_answer)
    if not same:
        return "answer_changed", f"{answer!r} vs reference {reference_answer!r}"
    return None, ""
