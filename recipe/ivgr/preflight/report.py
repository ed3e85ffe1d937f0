"""What a preflight found, and how it prints it: the RL (`recipe.ivgr.preflight`), SFT
(`recipe.ivgr.sft_preflight`) and IVR-R1 (`recipe.ivr_r1.preflight`) preflights share both."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Findings:
    """Problems (the exit status is 1), warnings (printed, never fail) and notes (what checked out)."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def note(self, message: str) -> None:
        self.notes.append(message)


def print_report(findings: Findings, rows: list[tuple[str, str]], out, title: str = "iVGR preflight (no GPU, no Ray)",
                 ok: str = "the config composes and validates; data, sizes and judge check out") -> int:
    """Print the findings and the summary rows to `out`; 0 when there is no problem, else 1."""
    print(title, file=out)
    for note in findings.notes:
        print(f"  ok    {note}", file=out)
    if rows:
        print("", file=out)
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            print(f"  {key:<{width}}  {value}", file=out)
    if findings.warnings:
        print("", file=out)
        for message in findings.warnings:
            print(f"WARNING: {message}", file=out)
    print("", file=out)
    if findings.problems:
        print(f"PREFLIGHT FAILED: {len(findings.problems)} problem{'s' if len(findings.problems) != 1 else ''}",
              file=out)
        for message in findings.problems:
            print(f"PROBLEM: {message}", file=out)
        return 1
    extra = f" ({len(findings.warnings)} warning{'s' if len(findings.warnings) != 1 else ''} above)" \
        if findings.warnings else ""
    print(f"PREFLIGHT OK{extra}: {ok}", file=out)
    return 0
