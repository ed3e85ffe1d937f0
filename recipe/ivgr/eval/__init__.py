"""Evaluation of a checkpoint in textual, grounded and tool-assisted (crop) modes.

    python -m recipe.ivgr.eval --model CKPT --bench vstar hrbench4k --mode textual grounded tool

Modules:
- benchmarks: `benchmarks/` (one module per benchmark: reader, spec, per-item rules, aggregate; the
  package is the registry), `spec` (`BenchmarkSpec`, shared aggregates), `sources` (raw items and the
  readers' helpers), `schema` (the eval Parquet schema and its reading), `converter` (public formats ->
  that schema; `python -m recipe.ivgr.eval.benchmarks`);
- scoring: `scoring` (answer extraction, the `graded` rules, IoU), `reference` (the `reference` rules);
- running: `config` (modes, failures, `EvalConfig`), `items` (images, prompts, requests), `backends`
  (vLLM offline engine, transformers), `crops` (tool-mode crops), `record` (`EvalRecord`, the JSONL
  line), `runner` (the loop), `main` (CLI);
- output: `report` (summary JSON/Markdown).
Importing this package imports nothing heavy.
"""
