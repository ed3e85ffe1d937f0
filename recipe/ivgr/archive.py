"""The rollout archive: per sample, the best grounded reasoning seen so far (the consistency reference).

Keyed by the stable string `sample_id` (never an int: JSON would silently turn int keys into strings
and a restored archive would miss every lookup). The trainer saves `state_dict()` inside verl's
`global_step_N` checkpoint folder and restores it on resume.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Reference:
    """A grounded rollout kept as reference: its `<think>` text (boxes in the model frame), its
    accuracy and IoU, and the global step it was produced at."""

    think: str
    acc: float
    iou: float
    step: int

    def beats(self, other: Reference | None) -> bool:
        """Replacement rule (paper): empty slot, or higher accuracy, or equal accuracy and higher IoU."""
        if other is None:
            return True
        return self.acc > other.acc or (self.acc == other.acc and self.iou > other.iou)


class RolloutArchive:
    """sample_id -> best Reference ever offered. `enabled=False` keeps only the current step's
    references (the paper's "reference from the current batch only" ablation)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._entries: dict[str, Reference] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, sample_id: str) -> bool:
        return str(sample_id) in self._entries

    def get(self, sample_id: str) -> Reference | None:
        return self._entries.get(str(sample_id))

    def offer(self, sample_id: str, candidate: Reference) -> bool:
        """Store `candidate` if it beats the current entry; True when stored."""
        key = str(sample_id)
        if candidate.beats(self._entries.get(key)):
            self._entries[key] = candidate
            return True
        return False

    def start_step(self) -> None:
        """Called before a step's references are offered; forgets everything when disabled."""
        if not self.enabled:
            self._entries.clear()

    def mean_iou(self) -> float:
        return sum(r.iou for r in self._entries.values()) / len(self._entries) if self._entries else 0.0

    def state_dict(self) -> dict:
        return {"version": _FORMAT_VERSION, "entries": {k: asdict(v) for k, v in self._entries.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unsupported archive format {state.get('version')!r}")
        self._entries = {str(k): Reference(**v) for k, v in state["entries"].items()}
