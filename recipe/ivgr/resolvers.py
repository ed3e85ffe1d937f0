"""OmegaConf resolvers the recipe's yaml uses; registered on `import recipe.ivgr` (every process that
composes or resolves the config imports the package: the driver, the preflight, verl's TaskRunner,
which unpickles `recipe.ivgr.main._IVGRTaskRunner`).

- ``${ivgr.sum:a,b,...}``: the sum of integers, e.g. ``rollout.max_model_len`` =
  ``data.max_prompt_length + data.max_response_length`` (tokens), so that a changed length needs one
  override, not two.
"""

from __future__ import annotations

from omegaconf import OmegaConf


def _sum(*values: int | str) -> int:
    """Sum of integer values (ints, or strings of ints as Hydra overrides may pass them)."""
    return sum(int(v) for v in values)


def register() -> None:
    """Register the resolvers once per process (idempotent)."""
    if not OmegaConf.has_resolver("ivgr.sum"):
        OmegaConf.register_new_resolver("ivgr.sum", _sum)


register()
