"""DeepEyes-Datasets-47k (`ChenShawn/DeepEyes-Datasets-47k`) -> record Parquet (single samples).

    python -m data_prep.deepeyes_47k --input data_0.1.2_visual_toolbox_v2.parquet \
        data_v0.8_visual_toolbox_v2.parquet data_thinklite_reasoning_acc.parquet --out data/deepeyes.parquet

Source: verl-format Parquet (per the card and the verl-recipe preprocessing): `data_source`
(`vstar`, `chart`, `thinklite_eureka`), `prompt` (system turn with the zoom-tool protocol, then a
user turn holding `<image>`, the question and DeepEyes' tool instruction), `images` (list of
{bytes, path}, embedded), `reward_model.ground_truth`, `extra_info` (may hold `question`, `index`),
`env_name`. The set has no box annotations, so every row becomes a `single` sample; the question
is `extra_info.question` when present, else the user turn without DeepEyes' instructions.
Images whose shorter side is below 28 px (some ThinkLite images) are upscaled, boxes with them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from data_prep import common
from data_prep.schema import RecordError, Sample

DATASET = "deepeyes_47k"
COLUMNS = ("data_source", "prompt", "images", "reward_model", "extra_info")
# DeepEyes appends its tool protocol after the question; ThinkLite rows put instructions first.
_TOOL_SUFFIX = "\nThink first, call **image_zoom_in_tool**"
_THINKLITE_MARK = "Question:\n"


def question_of(prompt: list | None, extra_info: dict | None) -> str | None:
    """The bare question of a DeepEyes row."""
    if extra_info and str(extra_info.get("question") or "").strip():
        text = str(extra_info["question"])
    else:
        users = [m.get("content") for m in prompt or [] if isinstance(m, dict) and m.get("role") == "user"]
        if not users or not isinstance(users[-1], str):
            return None
        text = users[-1]
    text = text.split(_TOOL_SUFFIX, 1)[0]
    if _THINKLITE_MARK in text:
        text = text.split(_THINKLITE_MARK, 1)[1]
    return text


def make_sample_fn(loader: common.ImageLoader):
    def make_sample(row: dict, row_id: str) -> Sample:
        reward = row.get("reward_model") or {}
        extra = row.get("extra_info") or {}
        answer = reward.get("ground_truth") if isinstance(reward, dict) else None
        if answer is None and isinstance(extra, dict):
            answer = extra.get("answer")
        question = question_of(row.get("prompt"), extra if isinstance(extra, dict) else None)
        if question is None:
            raise RecordError("empty_question", "no user turn")
        images = row.get("images") or []
        source = str(row.get("data_source") or "unknown")
        key = common.content_id(source, question, answer, [common.image_identity(i) for i in images])
        return common.build_sample(loader, sample_id=f"{DATASET}:{key}", data_source=f"{DATASET}/{source}",
                                   question=question, answer=answer, raw_images=images)
    return make_sample


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(f"python -m data_prep.{DATASET}", __doc__.split("\n")[0], default_embed=True)
    args = parser.parse_args(argv)
    loader = common.ImageLoader(common.default_image_root(args), embed=args.embed, decode=args.decode_images)
    status = common.run(common.iter_parquet(args.input, COLUMNS), make_sample_fn(loader), args,
               total=common.parquet_rows(args.input))
    return status


if __name__ == "__main__":
    sys.exit(main())
