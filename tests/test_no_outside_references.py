"""The repository cites only what a reader can open: the paper, the official code, verl's source (file and
line), or the repository itself. The engineers' notes that live outside it (the method notes, the verl
internals notes, the design and peer-survey pages) are never named in a tracked file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# spelled in parts so that this file does not match itself
VERL_NOTES = "-".join(("verl", "0.9.1"))
OUTSIDE = [".".join(("method", "md")), VERL_NOTES + ".md", "docs/" + VERL_NOTES,
           ".".join(("peers", "md")), ".".join(("design", "md")), "/work/" + "shared"]
PATTERN = re.compile("|".join(re.escape(name) for name in OUTSIDE))


def _tracked_files() -> list[Path]:
    result = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True)
    if result.returncode == 0:
        return [ROOT / name for name in result.stdout.split("\0") if name]
    skip = {".git", ".venv-test", "__pycache__", "outputs", "checkpoints", "data"}  # no git: walk the tree
    return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_no_file_cites_a_document_outside_the_repository():
    files = _tracked_files()
    assert any(p.name == "README.md" for p in files) and len(files) > 50  # the walk saw the repository
    hits = []
    for path in files:
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary
        for number, line in enumerate(text.splitlines(), 1):
            if PATTERN.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    assert hits == []


def test_the_check_sees_a_citation():
    assert PATTERN.search("see " + OUTSIDE[0] + " section 2") and PATTERN.search(OUTSIDE[2] + " section a")
    assert not PATTERN.search("verl/trainer/main_ppo.py:145 (verl 0.9.1)")
