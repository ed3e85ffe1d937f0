"""math-verify with a hard time bound: a small persistent pool of worker processes.

`10^{10^{10}}` against `\\frac{1}{2}` makes sympy compute a big-integer power that never returns and
holds the GIL the whole time, so a thread or SIGALRM timeout cannot stop it (and SIGALRM only exists
in the main thread). Each check therefore runs in a separate process (`python -m
reward_score.mathcheck`, line-delimited JSON over its stdin/stdout); the caller waits on the pipe
(GIL released) until the deadline, then kills a stuck worker and starts a replacement in the
background. A check's wall time is at most `timeout_s` (waiting for a free worker included) once the
pool's first worker is up; the first call of a process waits up to `startup_timeout_s` for that.

Outcomes of `MathPool.check`: True / False (math-verify's verdict), None (math-verify could not
parse or compare), or `MATH_TIMEOUT` (no verdict within the deadline; counted in `stats()`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator

logger = logging.getLogger(__name__)

MATH_TIMEOUT = "math_timeout"
# address space of one worker (bytes): a huge power fails with MemoryError instead of swapping
WORKER_MEMORY_BYTES = 2 * 1024**3


class _Worker:
    def __init__(self) -> None:
        # the child imports reward_score from wherever this process found it
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reward_score.mathcheck"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, env=env, bufsize=0)
        self.buffer = b""

    def readline(self, deadline: float) -> bytes | None:
        """One reply line, or None when `deadline` (time.monotonic) passes first or the worker died."""
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(5)
        except Exception:  # noqa: BLE001
            pass


class MathPool:
    """`workers` persistent processes; `check(gold, pred)` is thread-safe and bounded by `timeout_s`."""

    def __init__(self, workers: int = 2, timeout_s: float = 2.0, startup_timeout_s: float = 60.0,
                 cache_size: int = 65_536) -> None:
        if workers < 1 or timeout_s <= 0:
            raise ValueError("MathPool needs workers >= 1 and timeout_s > 0")
        self.workers, self.timeout_s, self.startup_timeout_s = workers, timeout_s, startup_timeout_s
        # verdicts are a pure function of the pair: GRPO groups repeat answers, and a pathological
        # answer the policy repeats costs the deadline once, not every time
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], bool | None | str] = OrderedDict()
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._started = False
        self._ready = False  # a worker has come up at least once: no more start-up grace
        self._failed_starts = 0
        self._closed = False
        self._stats = {"checks": 0, "cache_hits": 0, "timeouts": 0, "killed": 0}

    def stats(self) -> dict[str, int]:
        with self._cond:
            return dict(self._stats)

    def wait_idle(self, count: int | None = None, timeout_s: float = 60.0) -> bool:
        """Start the pool if needed and wait until `count` (default: all) workers are idle."""
        self._ensure_started()
        count = self.workers if count is None else count
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self._idle) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def _spawn(self) -> None:
        """Start one worker and hand it to the idle list once it has imported math-verify."""
        def start() -> None:
            worker = _Worker()
            line = worker.readline(time.monotonic() + self.startup_timeout_s)
            with self._cond:
                if line == b"ready" and not self._closed:
                    self._ready = True
                    self._idle.append(worker)
                    self._cond.notify_all()
                    return
            worker.kill()
            with self._cond:
                self._failed_starts += 1
                self._ready = True  # no start-up grace for a pool that cannot start
                self._cond.notify_all()
            if not self._closed:
                logger.error("math-verify worker failed to start (%d so far); math answers stay undecided "
                             "(math_timeout) until one starts", self._failed_starts)
                if self._failed_starts < 3 * self.workers:
                    self._spawn()
        threading.Thread(target=start, name="mathcheck-spawn", daemon=True).start()

    def _ensure_started(self) -> float:
        """Start the pool on first use; returns the extra seconds a call may wait for its first worker."""
        with self._cond:
            started, self._started = self._started, True
            grace = 0.0 if self._ready else self.startup_timeout_s
        if not started:
            for _ in range(self.workers):
                self._spawn()
        return grace

    def cached(self, gold: str, pred: str) -> tuple[bool, bool | None | str]:
        """(True, verdict) when the pair's verdict is cached (counted as a cache hit), else (False, None):
        an event loop can then skip the hop to a worker thread that `check` would cost it."""
        key = (gold, pred)
        with self._cond:
            if key in self._cache:
                self._stats["cache_hits"] += 1
                self._cache.move_to_end(key)
                return True, self._cache[key]
        return False, None

    def check(self, gold: str, pred: str) -> bool | None | str:
        """math-verify's verdict on `pred` against `gold` (LaTeX or plain expressions), or MATH_TIMEOUT."""
        key = (gold, pred)
        with self._cond:
            if key in self._cache:
                self._stats["cache_hits"] += 1
                self._cache.move_to_end(key)
                return self._cache[key]
        result, cacheable = self._check(gold, pred)
        if self.cache_size > 0 and cacheable:
            with self._cond:
                self._cache[key] = result
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return result

    def _check(self, gold: str, pred: str) -> tuple[bool | None | str, bool]:
        """(result, cacheable): a timeout for want of a free worker is not the pair's verdict."""
        grace = self._ensure_started()
        start = time.monotonic()
        deadline = start + self.timeout_s
        with self._cond:
            self._stats["checks"] += 1
            while not self._idle:
                left = (deadline + grace) - time.monotonic()
                if left <= 0 or self._closed:
                    self._stats["timeouts"] += 1
                    return MATH_TIMEOUT, False
                self._cond.wait(left)
            worker = self._idle.pop()
        if grace:  # the first call waited for start-up: its own deadline starts now
            deadline = time.monotonic() + self.timeout_s
        try:
            worker.proc.stdin.write(json.dumps({"gold": gold, "pred": pred}).encode("utf-8") + b"\n")
            line = worker.readline(deadline)
        except OSError:
            line = None
        if line is None:
            worker.kill()
            with self._cond:
                self._stats["timeouts"] += 1
                self._stats["killed"] += 1
            self._spawn()
            return MATH_TIMEOUT, True
        with self._cond:
            self._idle.append(worker)
            self._cond.notify_all()
        try:
            return json.loads(line)["r"], True
        except (ValueError, KeyError, TypeError):
            return None, True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


