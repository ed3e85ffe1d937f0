"""iVGR recipe for verl 0.9.1: dual-stream grounded-reasoning GRPO for Qwen-VL.

Modules are imported by verl through `pkg://recipe.ivgr.<module>`; the package itself only registers the
config's OmegaConf resolvers (`recipe.ivgr.resolvers`: `${ivgr.sum:...}`), which every process that
resolves `config/ivgr_trainer.yaml` needs.
"""

try:
    from recipe.ivgr import resolvers as _resolvers  # noqa: F401  (registers ${ivgr.sum:...})
except ImportError:  # no omegaconf: not the project's environment, which the entry points report themselves
    _resolvers = None
