"""The record schema: one Parquet row per source sample, each fact stored once.

Columns of schema version 3 (all written by `to_row`; `RECORD_SCHEMA` is the Arrow schema):

- `sample_id` (string): stable id `<dataset>:<source id or content hash>`; unique per file.
- `data_source` (string): `<dataset>/<sub-source>`, e.g. `ivgr_rl51k/treevgr`, `synthetic/shapes`.
- `kind` (string): one of `reward_score.streams.KINDS`: `grounded` (has GT boxes; two streams) or
  `single` (no boxes; one stream).
- `question` (string): question text without media placeholders or instructions; the grounded
  stream's question (and the only one of a `single` sample).
- `question_textual` (string | null): the textual stream's question when the source gives a
  different text for it (iVGR-RL-51K: `query` next to `problem`); null when it is `question`.
- `answer` (string): reference answer (the first acceptable one).
- `answers` (list<string> | null): every acceptable answer, `answer` first, when the source lists
  more than one (the reward counts a match with any of them as correct); null otherwise.
- `answer_type` (string | null): one of `reward_score.answers.ANSWER_TYPES` when known.
- `choices` (list<string> | null): options the source lists separately (lettered A, B, ... in order).
- `images` (list<struct<bytes: binary, path: string>>): `bytes` embedded (wins when set) or `path`
  RELATIVE to the image root.
- `image_size` (list<int32> `[width, height]`): ORIGINAL pixel size of the first image (the one the
  boxes refer to).
- `gt_boxes` (list<list<float64>>): `[x1, y1, x2, y2]` in ORIGINAL pixels of the first image; empty
  for `single`.

Prompts are not facts and are not stored: `data_prep.prompts.record_messages` renders a stream's
chat messages from these columns and the model family when the data is read (the recipe dataset,
`data_prep.inspect`), so one file serves every model family. Neither are verl's columns (`prompt`,
`reward_model`, `extra_info`): the recipe dataset (`recipe.ivgr.dataset.DualStreamDataset`, loaded
by any verl trainer through `data.custom_cls`) builds them per stream.

Older files keep loading: `record_facts` reads a row of any version as these facts. Version 2
(today's main before this schema; also version 1, without `question_textual` and `answers`) stored
the same facts at the top level and copies of them in `extra_info`, plus the rendered prompts
(`prompt_grounded`, `prompt_textual`, `prompt`), `box_frame`, `ability` and `reward_model`: readers
ignore those copies and render the prompts again for the run's model family.

Schema metadata: `ivgr.schema_version`, and for files written by a converter `ivgr.image_root`
(the image root that path-mode `images` are relative to, written relative to the Parquet's folder)
plus `ivgr.image_root_abs` (the same folder, absolute). `resolve_image_root()` is the one rule every
reader applies: an explicit root, else the stored one (`image_root_of()`), else the file's folder.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from data_prep import prompts
from data_prep.errors import ReasonError
from data_prep.images import ImageItem
from reward_score.answers import ANSWER_TYPES
from reward_score.parsing import Box

SCHEMA_VERSION = "3"  # 2: question_textual, answers; 3: each fact once, no prompts, no verl columns

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
BOXES = pa.list_(pa.list_(pa.float64()))
SIZE = pa.list_(pa.int32())
RECORD_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string(), nullable=False),
        ("data_source", pa.string()),
        ("kind", pa.string()),
        ("question", pa.string()),
        ("question_textual", pa.string()),
        ("answer", pa.string()),
        ("answers", pa.list_(pa.string())),
        ("answer_type", pa.string()),
        ("choices", pa.list_(pa.string())),
        ("images", pa.list_(IMAGE)),
        ("image_size", SIZE),
        ("gt_boxes", BOXES),
    ],
    metadata={"ivgr.schema_version": SCHEMA_VERSION},
)
RECORD_COLUMNS: tuple[str, ...] = tuple(RECORD_SCHEMA.names)
# columns schema 1 files lack (added in version 2): read as null
ADDED_IN_V2 = ("question_textual", "answers")
SCHEMA_VERSION_KEY = b"ivgr.schema_version"


def schema_version_of(path: str | os.PathLike) -> str:
    """The record schema version a Parquet declares (`"1"` when it declares none)."""
    metadata = pq.read_schema(path).metadata or {}
    return metadata.get(SCHEMA_VERSION_KEY, b"1").decode()


def missing_columns(names: Sequence[str]) -> list[str]:
    """Fact columns a file with these column names lacks (columns added in version 2 may be missing)."""
    present = set(names)
    return [c for c in RECORD_COLUMNS if c not in present and c not in ADDED_IN_V2]


def record_facts(row: Any) -> dict[str, Any]:
    """The facts of one record row of any schema version (a mapping with at least the version-1
    columns), as plain Python values: exactly `RECORD_COLUMNS`, missing ones None. Copies a
    version-2 row keeps elsewhere (`extra_info`, the rendered prompts, `box_frame`) are not read."""
    return {name: row.get(name) for name in RECORD_COLUMNS}


IMAGE_ROOT_KEY, IMAGE_ROOT_ABS_KEY = b"ivgr.image_root", b"ivgr.image_root_abs"


def image_root_metadata(out: str | os.PathLike, image_root: str | os.PathLike) -> dict[bytes, bytes]:
    """Schema metadata naming `image_root` for a Parquet written at `out` (relative + absolute)."""
    root = Path(image_root).resolve()
    relative = os.path.relpath(root, Path(out).resolve().parent)
    return {IMAGE_ROOT_KEY: Path(relative).as_posix().encode(), IMAGE_ROOT_ABS_KEY: str(root).encode()}


def image_root_of(path: str | os.PathLike) -> Path | None:
    """The image root a record Parquet names in its metadata: the relative entry (resolved against
    the file's folder, so a moved data folder still works), else the absolute one; None when the
    file names none or neither folder exists."""
    path = Path(path)
    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    candidates = []
    if IMAGE_ROOT_KEY in metadata:
        candidates.append(path.resolve().parent / metadata[IMAGE_ROOT_KEY].decode())
    if IMAGE_ROOT_ABS_KEY in metadata:
        candidates.append(Path(metadata[IMAGE_ROOT_ABS_KEY].decode()))
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    return None


def resolve_image_root(data_files: str | os.PathLike | Sequence[str | os.PathLike],
                       image_root: str | os.PathLike | None = None) -> Path | None:
    """The folder that path-mode images of `data_files` (record, SFT or eval Parquet) are relative to.

    The one rule every reader uses (recipe dataset, preflights, validate, inspect, distill, eval, dump):

    1. `image_root` when given (`data.image_root`, `IMAGE_ROOT`, `--image-root`), `~` expanded;
    2. else the root the converter stored in the files' metadata (`image_root_of`), when every file
       names the same existing folder;
    3. else the one local folder holding all the files.

    None when no rule applies (remote files, or files in different folders naming no common root).
    """
    if image_root is not None and str(image_root):
        return Path(os.path.expanduser(str(image_root))).resolve()
    files = [data_files] if isinstance(data_files, str | os.PathLike) else list(data_files)
    if not files or any("://" in str(f) for f in files):
        return None
    local = [Path(os.path.expanduser(str(f))) for f in files]
    stored = {image_root_of(f) for f in local}
    if len(stored) == 1 and None not in stored:
        return stored.pop()
    parents = {f.resolve().parent for f in local}
    return parents.pop() if len(parents) == 1 else None


class RecordError(ReasonError):
    """A sample that cannot become a record; `reason` is the code written to the rejects file."""


@dataclass
class Sample:
    """One source sample, already cleaned: what a converter produces.

    `gt_boxes` are `(x1, y1, x2, y2)` in ORIGINAL pixels of `images[0]`, whose size is
    `image_size = (width, height)`; `kind` is `grounded` iff there are boxes.
    """

    sample_id: str
    data_source: str
    question: str
    answer: str
    images: list[ImageItem]
    image_size: tuple[int, int]
    gt_boxes: list[Box] = field(default_factory=list)
    answer_type: str | None = None
    choices: list[str] | None = None
    question_textual: str | None = None
    answers: list[str] | None = None

    @property
    def kind(self) -> str:
        return "grounded" if self.gt_boxes else "single"


def _check_text(name: str, value: str) -> None:
    """Refuse text that cannot be written as UTF-8: bytes that were not UTF-8 in the source (read with
    surrogateescape, so they arrive as U+DC80..U+DCFF) or unpaired surrogates from a JSON escape."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        char = err.object[err.start]
        what = (f"byte 0x{ord(char) - 0xDC00:02x} that is not UTF-8" if "\udc80" <= char <= "\udcff"
                else f"unpaired surrogate U+{ord(char):04X}")
        raise RecordError("invalid_unicode", f"{name}: {what} at character {err.start}") from None


def to_row(sample: Sample) -> dict[str, Any]:
    """The Parquet row (all columns of `RECORD_SCHEMA`) for one sample.

    Raises RecordError for empty questions/answers, unknown answer types, un-encodable text,
    media placeholders the prompt cannot carry, or a sample without images.
    """
    question = prompts.clean_question(sample.question, len(sample.images))
    if "<video>" in sample.question or "<audio>" in sample.question:
        raise RecordError("unsupported_placeholder", "question contains <video>/<audio>")
    if not question:
        raise RecordError("empty_question")
    answer = str(sample.answer).strip()
    if not answer:
        raise RecordError("empty_answer")
    answers = None
    if sample.answers:
        rest = (a for a in (str(v).strip() for v in sample.answers) if a and a != answer)
        answers = list(dict.fromkeys([answer, *rest]))
        answers = answers if len(answers) > 1 else None
    textual_question = prompts.clean_question(sample.question_textual or "", len(sample.images))
    if "<video>" in (sample.question_textual or "") or "<audio>" in (sample.question_textual or ""):
        raise RecordError("unsupported_placeholder", "question_textual contains <video>/<audio>")
    textual_question = textual_question if textual_question and textual_question != question else None
    if sample.answer_type is not None and sample.answer_type not in ANSWER_TYPES:
        raise RecordError("bad_answer_type", f"{sample.answer_type!r} not in {ANSWER_TYPES}")
    if not sample.images:
        raise RecordError("no_image")
    choices = [str(c).strip() for c in sample.choices] if sample.choices else None
    for name, value in (("sample_id", sample.sample_id), ("question", question), ("answer", answer),
                        *(("question_textual", t) for t in [textual_question] if t),
                        *(("answers", a) for a in answers or ()),
                        *(("choices", c) for c in choices or ()),
                        *(("image path", i.path) for i in sample.images if i.path)):
        _check_text(name, value)

    boxes = [[float(v) for v in box] for box in sample.gt_boxes]
    return {
        "sample_id": sample.sample_id,
        "data_source": sample.data_source,
        "kind": sample.kind,
        "question": question,
        "question_textual": textual_question,
        "answer": answer,
        "answers": answers,
        "answer_type": sample.answer_type,
        "choices": choices,
        "images": [item.to_struct() for item in sample.images],
        "image_size": [int(sample.image_size[0]), int(sample.image_size[1])],
        "gt_boxes": boxes,
    }
