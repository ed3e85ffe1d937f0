"""Command line: evaluate a checkpoint on benchmarks in textual, grounded and tool-assisted modes.

    python -m recipe.ivgr.eval --model CKPT --bench vstar hrbench4k hrbench8k --mode textual grounded tool \
        [--backend vllm|transformers] [--out DIR] [--data-dir data/eval] [--resume]

`--bench` takes registered names (resolved to `<data-dir>/<name>.parquet`, made by
`python -m recipe.ivgr.eval.benchmarks`), eval Parquet files, or `name=PATH` to convert a public
benchmark file/folder on the fly (into `<out>/data/<name>.parquet`). `--bench` and `--mode` take
several values and may be repeated.

Writes `<out>/<bench>/<mode>.jsonl` (one record per item), `<out>/run.json` (settings, backend,
seeds, versions) and `<out>/summary.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recipe.ivgr.eval.backends import Backend, SamplingSettings
from recipe.ivgr.eval.benchmarks import BENCHMARKS
from recipe.ivgr.eval.config import MODES, EvalConfig, resolve_bounds
from recipe.ivgr.eval.converter import convert
from recipe.ivgr.eval.report import build_summary, render_markdown, write_summary
from recipe.ivgr.eval.runner import BenchmarkRun, timestamp
from recipe.ivgr.eval.schema import check_eval_file
from reward_score.families import DEFAULT_FAMILY, FAMILY_NAMES

logger = logging.getLogger("recipe.ivgr.eval")


@dataclass
class BenchInput:
    label: str  # output folder name and summary key
    path: Path  # eval Parquet


def _split(values: Sequence[str] | None) -> list[str]:
    """Flatten repeated / comma-separated CLI values."""
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in str(value).split(",") if v.strip())
    return out


def resolve_benches(specs: Sequence[str], data_dir: Path, out_dir: Path, *, shuffle_seed: int | None,
                    overwrite: bool = False, image_root: str | None = None) -> list[BenchInput]:
    """`--bench` values -> eval files (converting `name=PATH` inputs on the fly)."""
    benches: list[BenchInput] = []
    for spec in specs:
        label, _, target = spec.partition("=")
        if target:
            path = Path(target)
            if path.suffix == ".parquet" and path.is_file():
                try:
                    check_eval_file(path)
                    benches.append(BenchInput(label, path))
                    continue
                except ValueError:
                    pass  # a public Parquet (e.g. POPE): convert it below
            if label not in BENCHMARKS:
                raise SystemExit(f"--bench {spec}: {label!r} is not a registered benchmark {sorted(BENCHMARKS)}; "
                                 "NAME=PATH converts a public file, so NAME must be registered")
            converted = out_dir / "data" / f"{label}.parquet"
            if overwrite or not converted.exists():
                summary = convert(label, [path], converted, image_root=image_root, seed=shuffle_seed)
                print(f"[eval] converted {path} -> {converted}: {summary['written']} items "
                      f"(rejected {summary['rejected']} {summary['reasons']})", file=sys.stderr)
            benches.append(BenchInput(label, converted))
            continue
        path = Path(spec)
        if path.suffix == ".parquet" or path.is_file():
            if not path.is_file():
                raise SystemExit(f"--bench {spec}: no such file")
            check_eval_file(path)
            benches.append(BenchInput(path.stem, path))
        elif spec in BENCHMARKS:
            path = data_dir / f"{spec}.parquet"
            if not path.is_file():
                raise SystemExit(f"--bench {spec}: {path} not found; convert the benchmark first: python -m "
                                 f"recipe.ivgr.eval.benchmarks {spec} --input SOURCE --out {path} (or pass "
                                 f"--bench {spec}=SOURCE)")
            benches.append(BenchInput(spec, path))
        else:
            raise SystemExit(f"--bench {spec}: neither a file nor a registered benchmark {sorted(BENCHMARKS)}")
    labels = [b.label for b in benches]
    if len(set(labels)) != len(labels):
        raise SystemExit(f"--bench: duplicate labels {labels}; use LABEL=FILE to tell them apart")
    return benches


def detect_box_frame(model_path: str | None) -> tuple[str | None, str]:
    """(box frame, how it was decided) of a checkpoint folder or hub id: its model family
    (`reward_score.families.detect_family`: config.json model_type from the folder or the hub cache,
    else the architecture name). None: the caller refuses grounded and tool modes unless
    `--box-frame` is given (their IoU and crops depend on the frame)."""
    from reward_score.families import detect_family

    family, why = detect_family(model_path)
    return (family.name if family else None), why


def choose_box_frame(explicit: str | None, model: str | None, modes: Sequence[str]) -> tuple[str, str]:
    """(frame, how it was decided) for a run: `--box-frame`, else `detect_box_frame`; an undecided
    frame is refused for grounded/tool modes and falls back to `qwen2_5_vl` pixel bounds for textual."""
    if explicit:
        return explicit, "--box-frame"
    frame, why = detect_box_frame(model)
    if frame is not None:
        return frame, why
    boxed = [m for m in modes if m != "textual"]
    if boxed:
        raise SystemExit(f"cannot tell the box frame of {model!r} ({why}); modes {boxed} parse boxes and crop in it: "
                         f"pass --box-frame {'|'.join(FAMILY_NAMES)}")
    logger.warning("box frame of %s unknown (%s): textual mode only, using qwen2_5_vl pixel bounds", model, why)
    return DEFAULT_FAMILY, f"default for textual mode ({why})"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for module in ("torch", "transformers", "vllm", "pyarrow"):
        mod = sys.modules.get(module)
        if mod is not None:
            out[module] = str(getattr(mod, "__version__", "?"))
    return out


class _LazyBackend:
    """Builds the backend on first use, so a fully resumed run never loads the model."""

    def __init__(self, factory: Callable[[], Backend] | None, backend: Backend | None, box_frame: str):
        self._factory = factory
        self.backend = backend
        self.box_frame = box_frame

    def __call__(self) -> Backend:
        if self.backend is None:
            assert self._factory is not None
            started = time.perf_counter()
            self.backend = self._factory()
            logger.info("backend ready in %.1f s", time.perf_counter() - started)
        self.backend.box_frame = self.box_frame  # the first batch with images checks it
        return self.backend


def run_eval(benches: Sequence[BenchInput], cfg: EvalConfig, out_dir: str | os.PathLike, *,
             backend: Backend | None = None, backend_factory: Callable[[tuple[int, int]], Backend] | None = None,
             model: str | None = None, resume: bool = False, overwrite: bool = False,
             judge: Any = None, progress: bool = True, argv: Sequence[str] | None = None,
             box_frame_source: str | None = None, gallery: int = 20) -> dict[str, Any]:
    """Evaluate `benches` in `cfg.modes`; returns the summary (also written to `out_dir`).

    Pass a ready `backend` (tests, notebooks) or a `backend_factory(bounds)` that builds one with
    the given pixel bounds (the CLI; called only when something needs generating). Besides the
    summary, writes its chart (`summary.png`) and, with `gallery` > 0, a gallery of that many items per
    benchmark and mode (`gallery/index.html`).
    """
    if (backend is None) == (backend_factory is None):
        raise ValueError("pass exactly one of backend / backend_factory")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bounds = resolve_bounds(cfg, backend)
    lazy = _LazyBackend((lambda: backend_factory(bounds)) if backend_factory else None, backend, cfg.box_frame)
    fingerprint = cfg.fingerprint(bounds)
    run_path = out / "run.json"
    identity = {"model": model, "backend": backend.name if backend else getattr(backend_factory, "backend_name", None)}
    if run_path.exists() and resume:
        previous = json.loads(run_path.read_text(encoding="utf-8"))
        if previous.get("fingerprint") != fingerprint or previous.get("identity") != identity:
            raise SystemExit(f"--resume: {run_path} was written with other settings "
                             f"({previous.get('identity')}, {previous.get('fingerprint')}); use a new --out")
    existing = [str(out / b.label / f"{m}.jsonl") for b in benches for m in cfg.modes
                if (out / b.label / f"{m}.jsonl").exists()]
    if existing and not (resume or overwrite):
        raise SystemExit(f"results exist ({', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''}): pass "
                         "--resume to continue that run, --overwrite to replace it, or choose another --out")
    if overwrite:
        for bench in benches:
            for mode in cfg.modes:
                (out / bench.label / f"{mode}.jsonl").unlink(missing_ok=True)
    run_info: dict[str, Any] = {
        "started": timestamp(), "argv": list(argv) if argv is not None else None, "model": model,
        "identity": identity, "fingerprint": fingerprint, "config": asdict(cfg) | {"judge": _judge_public(cfg.judge)},
        "box_frame": cfg.box_frame, "box_frame_source": box_frame_source, "pixel_bounds": list(bounds),
        "benches": {b.label: _bench_info(b.path) for b in benches},
    }
    run_path.write_text(json.dumps(run_info, indent=2, default=str) + "\n", encoding="utf-8")
    judge_client = judge
    if judge_client is None and cfg.judge and cfg.judge.get("base_url"):
        from reward_score.judge import JudgeClient, JudgeConfig

        judge_client = JudgeClient(JudgeConfig.from_mapping(cfg.judge))
    written = {}
    try:
        for bench in benches:
            started = time.perf_counter()
            runner = BenchmarkRun(bench.label, bench.path, cfg, lazy, bounds, out, resume=resume,
                                  judge_client=judge_client, progress=progress)
            written[bench.label] = runner.run()
            logger.info("%s: %s new records in %.1f s", bench.label, written[bench.label],
                        time.perf_counter() - started)
    finally:
        if lazy.backend is not None:
            run_info["backend"] = lazy.backend.describe()
            run_info["backend_stats"] = dict(lazy.backend.stats)
        if judge_client is not None:
            run_info["judge_stats"] = judge_client.stats()
        run_info["finished"] = timestamp()
        run_info["versions"] = _versions()
        run_info["new_records"] = written
        run_path.write_text(json.dumps(run_info, indent=2, default=str) + "\n", encoding="utf-8")
    summary = build_summary(out, [b.label for b in benches], cfg.modes, run_info)
    summary["pictures"] = _pictures(out, summary, benches, cfg, gallery)
    write_summary(out, summary)
    if summary["protocol_flags"]:
        logger.warning("graded and reference protocols differ by more than 1 point on %s (summary.md, "
                       "'Protocols'); paper-table numbers use the reference protocol", summary["protocol_flags"])
    return summary


def _pictures(out: Path, summary: dict[str, Any], benches: Sequence[BenchInput], cfg: EvalConfig,
              gallery: int) -> dict[str, str]:
    """The chart (`charts`) and, with `gallery` > 0, the per-item gallery (`gallery`), paths relative to `out`.
    A picture that fails is logged, never fatal: the scores are written either way."""
    from recipe.ivgr.eval.charts import write_chart
    from recipe.ivgr.eval.gallery import write_gallery

    pictures: dict[str, str] = {}
    try:
        pictures["chart"] = write_chart(out, summary, cfg.modes).relative_to(out).as_posix()
    except Exception as err:  # noqa: BLE001  (e.g. matplotlib missing)
        logger.error("no chart: %s: %s", type(err).__name__, err)
    if gallery > 0:
        try:
            index = write_gallery(out, {b.label: b.path for b in benches}, cfg.modes, image_root=cfg.image_root,
                                  per_mode=gallery)
            pictures["gallery"] = index.relative_to(out).as_posix()
        except Exception as err:  # noqa: BLE001
            logger.error("no gallery: %s: %s", type(err).__name__, err)
    return pictures


def _judge_public(judge: dict | None) -> dict | None:
    return None if not judge else {k: v for k, v in judge.items() if "key" not in k or k == "api_key_env"}


def _bench_info(path: Path) -> dict:
    parquet = check_eval_file(path)
    meta = {k.decode(): v.decode() for k, v in (parquet.schema_arrow.metadata or {}).items()
            if k.startswith(b"ivgr.")}
    return {"file": str(path), "rows": parquet.metadata.num_rows, "bytes": path.stat().st_size, **meta}


# ------------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m recipe.ivgr.eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="checkpoint folder (HF format) or hub id (vLLM / transformers load it)")
    p.add_argument("--bench", action="extend", nargs="+", required=True,
                   help="NAME (registered; <data-dir>/NAME.parquet), FILE.parquet (eval schema) or NAME=SOURCE "
                        "(public benchmark file/folder, converted on the fly); several allowed")
    p.add_argument("--mode", action="extend", nargs="+", default=None,
                   help=f"one or more of {', '.join(MODES)} (default textual)")
    p.add_argument("--backend", choices=("vllm", "transformers"), default="vllm")
    p.add_argument("--out", type=Path, default=None, help="output folder (default outputs/eval/<model name>)")
    p.add_argument("--data-dir", type=Path, default=Path("data/eval"), help="where NAME.parquet files live")
    p.add_argument("--image-root", default=None, help="folder that image paths in eval files are relative to "
                                                      "(default: the root stored in the file, else its folder)")
    p.add_argument("--shuffle-seed", type=int, default=0, help="option shuffle seed for NAME=SOURCE conversions")
    g = p.add_argument_group("model input")
    g.add_argument("--box-frame", choices=FAMILY_NAMES, default=None,
                   help="box frame of the model (default: model_type in config.json, read from the folder or the "
                        "hub cache, else Qwen3-VL / Qwen2.5-VL in the name; grounded/tool modes refuse to guess)")
    g.add_argument("--min-pixels", type=int, default=None, help="image pixel bounds (default: the frame's "
                                                                "training bounds, 4..4096 image tokens)")
    g.add_argument("--max-pixels", type=int, default=None)
    g = p.add_argument_group("decoding")
    g.add_argument("--max-new-tokens", type=int, default=4096)
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-size", type=int, default=None, help="requests per backend call "
                                                                "(default vllm 512, transformers 4)")
    g.add_argument("--chunk-size", type=int, default=None, help="items per pipeline chunk "
                                                                "(default vllm 256, transformers 16)")
    g.add_argument("--limit", type=int, default=None, help="first N items of each benchmark")
    g = p.add_argument_group("tool mode")
    g.add_argument("--max-crops", type=int, default=8, help="per-box crops at most (the union is extra)")
    g.add_argument("--crop-min-side", type=int, default=None, help="crops are enlarged to this many pixels a side "
                                                                   "(default one resize factor: 28 / 32)")
    g.add_argument("--no-crop-note", action="store_true", help="do not tell the model what the extra images are")
    g = p.add_argument_group("scoring")
    g.add_argument("--strict-answer", action="store_true", help="no <answer> tag = unparsable (no fallback)")
    g.add_argument("--no-lenient", action="store_true", help="strict rules only (no option-text containment etc.)")
    g.add_argument("--judge-url", default=None, help="OpenAI-compatible judge for undecided answers (off by default)")
    g.add_argument("--judge-model", default="judge")
    g.add_argument("--judge-api-key-env", default="JUDGE_API_KEY")
    g.add_argument("--judge-scope", choices=("open", "all", "none"), default="open",
                   help="open: only non-multiple-choice items (default); all: multiple choice too")
    g.add_argument("--judge-concurrency", type=int, default=64)
    g = p.add_argument_group("vLLM")
    g.add_argument("--tensor-parallel-size", type=int, default=1)
    g.add_argument("--gpu-memory-utilization", type=float, default=0.85)
    g.add_argument("--max-model-len", type=int, default=None)
    g.add_argument("--dtype", default="auto")
    g.add_argument("--enforce-eager", action="store_true")
    g = p.add_argument_group("run")
    g.add_argument("--resume", action="store_true", help="keep existing records and do only the missing items")
    g.add_argument("--gallery", type=int, default=20, metavar="N",
                   help="items per benchmark and mode in <out>/gallery/index.html (0: no gallery; default 20)")
    g.add_argument("--overwrite", action="store_true", help="replace existing records of these benches/modes")
    g.add_argument("--no-progress", "--quiet", dest="no_progress", action="store_true", help="no progress bar")
    g.add_argument("--offline-processor", action="store_true",
                   help="CPU smoke tests only: use data_prep.offline_processor instead of the checkpoint's processor")
    return p


def make_backend_factory(args: argparse.Namespace, sampling: SamplingSettings, max_images: int):
    def factory(bounds: tuple[int, int]) -> Backend:
        processor = None
        if args.offline_processor:
            from data_prep.offline_processor import build_processor

            processor = build_processor(min_pixels=bounds[0], max_pixels=bounds[1])
        if args.backend == "vllm":
            from recipe.ivgr.eval.backends import VLLMBackend

            return VLLMBackend(args.model, sampling=sampling, batch_size=args.batch_size or 512,
                               tensor_parallel_size=args.tensor_parallel_size,
                               gpu_memory_utilization=args.gpu_memory_utilization, max_model_len=args.max_model_len,
                               max_images=max_images, min_pixels=bounds[0], max_pixels=bounds[1], dtype=args.dtype,
                               enforce_eager=args.enforce_eager, processor=processor)
        from recipe.ivgr.eval.backends import TransformersBackend

        return TransformersBackend.from_pretrained(args.model, processor=processor, sampling=sampling,
                                                   batch_size=args.batch_size or 4, dtype=args.dtype,
                                                   min_pixels=bounds[0], max_pixels=bounds[1])
    factory.backend_name = args.backend  # type: ignore[attr-defined]
    return factory


def main(argv: Sequence[str] | None = None, *, backend: Backend | None = None) -> int:
    """CLI entry. `backend` lets tests run the real CLI with an in-memory backend."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    modes = _split(args.mode) or ["textual"]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise SystemExit(f"--mode: unknown {unknown}; choose from {list(MODES)}")
    modes = list(dict.fromkeys(modes))
    if backend is None and not args.model:
        raise SystemExit("--model is required")
    if args.resume and args.overwrite:
        raise SystemExit("--resume and --overwrite exclude each other")
    model_name = Path(str(args.model)).name if args.model else "model"
    out = args.out or Path("outputs/eval") / model_name
    judge = None
    if args.judge_url:
        judge = {"base_url": args.judge_url, "model": args.judge_model, "api_key_env": args.judge_api_key_env,
                 "max_concurrency": args.judge_concurrency}
    default_chunk = 16 if (backend is not None or args.backend == "transformers") else 256
    frame, frame_source = choose_box_frame(args.box_frame, args.model, modes)
    logger.info("box frame %s (%s)", frame, frame_source)
    cfg = EvalConfig(
        modes=tuple(modes), box_frame=frame,
        min_pixels=args.min_pixels, max_pixels=args.max_pixels, max_crops=args.max_crops,
        crop_min_side=args.crop_min_side, crop_note=not args.no_crop_note, strict_answer=args.strict_answer,
        lenient=not args.no_lenient, judge=judge, judge_scope=args.judge_scope,
        chunk_size=args.chunk_size or default_chunk, limit=args.limit, image_root=args.image_root,
    )
    benches = resolve_benches(_split(args.bench), args.data_dir, out, shuffle_seed=args.shuffle_seed,
                              overwrite=args.overwrite, image_root=args.image_root)
    sampling = SamplingSettings(temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                                seed=args.seed)
    factory = None if backend is not None else make_backend_factory(args, sampling, max_images=args.max_crops + 3)
    summary = run_eval(benches, cfg, out, backend=backend, backend_factory=factory, model=args.model,
                       resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress, argv=argv,
                       box_frame_source=frame_source, gallery=args.gallery)
    print(render_markdown(summary))
    pictures = ", ".join(f"{out}/{p}" for p in summary.get("pictures", {}).values())
    print(f"[eval] wrote {out}/summary.md, {out}/summary.json, {pictures} and per-item JSONL under {out}/",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
