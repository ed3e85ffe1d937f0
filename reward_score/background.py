"""`BackgroundLoop`: one asyncio event loop in a daemon thread, for synchronous callers of async code.

Used where a synchronous API must drive the async judge client: `reward_score.compute_score` with a
judge configured and the trainer's step stage (`recipe.ivgr.trainer`). Both use `process_loop()`, the
one such loop of the process, so judge clients see one loop (one HTTP session each) there. Keeping
the loop alive keeps the judge clients' connection pools and response caches alive across calls;
`run` blocks the calling thread until the coroutine is done.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any


class BackgroundLoop:
    """An event loop running forever in a daemon thread named `name`."""

    def __init__(self, name: str = "ivgr-background-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine) -> Any:
        """The coroutine's result (or its exception), computed on the background loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


_process_loop: BackgroundLoop | None = None
_process_lock = threading.Lock()


def process_loop() -> BackgroundLoop:
    """The process's background loop (thread `ivgr-judge-loop`), started on the first call."""
    global _process_loop
    with _process_lock:
        if _process_loop is None:
            _process_loop = BackgroundLoop("ivgr-judge-loop")
        return _process_loop
