"""iVGR-RL-51K (`allencbzhang/iVGR-RL-51K`) -> record Parquet.

    python -m data_prep.ivgr_rl51k --input gvqa_and_mathdata.parquet --out data/ivgr_rl51k.parquet \
        [--image-root DIR_WITH_images/] [--embed-images] [--limit N]

Source columns (from the public card and the official loader; not checked against the real file):
`problem` (question, may hold `<image>`), `query` (alternative question text, used when
`problem` is empty), `answer`, `images` (list of paths relative to the folder that holds
`images/`, or {bytes, path} dicts), `target_instances` (list of {`bbox`: [x1, y1, x2, y2]} in
ORIGINAL pixels), `datasource`, `question_type`.

Kept: `datasource == "treevgr"` as grounded samples (boxes required), and the general
reasoning sources `ours_*` (ours_arxivqa, ours_mmk12, ours_thinklite, ...) as single samples.
Every other datasource is rejected with reason `source_filtered` (counted, as the official
loader silently does when it keeps about 51K of the file's rows).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from data_prep import common
from data_prep.schema import RecordError, Sample

DATASET = "ivgr_rl51k"
GROUNDED_SOURCES = ("treevgr",)
SINGLE_PREFIX = "ours_"
COLUMNS = ("problem", "query", "answer", "images", "target_instances", "datasource", "question_type")


def boxes_of(instances) -> list:
    """`target_instances` -> list of raw boxes (instances without a `bbox` are malformed)."""
    boxes = []
    for instance in instances or []:
        bbox = instance.get("bbox") if isinstance(instance, dict) else instance
        if bbox is None:
            raise RecordError("box_malformed", f"target instance without bbox: {instance!r}"[:120])
        boxes.append(bbox)
    return boxes


def make_sample_fn(loader: common.ImageLoader, box_format: str):
    def make_sample(row: dict, row_id: str) -> Sample:
        source = str(row.get("datasource") or "").strip()
        grounded = source in GROUNDED_SOURCES
        if not grounded and not source.startswith(SINGLE_PREFIX):
            raise RecordError("source_filtered", source or "<empty datasource>")
        question = row.get("problem") or row.get("query")
        images = row.get("images") or []
        boxes = boxes_of(row.get("target_instances")) if grounded else []
        if grounded and not boxes:
            raise RecordError("no_gt_boxes", "grounded source row without target_instances")
        sample_id = f"{DATASET}:" + common.content_id(source, question, row.get("answer"),
                                                      [common.image_identity(i) for i in images])
        return common.build_sample(
            loader, sample_id=sample_id, data_source=f"{DATASET}/{source}", question=question,
            answer=row.get("answer"), raw_images=images, raw_boxes=boxes, box_format=box_format,
            answer_type=common.answer_type_of(row.get("question_type")))
    return make_sample


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(f"python -m data_prep.{DATASET}", __doc__.split("\n")[0])
    common.add_box_format(parser, "xyxy")
    args = parser.parse_args(argv)
    loader = common.ImageLoader(common.default_image_root(args), embed=args.embed, decode=args.decode_images)
    status = common.run(common.iter_parquet(args.input, COLUMNS), make_sample_fn(loader, args.box_format), args,
               total=common.parquet_rows(args.input))
    return status


if __name__ == "__main__":
    sys.exit(main())
