"""Modules of reward_score stay small enough to read as one job each (issue 19: none over 450 lines)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "reward_score"


def test_no_reward_score_module_is_over_450_lines():
    sizes = {str(p.relative_to(ROOT.parent)): len(p.read_text(encoding="utf-8").splitlines())
             for p in ROOT.rglob("*.py")}
    assert sizes and not {name: n for name, n in sizes.items() if n > 450}
