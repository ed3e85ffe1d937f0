"""Environment check: is this Python the GPU stack verl 0.9.1 trains with?

    python -m recipe.ivgr.preflight --env [--gpus N] [--allow-no-gpu]   # what the launch scripts run
    python -m recipe.ivgr.envcheck --pin torch                         # 2.11.0 (read by scripts/install_gpu.sh)
    python -m recipe.ivgr.envcheck --installed torch                   # installed version, empty if none
    python -m recipe.ivgr.envcheck --torch-ready                       # exit 0: torch is the pinned CUDA build

Imports torch (CUDA build, CUDA available, device count), torchvision, torchaudio, flash_attn, vllm,
verl, transformers, qwen_vl_utils and ray; prints each version next to its pin from
`constraints-gpu.txt` (the one place the stack's versions are written: verl 0.9.1's vllm/fsdp extras)
and one `PROBLEM:` line with its fix for every package that is missing, at another version, or
installed but failing to import. Exit status 0 when the stack is complete, 1 otherwise.

Only the standard library at import time: scripts/install_gpu.sh runs this module (from the
repository root) before anything, the recipe included, is installed.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.metadata
import io
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PINS_FILE = REPO_ROOT / "constraints-gpu.txt"
INSTALLER = "bash scripts/install_gpu.sh"
# (distribution, import name), in import order: torch first, everything else builds on it
PACKAGES = (
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("torchaudio", "torchaudio"),
    ("flash-attn", "flash_attn"),
    ("vllm", "vllm"),
    ("verl", "verl"),
    ("transformers", "transformers"),
    ("qwen-vl-utils", "qwen_vl_utils"),
    ("ray", "ray"),
)
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")
_DIRECTIVE = re.compile(r"^#\s*(torch-cuda|torch-index):\s*(\S+)\s*$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)\s*$")


# What the CPU-side commands (preflights, data_prep, eval) import; the test environment has all of them.
PROJECT_MODULES = ("hydra", "omegaconf", "verl", "pyarrow", "transformers")
CPU_ENV_HINT = ("on a CPU machine, `bash scripts/test.sh --setup` creates .venv-test; then run with "
                "PYTHON=.venv-test/bin/python (launch scripts) or .venv-test/bin/python -m ... (modules); "
                "on a GPU node, `bash scripts/install_gpu.sh`")


def interpreter_problem(modules: Sequence[str] = PROJECT_MODULES) -> str | None:
    """Why this Python cannot run the project's commands (None when it can): the modules it cannot find.
    Says so plainly instead of letting the first import fail somewhere deep (e.g. as a Hydra error)."""
    import importlib.util

    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if not missing:
        return None
    return (f"this Python ({sys.executable}) cannot import {', '.join(missing)}: it is not the project's "
            f"environment; {CPU_ENV_HINT}")


def canonical(name: str) -> str:
    """PEP 503 name: `flash_attn`, `Flash-Attn` -> `flash-attn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """`2.11.0+cu130` -> `2.11.0` (the part a `==2.11.0` pin compares)."""
    return version.split("+", 1)[0]


@dataclass(frozen=True)
class Pins:
    """The stack's pins: canonical distribution name -> version, plus the torch CUDA flavour."""

    versions: dict[str, str]
    torch_cuda: str  # wheel tag of the CUDA build, e.g. "cu130"
    torch_index: str  # the PyTorch index serving that build
    path: Path

    def get(self, name: str) -> str | None:
        key = canonical(name)
        return {"torch-cuda": self.torch_cuda, "torch-index": self.torch_index}.get(key) or self.versions.get(key)

    @property
    def stack(self) -> str:
        """"verl 0.9.1": whose extras the pins are."""
        return f"verl {self.versions.get('verl', '?')}"

    @property
    def cuda_major(self) -> str:
        """"cu130" -> "13" (torch.version.cuda of that build starts with "13.")."""
        digits = self.torch_cuda.removeprefix("cu")
        return digits[:-1] if len(digits) > 1 else digits


def read_pins(path: Path = PINS_FILE) -> Pins:
    """Parse constraints-gpu.txt: `name==version` lines and the `# torch-cuda:` / `# torch-index:` lines."""
    versions: dict[str, str] = {}
    directives: dict[str, str] = {}
    for number, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        directive = _DIRECTIVE.match(line)
        if directive:
            directives[directive.group(1)] = directive.group(2)
            continue
        if not line or line.startswith("#"):
            continue
        pin = _PIN.match(line)
        if not pin:
            raise ValueError(f"{path}:{number}: expected `name==version`, got {raw!r}")
        versions[canonical(pin.group(1))] = pin.group(2)
    missing = [key for key in ("torch-cuda", "torch-index") if key not in directives]
    if missing:
        raise ValueError(f"{path}: missing the {', '.join(f'`# {k}: ...`' for k in missing)} line")
    return Pins(versions, directives["torch-cuda"], directives["torch-index"], Path(path))


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _torch_build_cuda() -> str | None:
    """`torch.version.cuda` of the installed torch, read from torch/version.py without importing torch."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return None
    version_py = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    with contextlib.suppress(OSError):
        match = re.search(r"^cuda(?::\s*\S+)?\s*=\s*['\"]([^'\"]+)['\"]", version_py.read_text(), re.M)
        return match.group(1) if match else None
    return None


def torch_ready(pins: Pins) -> tuple[bool, str]:
    """Are torch, torchvision and torchaudio at their pins and the pinned CUDA build? (no import)

    `2.11.0+cu130` (PyTorch index) qualifies; so does a plain `2.11.0` (PyPI) whose torch/version.py
    says CUDA 13.x, because PyPI's torch 2.11.0 wheel for Linux is that build.
    """
    for dist in TORCH_FAMILY:
        version = installed_version(dist)
        if version is None:
            return False, f"{dist} not installed"
        base, _, local = version.partition("+")
        if base != pins.versions.get(dist) or local not in ("", pins.torch_cuda):
            return False, f"{dist} {version}"
    cuda = _torch_build_cuda()
    if cuda is None or cuda.split(".")[0] != pins.cuda_major:
        return False, f"torch {installed_version('torch')} is {'a CPU build' if cuda is None else 'CUDA ' + cuda}"
    return True, ", ".join(f"{d} {installed_version(d)}" for d in TORCH_FAMILY) + f" (CUDA {cuda})"


def _verl_requirement(dist: str) -> str | None:
    """verl's own (extra-less) requirement on an unpinned package, e.g. ray -> `>=2.41.0`."""
    try:
        requires = importlib.metadata.requires("verl") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for line in requires:
        spec, _, marker = line.partition(";")
        match = re.match(r"^([A-Za-z0-9._-]+)(\[[^\]]*\])?\s*(.*)$", spec.strip())
        if match and canonical(match.group(1)) == canonical(dist) and "extra" not in marker:
            return match.group(3).strip() or None
    return None


