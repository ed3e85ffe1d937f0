"""verl recipes: `recipe.ivgr` (iVGR dual-stream GRPO) and `recipe.ivr_r1` (IVR-R1)."""
