"""`DualStreamDataset`: verl's `RLHFDataset` over the record Parquet written by `data_prep`.

Loaded by verl through the data plug-in keys, from an installed package (``pkg://``), never a file
path: verl loads the class with ``load_extern_object`` (verl/utils/dataset/rl_dataset.py:584, verl
0.9.1), and a class loaded by file path fails in the length filter (``maybe_filter_out_long_prompts``,
rl_dataset.py:197, with ``data.filter_overlong_prompts``) on every row with "object has no attribute
'_build_messages'": every row is dropped, and the only sign is a printed "Error processing one of the
samples" (checked on CPU with verl 0.9.1)::

    data.custom_cls.path=pkg://recipe.ivgr.dataset
    data.custom_cls.name=DualStreamDataset

and constructed as ``cls(data_files=..., tokenizer=..., processor=..., config=<data cfg>, max_samples=...)``.
Its ``data.*`` keys (``image_root``, ``ivgr_streams``, ``ivgr_box_frame``, ``ivgr_min_pixels``/``ivgr_max_pixels``,
``ivgr_data_source``) are documented in recipe/ivgr/README.md, "Config".

Rows
----
One Parquet record per source sample (`data_prep.schema`; files of every schema version load, read
as facts by `data_prep.schema.record_facts`). A ``grounded`` sample becomes TWO dataset items, its
grounded stream and its textual stream; a ``single`` sample becomes ONE item (stream ``single``)
(`reward_score.streams`). Each item's prompt is rendered when the item is built, from the record's
facts and the model family (`data_prep.prompts.record_messages`): nothing stored is patched.
Samples that yield two items come first, grounded at index 2k and textual at 2k+1; one-item samples
follow. `units` lists the items of each sample (the pair sampler in `recipe.ivgr.sampler` shuffles
these units and never splits one across batches). `max_samples` / `train_max_samples` count samples.

Every item is what `RLHFDataset.__getitem__` returns for a verl row (its code finishes our row:
``raw_prompt`` with PIL images, ``index``, ``dummy_tensor``, ...), with:

- ``data_source``: ``data.ivgr_data_source`` formatted with the record's ``data_source`` and the
  ``stream``; default ``"{data_source}/{stream}"`` (e.g. ``synthetic/shapes/grounded``). verl groups
  validation metrics by ``data_source`` (``val-core/<data_source>/acc/mean@N``), so every stream of
  every source gets its own curves. The record's own value stays in ``extra_info["data_source"]``.
- ``prompt``: the stream's chat messages (with ``<image>`` placeholders) for the model family.
- the record's facts (``sample_id``, ``kind``, ``question``, ... as `data_prep.schema.RECORD_COLUMNS`).
- ``reward_model``: ``{"style": "rule", "ground_truth": answer}``.
- ``extra_info``: what `reward_score.compute_score` and the step stage read, built from the facts:
  ``stream``, ``sample_id``, ``kind``, ``data_source``, ``question`` (the stream's), ``answer``,
  ``answers``, ``answer_type``, ``choices``, ``gt_boxes`` (ORIGINAL pixels of the first image, plain
  lists; also on the textual row of a grounded sample, empty for single samples), ``image_size``
  (original ``[width, height]``), ``box_frame``, ``min_pixels``/``max_pixels`` (the first image's
  effective bounds, `recipe.ivgr.image_bounds`), ``gt_boxes_model`` (grounded rows only: the GT boxes
  already in the model's frame, mapped once here with those bounds, so the reward does not map them
  again per rollout; None when the GT is unusable) and ``index`` (the item's position in this dataset).

Images
------
Embedded ``bytes`` win; otherwise ``path`` is resolved under the image root of
`data_prep.schema.resolve_image_root` (the rule every reader shares). Absolute paths, URLs and paths
that escape the root are refused (`data_prep.images`). An image that fails when a row is built
(deleted after load, corrupt, a size `data_prep.images.check_geometry` refuses) is a counted skip: the
row is served from the next readable sample of the same kind (`_substitute`), marked in ``extra_info``
and counted by the step stage. Each image reaches ``raw_prompt`` as ``{"type": "image", "image": <PIL
RGB>, "min_pixels": lo, "max_pixels": hi}``, already resized within the bounds of
`recipe.ivgr.image_bounds` (which owns the pixel-bounds rule), so verl copies the small picture into
every trajectory. `process_multi_modal_info` (the length filter, verl's agent loop) needs no
torchvision (`recipe.ivgr.image_bounds.fetch_image`).

Length filter (``data.filter_overlong_prompts=True``)
-----------------------------------------------------
Works on CPU. Per SAMPLE, the prompt of every enabled stream is measured exactly as verl's base
filter measures one (chat template + processor with the resized images) and the sample is kept only
if all of them fit ``data.max_prompt_length``: a grounded sample whose grounded prompt is too long
loses its textual row too. Samples whose images cannot be read are dropped as well. Counts are
logged and kept in `filter_stats`. Uses ``data.filter_overlong_prompts_workers`` processes.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import numpy as np
from omegaconf import DictConfig, ListConfig, OmegaConf
from verl.utils.dataset.rl_dataset import RLHFDataset

from data_prep.prompts import record_messages, stream_question
from data_prep.schema import missing_columns, record_facts, resolve_image_root
from recipe.ivgr.image_bounds import BoundLimit, effective_bounds, fetch_image, processor_bound_limits
from recipe.ivgr.sampler import row_layout
from reward_score.streams import STREAMS, parse_streams, streams_of

logger = logging.getLogger(__name__)

DEFAULT_DATA_SOURCE_FORMAT = "{data_source}/{stream}"
MAX_SUBSTITUTE_SCAN = 64  # samples tried after one whose image fails at run time


def _plain(value: Any) -> Any:
    """OmegaConf containers as plain Python objects."""
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


class _OneRow:
    """Lets `RLHFDataset.__getitem__` finish a row we prepared: `.dataframe[i]` is that row and every
    other attribute is the dataset's, so verl's own item assembly runs unchanged."""

    def __init__(self, dataset: DualStreamDataset, row: dict):
        self._dataset = dataset
        self.dataframe = (row,)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataset, name)


class DualStreamDataset(RLHFDataset):
    """verl dataset that expands each dual-prompt record into its stream rows (see module doc)."""

    def __init__(self, data_files, tokenizer, config: DictConfig, processor=None, max_samples: int = -1):
        from reward_score.frames import get_frame

        streams = _plain(config.get("ivgr_streams", None))
        try:
            self.streams = parse_streams(streams)
        except ValueError as err:
            raise ValueError(f"data.ivgr_streams: {err}") from None
        self.box_frame_setting = config.get("ivgr_box_frame", None) or None
        if self.box_frame_setting is not None:
            get_frame(self.box_frame_setting)  # raises on an unknown name
        self.data_source_format = str(config.get("ivgr_data_source", None) or DEFAULT_DATA_SOURCE_FORMAT)
        try:
            self.data_source_format.format(data_source="src", stream="grounded")
        except (KeyError, IndexError, ValueError) as err:
            raise ValueError(f"data.ivgr_data_source {self.data_source_format!r} may only use {{data_source}} and "
                             f"{{stream}}: {err!r}") from None
        self.requested_pixels = (config.get("ivgr_min_pixels", None), config.get("ivgr_max_pixels", None))
        self.image_root = resolve_image_root(data_files, config.get("image_root", None) or None)
        self.filter_stats: dict[str, Any] = {}
        self.substitutions = 0  # rows served by a substitute sample in this process (see _substitute)
        self._warned: set[str] = set()
        super().__init__(data_files=data_files, tokenizer=tokenizer, config=config, processor=processor,
                         max_samples=max_samples)

    # ------------------------------------------------------------------ loading and index
    @property
    def box_frame(self) -> str:
        """The model family / box frame prompts and rewards use: ``data.ivgr_box_frame`` (the recipe yaml
        sets it from ``ivgr.box_frame``), else the family of verl's ``data.image_patch_size``."""
        from reward_score.families import run_family

        return run_family(self.box_frame_setting, self.image_patch_size).name

    def _read_files_and_tokenize(self):
        self._bound_limits = self._processor_bound_limits()
        self._check_frame(self.box_frame)
        super()._read_files_and_tokenize()  # load, max_samples, maybe_filter_out_long_prompts (ours)
        self._build_index()

    def _build_index(self) -> None:
        """Items in the expanded index space: two-row samples first (2k, 2k+1), then one-row samples."""
        kinds = list(self.dataframe["kind"]) if len(self.dataframe) else []
        self._items, self.units = row_layout(kinds, self.streams)
        counts = Counter(stream for _, stream in self._items)
        print(f"[DualStreamDataset] {len(self.dataframe)} samples -> {len(self._items)} rows "
              f"({', '.join(f'{s} {counts[s]}' for s in STREAMS if counts[s])}); streams {list(self.streams)}")

    def _streams_of(self, kind: str) -> tuple[str, ...]:
        return streams_of(kind, self.streams)

    def _check_frame(self, frame: str) -> None:
        """The model's patch size must suit the frame (`reward_score.families.patch_size_problem`)."""
        from reward_score.families import patch_size_problem

        problem = patch_size_problem(frame, self.image_patch_size)
        if problem:
            raise ValueError(f"{problem}: set data.image_patch_size or data.ivgr_box_frame to match the model")

    def __len__(self) -> int:
        return len(self._items)

    def split(self, num_splits: int):
        """Refused: verl's row-wise split would separate the two streams of a sample."""
        raise ValueError("DualStreamDataset cannot be split(): it would separate the two rows of a sample")

    # ------------------------------------------------------------------ pixel bounds
    def _processor_bound_limits(self) -> list[BoundLimit]:
        """(min, max, where) bounds the processor applies after our resize."""
        return processor_bound_limits(_plain(self.mm_processor_kwargs), self.processor)

    def pixel_bounds(self, frame: str, image: dict | None = None) -> tuple[int, int]:
        """Effective (min_pixels, max_pixels) for one image of a record in box frame `frame`
        (`recipe.ivgr.image_bounds.effective_bounds`; a warning once per narrowing limit)."""
        def warn(before: tuple[int, int], after: tuple[int, int], where: str) -> None:
            if where not in self._warned:
                self._warned.add(where)
                logger.warning("image pixel bounds [%d, %d] narrowed to [%d, %d] by %s", *before, *after, where)

        return effective_bounds(frame, self.requested_pixels, self._bound_limits, image, warn)

    # ------------------------------------------------------------------ one stream of one record
    def _images(self, record: dict, frame: str) -> list[dict]:
        """The record's images as verl image dicts: the PIL image ALREADY resized to what the model sees
        (smart-resize within the effective bounds) plus those bounds.

        verl stores the prompt's images with every trajectory (2 streams x n rollouts), so the original
        picture must not travel; the agent loop's resize and the reward's box mapping (both from the
        original size and the same bounds) then find the image at its fixed point.
        """
        from data_prep.images import open_image
        from reward_score.frames import resized_size

        out = []
        for stored in record.get(self.image_key) or []:
            stored = {"path": stored} if isinstance(stored, str) else dict(stored)
            if not stored.get("bytes") and stored.get("path") and self.image_root is None:
                raise ValueError("records store image paths: set data.image_root "
                                 "(no single local folder holds the data files)")
            lo, hi = self.pixel_bounds(frame, stored)
            image = open_image(stored, self.image_root)
            size = resized_size(image.width, image.height, frame, lo, hi)
            if size != image.size:
                image = image.resize(size)
            out.append({"image": image, "min_pixels": lo, "max_pixels": hi})
        return out

    def _stream_row(self, record: dict, stream: str, index: int) -> dict:
        """A verl row (prompt, images, data_source, reward_model, extra_info) for one stream of `record`,
        built from the record's facts only (`data_prep.schema.record_facts`: any schema version)."""
        from reward_score.scoring import gt_boxes_for_reward

        facts = record_facts(record)
        frame = self.box_frame
        images = self._images(facts, frame)
        source = facts["data_source"] or "unknown"
        bounds = (images[0]["min_pixels"], images[0]["max_pixels"]) if images else self.pixel_bounds(frame)
        row = dict(facts)
        row.update({
            self.prompt_key: record_messages(facts, stream, frame),
            self.image_key: images,
            "data_source": self.data_source_format.format(data_source=source, stream=stream),
            "reward_model": {"style": "rule", "ground_truth": facts["answer"]},
            "extra_info": {
                "index": int(index), "stream": stream, "sample_id": facts["sample_id"], "kind": facts["kind"],
                "data_source": source, "question": stream_question(facts, stream), "answer": facts["answer"],
                "answers": list(facts["answers"]) if facts["answers"] is not None else None,
                "answer_type": facts["answer_type"],
                "choices": list(facts["choices"]) if facts["choices"] is not None else None,
                "gt_boxes": [[float(v) for v in box] for box in facts["gt_boxes"] or []],
                "image_size": [int(v) for v in facts["image_size"]] if facts["image_size"] is not None else None,
                "box_frame": frame, "min_pixels": int(bounds[0]), "max_pixels": int(bounds[1]),
            },
        })
        if stream == "grounded":
            # the GT boxes in the frame of the image just resized, once per row instead of once per
            # rollout in the reward (None for unusable ground truth: the reward then flags gt_error)
            row["extra_info"]["gt_boxes_model"] = gt_boxes_for_reward(row["extra_info"])
        return row

    def __getitem__(self, item):
        from data_prep.images import ImageError

        row_index, stream = self._items[int(item)]
        record = self.dataframe[row_index]
        try:
            row = self._stream_row(record, stream, int(item))
        except ImageError as err:  # e.g. the file was deleted after load: a counted skip, not a crash
            row = self._substitute(row_index, stream, int(item), err)
        return RLHFDataset.__getitem__(_OneRow(self, row), 0)

    def _substitute(self, row_index: int, stream: str, item: int, err: Exception) -> dict:
        """The row of the next sample (record order, wrapping) of the same kind whose images load, in
        place of a sample whose image failed at run time (`err`). Both rows of a pair scan the same way
        and so take the same substitute; the row keeps its `index` and says in `extra_info` which sample
        it replaces and why (`substituted_for`, `substitute_reason`), which the step stage counts
        (`ivgr/data/substituted_rows`). Raises the original error when none of the next
        `MAX_SUBSTITUTE_SCAN` samples loads."""
        original = self.dataframe[row_index]
        kind = original.get("kind")
        self.substitutions += 1
        if self.substitutions <= 10 or self.substitutions % 100 == 0:
            logger.warning("sample %s (%s row): %s; substituting the next readable %s sample (%d substitutions in "
                           "this process)", original.get("sample_id"), stream, err, kind, self.substitutions)
        total = len(self.dataframe)
        for offset in range(1, min(total, MAX_SUBSTITUTE_SCAN + 1)):
            candidate_index = (row_index + offset) % total
            candidate = self.dataframe[candidate_index]
            if candidate.get("kind") != kind:
                continue
            try:
                row = self._stream_row(candidate, stream, item)
            except Exception:  # noqa: BLE001  (unreadable as well: keep scanning)
                continue
            row["extra_info"].update(substituted_for=original.get("sample_id"),
                                     substitute_reason=getattr(err, "reason", type(err).__name__))
            return row
        raise type(err)(getattr(err, "reason", "image_error"),
                        f"{getattr(err, 'detail', err)}; and none of the next {MAX_SUBSTITUTE_SCAN} {kind} samples "
                        "could be loaded either: are the images still there (data.image_root)?") from err

    def stream_of(self, item: int) -> str:
        """The stream of dataset item `item` (no image decoding)."""
        return self._items[int(item)][1]

    # ------------------------------------------------------------------ multimodal (no torchvision)
    @classmethod
    def _process_multi_modal_info(cls, messages: list[dict], image_patch_size, config: DictConfig):
        """(images, videos, audios) of `messages`: image items resized within their own bounds."""
        images = []
        for message in messages:
            content = message.get("content")
            if not isinstance(content, list):
                continue
            for item in content:
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "video" or "video" in item:
                    raise ValueError("DualStreamDataset supports images only, got a video item")
                if item.get("type") == "image" or "image" in item or "image_url" in item:
                    images.append(fetch_image(item, image_patch_size))
        return (images or None), None, cls._extract_audio_info(messages)

    @classmethod
    async def process_vision_info(cls, messages: list[dict], image_patch_size, config: DictConfig):
        images, videos, _ = await cls.process_multi_modal_info(messages, image_patch_size, config)
        return images, videos

    # ------------------------------------------------------------------ length filter
    def prompt_length(self, messages: list[dict]) -> int:
        """Prompt tokens of built messages, measured as verl's base length filter does (processor path)."""
        from verl.utils.tokenizer import build_multimodal_processor_inputs, normalize_token_ids

        apply_kwargs = dict(_plain(self.apply_chat_template_kwargs) or {})
        if self.tool_schemas is not None:
            apply_kwargs["tools"] = self.tool_schemas
        if self.processor is None:
            for key in ("tokenize", "return_dict", "return_tensors"):
                apply_kwargs.pop(key, None)
            ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                     **apply_kwargs)
            return len(normalize_token_ids(ids))
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **apply_kwargs)
        images, videos, audios = self._process_multi_modal_info(messages, self.image_patch_size, self.config)
        if images is None and videos is None and audios is None:
            return len(self.processor.tokenizer(text=text, add_special_tokens=False,
                                                return_attention_mask=False)["input_ids"])
        inputs = build_multimodal_processor_inputs(self.processor, text=[text], images=images, videos=videos,
                                                   audio=audios, mm_processor_kwargs=_plain(self.mm_processor_kwargs))
        return len(inputs["input_ids"][0])

    def sample_prompt_lengths(self, record: dict) -> dict[str, int]:
        """{stream: prompt tokens} for every enabled stream of one record."""
        lengths = {}
        for stream in self._streams_of(record.get("kind")):
            row = self._stream_row(record, stream, 0)
            lengths[stream] = self.prompt_length(self._build_messages(row, key=self.prompt_key))
        return lengths

    def _measure(self, record: dict) -> dict:
        try:
            lengths = self.sample_prompt_lengths(record)
            return {"ivgr_len": max(lengths.values(), default=0), "ivgr_error": ""}
        except Exception as err:  # noqa: BLE001  (unreadable sample: dropped and counted, like verl's filter)
            return {"ivgr_len": -1, "ivgr_error": f"{type(err).__name__}: {err}"[:300]}

    def maybe_filter_out_long_prompts(self, dataframe=None):
        """Keep the samples of enabled kinds; with filter_overlong_prompts, drop whole samples whose
        prompt of ANY enabled stream exceeds max_prompt_length (or that cannot be read)."""
        missing = missing_columns(dataframe.column_names)
        if missing:
            raise ValueError(f"DualStreamDataset needs data_prep's record schema: missing columns {missing}")
        kinds = list(dataframe["kind"])
        wanted = [i for i, kind in enumerate(kinds) if self._streams_of(kind)]
        if len(wanted) != len(kinds):
            print(f"[DualStreamDataset] streams {list(self.streams)}: skipping {len(kinds) - len(wanted)} samples "
                  "of disabled kinds")
            dataframe = dataframe.select(wanted)
        if not self.filter_overlong_prompts or len(dataframe) == 0:
            return dataframe
        measured = dataframe.map(self._measure, remove_columns=dataframe.column_names, num_proc=self.num_workers,
                                 keep_in_memory=True, load_from_cache_file=False,
                                 desc=f"Measuring prompts (limit {self.max_prompt_length} tokens)")
        lengths = np.asarray(measured["ivgr_len"], dtype=np.int64)
        errors = list(measured["ivgr_error"])
        too_long = lengths > self.max_prompt_length
        failed = lengths < 0
        keep = np.flatnonzero(~too_long & ~failed)
        rows = np.array([len(self._streams_of(k)) for k in dataframe["kind"]], dtype=np.int64)
        ids = list(dataframe["sample_id"])
        dropped = too_long | failed
        self.filter_stats = {
            "samples_before": int(len(dataframe)), "samples_kept": int(len(keep)),
            "samples_dropped": int(dropped.sum()), "too_long": int(too_long.sum()), "errors": int(failed.sum()),
            "rows_before": int(rows.sum()), "rows_dropped": int(rows[dropped].sum()),
            "max_kept_length": int(lengths[keep].max()) if len(keep) else 0,
            "dropped_sample_ids": [ids[i] for i in np.flatnonzero(dropped)[:20]],
        }
        stats = self.filter_stats
        message = (f"[DualStreamDataset] length filter (max_prompt_length {self.max_prompt_length}): kept "
                   f"{stats['samples_kept']}/{stats['samples_before']} samples; dropped {stats['samples_dropped']} "
                   f"({stats['too_long']} too long, {stats['errors']} unreadable) = {stats['rows_dropped']} rows; "
                   f"longest kept prompt {stats['max_kept_length']} tokens")
        print(message)
        if stats["samples_dropped"]:
            logger.warning(message)
        for i in np.flatnonzero(failed)[:5]:
            logger.warning("sample %s dropped: %s", ids[i], errors[i])
        return dataframe.select(keep.tolist())
