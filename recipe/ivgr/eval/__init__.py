"""Evaluation of a checkpoint in textual, grounded and tool-assisted (crop) modes.

    python -m recipe.ivgr.eval --model CKPT --bench vstar hrbench4k --mode textual grounded tool

Modules: `benchmarks` (public formats -> one eval Parquet schema; `python -m
recipe.ivgr.eval.benchmarks`), `backends` (vLLM offline engine, transformers), `crops`
(tool-mode crops), `scoring` (answer extraction and matching, IoU), `runner` (the pipeline),
`report` (summary JSON/Markdown), `main` (CLI). Importing this package imports nothing heavy.
"""