def _satisfies(version: str, specifier: str) -> bool | None:
    """Whether `version` meets a PEP 440 specifier (None when `packaging` is not importable)."""
    try:
        from packaging.specifiers import SpecifierSet
    except ImportError:
        return None
    return SpecifierSet(specifier).contains(version, prereleases=True)


@dataclass
class Row:
    dist: str
    installed: str
    pin: str
    status: str
    detail: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _torch_fix(pins: Pins) -> str:
    specs = " ".join(f"{d}=={pins.get(d)}+{pins.torch_cuda}" for d in TORCH_FAMILY)
    return f"pip install {specs} --index-url {pins.torch_index} (or {INSTALLER})"


def _fix(dist: str, pins: Pins) -> str:
    if dist in TORCH_FAMILY:
        return _torch_fix(pins)
    if dist == "flash-attn":
        return (f"{INSTALLER} (a prebuilt flash-attn wheel for this torch/CUDA/Python, else a source build: "
                "scripts/README.md, 'GPU install')")
    if dist in pins.versions:
        return f"pip install -c constraints-gpu.txt {dist}=={pins.versions[dist]} (or {INSTALLER})"
    return f"pip install -r requirements.txt (it comes with verl's extras; or {INSTALLER})"


def _import(module: str) -> tuple[object | None, str | None]:
    """Import quietly; (module, None) or (None, the error's first line)."""
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink):
            return importlib.import_module(module), None
    except (Exception, SystemExit) as err:  # noqa: BLE001  (ImportError, OSError for a missing .so, RuntimeError)
        text = str(err).strip().splitlines()
        return None, f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def _check_torch(torch, pins: Pins, report: Report, row: Row, gpus: int | None, allow_no_gpu: bool) -> None:
    cuda = getattr(torch.version, "cuda", None)
    if cuda is None:
        row.status, row.detail = "WRONG BUILD", "CPU build"
        report.problems.append(f"torch {row.installed} is a CPU build (torch.version.cuda is None): no CUDA. "
                               f"Fix: {_torch_fix(pins)}")
        return
    if cuda.split(".")[0] != pins.cuda_major:
        row.status, row.detail = "WRONG BUILD", f"CUDA {cuda}"
        report.problems.append(f"torch {row.installed} is built for CUDA {cuda}; the stack is the {pins.torch_cuda} "
                               f"build (vllm and flash-attn wheels link against it). Fix: {_torch_fix(pins)}")
        return
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        row.detail = f"CUDA {cuda}, no GPU visible"
        message = (f"torch {row.installed} (CUDA {cuda}) sees no GPU: torch.cuda.is_available() is False. Check "
                   f"`nvidia-smi` (a CUDA {pins.cuda_major}.x build needs an NVIDIA driver that supports it: 580 or "
                   "newer for CUDA 13.0) and CUDA_VISIBLE_DEVICES")
        if allow_no_gpu:
            report.warnings.append(message + " (allowed: --allow-no-gpu)")
        else:
            row.status = "NO GPU"
            report.problems.append(message)
        return
    name = torch.cuda.get_device_name(0)
    row.detail = f"CUDA {cuda}, {count} GPU{'s' if count != 1 else ''} ({name})"
    if gpus is not None and count < gpus:
        row.status = "TOO FEW GPUS"
        report.problems.append(f"torch sees {count} GPU{'s' if count != 1 else ''} but the launch needs {gpus} per "
                               "node (GPUS_PER_NODE / trainer.n_gpus_per_node): check CUDA_VISIBLE_DEVICES, or "
                               f"launch with GPUS_PER_NODE={count}")


