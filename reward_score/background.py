"""`BackgroundLoop`: one asyncio event loop in a daemon thread, for synchronous callers of async code.

Used where a synchronous API must drive the async judge client: `reward_score.compute_score` with a
judge configured (one loop per process) and the trainer's step stage (`recipe.ivgr.trainer`, one loop
for the whole run). Keeping one loop alive keeps the judge client's connection pool and response
cache alive across calls; `run` blocks the calling thread until the coroutine is done.
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
