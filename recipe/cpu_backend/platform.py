"""`PlatformCPU`: verl 0.9.1's platform interface on a machine without accelerators.

Registered as `VERL_PLATFORM=cpu`. Collectives run on gloo, Ray schedules the workers on `GPU`
resources that the CPU cluster declares (`ray_init.num_gpus`), and `get_torch_device()` returns
`cpu_device_module`, a stand-in for `torch.cuda` whose memory counters report this process's RSS.
"""

from __future__ import annotations

import os
import types
from contextlib import contextmanager
from typing import Any, Optional

import psutil
import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry


def _rss() -> int:
    return psutil.Process().memory_info().rss


def _peak_rss() -> int:
    try:  # Linux: peak resident set size of this process, in KiB
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return _rss()


def _noop(*args, **kwargs) -> None:
    return None


def _build_device_module() -> types.ModuleType:
    """`torch.cpu` plus the `torch.cuda` functions verl calls (memory counters in bytes of host RSS)."""
    module = types.ModuleType("verl_cpu_device", "torch.cuda stand-in for verl on CPU")
    for name in ("current_stream", "stream", "Stream", "Event", "synchronize", "StreamContext"):
        setattr(module, name, getattr(torch.cpu, name))
    module.is_available = lambda: True
    module.device_count = lambda: 1
    module.current_device = lambda: 0
    module.get_device_name = lambda *a: "cpu"
    module.set_device = _noop
    module.empty_cache = _noop
    module.ipc_collect = _noop
    module.reset_peak_memory_stats = _noop
    module.set_per_process_memory_fraction = _noop
    module.manual_seed = torch.manual_seed
    module.manual_seed_all = torch.manual_seed
    module.get_rng_state = lambda *a: torch.get_rng_state()
    module.set_rng_state = lambda state, *a: torch.set_rng_state(state)
    module.memory_allocated = lambda *a: _rss()
    module.memory_reserved = lambda *a: _rss()
    module.max_memory_allocated = lambda *a: _peak_rss()
    module.max_memory_reserved = lambda *a: _peak_rss()
    module.mem_get_info = lambda *a: (psutil.virtual_memory().available, psutil.virtual_memory().total)
    return module


cpu_device_module = _build_device_module()


@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    """verl platform for CPU-only machines (tests, laptop smoke runs); never auto-detected."""

    @property
    def device_name(self) -> str:
        return "cpu"

    @property
    def vendor_name(self) -> str:
        return "cpu"

    @property
    def device_module(self) -> types.ModuleType:
        return cpu_device_module

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        # only ever chosen explicitly (VERL_PLATFORM=cpu): auto-detection must keep finding GPUs first
        return os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"

    def current_device(self) -> torch.device:
        # verl uses get_device_id() as a device (`model.to(device=get_device_id())`), never formats it
        return torch.device("cpu")

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        return None

    def synchronize(self, device_index: Optional[int] = None) -> None:
        return None

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        return None

    def empty_cache(self) -> None:
        return None

    def get_device_capability(self, device_index: int = 0) -> tuple[Optional[int], Optional[int]]:
        return None, None

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        # Ray sets CUDA_VISIBLE_DEVICES for the declared GPU bundles; harmless on CPU
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        return None

    def profiler_stop(self) -> None:
        return None

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
        return {"num_gpus": num_gpus}

    def is_ipc_supported(self) -> bool:
        return False

    def cudart(self) -> Any:
        return None
