"""Generation backends: vLLM's offline engine (GPU nodes) and transformers `generate` (small runs, CPU).

Every backend turns a list of `GenerationRequest` (chat messages whose image items are already
resized to the model's frame, plus those PIL images in order) into one `GenerationResult` per
request, in order. A request that fails yields a result with `error` set instead of raising: a
batch that raises is retried one request at a time so one bad item (over-long prompt, broken
image) costs only itself.

Decoding is greedy by default (temperature 0). With temperature > 0 each request is seeded with
`seed` (vLLM: per-request `SamplingParams.seed`; transformers: `torch.manual_seed(seed)` before each
batch), and the settings are recorded in the run's `run.json` through `describe()`.

Frame check (every backend): before its first batch with images, a backend whose `box_frame` is
set runs its processor's image processor on that batch's images and checks (1) that the model
resizes in steps of the frame's resize factor (patch x merge: 28 for Qwen2.5-VL, 32 for
Qwen3-VL) and (2) that the patch grid it produces is exactly our pre-resized image (no second
resize). A mismatch raises `FrameMismatch` and stops the run: grounded IoU and tool crops would
otherwise be computed in the wrong frame.

vLLM is imported lazily (only by `VLLMBackend`); it is not installed on CPU machines.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSettings:
    """Decoding settings shared by all backends (greedy by default)."""

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 2048
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class GenerationRequest:
    """One prompt. `messages`: chat messages, contents as lists of `{"type": "text", "text"}` and
    `{"type": "image"}` items (images in `images`, same order). `item_id`/`pass_name` identify the
    request (logs; scripted test backends)."""

    messages: list[dict]
    images: list[Image.Image]
    item_id: str = ""
    pass_name: str = ""


@dataclass
class GenerationResult:
    text: str = ""
    finish_reason: str | None = None  # "stop" | "length" | None
    num_tokens: int = 0
    error: str | None = None


class FrameMismatch(RuntimeError):
    """The model's processor does not see images in the box frame the evaluation maps boxes with."""


