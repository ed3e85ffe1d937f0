"""The GPU install (scripts/install_gpu.sh, constraints-gpu.txt, Dockerfile) and the environment
check (`python -m recipe.ivgr.preflight --env`), as far as a CPU machine allows.

The expected versions come from verl 0.9.1's installed metadata (its `vllm` / `fsdp` extras), never
from our pins file. The install script runs for real with a recording stand-in for `python -m pip`
(a wrapper interpreter: pip calls are logged, everything else runs the real Python), and stand-in
distributions on PYTHONPATH play "already installed" and "installed but broken" packages.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install_gpu.sh"
STACK = ("torch", "torchvision", "torchaudio", "vllm", "transformers", "flash-attn")
SHELLCHECK = shutil.which("shellcheck", path=os.path.dirname(sys.executable)) or shutil.which("shellcheck")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def verl_stack() -> dict[str, str]:
    """`==` pins of verl's `vllm` and `fsdp` extras (following verl[...] self-references), plus
    `torch-cuda` / `torch-minor` from the name of its flash-attn extra (`flash-attn-cu130torch211`)."""
    requires = importlib.metadata.requires("verl") or []
    by_extra: dict[str, list[str]] = {}
    for line in requires:
        spec, _, marker = line.partition(";")
        extra = re.search(r'extra\s*==\s*"([^"]+)"', marker)
        if extra:
            by_extra.setdefault(extra.group(1), []).append(spec.strip())
    pins: dict[str, str] = {}
    seen: set[str] = set()
    todo = ["vllm", "fsdp"]
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for spec in by_extra[extra]:
            self_ref = re.match(r"^verl\[([^\]]+)\]$", spec)
            if self_ref:
                todo.extend(e.strip() for e in self_ref.group(1).split(","))
                continue
            pin = re.match(r"^([A-Za-z0-9._-]+)\s*==\s*(\S+)$", spec)
            if pin:
                name = _canonical(pin.group(1))
                assert pins.get(name, pin.group(2)) == pin.group(2), f"verl's extras disagree on {name}"
                pins[name] = pin.group(2)
    flash_extra = next(e for e in seen if e.startswith("flash-attn-cu"))
    cuda, torch_minor = re.fullmatch(r"flash-attn-(cu\d+)torch(\d+)", flash_extra).groups()
    pins["torch-cuda"], pins["torch-minor"] = cuda, torch_minor
    pins["verl"] = importlib.metadata.version("verl")
    return pins


@pytest.fixture(scope="module")
def verl():
    pins = verl_stack()
    assert pins["verl"] == "0.9.1"
    assert set(STACK) <= set(pins), pins
    return pins


# --------------------------------------------------------------------------- the pins
def test_pins_file_is_verl_0_9_1s_stack(verl):
    from recipe.ivgr.envcheck import read_pins

    pins = read_pins()
    for name in (*STACK, "verl"):
        assert pins.versions[name] == verl[name], name
    assert set(pins.versions) == {*STACK, "verl"}
    assert pins.torch_cuda == verl["torch-cuda"] == "cu130"
    assert pins.torch_index == f"https://download.pytorch.org/whl/{verl['torch-cuda']}"
    assert "".join(pins.versions["torch"].split(".")[:2]) == verl["torch-minor"]


_TYPED_PIN = re.compile(r"(?<![\w-])(torch|torchvision|torchaudio|vllm|transformers|flash[-_]attn|verl)"
                        r"(?:\[[^\]]*\])?\s*==\s*([0-9][\w.]*)")
_PROSE_VERSION = re.compile(r"(?<![\w-])(torch|torchvision|torchaudio|vllm|transformers|flash-attn|verl)"
                            r" (\d+\.\d+\.\d+)(?![\d.]|\+cpu)")  # a CPU build in an example is never the stack
_WHEEL = re.compile(r"flash_attn-([\d.]+)\+(cu\d+)torch(\d+)\.(\d+)")
GPU_FILES = ["requirements.txt", "constraints-gpu.txt", "scripts/install_gpu.sh", "Dockerfile", "README.md",
             "scripts/README.md"]


@pytest.mark.parametrize("name", GPU_FILES)
def test_no_file_names_another_version_of_the_stack(name, verl):
    """Every version of the stack written anywhere in the GPU install is verl 0.9.1's."""
    text = (ROOT / name).read_text()
    for match in [*_TYPED_PIN.finditer(text), *_PROSE_VERSION.finditer(text)]:
        assert match.group(2) == verl[_canonical(match.group(1))], f"{name}: {match.group(0)!r}"
    for fa, cuda, major, minor in _WHEEL.findall(text):
        assert (fa, cuda, major + minor) == (verl["flash-attn"], verl["torch-cuda"], verl["torch-minor"]), name
    for cuda_major in re.findall(r"nvidia/cuda:(\d+)\.", text):
        assert "cu" + cuda_major == verl["torch-cuda"][:-1], f"{name}: CUDA {cuda_major} base image"


