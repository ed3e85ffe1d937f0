"""Async client for an OpenAI-compatible chat-completions judge (vLLM, SGLang, ...).

Every call ends with a defined outcome (`JudgeOutcome`); the client never raises for network or
server trouble and never retries without bound. Failures are counted, logged (rate-limited, without the
API key and with prompts cut to 200 characters) and returned as ``JudgeResult(value=None, outcome=...)``
so the caller decides what a failure is worth.

This module is the call policy (request body, cache key, retries, in-flight sharing, logging); its
parts live beside it: `outcomes` (outcome enum, result type), `config` (JudgeConfig, backoff),
`stats` (counters), `cache` (response cache), `transport` (per-loop HTTP sessions, the POST); the
reward's two judge calls are in `calls`. Outcome and config names are re-exported here, their former home.

aiohttp is imported lazily, on the first network call, so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from .cache import ResponseCache, copy_value
from .config import JudgeConfig, backoff_delay  # noqa: F401 (re-export)
from .outcomes import (  # noqa: F401 (re-export)
    FAILURE_OUTCOMES,
    OUTCOME_BAD_REPLY,
    OUTCOME_CACHED,
    OUTCOME_CANCELLED,
    OUTCOME_CODES,
    OUTCOME_CONNECTION_ERROR,
    OUTCOME_DISABLED,
    OUTCOME_HTTP_ERROR,
    OUTCOME_OK,
    OUTCOME_SERVER_ERROR,
    OUTCOME_TIMEOUT,
    OUTCOMES,
    SUCCESS_OUTCOMES,
    JudgeOutcome,
    JudgeResult,
    T,
)
from .stats import CallStats
from .transport import LoopSession, choice_texts, drop_sessions, open_session, post, retire

logger = logging.getLogger(__name__)

_PREVIEW_CHARS = 200
_LOG_FIRST = 10
_LOG_EVERY = 100


class JudgeClient:
    """Bounded-concurrency, retrying, caching judge client.

    One HTTP session (and concurrency bound) per event loop: threads that each run their own loop
    can share a client. Sessions of loops that are no longer running are closed when another loop
    opens one; ``await client.aclose()`` before a loop ends is cleaner, ``close()`` does it from
    synchronous code, and at interpreter exit every client still open is closed (so no aiohttp
    "Unclosed client session / connector" warnings). The response cache and the statistics are
    shared by all loops.
    """

    def __init__(self, config: JudgeConfig) -> None:
        self.config = config
        self._states: dict[asyncio.AbstractEventLoop, LoopSession] = {}
        self._lock = threading.Lock()  # the per-loop sessions are shared across threads
        self._cache = ResponseCache(config.cache_size)
        self._stats = CallStats()
        self._rng = random.Random()
        self._fail_seen: dict[str, int] = {}  # lifetime failure counts, for log rate-limiting
        _LIVE_CLIENTS.add(self)
        # a client dropped without aclose()/close(): its sessions are closed when it is collected
        # (aiohttp would log "Unclosed client session" for each); not at exit, `_close_all_clients` does that
        weakref.finalize(self, drop_sessions, self._states).atexit = False

    def __repr__(self) -> str:
        c = self.config
        return f"JudgeClient(base_url={c.base_url!r}, model={c.model!r}, max_concurrency={c.max_concurrency})"

    # ----------------------------------------------------------------------------------------- stats
    def stats(self, reset: bool = False) -> dict[str, float]:
        """`CallStats.snapshot`: calls, attempts, cache hits, failures per outcome, short replies and
        latency percentiles (seconds) since the last reset."""
        return self._stats.snapshot(reset)

    # ------------------------------------------------------------------------------------ lifecycle
    def _loop_state(self) -> LoopSession:
        loop = asyncio.get_running_loop()
        st = self._states.get(loop)
        if st is not None and not st.session.closed:
            return st
        with self._lock:
            # sessions of loops that no longer run (finished asyncio.run, idle loops) are closed;
            # loops running in other threads keep theirs
            for other in [o for o in self._states if o is not loop and (o.is_closed() or not o.is_running())]:
                retire(self._states.pop(other))
            st = self._states[loop] = open_session(loop, self.config)
        return st

    def close(self, wait_s: float = 5.0) -> None:
        """Close every HTTP session of this client from synchronous code (not from inside a running
        loop that owns one: use ``aclose`` there). Sessions of loops running in other threads are
        closed on their loop (waiting up to ``wait_s`` seconds each); the cache is kept and a later
        call opens a new session."""
        with self._lock:
            states = list(self._states.values())
            self._states.clear()
        for st in states:
            retire(st, wait_s)

    async def aclose(self) -> None:
        """Close this event loop's HTTP session and drop sessions of loops that no longer run (a later
        call opens a new one). The cache is kept. Calls still in flight end with an outcome
        (``connection_error`` or ``cancelled``); ``complete`` never raises because of it."""
        loop = asyncio.get_running_loop()
        with self._lock:
            st = self._states.pop(loop, None)
            stale = [self._states.pop(o) for o in list(self._states) if o.is_closed() or not o.is_running()]
        for other in stale:
            retire(other)
        if st is not None:
            await st.session.close()

    # -------------------------------------------------------------------------------------- calling
    def _api_key(self) -> str | None:
        return os.environ.get(self.config.api_key_env) or None

    def _scrub(self, text: str) -> str:
        key = self._api_key()
        return text.replace(key, "***") if key else text

    def _body(self, messages: list[dict], n: int, seed_offset: int = 0) -> bytes:
        """The request body, serialized once: it is both what is sent and what the cache key hashes
        (``seed_offset`` > 0: a retry's body with another seed; the cache key keeps the first)."""
        c = self.config
        body: dict[str, Any] = {
            "model": c.model,
            "messages": messages,
            "temperature": c.temperature,
            "top_p": c.top_p,
            "max_tokens": c.max_tokens,
            "n": n,
        }
        if c.seed is not None or seed_offset:
            body["seed"] = (c.seed or 0) + seed_offset
        return json.dumps(body, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")

    @staticmethod
    def _key(body: bytes, parse: Callable) -> str:
        parser = f"{getattr(parse, '__module__', '')}.{getattr(parse, '__qualname__', type(parse).__qualname__)}"
        return hashlib.sha256(body + b"\0" + parser.encode("utf-8")).hexdigest()

    async def complete(
        self, messages: list[dict], parse: Callable[[str], T | None], *, n: int = 1
    ) -> JudgeResult[T] | JudgeResult[list[T]]:
        """One logical judge call. ``parse`` maps reply text to a value, None when unusable (retried).

        With ``n`` > 1 the value is the list of parsed choices (unparsable ones dropped; failure if none
        parse). Never raises for network/server trouble: the outcome says what happened.
        """
        t0 = time.perf_counter()
        if not self.config.enabled:
            return JudgeResult(None, OUTCOME_DISABLED, 0, 0.0, None)
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self._stats.call()
        body = self._body(messages, n)
        key = self._key(body, parse)

        hit = self._cache.get(key)
        if hit is not None:
            self._stats.cache_hit()
            return JudgeResult(copy_value(hit[0]), OUTCOME_CACHED, 0, time.perf_counter() - t0, hit[1])

        st = self._loop_state()
        task = st.inflight.get(key)
        leader = task is None
        if leader:
            task = st.loop.create_task(self._fetch(st, messages, parse, n, key, body))
            st.inflight[key] = task
            task.add_done_callback(lambda _t, d=st.inflight, k=key: d.pop(k, None))
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            self._stats.failure(OUTCOME_CANCELLED)
            me = asyncio.current_task()
            if me is not None and me.cancelling():  # our caller cancelled us: stop the request too
                if leader:
                    task.cancel()
                raise
            # the shared request was cancelled by its leader's caller
            return JudgeResult(None, OUTCOME_CANCELLED, 0, time.perf_counter() - t0, None)
        if not leader:
            if result.ok:
                self._stats.cache_hit()
                result = JudgeResult(copy_value(result.value), OUTCOME_CACHED, 0, time.perf_counter() - t0, result.raw)
            else:
                self._stats.failure(result.outcome)
        return result

    async def _fetch(self, st: LoopSession, messages: list[dict], parse: Callable, n: int, key: str,
                     body: bytes) -> JudgeResult:
        """Send the request with retries; cache and count the result (run once per in-flight key).

        A retry after an unparsable reply asks with another seed (``seed + attempt``): a deterministic
        server would otherwise return the same text. ``Retry-After`` on 429/503 is honoured, bounded
        by ``timeout_s``."""
        import aiohttp

        c = self.config
        t0 = time.perf_counter()
        outcome, raw, detail, attempts, wait_hint = OUTCOME_BAD_REPLY, None, "", 0, 0.0
        for attempt in range(c.max_retries + 1):
            if attempt:
                delay = backoff_delay(attempt, c.backoff_s, c.backoff_max_s, self._rng.random)
                await asyncio.sleep(max(delay, min(wait_hint, c.timeout_s)))
            wait_hint = 0.0
            attempts += 1
            self._stats.attempt()
            try:
                async with st.sem:
                    sent = time.perf_counter()
                    try:
                        status, text, retry_after = await post(st, c, body, self._api_key())
                    finally:
                        # server latency of this attempt (queueing for a slot excluded)
                        self._stats.latency(time.perf_counter() - sent)
            except asyncio.TimeoutError:
                outcome, detail = OUTCOME_TIMEOUT, f"no complete reply within {c.timeout_s}s"
                continue
            except (aiohttp.ClientError, OSError, RuntimeError) as e:  # RuntimeError: session closed by aclose
                outcome, detail = OUTCOME_CONNECTION_ERROR, f"{type(e).__name__}: {e}"
                continue
            if text is None:
                outcome, detail = OUTCOME_BAD_REPLY, f"reply body over {c.max_reply_bytes} bytes"
                continue
            raw = text[:2000]
            if status == 429 or status >= 500:
                outcome, detail, wait_hint = OUTCOME_SERVER_ERROR, f"HTTP {status}", retry_after
                continue
            if not 200 <= status < 300:
                outcome, detail = OUTCOME_HTTP_ERROR, f"HTTP {status}"
                break
            texts = choice_texts(text)
            if texts is None:
                outcome, detail = OUTCOME_BAD_REPLY, "body is not a chat completion with choices"
                continue
            if len(texts) < n:
                self._stats.short_reply()
            raw = texts[0] if n == 1 else json.dumps(texts, ensure_ascii=False)
            values = [v for v in (_safe_parse(parse, t) for t in texts[:n]) if v is not None]
            if not values:
                outcome, detail = OUTCOME_BAD_REPLY, "reply text not parsable"
                body = self._body(messages, n, seed_offset=attempt + 1)
                continue
            value = values[0] if n == 1 else values
            latency = time.perf_counter() - t0
            self._cache.put(key, value, raw)
            return JudgeResult(copy_value(value), OUTCOME_OK, attempts, latency, raw)

        latency = time.perf_counter() - t0
        self._stats.failure(outcome)
        self._log_failure(outcome, attempts, latency, detail, messages)
        return JudgeResult(None, outcome, attempts, latency, raw)

    def _log_failure(self, outcome: str, attempts: int, latency_s: float, detail: str, messages: list[dict]) -> None:
        count = self._fail_seen[outcome] = self._fail_seen.get(outcome, 0) + 1
        if count > _LOG_FIRST and count % _LOG_EVERY:
            return
        last = str(messages[-1].get("content", "")) if messages else ""
        preview = last if len(last) <= _PREVIEW_CHARS else last[:_PREVIEW_CHARS] + "..."
        logger.warning(
            self._scrub(
                f"judge call failed: outcome={outcome} (failure #{count} of this kind) attempts={attempts} "
                f"latency={latency_s:.3f}s model={self.config.model!r} detail={detail[:300]} prompt={preview!r}"
            )
        )


_LIVE_CLIENTS: weakref.WeakSet[JudgeClient] = weakref.WeakSet()


@atexit.register
def _close_all_clients() -> None:
    """At interpreter exit (before the garbage collector finalizes sessions and warns about them):
    close every client's sessions, on their own loops when those still run (daemon threads do)."""
    for client in list(_LIVE_CLIENTS):
        try:
            client.close(wait_s=2.0)
        except Exception:  # noqa: BLE001 - exit must go on
            logger.debug("closing a judge client at exit failed", exc_info=True)


def _safe_parse(parse: Callable[[str], Any], text: str) -> Any:
    """A parser that raises is treated like one that returns None (unusable reply)."""
    try:
        return parse(text)
    except Exception:  # noqa: BLE001 - a buggy parser must not kill the batch
        logger.debug("judge parser raised", exc_info=True)
        return None