def check(pins: Pins, gpus: int | None = None, allow_no_gpu: bool = False) -> Report:
    """Import every package of the stack in order and compare it with its pin."""
    report = Report()
    for dist, module in PACKAGES:
        pin = pins.versions.get(dist)
        required = None if pin else _verl_requirement(dist)
        installed = installed_version(dist)
        row = Row(dist, installed or "-", pin or (f"{required} (verl)" if required else "any"), "ok")
        report.rows.append(row)
        if installed is None:
            row.status = "MISSING"
            report.problems.append(f"{dist} is not installed (`import {module}` needs it). Fix: {_fix(dist, pins)}")
            continue
        if pin and public(installed) != pin:
            row.status = "MISMATCH"
            report.problems.append(f"{dist} {installed} is installed; the stack pins {dist}=={pin} "
                                   f"({pins.stack}, {pins.path.name}). Fix: {_fix(dist, pins)}")
            if dist != "torch":  # torch is still imported: its CUDA build and GPUs are worth knowing
                continue
        if required and _satisfies(installed, required) is False:
            row.status = "MISMATCH"
            report.problems.append(f"{dist} {installed} does not meet verl's requirement {dist}{required}. "
                                   f"Fix: {_fix(dist, pins)}")
            continue
        loaded, error = _import(module)
        if loaded is None:
            row.status, row.detail = "BROKEN", error or ""
            hint = (f" Fix: FLASH_ATTN_REINSTALL=1 {INSTALLER} (a flash-attn built against another torch)"
                    if dist == "flash-attn" else f" Fix: pip install --force-reinstall --no-deps "
                    f"{dist}=={public(installed)}, or {INSTALLER}")
            report.problems.append(f"{dist} {installed} is installed but `import {module}` fails: {error}.{hint}")
            continue
        if dist == "torch":
            _check_torch(loaded, pins, report, row, gpus, allow_no_gpu)
            row.status = "MISMATCH" if pin and public(installed) != pin else row.status
    return report


