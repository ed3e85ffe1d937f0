"""iVGR recipe for verl 0.9.1: dual-stream grounded-reasoning GRPO for Qwen-VL.

Modules are imported by verl through `pkg://recipe.ivgr.<module>`; this package imports nothing.
"""
