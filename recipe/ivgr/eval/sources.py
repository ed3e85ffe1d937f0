"""Reading benchmark sources: the raw item every reader yields, the row errors, and the file and text helpers
the readers share (one module per benchmark under `recipe.ivgr.eval.benchmarks`). A leaf module: every
benchmark module imports it, no benchmark module imports another.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.errors import ReasonError
from reward_score.choices import LETTERS, letter_of, split_option_line


# ----------------------------------------------------------------------------------- raw items
@dataclass
class RawItem:
    """One benchmark question as read from its source, before images/boxes/shuffle are resolved.

    `options` + `correct` (index into options) for multiple choice; `answer` otherwise.
    `images` are raw references: bytes, a base64 string wrapped in `B64`, a relative path, or a
    `{"bytes", "path"}` dict. `boxes` are in `box_format` (see `data_prep.boxes`).
    """

    source_id: str
    question: str
    images: list[Any]
    options: list[str] | None = None
    correct: int | None = None
    answer: str | None = None
    answers: list[str] | None = None  # every acceptable answer (answer first) when there are several
    answer_type: str | None = None
    subset: str | None = None
    category: str | None = None
    boxes: list[Any] = field(default_factory=list)
    box_format: str = "xyxy"
    meta: dict[str, Any] = field(default_factory=dict)


class B64(str):
    """A base64-encoded image (as in VLMEvalKit TSVs)."""


class SkipRow(Exception):
    """A source row that does not belong to this benchmark (e.g. CV-Bench 3D rows for cvbench2d)."""


class RowError(ReasonError):
    """A source row that cannot become an item; `reason` is counted in the summary."""


# ------------------------------------------------------------------------------ text helpers
# A source's own answer-format instruction at the end of a question ("Please answer directly with
# only the letter ...", "Answer the question using a single word or phrase.", "Please select the
# correct answer from the options above."): it starts a line or follows a sentence end.
_INSTRUCTION = re.compile(
    r"(?:^|(?<=[.?!:]))\s*(?:please\s+)?(?:(?:answer|respond|reply)\s+(?:the\s+question\s+)?"
    r"(?:directly|with|using|in)\b|(?:select|choose)\s+the\s+(?:correct|best)\s+(?:answer|option|choice)\b)[^\n]*$",
    re.IGNORECASE,
)


def strip_instruction(question: str) -> tuple[str, str | None]:
    """(question without a trailing answer-format instruction, the instruction or None)."""
    lines = question.rstrip().split("\n")
    dropped: list[str] = []
    while lines:
        last = lines[-1]
        match = _INSTRUCTION.search(last)
        if not last.strip():
            lines.pop()
            continue
        if match is None:
            break
        head = last[: match.start()].rstrip()
        dropped.insert(0, last[match.start():].strip())
        if head:
            lines[-1] = head
            break
        lines.pop()
    text = "\n".join(lines).strip()
    if not text:  # never strip a question down to nothing
        return question.strip(), None
    return text, (" ".join(dropped) or None)


def split_embedded_options(text: str) -> tuple[str, list[str] | None, str | None]:
    """Split "question\\nA. x\\nB. y\\n<instruction>" into (question, options, instruction).

    Options must be consecutive lines lettered A, B, C, ... (at least two); otherwise the text is
    returned as the question with no options. A trailing answer-format instruction is removed.
    """
    lines = str(text).split("\n")
    start = None
    options: list[str] = []
    end = None
    for index, line in enumerate(lines):
        labelled = split_option_line(line)
        # source questions label options in upper case ("a) ..." lines are sub-questions)
        letter = labelled[0] if labelled and line.lstrip(" (")[:1] == labelled[0] else None
        if start is None:
            if letter == LETTERS[0]:
                start, options = index, [labelled[1]]
        elif letter is not None and len(options) < len(LETTERS) and letter == LETTERS[len(options)] \
                and index == start + len(options):
            options.append(labelled[1])
        else:
            end = index
            break
    if start is None or len(options) < 2:
        question, instruction = strip_instruction(str(text))
        return question, None, instruction
    end = start + len(options) if end is None else end
    question, head_instruction = strip_instruction("\n".join(lines[:start]))
    tail = "\n".join(lines[end:]).strip()
    instruction = " ".join(x for x in (head_instruction, tail) if x) or None
    return question, [o.strip() for o in options], instruction


def _clean(value: Any) -> Any:
    """NaN/None -> None (pandas TSVs give NaN for empty cells)."""
    if value is None:
        return None
    if isinstance(value, float) and value != value:
        return None
    return value


def _text(value: Any) -> str:
    value = _clean(value)
    return "" if value is None else str(value).strip()


# ------------------------------------------------------------------------------------- readers
def _read_rows(path: Path) -> Iterator[dict]:
    """Rows of a Parquet / JSONL / JSON-list / TSV file as dicts (TSV image references resolved)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        from data_prep import streaming

        for batch in streaming.iter_batches(path):  # bounded batches, whatever the row groups
            yield from batch.to_pylist()
    elif suffix == ".jsonl":
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        yield {"__error__": f"{path.name}:{number}: {err}"}
    elif suffix == ".json":
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
        if isinstance(data, dict):  # {"data": [...]} or {id: row}
            data = data.get("data") if isinstance(data.get("data"), list) else list(data.values())
        yield from (row for row in data if isinstance(row, dict))
    elif suffix in (".tsv", ".csv"):
        yield from read_vlmeval_tsv(path)
    else:
        raise ValueError(f"unsupported file type {path.name!r} (expected .parquet, .jsonl, .json or .tsv)")


