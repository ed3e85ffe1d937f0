"""TreeVGR-RL-37K (`HaochenWang/TreeVGR-RL-37K`) -> record Parquet (all rows grounded).

    python -m data_prep.treevgr_rl37k --input FILE.parquet|FILE.jsonl [...] --out data/treevgr.parquet \
        [--image-root DIR] [--embed-images] [--box-format xyxy] [--limit N]

The schema is not documented on the card beyond "V* and VisDrone images with target boxes"; this
converter follows the layout iVGR's loader consumes for the same rows (iVGR-RL-51K's `treevgr`
part) and accepts common aliases: question `problem` | `question` | `query`, answer `answer` |
`solution`, images `images` | `image` (relative paths or {bytes, path}), boxes
`target_instances[].bbox` | `bboxes` | `boxes`, optional `data_source` | `datasource` | `source`
and `question_type`. Boxes are taken as ORIGINAL pixel corners (`xyxy`), as iVGR's loader treats
them; pass `--box-format norm1000` if your copy is 0-1000 (TreeVGR issue #13 asks this question).
Rows without boxes are rejected (`no_gt_boxes`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from data_prep import common, sources
from data_prep.ivgr_rl51k import boxes_of
from data_prep.schema import RecordError, Sample

DATASET = "treevgr_rl37k"


def first(row: dict, *keys: str):
    """The first non-empty value among `keys`."""
    for key in keys:
        value = row.get(key)
        if value is not None and value != "" and value != []:
            return value
    return None


def make_sample_fn(loader: common.ImageLoader, box_format: str):
    def make_sample(row: dict, row_id: str) -> Sample:
        question = first(row, "problem", "question", "query")
        answer = first(row, "answer", "solution")
        images = first(row, "images", "image") or []
        if not isinstance(images, list):
            images = [images]
        raw_boxes = row.get("target_instances")
        boxes = boxes_of(raw_boxes) if raw_boxes else list(first(row, "bboxes", "boxes") or [])
        if not boxes:
            raise RecordError("no_gt_boxes")
        sub = str(first(row, "data_source", "datasource", "source") or "treevgr")
        explicit = first(row, "id", "question_id", "sample_id")
        key = str(explicit) if explicit is not None else common.content_id(
            question, answer, [common.image_identity(i) for i in images])
        return common.build_sample(
            loader, sample_id=f"{DATASET}:{key}", data_source=f"{DATASET}/{sub}", question=question,
            answer=answer, raw_images=images, raw_boxes=boxes, box_format=box_format,
            answer_type=common.answer_type_of(row.get("question_type")), choices=row.get("choices"))
    return make_sample


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(f"python -m data_prep.{DATASET}", __doc__)
    common.add_box_format(parser, "xyxy")
    args = parser.parse_args(argv)
    loader = common.ImageLoader(common.default_image_root(args), embed=args.embed, decode=args.decode_images)
    jsonl = all(Path(p).suffix in (".jsonl", ".json") for p in args.input)
    rows = sources.iter_jsonl(args.input) if jsonl else sources.iter_parquet(args.input)
    status = common.run(rows, make_sample_fn(loader, args.box_format), args,
               total=sources.jsonl_rows(args.input) if jsonl else sources.parquet_rows(args.input))
    return status


if __name__ == "__main__":
    sys.exit(main())
