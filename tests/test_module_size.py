"""Modules of recipe/ and data_prep/ stay small enough to read as one job each (issue 19: none over 450
lines; reward_score/ has its own test, tests/test_reward_module_size.py)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_recipe_or_data_prep_module_is_over_450_lines():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for package in ("recipe", "data_prep") for p in (ROOT / package).rglob("*.py")}
    assert len(sizes) > 50 and not {name: n for name, n in sizes.items() if n > 450}
