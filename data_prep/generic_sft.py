"""Your own SFT data (JSONL, one conversation per line) -> SFT Parquet for verl's SFT trainer.

    python -m data_prep.generic_sft --input sft.jsonl --image-root IMAGES --out data/sft/mine.parquet \
        [--name mine] [--box-frame qwen2_5_vl|qwen3_vl] [--response-box-format xyxy] [--limit N]

JSONL line (`question`, `response` and an image are required):

    {"id": "42", "image": "sub/dir/a.jpg", "question": "What colour is the mug?",
     "response": "<think>The mug <box>[10,20,110,140]</box> is red.</think><answer>red</answer>",
     "answer": "red", "choices": ["red", "blue"], "stream": "grounded", "box_format": "xyxy",
     "data_source": "kitchen"}

The same image rules as `data_prep.generic` (`image` or `images`, paths relative to `--image-root`);
images are always embedded. `response` is the assistant target, `<think>…</think><answer>…</answer>`;
its boxes are in `box_format` (per line, else `--response-box-format`; `model` = already in the box
frame) and are rewritten into `--box-frame` (`data_prep.sft`). `stream` (`grounded` | `textual` |
`single`: a sample the RL stage trains in one stream, prompted with its single-stream instruction)
defaults to grounded iff the response has `<box>` tags, else textual. `answer`, when given, must agree with the
response's `<answer>` by `reward_score.match_answer` (else `answer_mismatch`). The prompt is the RL
stage's (`data_prep.prompts`) for that stream, with `choices` lettered as there.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from data_prep import common, sft, sources


def make_sample_fn(loader: common.ImageLoader, name: str, box_format: str):
    def make_sample(row: dict, row_id: str) -> sft.SftSample:
        images = common.row_images(row)
        key = common.row_key(row, row.get("question"), row.get("response"), images)
        items, sizes = sft.load_images(loader, images)
        return sft.SftSample(
            sample_id=f"{name}:{key}", data_source=f"{name}/{row.get('data_source') or 'default'}",
            question=str(row.get("question") or ""), response=str(row.get("response") or ""), images=items,
            image_sizes=sizes, choices=row.get("choices"), stream=row.get("stream"),
            source_box_format=row.get("box_format") or box_format, reference_answer=row.get("answer"))
    return make_sample


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser("python -m data_prep.generic_sft", __doc__, default_embed=True, embed_option=False)
    sft.add_sft_options(parser, "xyxy")
    parser.add_argument("--name", default="generic_sft", help="dataset name: prefix of sample_id and data_source")
    args = parser.parse_args(argv)
    loader = common.ImageLoader(common.default_image_root(args), embed=True, decode=args.decode_images)
    return common.run(sources.iter_jsonl(args.input), make_sample_fn(loader, args.name, args.response_box_format),
                      args, writer=sft.writer_for(args))


if __name__ == "__main__":
    sys.exit(main())
