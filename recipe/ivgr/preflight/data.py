"""The preflight's data checks: every train/val record Parquet exists and passes `data_prep.validate`;
per split, the counts, images per sample and prompt-length estimates the size checks and the summary use.

The rows are counted as the dataset expands them (`reward_score.streams.parse_streams` / `streams_of`),
the prompts rendered as it renders them (`data_prep.prompts.record_messages`), the images sized within
the bounds it resizes them to (`recipe.ivgr.image_bounds`; without the processor's own bounds, which
need the model loaded), the image root resolved by the one rule (`data_prep.schema.resolve_image_root`).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from recipe.ivgr.preflight.config import file_list, plain, select
from recipe.ivgr.preflight.report import Findings

CHARS_PER_TOKEN = 4  # text-token estimate (English prose; the image dominates grounded prompts anyway)
_TEMPLATE_TOKENS_PER_MESSAGE = 8  # <|im_start|>role\n ... <|im_end|>\n, vision markers


@dataclass
class DataStats:
    """What one split's files hold, for the step estimates (token counts are estimates)."""

    files: list[str] = field(default_factory=list)
    samples: int = 0
    kinds: Counter = field(default_factory=Counter)
    max_images: int = 0
    rows: int = 0  # dataset rows after stream expansion
    prompt_tokens_sum: float = 0.0  # over rows
    prompt_tokens_max: int = 0
    over_prompt_limit: int = 0  # rows whose estimated prompt exceeds data.max_prompt_length
    complete: bool = True  # every file could be read

    @property
    def mean_prompt_tokens(self) -> float:
        return self.prompt_tokens_sum / self.rows if self.rows else 0.0


def enabled_streams(config, findings: Findings | None = None) -> tuple[str, ...]:
    """The streams the dataset emits (`data.ivgr_streams`, parsed as the dataset parses it); an invalid
    value is a problem (the dataset refuses it) and gives no stream."""
    from reward_score.streams import parse_streams

    try:
        return parse_streams(plain(select(config, "data.ivgr_streams")))
    except ValueError as err:
        if findings is not None:
            findings.problem(f"data.ivgr_streams: {err}")
        return ()