def test_requirements_take_the_pins_and_the_old_one_liner_is_gone():
    requirements = (ROOT / "requirements.txt").read_text()
    lines = [line.strip() for line in requirements.splitlines() if line.strip() and not line.startswith("#")]
    assert "-c constraints-gpu.txt" in lines and "verl[vllm,fsdp]" in lines
    one_liner = re.compile(r"pip install -r requirements\.txt\s*&&\s*pip install -e \.")
    for name in ("README.md", "requirements.txt", "scripts/README.md"):
        assert not one_liner.search((ROOT / name).read_text()), name
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/install_gpu.sh && bash scripts/train_ivgr_7b.sh" in readme
    assert "bash scripts/test.sh\n" in readme


# --------------------------------------------------------------------------- the script
@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed")
def test_install_script_passes_shellcheck():
    result = subprocess.run([SHELLCHECK, "-x", str(SCRIPT)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def _tags() -> tuple[str, str]:
    import sysconfig

    return f"cp{sys.version_info[0]}{sys.version_info[1]}", sysconfig.get_platform().replace("-", "_")


def test_print_lists_the_steps_in_order_with_verls_pins(verl):
    result = subprocess.run(["bash", str(SCRIPT), "--print"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHON": sys.executable}, timeout=60)
    assert result.returncode == 0, result.stderr
    steps = result.stdout.splitlines()
    py, platform = _tags()
    cuda, minor = verl["torch-cuda"], verl["torch-minor"]
    torch_specs = " ".join(f"{d}=={verl[d]}+{cuda}" for d in ("torch", "torchvision", "torchaudio"))
    assert len(steps) == 5, steps
    assert steps[0].endswith(f"-m pip install --disable-pip-version-check {torch_specs} "
                             f"--index-url https://download.pytorch.org/whl/{cuda}")
    assert "--no-build-isolation" in steps[1] and steps[1].endswith(
        f"/flash_attn-{verl['flash-attn']}+{cuda}torch{minor[0]}.{minor[1:]}-{py}-{py}-{platform}.whl")
    assert steps[2].endswith("-m pip install --disable-pip-version-check -r requirements.txt")
    assert steps[3].endswith("-e .")
    assert steps[4].strip().endswith("-m recipe.ivgr.preflight --env")


def _dist(site: Path, name: str, version: str, package: str | None = None, init: str = "") -> None:
    """A stand-in installed distribution: NAME-VERSION.dist-info (+ an importable package)."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    if package:
        (site / package).mkdir(exist_ok=True)
        (site / package / "__init__.py").write_text(init)


@pytest.fixture
def fake_pip(tmp_path):
    """PYTHON for the script: `-m pip ...` is recorded (one line per call, with MAX_JOBS) and fails
    when it contains FAKE_PIP_FAIL; anything else runs this test's Python."""
    log = tmp_path / "pip.log"
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f"""#!/usr/bin/env bash
if [[ "${{1:-}}" == -m && "${{2:-}}" == pip ]]; then
    shift 2
    [[ "${{1:-}}" == --version ]] && {{ echo "pip (recording stand-in)"; exit 0; }}
    printf '%s | MAX_JOBS=%s\\n' "$*" "${{MAX_JOBS:-}}" >> "{log}"
    if [[ -n "${{FAKE_PIP_FAIL:-}}" && "$*" == *"$FAKE_PIP_FAIL"* ]]; then echo "ERROR: HTTP 404" >&2; exit 1; fi
    exit 0
fi
exec "{sys.executable}" "$@"
""")
    python.chmod(0o755)
    site = tmp_path / "site"
    site.mkdir()

    def run(*args: str, **env: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        environment = {**os.environ, "PYTHON": str(python), "PYTHONPATH": str(site), "CUDA_HOME": "/nonexistent",
                       "PATH": f"{python.parent}:/usr/bin:/bin", **env}
        result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT,
                                env=environment, timeout=180)
        calls = log.read_text().splitlines() if log.exists() else []
        return result, calls

    run.site = site
    run.bin = python.parent
    return run


def _stack_present(site: Path, verl: dict[str, str], torch_local: str = "+cu130") -> None:
    for dist in ("torchvision", "torchaudio"):
        _dist(site, dist, verl[dist] + "+cu130")
    _dist(site, "torch", verl["torch"] + torch_local, package="torch", init="raise ImportError('stand-in torch')\n")
    (site / "torch" / "version.py").write_text("cuda: Optional[str] = '13.0'\n")
    _dist(site, "flash-attn", verl["flash-attn"] + "+cu130torch2.11")


def test_fresh_node_runs_the_steps_in_order_then_the_check_stops_it(fake_pip, verl):
    """This CPU venv (torch 2.13 CPU, no flash-attn, no vllm): every step runs, in the order pip needs,
    and the final check fails with its PROBLEM lines because nothing really got installed."""
    result, calls = fake_pip()
    assert result.returncode == 1, result.stderr
    assert [c.split(" | ")[0].split()[-1] for c in calls] == [
        "https://download.pytorch.org/whl/cu130", calls[1].split(" | ")[0].split()[-1], "requirements.txt", "."]
    assert calls[0].startswith(f"install --disable-pip-version-check torch=={verl['torch']}+cu130 ")
    assert "--no-build-isolation" in calls[1] and "-c constraints-gpu.txt" in calls[1]
    assert "/flash_attn-2.8.3+cu130torch2.11-" in calls[1] and "--force-reinstall" not in calls[1]
    assert "-e ." in calls[3]
    assert "ENV CHECK FAILED" in result.stdout and "PROBLEM: vllm is not installed" in result.stdout
    assert "the install finished but the check found problems" in result.stderr


@pytest.mark.parametrize("torch_local", ["+cu130", ""])  # the PyTorch index's build, PyPI's plain 2.11.0
def test_rerun_skips_torch_and_flash_attn_at_their_pins(fake_pip, verl, torch_local):
    _stack_present(fake_pip.site, verl, torch_local)
    result, calls = fake_pip()
    assert [c.split(" | ")[0] for c in calls] == [
        "install --disable-pip-version-check -r requirements.txt",
        "install --disable-pip-version-check -c constraints-gpu.txt -e ."]
    assert f"1/5 torch {verl['torch']}{torch_local}, torchvision" in result.stderr and "(skipped)" in result.stderr
    assert "2/5 flash-attn 2.8.3+cu130torch2.11 present (skipped)" in result.stderr


def test_torch_of_another_cuda_is_replaced_and_flash_attn_rebuilt_on_it(fake_pip, verl):
    _stack_present(fake_pip.site, verl)
    (fake_pip.site / "torch" / "version.py").write_text("cuda = '12.8'\n")
    _, calls = fake_pip()
    assert "--index-url https://download.pytorch.org/whl/cu130" in calls[0]
    assert "--force-reinstall --no-deps" in calls[1] and "flash_attn-2.8.3+cu130torch2.11" in calls[1]


def test_no_prebuilt_wheel_and_no_nvcc_fails_with_the_fix(fake_pip):
    result, calls = fake_pip(FAKE_PIP_FAIL="flash_attn-2.8.3")
    assert result.returncode == 1
    assert "no prebuilt wheel could be installed: building flash-attn 2.8.3 from source" in result.stderr
    assert "needs nvcc of the CUDA cu130 toolkit" in result.stderr and "FLASH_ATTN_WHEEL=" in result.stderr
    assert len(calls) == 2  # torch, the wheel attempt; nothing after


def test_no_prebuilt_wheel_builds_from_source_with_bounded_jobs(fake_pip):
    nvcc = fake_pip.bin / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 13.0'\n")
    nvcc.chmod(0o755)
    result, calls = fake_pip(FAKE_PIP_FAIL="flash_attn-2.8.3")
    source = [c for c in calls if "flash-attn==2.8.3" in c]
    assert len(source) == 1, calls
    assert "--no-build-isolation --no-binary flash-attn -c constraints-gpu.txt flash-attn==2.8.3" in source[0]
    jobs = int(source[0].rsplit("MAX_JOBS=", 1)[1])
    assert 1 <= jobs <= (os.cpu_count() or 1)
    assert calls.index(source[0]) == calls.index(next(c for c in calls if "ninja packaging psutil" in c)) + 1
    assert calls[-2].startswith("install --disable-pip-version-check -r requirements.txt")
    assert "FLASH_ATTN_CUDA_ARCHS=80;90" in result.stderr
    _, calls = fake_pip(FAKE_PIP_FAIL="flash_attn-2.8.3", MAX_JOBS="3")
    assert [c for c in calls if "flash-attn==2.8.3" in c][-1].endswith("MAX_JOBS=3")


def test_deps_only_stops_before_the_recipe(fake_pip):
    result, calls = fake_pip("--deps-only")
    assert result.returncode == 0, result.stderr
    assert calls[-1].startswith("install --disable-pip-version-check -r requirements.txt")


# --------------------------------------------------------------------------- the check
def _env_check(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ}
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([sys.executable, "-m", "recipe.ivgr.preflight", "--env", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120)


def test_check_on_this_cpu_environment():
    import torch

    result = _env_check("--gpus", "8")
    out = result.stdout
    assert result.returncode == 1, out
    assert torch.version.cuda is None  # the world: this venv's torch is the CPU wheel
    assert re.search(rf"^  torch +{re.escape(torch.__version__)} +2\.11\.0 +MISMATCH +CPU build$", out, re.M)
    assert f"PROBLEM: torch {torch.__version__} is installed; the stack pins torch==2.11.0" in out
    assert (f"PROBLEM: torch {torch.__version__} is a CPU build (torch.version.cuda is None): no CUDA. Fix: pip "
            "install torch==2.11.0+cu130 torchvision==0.26.0+cu130 torchaudio==2.11.0+cu130 --index-url "
            "https://download.pytorch.org/whl/cu130") in out
    assert "PROBLEM: vllm is not installed (`import vllm` needs it). Fix: pip install -c constraints-gpu.txt " \
           "vllm==0.24.0" in out
    assert "PROBLEM: flash-attn is not installed" in out and "bash scripts/install_gpu.sh" in out
    assert re.search(r"^  verl +0\.9\.1 +0\.9\.1 +ok$", out, re.M)
    assert re.search(rf"^  ray +{re.escape(importlib.metadata.version('ray'))} +>=2\.41\.0 \(verl\) +ok$", out, re.M)
    assert "ENV CHECK FAILED" in out


def test_check_reports_mismatched_and_broken_installs(tmp_path):
    _dist(tmp_path, "vllm", "0.25.0", package="vllm")
    _dist(tmp_path, "flash-attn", "2.8.3", package="flash_attn",
          init="raise ImportError('flash_attn_2_cuda.so: undefined symbol: _ZN3c104cuda9SetDeviceEi')\n")
    out = _env_check("--allow-no-gpu", pythonpath=tmp_path).stdout
    assert "PROBLEM: vllm 0.25.0 is installed; the stack pins vllm==0.24.0 (verl 0.9.1, constraints-gpu.txt)" in out
    assert ("PROBLEM: flash-attn 2.8.3 is installed but `import flash_attn` fails: ImportError: "
            "flash_attn_2_cuda.so: undefined symbol") in out
    assert "FLASH_ATTN_REINSTALL=1 bash scripts/install_gpu.sh" in out
    assert re.search(r"^  flash-attn +2\.8\.3 +2\.8\.3 +BROKEN ", out, re.M)
    assert "is a CPU build" in out  # --allow-no-gpu excuses a missing GPU, never a CPU torch


def test_pins_file_errors_are_clear(tmp_path):
    from recipe.ivgr.envcheck import read_pins

    bad = tmp_path / "pins.txt"
    bad.write_text("# torch-cuda: cu130\n# torch-index: https://download.pytorch.org/whl/cu130\ntorch>=2.11\n")
    with pytest.raises(ValueError, match=r"pins.txt:3: expected `name==version`"):
        read_pins(bad)
    bad.write_text("torch==2.11.0\n")
    with pytest.raises(ValueError, match="missing the `# torch-cuda: ...`"):
        read_pins(bad)


# --------------------------------------------------------------------------- the launch
def test_training_launch_stops_at_the_env_check_before_ray(tmp_path):
    """A launch on a node without the GPU stack (this CPU box) passes the config preflight, then
    stops at the environment check: verl's main (and Ray) never starts."""
    from data_prep.synthetic import main as synthetic

    data = tmp_path / "data"
    assert synthetic(["--out", str(data), "--num", "40", "--seed", "0", "--box-frame", "qwen2_5_vl", "--quiet"]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUDGE_", "WANDB_"))}
    env.update(PYTHON=sys.executable, DATA_DIR=str(data), CKPT_DIR=str(tmp_path / "ckpt"), TRAIN_BATCH_SIZE="32",
               PPO_MINI_BATCH_SIZE="16")
    result = subprocess.run(["bash", str(ROOT / "scripts" / "train_ivgr_7b.sh"), "trainer.total_training_steps=4"],
                            capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "PREFLIGHT OK" in result.stdout and "ENV CHECK FAILED" in result.stdout
    assert "PROBLEM: vllm is not installed" in result.stdout
    assert "GPU stack is incomplete" in result.stderr and "bash scripts/install_gpu.sh fixes it" in result.stderr
    assert "recipe.ivgr.main" not in result.stderr and not (tmp_path / "ckpt").exists()
