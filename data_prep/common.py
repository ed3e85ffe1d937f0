"""Shared machinery of the converters: CLI options, image loading, the run loop (the readers of source
files are `data_prep.sources`).

A converter is a small module with a reader (yielding `(row_id, raw_row)` pairs, streamed from
Parquet row groups or JSONL lines) and a function turning one raw row into a `Sample` (or raising
an error with a `reason`). `run()` does the rest: the image-root check, `--limit`, tqdm
progress, per-row error capture into the rejects file, the atomic writer, the printed summary
and the exit status (non-zero, previous output kept, when too few rows survive).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.sources import BadRow
from data_prep.boxes import BOX_FORMATS, BoxError, prepare_boxes, scale_boxes
from data_prep.images import (
    MIN_SIDE,
    ImageError,
    ImageItem,
    safe_relative_path,
    size_of_bytes,
    size_of_file,
    upscale_to_min_side,
)
from data_prep.schema import RecordError, Sample
from data_prep.writer import RecordWriter, side_paths
from reward_score.answers import ANSWER_TYPES
from reward_score.families import DEFAULT_FAMILY, FAMILY_NAMES

ROW_ERRORS = (BoxError, ImageError, RecordError)


# -- command line -----------------------------------------------------------------------------
def base_parser(prog: str, description: str, *, default_embed: bool = False,
                embed_option: bool = True) -> argparse.ArgumentParser:
    """Options every converter shares. `description` is the converter's module docstring, shown
    verbatim by `--help` (it documents the input format). `embed_option=False` for converters that
    always embed images (the SFT ones: verl's SFT dataset reads image bytes)."""
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, nargs="+", help="source file(s)")
    parser.add_argument("--out", required=True, type=Path, help="output .parquet (rejects/summary go next to it)")
    parser.add_argument("--limit", type=int, default=None, help="read at most this many source rows")
    parser.add_argument("--image-root", type=Path, default=None,
                        help="folder that relative image paths are resolved against (default: the input's folder)")
    if embed_option:
        embed = parser.add_mutually_exclusive_group()
        embed.add_argument("--embed-images", dest="embed", action="store_true", default=default_embed,
                           help="store image bytes in the Parquet (a self-contained file)")
        embed.add_argument("--no-embed-images", dest="embed", action="store_false",
                           help="store paths relative to the image root (small file; needs the recipe dataset)")
    else:
        parser.set_defaults(embed=True)
    parser.add_argument("--decode-images", action="store_true",
                        help="fully decode every image (catches truncated files; much slower)")
    parser.add_argument("--box-frame", choices=FAMILY_NAMES, default=None,
                        help="SFT converters: the model family whose box frame the responses' boxes are written "
                             f"in (default {DEFAULT_FAMILY}). RL records hold no frame (prompts are rendered for the "
                             "run's model family when the data is read): ignored there, with a note")
    parser.add_argument("--row-group-rows", type=int, default=1000)
    parser.add_argument("--min-keep-ratio", type=float, default=0.5,
                        help="fail (exit 1, previous output kept) when fewer than this share of the rows read "
                             "is written; a run that writes nothing always fails")
    parser.add_argument("--quiet", "--no-progress", dest="quiet", action="store_true", help="no progress bar")
    return parser


def add_box_format(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--box-format", choices=BOX_FORMATS, default=default,
                        help=f"format of the source's boxes (default {default}); see data_prep.boxes")


# -- ids, answers -----------------------------------------------------------------------------
def content_id(*parts: Any) -> str:
    """Stable 16-hex-digit id from JSON-serializable parts (for sources without an id column)."""
    blob = json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode("utf-8", "surrogatepass")
    return hashlib.sha1(blob).hexdigest()[:16]


def row_images(row: dict) -> list | None:
    """A source row's images: its `images` column, else its `image` column; one image as a one-item list
    (None when the row has neither)."""
    images = row.get("images") if row.get("images") is not None else row.get("image")
    return images if images is None or isinstance(images, list) else [images]


def row_key(row: dict, *content: Any) -> str:
    """A source row's own `id`, else the `content_id` of `content` (the row's text and images)."""
    key = row.get("id")
    return content_id(*content) if key is None or str(key).strip() == "" else key


def image_identity(raw: Any) -> str:
    """What identifies an image inside a content id: its path, else a digest of its bytes."""
    if isinstance(raw, dict):
        if raw.get("path"):
            return str(raw["path"])
        raw = raw.get("bytes")
    if isinstance(raw, (bytes, bytearray)):
        return hashlib.sha1(raw).hexdigest()
    return str(raw)


_QUESTION_TYPES = {
    "multiple_choice": "choice", "multi_choice": "choice", "multiple-choice": "choice", "choice": "choice",
    "mc": "choice", "yes_no": "yes_no", "yes/no": "yes_no", "yesno": "yes_no", "binary": "yes_no",
    "number": "number", "numerical": "number", "numeric": "number", "counting": "number", "count": "number",
    "integer": "number", "float": "number", "math": "math", "free_form": "text", "free-form": "text",
    "open": "text", "open_ended": "text", "text": "text", "short_answer": "text",
}


