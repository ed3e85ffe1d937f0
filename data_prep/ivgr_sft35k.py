"""iVGR-SFT-35K (`allencbzhang/iVGR-SFT-35K`, the cold-start set) -> SFT Parquet for verl's SFT trainer.

    python -m data_prep.ivgr_sft35k --input ivgr_sft35k.json --image-root DIR --out data/sft/ivgr_sft35k.parquet \
        [--box-frame qwen2_5_vl|qwen3_vl] [--response-box-format xyxy] [--max-pixels N] [--limit N]

Source format. The dataset card is empty ("No dataset card yet", 10.3 GB); the official repository's
SFT tooling writes LLaMA-Factory "sharegpt" records (scripts/generate_sft_json_samples.py of Visual-AI/iVGR), so this
reads that layout, from a JSON array, JSONL, or Parquet (not checked against the real file):

    {"images": ["images/xxx.jpg"],
     "conversations": [{"from": "human", "value": "<image>{question}\\n{official instruction}"},
                       {"from": "gpt", "value": "<think>... <box>[x1,y1,x2,y2]</box> ...</think><answer>B</answer>"}],
     "system": "..."}

`messages` with `role`/`content` (LLaMA-Factory's OpenAI flavour) is read too; `id`, when present,
names the sample; `datasource` becomes the data source's sub-source. Images are paths relative to
`--image-root` (default: the input's folder) or {bytes, path} dicts, and are always embedded.

What is kept from a record: the images, the question (the human turn without `<image>` and without
the official instruction appended after it: the text from the first line that opens with one of
`INSTRUCTION_OPENINGS`, or `--instruction-marker`; when none is found the whole turn is the question
and `notes.official_instruction_not_found` counts it) and the assistant response. The prompt is then
rebuilt with OUR system prompt and stream instruction (`data_prep.prompts`), so the cold start and the
RL stage see the same instructions and box frame: a response with `<box>` tags is a grounded-stream
sample (about 32K), one without a textual-stream sample (about 3K; `--box-free-stream single` when they
are samples the RL stage trains in one stream, which gives them the RL single-stream instruction).

Boxes in the responses are taken as pixels of the stored image (`--response-box-format xyxy`): the
official `process_images.py` pre-resizes the released images to at most 3,211,264 pixels, the RL
max_pixels, so the stored image is what Qwen2.5-VL saw up to its multiple-of-28 rounding. They are
rewritten into `--box-frame` at the stored pixel bounds (`data_prep.sft`).

Rejects (reason codes): `malformed_conversation`, `multi_turn_unsupported`, `placeholder_mismatch`,
`format_invalid`, `box_in_textual`, `no_box_in_grounded`, every `box_*` and `image_*` code, `duplicate_id`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from data_prep import common, sft, sources
from data_prep.prompts import IMAGE_PLACEHOLDER
from data_prep.schema import RecordError

DATASET = "ivgr_sft35k"
# How the official prompt templates' instructions begin (examples/format_prompt/*.jinja put them on the
# line after the question); matched case-insensitively at the start of a line.
INSTRUCTION_OPENINGS = (
    "A conversation between user and assistant",
    "When the user asks a question, your response must include",
)
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def split_instruction(text: str, openings: Sequence[str] = INSTRUCTION_OPENINGS) -> tuple[str, bool]:
    """(question, found): `text` cut before the first line that opens with one of `openings`."""
    pattern = re.compile(r"(?:^|\n)[ \t]*(?:" + "|".join(re.escape(o) for o in openings) + ")", re.IGNORECASE)
    match = pattern.search(text)
    if match is None:
        return text.strip(), False
    return text[: match.start()].strip(), True


def turns_of(row: dict) -> list[tuple[str, str]]:
    """[(role, text)] of a sharegpt (`conversations`: from/value) or OpenAI-style (`messages`) record."""
    raw = row.get("conversations") if row.get("conversations") is not None else row.get("messages")
    if not isinstance(raw, list) or not raw:
        raise RecordError("malformed_conversation", "no conversations/messages list")
    turns = []
    for turn in raw:
        if not isinstance(turn, dict):
            raise RecordError("malformed_conversation", f"turn is {type(turn).__name__}")
        role = _ROLES.get(str(turn.get("from", turn.get("role", ""))).lower())
        text = turn.get("value", turn.get("content"))
        if role is None or not isinstance(text, str):
            raise RecordError("malformed_conversation", f"turn {turn!r}"[:160])
        turns.append((role, text))
    return turns


def make_sample_fn(loader: common.ImageLoader, box_format: str, openings: Sequence[str],
                   box_free_stream: str = "textual"):
    def make_sample(row: dict, row_id: str) -> sft.SftSample:
        turns = [t for t in turns_of(row) if t[0] != "system"]
        if len(turns) != 2 or [r for r, _ in turns] != ["user", "assistant"]:
            if len(turns) > 2:
                raise RecordError("multi_turn_unsupported", f"{len(turns)} turns")
            raise RecordError("malformed_conversation", f"roles {[r for r, _ in turns]}")
        (_, human), (_, response) = turns
        raw_images = common.row_images(row)
        placeholders = human.count(IMAGE_PLACEHOLDER)
        if placeholders not in (0, len(raw_images or [])):
            raise RecordError("placeholder_mismatch", f"{placeholders} <image> for {len(raw_images or [])} images")
        question, found = split_instruction(human.replace(IMAGE_PLACEHOLDER, ""), openings)
        items, sizes = sft.load_images(loader, raw_images)
        key = row.get("id")
        if key is None or str(key).strip() == "":  # hashing every image only when the row has no id
            key = common.content_id(human, response, [common.image_identity(i) for i in raw_images or []])
        return sft.SftSample(
            sample_id=f"{DATASET}:{key}", data_source=f"{DATASET}/{row.get('datasource') or 'default'}",
            question=question, response=response, images=items, image_sizes=sizes, source_box_format=box_format,
            stream=None if sft.has_box_tag(response) else box_free_stream,
            notes=[] if found else ["official_instruction_not_found"])
    return make_sample


def iter_rows(paths: Sequence[str]) -> Iterator[tuple[str, object]]:
    """Records of JSON arrays (loaded whole), JSONL files (streamed) and Parquet files (streamed)."""
    for path in map(Path, paths):
        if path.suffix == ".parquet":
            yield from sources.iter_parquet([path])
        elif path.suffix == ".json":
            try:
                data = sources.load_json_document(path)
            except sources.InputError as err:
                raise SystemExit(f"{err}; JSONL files must end in .jsonl") from None
            if not isinstance(data, list):
                raise SystemExit(f"{path}: expected a JSON array of records, got {type(data).__name__}")
            yield from sources.iter_json_array(path, data)
        else:
            yield from sources.iter_jsonl([path])


def main(argv: Sequence[str] | None = None) -> int:
    parser = common.base_parser(f"python -m data_prep.{DATASET}", __doc__, default_embed=True, embed_option=False)
    sft.add_sft_options(parser, "xyxy")
    parser.add_argument("--box-free-stream", choices=("textual", "single"), default="textual",
                        help="stream of responses without <box>: textual (the textual stream of grounded samples) "
                             "or single (samples RL trains in one stream: the single-stream instruction)")
    parser.add_argument("--instruction-marker", action="append", default=[],
                        help="another opening of an instruction appended after the question (repeatable)")
    args = parser.parse_args(argv)
    loader = common.ImageLoader(common.default_image_root(args), embed=True, decode=args.decode_images)
    openings = (*INSTRUCTION_OPENINGS, *args.instruction_marker)
    return common.run(iter_rows(args.input),
                      make_sample_fn(loader, args.response_box_format, openings, args.box_free_stream), args,
                      writer=sft.writer_for(args))


if __name__ == "__main__":
    sys.exit(main())
