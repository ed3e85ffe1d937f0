"""`CallStats`: a judge client's counters and recent latencies (thread-safe), reported by `stats()`."""

from __future__ import annotations

import math
import threading
from collections import deque

from .outcomes import FAILURE_OUTCOMES

_LATENCY_WINDOW = 10_000  # latencies kept for the percentiles (the most recent network attempts)


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 1]; 0.0 for no data."""
    if not sorted_values:
        return 0.0
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


class CallStats:
    """Counts of one client since the last reset: logical calls, HTTP attempts, cache hits, failures per
    outcome, short replies, and per-attempt latencies in seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._calls = 0
        self._attempts = 0
        self._cache_hits = 0
        self._short_replies = 0
        self._failures = dict.fromkeys(FAILURE_OUTCOMES, 0)
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    def call(self) -> None:
        with self._lock:
            self._calls += 1

    def attempt(self) -> None:
        with self._lock:
            self._attempts += 1

    def cache_hit(self) -> None:
        with self._lock:
            self._cache_hits += 1

    def short_reply(self) -> None:
        with self._lock:
            self._short_replies += 1

    def failure(self, outcome: str) -> None:
        with self._lock:
            self._failures[outcome] += 1

    def latency(self, seconds: float) -> None:
        with self._lock:
            self._latencies.append(seconds)

    def snapshot(self, reset: bool = False) -> dict[str, float]:
        """Counters since the last reset: logical ``calls`` (cache hits included), HTTP ``attempts``,
        ``cache_hits``, ``failures`` (+ ``failures/<outcome>``), ``short_replies`` (replies with fewer
        choices than the ``n`` asked for; the mean uses those present), and ``latency_p50``/
        ``latency_p95`` in seconds over recent network calls (0.0 when none)."""
        with self._lock:
            lat = sorted(self._latencies)
            out: dict[str, float] = {
                "calls": float(self._calls),
                "attempts": float(self._attempts),
                "cache_hits": float(self._cache_hits),
                "failures": float(sum(self._failures.values())),
                "short_replies": float(self._short_replies),
                "latency_p50": _percentile(lat, 0.50),
                "latency_p95": _percentile(lat, 0.95),
            }
            out.update({f"failures/{k}": float(v) for k, v in self._failures.items()})
            if reset:
                self.reset()
        return out
