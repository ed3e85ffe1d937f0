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

Rows with more than one image: the verl-recipe preprocessing keeps only the first image. We keep
the images the prompt refers to: when the user turn holds one `<image>` placeholder per image
(a real multi-image question) all of them are kept; otherwise only the first image is kept, as
upstream, because the prompt never shows the others to the model. Both cases are counted in the
summary (`notes.multi_image_rows`, `notes.multi_image_kept_all`, `notes.extra_images_dropped`)
and printed.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence

from data_prep import common, sources
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


def images_to_keep(prompt: list | None, images: list, notes: Counter) -> list:
    """The row's images the prompt refers to (see the module docstring), counting multi-image rows."""
    if len(images) <= 1:
        return images
    notes["multi_image_rows"] += 1
    placeholders = sum(str(m.get("content") or "").count("<image>") for m in prompt or [] if isinstance(m, dict))
    if placeholders == len(images):
        notes["multi_image_kept_all"] += 1
        return images
    notes["extra_images_dropped"] += len(images) - 1
    return images[:1]


def make_sample_fn(loader: common.ImageLoader, notes: Counter | None = None):
    notes = notes if notes is not None else Counter()

    def make_sample(row: dict, row_id: str) -> Sample:
        reward = row.get("reward_model") or {}
        extra = row.get("extra_info") or {}
        answer = reward.get("ground_truth") if isinstance(reward, dict) else None
        if answer is None and isinstance(extra, dict):
            answer = extra.get("answer")
        question = question_of(row.get("prompt"), extra if isinstance(extra, dict) else None)
        if question is None:
            raise RecordError("empty_question", "no user turn")
        images = images_to_keep(row.get("prompt"), list(row.get("images") or []), notes)
        source = str(row.get("data_source") or "unknown")
        key = common.content_id(source, question, answer, [common.image_identity(i) for i in images])
        return common.build_sample(loader, sample_id=f"{DATASET}:{key}", data_source=f"{DATASET}/{source}",
                                   question=question, answer=answer, raw_images=images)
    return make_sample


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(f"python -m data_prep.{DATASET}", __doc__, default_embed=True)
    args = parser.parse_args(argv)
    loader = common.ImageLoader(common.default_image_root(args), embed=args.embed, decode=args.decode_images)
    notes: Counter = Counter()

    def report(summary: dict) -> None:
        print(f"[data_prep] DeepEyes rows with more than one image: {notes['multi_image_rows']} "
              f"(all images kept: {notes['multi_image_kept_all']}, first image only: "
              f"{notes['multi_image_rows'] - notes['multi_image_kept_all']}, "
              f"{notes['extra_images_dropped']} images dropped)", file=sys.stderr)

    status = common.run(sources.iter_parquet(args.input, COLUMNS), make_sample_fn(loader, notes), args,
                        total=sources.parquet_rows(args.input), report=report, notes=notes)
    return status


if __name__ == "__main__":
    sys.exit(main())
