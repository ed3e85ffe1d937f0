"""iVGR-RL-51K (`allencbzhang/iVGR-RL-51K`) -> record Parquet.

    python -m data_prep.ivgr_rl51k --input gvqa_and_mathdata.parquet --out data/ivgr_rl51k.parquet \
        [--image-root DIR_WITH_images/] [--embed-images] [--limit N] [--single-sources a,b,...]

Source columns (from the public card and the official loader; not checked against the real file):
`problem` (the grounded stream's question, may hold `<image>`), `query` (the textual and
single-stream question), `answer`, `images` (list of paths relative to the folder that holds
`images/`, or {bytes, path} dicts), `target_instances` (list of {`bbox`: [x1, y1, x2, y2]} in
ORIGINAL pixels), `datasource`, `question_type`.

Field mapping, as the official loader does it: a `treevgr` row is a grounded sample whose
grounded prompt is built from `problem` and whose textual prompt from `query` (both texts are
stored, `question` and `question_textual`, when they differ; an empty one falls back to the
other); a general-reasoning row is a single sample whose prompt is built from `query` (`problem`
when `query` is empty). Media placeholders are dropped and the image placed first.

Kept datasources, an explicit list (the official loader's): `treevgr` (grounded, boxes required)
and `SINGLE_SOURCES` (single). Every other datasource is rejected with reason `source_filtered`.
At the end the kept rows are counted per paper group against the paper's 37K + 12K + 2K
(`PAPER_COUNTS`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from data_prep import common, sources
from data_prep.schema import RecordError, Sample

DATASET = "ivgr_rl51k"
GROUNDED_SOURCES = ("treevgr",)
# The general-reasoning datasources the official loader keeps (method notes, section 2.3).
SINGLE_SOURCES = ("ours_arxivqa", "ours_mmk12", "ours_thinklite", "ours_tqa", "ours_virl", "ours_wemath_pro",
                  "ours_wemath_std", "ours_docqa", "ours_infoqa")
# The paper's composition of the 51K (section 2.2): group -> (datasources, rows in thousands).
PAPER_COUNTS = {
    "TreeVGR (grounded)": (GROUNDED_SOURCES, 37),
    "OpenMMReasoner": (tuple(s for s in SINGLE_SOURCES if s != "ours_arxivqa"), 12),
    "ArxivQA": (("ours_arxivqa",), 2),
}
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


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def make_sample_fn(loader: common.ImageLoader, box_format: str, single_sources: Sequence[str] = SINGLE_SOURCES):
    singles = frozenset(single_sources)

    def make_sample(row: dict, row_id: str) -> Sample:
        source = _text(row.get("datasource"))
        grounded = source in GROUNDED_SOURCES
        if not grounded and source not in singles:
            raise RecordError("source_filtered", source or "<empty datasource>")
        problem, query = _text(row.get("problem")), _text(row.get("query"))
        if grounded:
            question, question_textual = problem or query, query or problem
        else:
            question, question_textual = query or problem, None
        images = row.get("images") or []
        boxes = boxes_of(row.get("target_instances")) if grounded else []
        if grounded and not boxes:
            raise RecordError("no_gt_boxes", "grounded source row without target_instances")
        sample_id = f"{DATASET}:" + common.content_id(source, problem, query, row.get("answer"),
                                                      [common.image_identity(i) for i in images])
        return common.build_sample(
            loader, sample_id=sample_id, data_source=f"{DATASET}/{source}", question=question,
            question_textual=question_textual, answer=row.get("answer"), raw_images=images, raw_boxes=boxes,
            box_format=box_format, answer_type=common.answer_type_of(row.get("question_type")))
    return make_sample


def paper_comparison(data_sources: dict[str, int]) -> list[str]:
    """Lines comparing kept rows per paper group with the paper's counts (`PAPER_COUNTS`)."""
    lines, total = [], 0
    for group, (group_sources, thousands) in PAPER_COUNTS.items():
        kept = sum(data_sources.get(f"{DATASET}/{s}", 0) for s in group_sources)
        total += kept
        parts = ", ".join(f"{s} {data_sources.get(f'{DATASET}/{s}', 0)}" for s in group_sources)
        detail = f"  [{parts}]" if len(group_sources) > 1 else ""
        lines.append(f"  {group:<20} {kept:>7} rows (paper {thousands}K){detail}")
    lines.append(f"  {'total':<20} {total:>7} rows (paper 51K)")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(f"python -m data_prep.{DATASET}", __doc__)
    common.add_box_format(parser, "xyxy")
    parser.add_argument("--single-sources", default=",".join(SINGLE_SOURCES),
                        help="comma-separated general-reasoning datasources to keep (default: the official list)")
    args = parser.parse_args(argv)
    loader = common.ImageLoader(common.default_image_root(args), embed=args.embed, decode=args.decode_images)
    singles = [s.strip() for s in args.single_sources.split(",") if s.strip()]

    def report(summary: dict) -> None:
        print("[data_prep] iVGR-RL-51K rows kept per paper group:\n" + "\n".join(
            paper_comparison(summary["data_sources"])), file=sys.stderr)

    return common.run(sources.iter_parquet(args.input, COLUMNS), make_sample_fn(loader, args.box_format, singles),
                      args, total=sources.parquet_rows(args.input), report=report)


if __name__ == "__main__":
    sys.exit(main())
