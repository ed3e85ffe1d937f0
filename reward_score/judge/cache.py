"""`ResponseCache`: a judge client's LRU cache of parsed replies, keyed by the full request (thread-safe)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


def copy_value(value: Any) -> Any:
    """A copy of a cached value the caller may mutate (lists of samples); other values are immutable."""
    return list(value) if isinstance(value, list) else value


class ResponseCache:
    """At most `size` entries (0: nothing is kept), least recently used dropped first. An entry is the
    parsed value and the reply text it came from."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Any, str | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> tuple[Any, str | None] | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
            return hit

    def put(self, key: str, value: Any, raw: str | None) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._entries[key] = (copy_value(value), raw)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)
