"""Every change the CPU backend makes to verl 0.9.1 (and transformers 5.9) at run time, in one place.

`PATCHES` names each patched module and what changes; the README next to this file gives every
patch's reason with verl's file and line (a test keeps the two lists equal). A patch is applied right
after its module is first imported (a post-import hook), so processes that never import a module
never pay for it, and nothing here runs unless `VERL_PLATFORM=cpu`.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType

logger = logging.getLogger(__name__)

TARGET_VERL = "0.9.1"


@dataclass(frozen=True)
class Patch:
    module: str
    reason: str
    apply: Callable[[ModuleType], None]


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
        try:
            return original(cls, *args, **kwargs)
        except ImportError as err:
            if "orchvision" not in str(err):
                raise
            return image_only_video_processor()

    auto.from_pretrained = classmethod(from_pretrained)


PATCHES: tuple[Patch, ...] = (
    Patch("verl.utils.distributed", "gloo process groups (no duplicate cpu:gloo)", _gloo_process_groups),
    Patch("verl.workers.engine.fsdp.transformer_impl", "FSDP engines for device cpu, unpinned offload",
          _fsdp_engine_on_cpu),
    Patch("verl.workers.rollout.replica", "hf_cpu rollout replica", _register_replica),
    Patch("verl.workers.rollout.base", "hf_cpu rollout adapter", _register_rollout),
    Patch("transformers.models.auto.video_processing_auto", "image-only video processor without torchvision",
          _image_only_video_processor),
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
        module.__loader__.exec_module(module)
        _apply(self.pending.pop(name), module)


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
            _apply(patch, sys.modules[patch.module])
        else:
            pending[patch.module] = patch
    if pending:
        sys.meta_path.insert(0, _PatchAfterImport(pending))