def answer_type_of(declared: Any) -> str | None:
    """Our answer type for a source's declared question/answer type, or None when unknown."""
    if declared is None:
        return None
    text = str(declared).strip().lower()
    if text in ANSWER_TYPES:
        return text
    return _QUESTION_TYPES.get(text)


# -- images and samples -----------------------------------------------------------------------
class ImageLoader:
    """Turns a source's image reference into an `ImageItem` plus its ORIGINAL (width, height).

    Accepts a relative path string, raw bytes, or a dict with `bytes` and/or `path` (HF datasets
    / verl layout; bytes win). Paths are checked against `root` (see `images.safe_relative_path`).
    """

    def __init__(self, root: Path | None, *, embed: bool = False, decode: bool = False):
        self.root = root.resolve() if root is not None else Path(".").resolve()
        self.embed = embed
        self.decode = decode

    def load(self, raw: Any) -> tuple[ImageItem, tuple[int, int]]:
        path, data = None, None
        if isinstance(raw, dict):
            path, data = raw.get("path"), raw.get("bytes")
        elif isinstance(raw, (bytes, bytearray)):
            data = bytes(raw)
        elif isinstance(raw, str):
            path = raw
        elif raw is not None:
            raise ImageError("image_no_data", f"unsupported image reference {type(raw).__name__}")
        if data is not None:
            size = size_of_bytes(bytes(data), str(path or "<bytes>"), self.decode)
            return ImageItem(bytes(data), str(path) if path else None), size
        if not path:
            raise ImageError("image_no_data", "neither bytes nor path")
        rel, full = safe_relative_path(str(path), self.root)
        size = size_of_file(full, self.decode)
        return ImageItem(full.read_bytes() if self.embed else None, rel), size

    def read_bytes(self, item: ImageItem) -> bytes:
        if item.data is not None:
            return item.data
        _, full = safe_relative_path(str(item.path), self.root)
        return full.read_bytes()


def answer_values(raw: Any) -> list[str]:
    """A source's answer as a list of acceptable answer strings (the first is the reference).

    A string is one answer; a list/tuple is several acceptable ones; booleans become `yes`/`no`
    (not Python's `True`); numbers their decimal text. Nested containers and dicts are refused
    (`bad_answer`) rather than stringified.
    """
    values = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    out = []
    for value in values:
        if isinstance(value, bool):
            out.append("yes" if value else "no")
        elif isinstance(value, (str, int, float)):
            out.append(str(value).strip())
        elif value is None:
            continue
        else:
            raise RecordError("bad_answer", f"{type(value).__name__} in answer {raw!r}"[:120])
    return [v for v in out if v]


def choice_values(raw: Any) -> list[str] | None:
    """A source's `choices` as option strings; a bare string (not a list) is refused (`bad_choices`)."""
    if raw is None or (isinstance(raw, (list, tuple)) and not raw):
        return None
    if not isinstance(raw, (list, tuple)):
        raise RecordError("bad_choices", f"choices must be a list of options, got {type(raw).__name__} {raw!r}"[:120])
    if not all(isinstance(c, (str, int, float)) and not isinstance(c, bool) for c in raw):
        raise RecordError("bad_choices", f"options must be strings or numbers: {raw!r}"[:120])
    return [str(c) for c in raw]


def build_sample(loader: ImageLoader, *, sample_id: str, data_source: str, question: Any, answer: Any,
                 raw_images: Iterable[Any] | None, raw_boxes: Iterable[Sequence[float]] | None = None,
                 box_format: str = "xyxy", answer_type: str | None = None,
                 choices: Any = None, expected_size: Sequence[Any] | None = None,
                 question_textual: Any = None) -> Sample:
    """A validated `Sample`: images loaded (header only), boxes converted to ORIGINAL pixels of the
    first image and checked (against `expected_size` too when the source states one), tiny images
    (shorter side < 28 px) upscaled together with their boxes. `answer` may be a list of acceptable
    answers (see `answer_values`); `question_textual` is the textual stream's own question, if any."""
    if question is None:
        raise RecordError("missing_question", "no question field")
    if not str(question).strip():
        raise RecordError("empty_question", f"question is {str(question)!r}")
    if answer is None:
        raise RecordError("missing_answer", "no answer field")
    answers = answer_values(answer)
    if not answers:
        raise RecordError("empty_answer", f"answer is {answer!r}"[:120])
    options = choice_values(choices)
    loaded = [loader.load(raw) for raw in (raw_images or [])]
    if not loaded:
        raise RecordError("no_image")
    size = loaded[0][1]
    if expected_size and None not in expected_size and tuple(map(int, expected_size)) != size:
        raise RecordError("image_size_mismatch", f"source says {list(expected_size)}, file is {list(size)}")
    boxes = prepare_boxes(raw_boxes, box_format, size)
    items: list[ImageItem] = []
    for position, (item, item_size) in enumerate(loaded):
        if min(item_size) < MIN_SIDE:
            data, new_size, sx, sy = upscale_to_min_side(loader.read_bytes(item), item_size)
            item = ImageItem(data, item.path)
            if position == 0:
                size, boxes = new_size, scale_boxes(boxes, sx, sy)
        items.append(item)
    return Sample(sample_id=sample_id, data_source=data_source, question=str(question), answer=answers[0],
                  images=items, image_size=(int(size[0]), int(size[1])), gt_boxes=boxes,
                  answer_type=answer_type, choices=options,
                  question_textual=str(question_textual) if question_textual else None,
                  answers=answers if len(answers) > 1 else None)