def render(report: Report, pins: Pins, out) -> int:
    print(f"iVGR environment check: {sys.executable} (Python {sys.version.split()[0]}), pins from {pins.path}",
          file=out)
    header = Row("package", "installed", "pin", "status")
    rows = [header, *report.rows]
    widths = [max(len(getattr(r, key)) for r in rows) for key in ("dist", "installed", "pin", "status")]
    for row in rows:
        cells = [row.dist, row.installed, row.pin, row.status]
        line = "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))
        print(f"  {line}  {row.detail}".rstrip(), file=out)
    print("", file=out)
    for message in report.warnings:
        print(f"WARNING: {message}", file=out)
    if report.problems:
        count = len(report.problems)
        print(f"ENV CHECK FAILED: {count} problem{'s' if count != 1 else ''} (re-running {INSTALLER} installs "
              "only what is missing or at another version)", file=out)
        for message in report.problems:
            print(f"PROBLEM: {message}", file=out)
        return 1
    print(f"ENV CHECK OK: the GPU stack matches the pins of {pins.stack} and imports", file=out)
    return 0


def run(gpus: int | None = None, allow_no_gpu: bool = False, pins_file: Path = PINS_FILE, out=None) -> int:
    """The full check, printed to `out`; 0 = complete stack, 1 = problems."""
    out = out or sys.stdout
    try:
        pins = read_pins(pins_file)
    except (OSError, ValueError) as err:
        print(f"PROBLEM: cannot read the pins ({err}): run from a checkout of this repository", file=out)
        return 1
    return render(check(pins, gpus=gpus, allow_no_gpu=allow_no_gpu), pins, out)


def build_parser(prog: str = "python -m recipe.ivgr.envcheck") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Check this Python's GPU stack against the pins.")
    parser.add_argument("--gpus", type=int, default=None, help="GPUs this node must show (GPUS_PER_NODE)")
    parser.add_argument("--allow-no-gpu", action="store_true",
                        help="no visible GPU is a warning, not a problem (image builds)")
    parser.add_argument("--pins", type=Path, default=PINS_FILE, help="the pins file (default: constraints-gpu.txt)")
    parser.add_argument("--pin", metavar="NAME", help="print one pin (torch, flash-attn, torch-cuda, torch-index) "
                                                      "and exit")
    parser.add_argument("--installed", metavar="DIST", help="print the installed version of DIST (empty if none)")
    parser.add_argument("--torch-ready", action="store_true",
                        help="exit 0 when torch/torchvision/torchaudio are the pinned CUDA build (no import)")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m recipe.ivgr.envcheck") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.installed:
        print(installed_version(args.installed) or "")
        return 0
    if args.torch_ready:
        ready, why = torch_ready(read_pins(args.pins))
        print(why)
        return 0 if ready else 1
    if args.pin:
        value = read_pins(args.pins).get(args.pin)
        if value is None:
            print(f"no pin for {args.pin!r} in {args.pins}", file=sys.stderr)
            return 1
        print(value)
        return 0
    return run(gpus=args.gpus, allow_no_gpu=args.allow_no_gpu, pins_file=args.pins)


if __name__ == "__main__":
    sys.exit(main())