def read_vlmeval_tsv(path: Path) -> Iterator[dict]:
    """Rows of a VLMEvalKit-style TSV, streamed; an `image` cell that names another row's `index`
    (VLMEvalKit stores a repeated image once) is replaced by that row's base64 image.

    Two passes: the first finds which indices are referenced (without keeping any image), the
    second keeps only those images in memory.
    """
    csv.field_size_limit(2**31 - 1)
    delimiter = "," if path.suffix.lower() == ".csv" else "\t"

    def rows() -> Iterator[dict]:
        with open(path, encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle, delimiter=delimiter)

    referenced: set[str] = set()
    for row in rows():
        image = (row.get("image") or "").strip()
        if image and len(image) <= 64 and image.isdigit():
            referenced.add(image)
    kept: dict[str, str] = {}
    for row in rows():
        index = str(row.get("index", "")).strip()
        image = (row.get("image") or "").strip()
        if index in referenced and len(image) > 64:
            kept[index] = image
        if image and len(image) <= 64 and image.isdigit():
            row["image"] = kept.get(image, image)
        yield row


def _files(inputs: Sequence[Path], patterns: tuple[str, ...]) -> list[Path]:
    """Input files; a folder is searched (non-recursively) for `patterns`."""
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files.extend(sorted(p for pattern in patterns for p in path.glob(pattern)))
        else:
            files.append(path)
    return files


def _tsv_options(row: dict) -> list[str]:
    options = []
    for letter in LETTERS:
        value = _text(row.get(letter))
        if not value:
            break
        options.append(value)
    return options


def _tsv_image(row: dict) -> list[Any]:
    image = _clean(row.get("image"))
    if image is not None and str(image).strip():
        return [B64(str(image).strip())]
    path = _clean(row.get("image_path"))
    if path is not None:
        return [str(path)]
    return []


def _image_of(row: dict, path: Path, *keys: str) -> list[Any]:
    """The item's image reference: a TSV's base64 `image`, else the first non-empty of `keys`."""
    if path.suffix.lower() == ".tsv":
        return _tsv_image(row)
    for key in keys:
        value = _clean(row.get(key))
        if value is not None and value != "":
            return [value]
    return []


def _list_of(value: Any) -> list[str] | None:
    """A list column that may be stored as a Python / JSON list literal string."""
    import ast

    value = _clean(value)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text.startswith("["):
            return [text] if text else None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return [text]
    return [str(v).strip() for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def _rel(path: Path, root: Path) -> str:
    """`path` relative to the image root (how the eval schema stores an image path)."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise RowError("image_outside_root", f"{path} is not under --image-root {root}") from None


def _json_lines_or_list(path: Path) -> Iterator[dict]:
    """Rows of a `.json` file that holds either a JSON list or JSON lines (the original POPE files)."""
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        yield from (row for row in json.loads(text) if isinstance(row, dict))
        return
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                yield {"__error__": f"{path.name}:{number}: {err}"}


def _mc_from_letter(options: list[str], answer: Any, row_id: str) -> int:
    letter = letter_of(answer, upper_only=True)
    if letter is not None and LETTERS.index(letter) < len(options):
        return LETTERS.index(letter)
    from reward_score.text import normalize_text

    wanted = normalize_text(str(answer or ""))
    matches = [i for i, o in enumerate(options) if normalize_text(o) == wanted]
    if wanted and len(matches) == 1:
        return matches[0]
    raise RowError("answer_not_in_options", f"{row_id}: answer {answer!r} for {len(options)} options")


def _each(rows: Iterable[Any], make: Callable[[Any], RawItem]) -> Iterator[RawItem | RowError | SkipRow]:
    """Apply `make` to every source row; a row that fails yields its error instead of ending the
    stream (a generator that raises is finished, so errors are yielded, not raised)."""
    for row in rows:
        try:
            yield make(row)
        except (RowError, SkipRow) as err:
            yield err
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            yield RowError("malformed_row", f"{type(err).__name__}: {err}"[:300])
