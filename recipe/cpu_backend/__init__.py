"""CPU backend for verl 0.9.1: run the real training loop (agent-loop rollouts, reward workers, the
recipe's step stage, the FSDP actor update, checkpoints) on a machine without accelerators.

Loaded the way verl loads plug-ins, in every process (driver, TaskRunner, Ray workers)::

    VERL_PLATFORM=cpu VERL_USE_EXTERNAL_MODULES=recipe.cpu_backend python -m recipe.ivgr.main ...

with both variables also passed to the workers through
`ray_kwargs.ray_init.runtime_env.env_vars` (scripts/smoke_cpu.sh does all of it). Importing this
package does nothing unless `VERL_PLATFORM=cpu`, so it can never change a GPU run. What it adds:
`PlatformCPU` (`platform.py`), the `hf_cpu` rollout (`rollout.py`) and the patches of verl listed
with their reasons in `patches.py`. `python -m recipe.cpu_backend.tiny_model` writes the tiny
random Qwen2.5-VL the smoke run trains.
"""

from __future__ import annotations

import os


def enabled() -> bool:
    return os.environ.get("VERL_PLATFORM", "").strip().lower() == "cpu"


if enabled():
    from recipe.cpu_backend import platform as _platform  # noqa: F401  (registers PlatformCPU)
    from recipe.cpu_backend.patches import install as _install

    _install()