def _text_tokens(messages) -> int:
    messages = list(messages or [])
    chars = sum(len(str(m.get("content") or "").replace("<image>", "")) for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + _TEMPLATE_TOKENS_PER_MESSAGE * len(messages)


def read_stats(path: str, config, stats: DataStats, findings: Findings, role: str) -> None:
    """Counts, images per sample and prompt-length estimates of one record Parquet (any schema
    version), the prompts rendered as the dataset renders them (`data_prep.prompts.record_messages`)."""
    from data_prep import streaming
    from data_prep.prompts import record_messages
    from data_prep.schema import RECORD_COLUMNS, record_facts
    from recipe.ivgr.image_bounds import effective_bounds, processor_bound_limits
    from reward_score.families import run_family
    from reward_score.frames import resized_size
    from reward_score.streams import streams_of

    try:
        family = run_family(select(config, "data.ivgr_box_frame") or None,
                            int(select(config, "data.image_patch_size", 14)))
    except ValueError:  # check_frames reports it
        return
    configured = (select(config, "data.ivgr_min_pixels"), select(config, "data.ivgr_max_pixels"))
    limits = processor_bound_limits(plain(select(config, "data.mm_processor_kwargs", {})))
    max_prompt = int(select(config, "data.max_prompt_length", 0) or 0)
    streams = enabled_streams(config)
    over = 0
    try:
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names
        columns = [c for c in RECORD_COLUMNS if c in names]
        for batch in streaming.iter_batches(path, columns):
            for record in map(record_facts, batch.to_pylist()):
                kind = record["kind"]
                stats.samples += 1
                stats.kinds[kind] += 1
                images = record["images"] or []
                stats.max_images = max(stats.max_images, len(images))
                image_tokens = 0
                size = record["image_size"] or []
                if len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
                    try:
                        first = images[0] if images and isinstance(images[0], dict) else None
                        lo, hi = effective_bounds(family.name, configured, limits, first)
                        width, height = resized_size(size[0], size[1], family.name, lo, hi)
                        image_tokens = len(images) * (width * height) // family.resize_factor ** 2
                    except ValueError:
                        pass
                try:
                    record_streams = streams_of(kind, streams)
                except ValueError:  # an unknown kind: validate() reported it
                    continue
                for stream in record_streams:
                    tokens = image_tokens + _text_tokens(record_messages(record, stream, family.name))
                    stats.rows += 1
                    stats.prompt_tokens_sum += tokens
                    stats.prompt_tokens_max = max(stats.prompt_tokens_max, tokens)
                    if max_prompt and tokens > max_prompt:
                        over += 1
    except Exception:  # noqa: BLE001  (validate() already reported why; here we only lose the stats)
        stats.complete = False
        return
    stats.over_prompt_limit += over
    if over:
        findings.warn(f"data ({role}): {path}: about {over} rows have an estimated prompt (image tokens "
                      f"at the configured pixel bounds + text) over data.max_prompt_length={max_prompt}; "
                      "filter_overlong_prompts drops them, truncation=error fails on them")


def check_pixel_bounds(config, findings: Findings) -> None:
    """The configured bounds must leave a range after the processor's kwargs narrow them (the dataset
    refuses every image otherwise)."""
    from recipe.ivgr.image_bounds import effective_bounds, processor_bound_limits
    from reward_score.families import run_family

    try:
        frame = run_family(select(config, "data.ivgr_box_frame") or None,
                           int(select(config, "data.image_patch_size", 14))).name
    except (ValueError, TypeError):  # an unknown frame or patch size: check_frames reports it
        return
    try:
        effective_bounds(frame, (select(config, "data.ivgr_min_pixels"), select(config, "data.ivgr_max_pixels")),
                         processor_bound_limits(plain(select(config, "data.mm_processor_kwargs", {}))))
    except (ValueError, TypeError) as err:
        findings.problem(f"data: {err}")


def _missing_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    from data_prep.schema import missing_columns

    return missing_columns(pq.read_schema(path).names)


def check_data(config, findings: Findings, decode: str, sample_rows: int) -> dict[str, DataStats]:
    """Every train/val file exists, is a record file and passes `data_prep.validate` (images and boxes
    decoded for `sample_rows` rows with decode="sample"); the stats of each readable split."""
    from data_prep.schema import resolve_image_root
    from data_prep.sft import is_sft_file
    from data_prep.validate import validate

    enabled_streams(config, findings)
    check_pixel_bounds(config, findings)
    out: dict[str, DataStats] = {}
    for role, key in (("train", "data.train_files"), ("val", "data.val_files")):
        files = file_list(select(config, key))
        stats = DataStats(files=files)
        if role == "val" and files and files == out["train"].files:
            findings.note("data (val): the train files (checked above), as the official iVGR code; "
                          "data.val_max_samples caps validation")
            continue
        out[role] = stats
        if not files:
            findings.problem(f"{key}: no file given")
            stats.complete = False
            continue
        root = resolve_image_root(files, select(config, "data.image_root") or None)
        if root is None and len(files) > 1:
            findings.warn(f"{key}: files in different folders and no data.image_root: images stored by path "
                          "cannot be resolved")
        for path in files:
            if "://" in path:
                findings.warn(f"{key}: {path} is remote; not checked here")
                stats.complete = False
                continue
            local = Path(os.path.expanduser(path))
            if not local.is_file():
                findings.problem(f"{key}: {path} does not exist" if not local.exists()
                                 else f"{key}: {path} is not a file")
                stats.complete = False
                continue
            if is_sft_file(local):  # validate() accepts it (as SFT data), but RL cannot train on it
                findings.problem(f"{key}: {path} is an SFT file (a `messages` column, data_prep.sft), not a record "
                                 "file: RL trains on the output of python -m data_prep.<converter>; SFT files go to "
                                 "scripts/sft_ivgr_7b.sh (its TRAIN_FILES)")
                stats.complete = False
                continue
            report = validate(local, image_root=root, decode=decode, sample_rows=sample_rows)
            if report.ok:
                findings.note(f"data ({role}): {path}: {report.rows} samples valid, images and boxes decoded "
                              f"for {report.decoded} rows")
            else:
                for code, count in sorted(report.counts.items(), key=lambda kv: (-kv[1], kv[0])):
                    if code == "schema_missing_column":
                        findings.problem(f"{key}: {path}: schema_missing_column x{count}: not a data_prep record "
                                         f"file, missing {', '.join(_missing_columns(local))} (convert it with "
                                         "python -m data_prep.<converter>)")
                        continue
                    examples = "; ".join(report.examples.get(code, [])[:5])
                    findings.problem(f"{key}: {path}: {code} x{count}" + (f" (e.g. {examples})" if examples else ""))
                if any(code.startswith("schema_") or code == "unreadable_file" for code in report.counts):
                    stats.complete = False
                    continue
            read_stats(str(local), config, stats, findings, role)
    return out