def check_frame(processor: Any, images: Sequence[Image.Image], box_frame: str) -> dict[str, Any]:
    """Check `images` (already resized by the eval) against the processor's own resize; returns
    what was checked. Raises FrameMismatch (see the module docstring)."""
    from reward_score.frames import get_frame

    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None or not images:
        return {"checked": False}
    patch = int(getattr(image_processor, "patch_size", 14) or 14)
    merge = int(getattr(image_processor, "merge_size", 2) or 2)
    factor = get_frame(box_frame).resize_factor
    if patch * merge != factor:
        raise FrameMismatch(f"the model's processor resizes in steps of {patch * merge} px (patch {patch} x merge "
                            f"{merge}) but box frame {box_frame!r} assumes {factor}: wrong --box-frame for this model")
    grid = image_processor(images=list(images), return_tensors="np")["image_grid_thw"]
    got = [(int(g[1]), int(g[2])) for g in grid.tolist()]
    expected = [(img.height // patch, img.width // patch) for img in images]
    if got != expected:
        raise FrameMismatch(f"the processor resized the images again (expected patch grids {expected[:4]}, got "
                            f"{got[:4]}): its min/max_pixels differ from the eval's; boxes would use the wrong frame")
    return {"checked": True, "box_frame": box_frame, "resize_factor": factor, "images": len(images)}


class Backend(ABC):
    """Base class: subclasses implement `_generate_batch`; `generate` adds batching, isolation and
    the one-time frame check (`box_frame` set by the runner; `processor` when the backend has one)."""

    name = "base"
    processor: Any = None

    def __init__(self, sampling: SamplingSettings | None = None, batch_size: int = 8):
        self.sampling = sampling or SamplingSettings()
        self.batch_size = int(batch_size)
        self.stats = {"requests": 0, "errors": 0, "seconds": 0.0, "generated_tokens": 0}
        self.box_frame: str | None = None
        self.frame_check: dict[str, Any] | None = None

    def _check_frame_once(self, requests: Sequence[GenerationRequest]) -> None:
        if self.frame_check is not None or self.box_frame is None or self.processor is None:
            return
        batch = [r for r in requests if r.images][: max(1, self.batch_size)]
        if batch:
            self.frame_check = check_frame(self.processor, [img for r in batch for img in r.images], self.box_frame)

    def describe(self) -> dict[str, Any]:
        """What produced the responses (recorded in run.json)."""
        return {"backend": self.name, "batch_size": self.batch_size, "sampling": asdict(self.sampling),
                "frame_check": self.frame_check}

    def image_bounds(self) -> tuple[int | None, int | None]:
        """(min_pixels, max_pixels) the backend's processor applies after our resize (None: unknown)."""
        return None, None

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        self._check_frame_once(requests)  # raises FrameMismatch: a wrong frame stops the run
        results: list[GenerationResult] = []
        start = time.perf_counter()
        for begin in range(0, len(requests), max(1, self.batch_size)):
            batch = list(requests[begin:begin + max(1, self.batch_size)])
            try:
                out = self._generate_batch(batch)
                if len(out) != len(batch):
                    raise RuntimeError(f"backend returned {len(out)} results for {len(batch)} requests")
            except Exception as err:  # noqa: BLE001  (isolate the failing request)
                if len(batch) == 1:
                    out = [GenerationResult(error=f"{type(err).__name__}: {err}"[:500])]
                    logger.warning("generation failed for %s (%s): %s", batch[0].item_id, batch[0].pass_name, err)
                else:
                    out = [self._one(request) for request in batch]
            results.extend(out)
        self.stats["requests"] += len(requests)
        self.stats["errors"] += sum(r.error is not None for r in results)
        self.stats["generated_tokens"] += sum(r.num_tokens for r in results)
        self.stats["seconds"] += time.perf_counter() - start
        return results

    def _one(self, request: GenerationRequest) -> GenerationResult:
        try:
            return self._generate_batch([request])[0]
        except Exception as err:  # noqa: BLE001
            logger.warning("generation failed for %s (%s): %s", request.item_id, request.pass_name, err)
            return GenerationResult(error=f"{type(err).__name__}: {err}"[:500])

    @abstractmethod
    def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, in order (the engine-specific part)."""

    def close(self) -> None:
        """Release resources (GPU memory)."""


def _processor_bounds(processor: Any) -> tuple[int | None, int | None]:
    """(min_pixels, max_pixels) of a Qwen-VL processor's image processor, when it says."""
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is None:
        return None, None
    lo = getattr(image_processor, "min_pixels", None)
    hi = getattr(image_processor, "max_pixels", None)
    size = getattr(image_processor, "size", None)
    if size is not None:
        get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
        lo = lo or get("shortest_edge")
        hi = hi or get("longest_edge")
    return (int(lo) if lo else None), (int(hi) if hi else None)


def chat_text(processor: Any, messages: list[dict]) -> str:
    """The templated prompt string (generation prompt added) of one request."""
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


# ----------------------------------------------------------------------------------- transformers
class TransformersBackend(Backend):
    """`model.generate` on batches, left-padded. Accepts model and processor OBJECTS (tests build a
    tiny offline model; on CPU a real Qwen-VL processor cannot be loaded without torchvision), or
    loads both with `from_pretrained`.

    Checks that the processor did not resize our pre-resized images again (`image_grid_thw` must
    match the image size): a mismatch means the boxes would be mapped with the wrong frame, so the
    affected request fails with an explicit error rather than scoring silently wrong IoU/crops.
    """

    name = "transformers"

    def __init__(self, model: Any, processor: Any, *, sampling: SamplingSettings | None = None,
                 batch_size: int = 4, model_path: str | None = None):
        super().__init__(sampling, batch_size)
        self.model = model
        self.processor = processor
        self.model_path = model_path
        self.tokenizer = getattr(processor, "tokenizer", processor)

    @classmethod
    def from_pretrained(cls, path: str, *, processor: Any = None, sampling: SamplingSettings | None = None,
                        batch_size: int = 4, dtype: str = "auto", device: str | None = None,
                        min_pixels: int | None = None, max_pixels: int | None = None) -> TransformersBackend:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if processor is None:
            kwargs = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
            processor = AutoProcessor.from_pretrained(path, **kwargs)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = dtype if dtype == "auto" else getattr(torch, dtype)
        if device == "cpu" and dtype == "auto":
            torch_dtype = torch.float32
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype).to(device).eval()
        return cls(model, processor, sampling=sampling, batch_size=batch_size, model_path=path)

    def describe(self) -> dict[str, Any]:
        import torch
        import transformers

        out = super().describe()
        out.update(model=self.model_path or type(self.model).__name__, transformers=transformers.__version__,
                   torch=torch.__version__, device=str(getattr(self.model, "device", "?")),
                   dtype=str(getattr(self.model, "dtype", "?")))
        return out

    def image_bounds(self) -> tuple[int | None, int | None]:
        return _processor_bounds(self.processor)

    def _check_grid(self, requests: list[GenerationRequest], grid: Any) -> None:
        image_processor = getattr(self.processor, "image_processor", None)
        patch = int(getattr(image_processor, "patch_size", 14) or 14)
        expected = [(img.height // patch, img.width // patch) for r in requests for img in r.images]
        got = [(int(g[1]), int(g[2])) for g in grid.tolist()]
        if expected != got:
            raise RuntimeError(f"the processor resized the images again (expected patch grids {expected[:4]}, got "
                               f"{got[:4]}): its min/max_pixels differ from the eval's; boxes would use the wrong frame")

    def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        texts = [chat_text(self.processor, r.messages) for r in requests]
        images = [img for r in requests for img in r.images]
        old_side = getattr(self.tokenizer, "padding_side", "right")
        self.tokenizer.padding_side = "left"
        try:
            inputs = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        finally:
            self.tokenizer.padding_side = old_side
        if images and "image_grid_thw" in inputs:
            self._check_grid(requests, inputs["image_grid_thw"])
        device = getattr(self.model, "device", None)
        if device is not None:
            inputs = inputs.to(device)
        s = self.sampling
        kwargs: dict[str, Any] = {"max_new_tokens": s.max_new_tokens, "do_sample": not s.greedy}
        if not s.greedy:
            # top_k 0 = off, as vLLM samples; left unset, generate() applies transformers' default of 50
            kwargs.update(temperature=s.temperature, top_p=s.top_p, top_k=0)
            torch.manual_seed(s.seed)
        pad_id = self.tokenizer.pad_token_id
        eos_id = self.tokenizer.eos_token_id
        if pad_id is not None:
            kwargs["pad_token_id"] = pad_id
        if eos_id is not None:
            kwargs["eos_token_id"] = eos_id
        with torch.inference_mode():
            output = self.model.generate(**inputs, **kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        results = []
        for row in new_tokens.tolist():
            ended = eos_id is not None and eos_id in row
            kept = row[: row.index(eos_id)] if ended else [t for t in row if t != pad_id]
            text = self.tokenizer.decode(kept, skip_special_tokens=True)
            results.append(GenerationResult(text=text, finish_reason="stop" if ended else "length",
                                            num_tokens=len(kept)))
        return results

    def close(self) -> None:
        self.model = None


# ------------------------------------------------------------------------------------------ vLLM
class VLLMBackend(Backend):
    """vLLM's offline `LLM` engine: one `generate` call per batch (vLLM schedules inside it).

    The prompt string comes from the model's own processor chat template; images go in
    `multi_modal_data` already resized, and the engine's processor gets the same pixel bounds
    (`mm_processor_kwargs`), so its smart-resize is the identity and the model's box frame is the
    one the eval maps boxes with.
    """

    name = "vllm"

    def __init__(self, model_path: str, *, sampling: SamplingSettings | None = None, batch_size: int = 256,
                 tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.85,
                 max_model_len: int | None = None, max_images: int = 12, min_pixels: int | None = None,
                 max_pixels: int | None = None, dtype: str = "auto", enforce_eager: bool = False,
                 processor: Any = None, engine_kwargs: dict | None = None):
        super().__init__(sampling, batch_size)
        try:
            import vllm
        except ImportError as err:  # CPU machines
            raise RuntimeError("the vllm backend needs vLLM (GPU nodes: pip install -r requirements.txt); "
                               "use --backend transformers for small CPU runs") from err
        self._vllm = vllm
        self.model_path = model_path
        if processor is None:
            from transformers import AutoProcessor

            kwargs = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
            processor = AutoProcessor.from_pretrained(model_path, **kwargs)
        self.processor = processor
        mm_kwargs = {k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v}
        self.engine_args = dict(
            model=model_path, tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization, seed=self.sampling.seed, dtype=dtype,
            limit_mm_per_prompt={"image": max_images}, enforce_eager=enforce_eager,
            **({"max_model_len": max_model_len} if max_model_len else {}),
            **({"mm_processor_kwargs": mm_kwargs} if mm_kwargs else {}),
            **(engine_kwargs or {}),
        )
        self.llm = vllm.LLM(**self.engine_args)
        s = self.sampling
        self.params = vllm.SamplingParams(temperature=max(0.0, s.temperature), top_p=s.top_p,
                                          max_tokens=s.max_new_tokens, seed=s.seed)
        self._bounds = (min_pixels, max_pixels)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(model=self.model_path, vllm=getattr(self._vllm, "__version__", "?"),
                   engine_args={k: v for k, v in self.engine_args.items() if k != "model"})
        return out

    def image_bounds(self) -> tuple[int | None, int | None]:
        lo, hi = _processor_bounds(self.processor)
        want_lo, want_hi = self._bounds
        return (want_lo or lo), (want_hi or hi)

    def prompts(self, requests: Sequence[GenerationRequest]) -> list[dict]:
        """vLLM prompt dicts: templated text plus the request's images."""
        out = []
        for r in requests:
            prompt: dict[str, Any] = {"prompt": chat_text(self.processor, r.messages)}
            if r.images:
                prompt["multi_modal_data"] = {"image": list(r.images)}
            out.append(prompt)
        return out

    def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        outputs = self.llm.generate(self.prompts(requests), self.params, use_tqdm=False)
        results = []
        for output in outputs:
            completion = output.outputs[0]
            results.append(GenerationResult(text=completion.text, finish_reason=completion.finish_reason,
                                            num_tokens=len(completion.token_ids)))
        return results

    def close(self) -> None:
        self.llm = None
        try:
            import gc

            import torch

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001
            pass
