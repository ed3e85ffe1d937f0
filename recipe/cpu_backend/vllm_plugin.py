"""vLLM general plug-in (entry point `vllm.general_plugins`, declared in pyproject.toml): brings the
CPU backend's patches into the processes vLLM starts itself.

verl's rollout server (`vLLMHttpServer`) imports verl, so `VERL_USE_EXTERNAL_MODULES` loads the CPU
backend there; but vLLM's EngineCore process, its worker processes and the model registry's
inspection subprocess import vLLM only, and the Qwen2.5-VL model module and the multimodal processor
are built there. vLLM calls every general plug-in in each of its processes
(`vllm/plugins/__init__.py` `load_general_plugins`), so `register` runs in all of them.

Installed with the project (`pip install -e .`) on every node, GPU ones included: `register` does
nothing unless `VERL_PLATFORM=cpu`, which the CPU smoke run sets and the Ray runtime_env passes on
to vLLM's child processes.
"""

from __future__ import annotations

import os


def register() -> None:
    """Install the CPU backend's patches in this process when `VERL_PLATFORM=cpu` (else nothing)."""
    if os.environ.get("VERL_PLATFORM", "").strip().lower() != "cpu":
        return
    from recipe.cpu_backend.patches import install

    install()