_pools: dict[tuple[int, float], MathPool] = {}
_pools_lock = threading.Lock()


def math_pool(workers: int = 2, timeout_s: float = 2.0) -> MathPool:
    """The process-wide pool for these settings (created on first use, closed at exit)."""
    key = (int(workers), float(timeout_s))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = MathPool(*key)
        return pool


@atexit.register
def _close_all() -> None:
    for pool in list(_pools.values()):
        pool.close()


# ------------------------------------------------------------------------------------------- worker
def _verify(gold: str, pred: str) -> bool | None:
    from math_verify import parse, verify

    def wrap(text: str) -> str:
        return text if "$" in text or "\\boxed" in text else f"${text}$"

    # the parent enforces the deadline; math-verify's own SIGALRM timeouts stay off
    g = parse(wrap(gold), parsing_timeout=None)
    p = parse(wrap(pred), parsing_timeout=None)
    if not g or not p:
        return None
    return bool(verify(g, p, timeout_seconds=None))


def _requests(stream) -> Iterator[dict]:
    for line in stream:
        try:
            yield json.loads(line)
        except ValueError:
            yield {}


def _worker_main() -> None:
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    import math_verify  # noqa: F401  (import before announcing readiness: it takes ~1 s)

    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    for request in _requests(sys.stdin.buffer):
        try:
            result = _verify(str(request["gold"]), str(request["pred"]))
        except BaseException:  # noqa: BLE001  (sympy fails in many ways on model output, MemoryError too)
            result = None
        out.write(json.dumps({"r": result}).encode("utf-8") + b"\n")
        out.flush()


if __name__ == "__main__":
    _worker_main()
