"""Your own data -> record Parquet: JSONL (one sample per line) or a COCO-style annotations JSON.

    python -m data_prep.generic --input data.jsonl --image-root IMAGES --out data/mine.parquet \
        [--box-format xyxy|xywh|norm1|norm1000] [--name mine] [--embed-images] [--limit N]
    python -m data_prep.generic --input annotations.json --image-root IMAGES --out data/mine.parquet

JSONL line (only `question`, `answer` and an image are required):

    {"id": "42", "image": "sub/dir/a.jpg", "question": "What colour is the mug?", "answer": "red",
     "boxes": [[10, 20, 110, 140]], "box_format": "xyxy", "answer_type": "text",
     "choices": ["red", "blue"], "data_source": "kitchen"}

`answer` may be a list of acceptable answers (`["red", "crimson"]`: the first is the reference,
a match with any of them is correct in the reward); booleans become `yes` / `no`, numbers their
text; nested lists or objects are rejected (`bad_answer`). `choices` must be a list of options
(a bare string is rejected, `bad_choices`, rather than split into letters).
`image` may also be `images` (a list); paths are relative to `--image-root` (absolute paths and
`..` escapes are refused). `box_format` per line overrides `--box-format`. A line with boxes
becomes a grounded sample, one without a single sample. `answer_type` must be one of
`reward_score.answers.ANSWER_TYPES` (or a common alias such as `multiple_choice`, `yes/no`,
`numerical`); anything else is rejected (`bad_answer_type`). `id` gives a stable `sample_id`
`<name>:<id>`; without it the id is a hash of question, answer and image paths.

COCO-style JSON (a file ending in `.json`): the usual `images` ({id, file_name, width, height}) and
`annotations` ({id, image_id, bbox: [x, y, w, h] pixels}) plus a `questions` list of {id,
image_id, question, answer, annotation_ids, answer_type?, choices?}; a question's boxes are its
`annotation_ids`. A `.json` file holding a JSON array of records (the JSONL objects above) is
read like JSONL. The JSON is loaded whole (annotation files are small next to their images);
`width`/`height` that disagree with the image file are rejected (`image_size_mismatch`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from data_prep import common, sources
from data_prep.schema import RecordError, Sample


def make_sample_fn(loader: common.ImageLoader, name: str, box_format: str):
    def make_sample(row: dict, row_id: str) -> Sample:
        images = common.row_images(row)
        key = common.row_key(row, row.get("question"), row.get("answer"), images)
        declared = row.get("answer_type")
        answer_type = common.answer_type_of(declared)
        if declared is not None and answer_type is None:
            raise RecordError("bad_answer_type", f"{declared!r}")
        return common.build_sample(
            loader, sample_id=f"{name}:{key}", data_source=f"{name}/{row.get('data_source') or 'default'}",
            question=row.get("question"), answer=row.get("answer"), raw_images=images,
            raw_boxes=row.get("boxes"), box_format=row.get("box_format") or box_format,
            answer_type=answer_type,
            choices=row.get("choices"), expected_size=row.get("expected_size"))
    return make_sample


def iter_coco(path: Path, data: dict) -> Iterator[tuple[str, dict | sources.BadRow]]:
    """One joined row per COCO-style question: image entry + the question's annotation boxes."""
    images = {img.get("id"): img for img in data.get("images") or [] if isinstance(img, dict)}
    annotations = {ann.get("id"): ann for ann in data.get("annotations") or [] if isinstance(ann, dict)}
    for number, question in enumerate(data["questions"]):
        row_id = f"{path.name}:questions[{number}]"
        if not isinstance(question, dict):
            yield row_id, sources.BadRow("bad_json", f"question is a JSON {type(question).__name__}, not an object")
            continue
        image = images.get(question.get("image_id"))
        missing = [a for a in question.get("annotation_ids") or [] if a not in annotations]
        if image is None or missing:
            detail = f"image {question.get('image_id')!r} / annotations {missing}"
            yield row_id, sources.BadRow("dangling_reference", detail)
            continue
        yield row_id, {
            "id": question.get("id"), "image": image.get("file_name"), "question": question.get("question"),
            "answer": question.get("answer"), "answer_type": question.get("answer_type"),
            "choices": question.get("choices"), "box_format": "xywh",
            "boxes": [annotations[a].get("bbox") for a in question.get("annotation_ids") or []],
            "expected_size": (image.get("width"), image.get("height")),
        }


def read_json_file(path: Path) -> tuple[Iterator[tuple[str, dict | sources.BadRow]], int]:
    """Rows of a `.json` input: a JSON array of JSONL-style records, or a COCO-style object with a
    `questions` list. Anything else is an `InputError` saying what the file holds instead."""
    data = sources.load_json_document(path)
    if isinstance(data, list):
        return sources.iter_json_array(path, data), len(data)
    if isinstance(data, dict) and isinstance(data.get("questions"), list):
        return iter_coco(path, data), len(data["questions"])
    if isinstance(data, dict):
        keys = ", ".join(sorted(map(str, data))[:8]) or "no keys"
        raise sources.InputError(
            f"{path}: a COCO-style object needs a `questions` list (found: {keys}); a plain list of records "
            f"goes in a JSON array or a .jsonl file (python -m data_prep.generic --help shows both formats)")
    raise sources.InputError(f"{path}: holds a JSON {type(data).__name__}; expected an array of records "
                            f"or a COCO-style object")


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser("python -m data_prep.generic", __doc__)
    common.add_box_format(parser, "xyxy")
    parser.add_argument("--name", default="generic", help="dataset name: prefix of sample_id and data_source")
    args = parser.parse_args(argv)
    loader = common.ImageLoader(common.default_image_root(args), embed=args.embed, decode=args.decode_images)
    try:
        if len(args.input) == 1 and args.input[0].endswith(".json"):
            rows, total = read_json_file(Path(args.input[0]))
        else:
            rows, total = sources.iter_jsonl(args.input), sources.jsonl_rows(args.input)
    except sources.InputError as err:
        print(f"[data_prep] error: {err}; nothing written", file=sys.stderr)
        return 2
    return common.run(rows, make_sample_fn(loader, args.name, args.box_format), args, total=total)


if __name__ == "__main__":
    sys.exit(main())
