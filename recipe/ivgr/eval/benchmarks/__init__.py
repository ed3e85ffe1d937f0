"""The benchmark registry: one module per benchmark (lmms-eval's `tasks/` layout, in Python), each with its
reader (public formats -> `sources.RawItem`), its spec (`spec.BenchmarkSpec`: title, answer type, boxes),
its per-item rules under both protocols and its aggregate. This package only collects the specs; no
benchmark module imports another or this registry.

| module | benchmarks | aggregate | reference rule |
|---|---|---|---|
| `vstar` | `vstar` | accuracy | VLMEvalKit `can_infer` |
| `hrbench` | `hrbench4k`, `hrbench8k` (a name/title delta) | mean of FSP and FCP | `can_infer` |
| `mme_realworld` | `mme_realworld_lite` | accuracy | VLMEvalKit regex |
| `pope` | `pope` | F1 of "yes" | VLMEvalKit `YOrN_Extraction` |
| `realworldqa` | `realworldqa` | accuracy | `can_infer` |
| `cvbench` | `cvbench2d` (mean of ADE20K and COCO), `cvbench3d` (accuracy) | see left | `can_infer` |
| `treebench` | `treebench` | accuracy (+ mIoU) | VLMEvalKit regex |
| `chartqa` | `chartqa` | relaxed accuracy (its own graded rule) | `relaxed_correctness` |
| `ai2d`, `mmstar`, `mmmu` | same names | accuracy | `can_infer` |
| `wemath` | `wemath` | strict score | VLMEvalKit `wemath.py` |
| `mmk12` | `mmk12` | accuracy | none (MM-Eureka's scorer) |
| `generic` | `generic` (your own split) | accuracy | none |

Converting: `python -m recipe.ivgr.eval.benchmarks NAME --input ... --out ...` (`recipe.ivgr.eval.converter`).
"""

from __future__ import annotations

from collections.abc import Mapping

from recipe.ivgr.eval.benchmarks import (
    ai2d,
    chartqa,
    cvbench,
    generic,
    hrbench,
    mme_realworld,
    mmk12,
    mmmu,
    mmstar,
    pope,
    realworldqa,
    treebench,
    vstar,
    wemath,
)
from recipe.ivgr.eval.reference import ReferenceRule
from recipe.ivgr.eval.spec import BenchmarkSpec, Reader

_SPECS = (vstar.SPEC, hrbench.HRBENCH4K, hrbench.HRBENCH8K, mme_realworld.SPEC, pope.SPEC, realworldqa.SPEC,
          cvbench.CVBENCH2D, cvbench.CVBENCH3D, treebench.SPEC,
          # the paper's chart and multidisciplinary table
          chartqa.SPEC, ai2d.SPEC, wemath.SPEC, mmstar.SPEC, mmmu.SPEC, mmk12.SPEC,
          # your own held-out split
          generic.SPEC)
BENCHMARKS: dict[str, BenchmarkSpec] = {spec.name: spec for spec in _SPECS}
# benchmark -> the reference protocol's rule; mmk12 and generic have none
REFERENCE_RULES: Mapping[str, ReferenceRule] = {s.name: s.reference for s in _SPECS if s.reference is not None}

# Column order of the iVGR paper's main results table (fine-grained and general VQA), of its
# tool-assisted inference table and of its chart and multidisciplinary table.
PAPER_MAIN = ("vstar", "hrbench4k", "hrbench8k", "mme_realworld_lite", "pope", "realworldqa", "cvbench2d", "cvbench3d")
PAPER_TOOL = ("vstar", "hrbench4k", "hrbench8k")
PAPER_REASONING = ("chartqa", "ai2d", "wemath", "mmstar", "mmmu", "mmk12")


def spec_of(name: str | None) -> BenchmarkSpec:
    """The registered spec, or a plain-accuracy spec (no reader, no reference) for an unregistered name."""
    if name in BENCHMARKS:
        return BENCHMARKS[name]
    return BenchmarkSpec(str(name or "custom"), str(name or "custom"))


def reader_for(name: str) -> Reader:
    """The reader of a registered benchmark."""
    spec = BENCHMARKS.get(name)
    if spec is None or spec.reader is None:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {sorted(BENCHMARKS)}")
    return spec.reader