# -- the run loop -----------------------------------------------------------------------------
PROBE_ROWS = 200  # rows after which a run whose every image is missing stops (wrong --image-root)
_PATH_REASONS = {"image_missing", "image_path_escapes_root"}


class WrongImageRoot(RuntimeError):
    """The first PROBE_ROWS rows all failed on missing image files."""


def check_image_root(args: argparse.Namespace) -> str | None:
    """Why the image root cannot be right (None when it can): `--image-root` must be a folder."""
    root = getattr(args, "image_root", None)
    if root is not None and not Path(root).is_dir():
        return f"--image-root {root} is not a folder"
    return None


def run(rows: Iterable[tuple[str, Any]], make_sample: Callable[[dict, str], Sample],
        args: argparse.Namespace, total: int | None = None,
        report: Callable[[dict[str, Any]], None] | None = None, notes: Counter | None = None,
        writer: RecordWriter | None = None) -> int:
    """Convert `rows` into `args.out`; every dropped row gets a reason. Returns the exit status:
    0 when the output was published, 1 when too few rows were kept (`--min-keep-ratio`) or the
    image root is wrong, 2 when `--image-root` is not a folder; in both failure cases any previous
    output stays untouched. `report` gets the summary dict (extra per-source lines); `notes` are
    converter-specific counts that make_sample updates, stored in the summary under `notes`;
    `writer` replaces the default `RecordWriter` (the SFT converters pass a `data_prep.sft.SftWriter`)."""
    problem = check_image_root(args)
    if problem:
        print(f"[data_prep] error: {problem}; nothing written", file=sys.stderr)
        return 2
    if args.limit is not None:
        rows = islice(rows, args.limit)
        total = min(total, args.limit) if total is not None else args.limit
    start = time.perf_counter()
    if writer is None:
        ignore_box_frame(args)
    writer = writer or RecordWriter(args.out, row_group_rows=args.row_group_rows,
                                    min_keep_ratio=getattr(args, "min_keep_ratio", 0.5),
                                    image_root=default_image_root(args), notes=notes)
    try:
        with writer:
            for row_id, raw in tqdm(rows, total=total, unit="row", disable=args.quiet, mininterval=1.0):
                if isinstance(raw, BadRow):
                    writer.reject(row_id, raw.reason, raw.detail)
                else:
                    try:
                        writer.add(make_sample(raw, row_id), row_id)
                    except ROW_ERRORS as err:
                        writer.reject(row_id, err.reason, err.detail)
                    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
                        writer.reject(row_id, "malformed_row", f"{type(err).__name__}: {err}")
                if (writer.written == 0 and writer.rejected == PROBE_ROWS
                        and set(writer.reasons) <= _PATH_REASONS):
                    raise WrongImageRoot
    except WrongImageRoot:
        print(f"[data_prep] error: the first {PROBE_ROWS} rows all name image files that do not exist under "
              f"{default_image_root(args)}; is --image-root right? (e.g. {writer.last_reject}); nothing written"
              f"{previous_output_note(Path(args.out))}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - start
    summary = writer.summary()
    rate = summary["read"] / seconds if seconds > 0 else float("inf")
    print(f"[data_prep] {args.out}: read {summary['read']}, wrote {summary['written']}, rejected "
          f"{summary['rejected']} {summary['reasons']} in {seconds:.2f} s ({rate:.0f} rows/s)", file=sys.stderr)
    if report is not None:
        report(summary)
    if not writer.committed:
        failed = side_paths(Path(args.out), ".failed")
        why = ("the input has no rows" if summary["read"] == 0 else
               f"kept {summary['written']} of {summary['read']} rows, less than --min-keep-ratio "
               f"{writer.min_keep_ratio}")
        print(f"[data_prep] error: {why}; {args.out} not written{previous_output_note(Path(args.out))}. "
              f"Reasons: {failed[0]}, counts: {failed[1]}", file=sys.stderr)
        return 1
    return 0


def previous_output_note(out: Path) -> str:
    """What a failed run left at `out`: the earlier output (untouched), or nothing."""
    return f" (the previous {out.name} is kept)" if out.exists() else " (there was no previous output)"


def ignore_box_frame(args: argparse.Namespace) -> None:
    """RL records (schema 3) store no box frame: a `--box-frame` given to an RL converter only gets a note."""
    if getattr(args, "box_frame", None):
        print(f"[data_prep] note: --box-frame {args.box_frame} ignored: records hold no frame; the training run "
              "renders the prompts for its model family (ivgr.box_frame)", file=sys.stderr)


def default_image_root(args: argparse.Namespace) -> Path:
    """`--image-root`, else the folder of the first input file."""
    return Path(args.image_root) if args.image_root is not None else Path(args.input[0]).resolve().parent
