"""Async client for an OpenAI-compatible chat-completions judge (vLLM, SGLang, ...).

Every call ends with a defined outcome (see ``OUTCOME_*``); the client never raises for network or
server trouble and never retries without bound. Failures are counted, logged (rate-limited, without the
API key and with prompts cut to 200 characters) and returned as ``JudgeResult(value=None, outcome=...)``
so the caller decides what a failure is worth.

aiohttp is imported lazily, on the first network call, so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import enum
import hashlib
import json
import logging
import math
import os
import random
import threading
import time
import weakref
from email.utils import parsedate_to_datetime
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .prompts import answer_equivalence_messages, consistency_messages, parse_consistency, parse_equivalence

logger = logging.getLogger(__name__)

T = TypeVar("T")

class JudgeOutcome(str, enum.Enum):
    """How a judge call ended: the one definition of the outcome names and of their numeric codes.

    Members are strings (`JudgeOutcome.OK == "ok"`), so metrics names and log lines use them as they
    are; `code` is the number a rollout's `reward_extra_info["acc_judge"]` carries (verl keeps only numbers
    there; 0 = no judge call) and `from_code` reads it back."""

    OK = "ok"  # reply received and parsed
    CACHED = "cached"  # value served from the response cache or from an identical in-flight call
    TIMEOUT = "timeout"  # last attempt got no complete reply within timeout_s
    CONNECTION_ERROR = "connection_error"  # last attempt could not connect / connection broke
    HTTP_ERROR = "http_error"  # non-retryable HTTP status (4xx other than 429); no retry
    SERVER_ERROR = "server_error"  # 5xx or 429 on the last attempt
    BAD_REPLY = "bad_reply"  # 2xx but body not JSON / no choices / no choice parsed / over the size cap
    CANCELLED = "cancelled"  # the caller cancelled the call (step deadline, circuit breaker)
    DISABLED = "disabled"  # judge not configured (base_url is None); no network

    def __str__(self) -> str:
        return self.value

    @property
    def code(self) -> int:
        """1-based position in declaration order (stable: new outcomes are appended)."""
        return list(JudgeOutcome).index(self) + 1

    @classmethod
    def from_code(cls, code: float | int | None) -> JudgeOutcome | None:
        """The outcome of a numeric code, None for 0 (no call) or an unknown code."""
        members = list(cls)
        index = int(code or 0) - 1
        return members[index] if 0 <= index < len(members) else None


OUTCOME_OK = JudgeOutcome.OK
OUTCOME_CACHED = JudgeOutcome.CACHED
OUTCOME_TIMEOUT = JudgeOutcome.TIMEOUT
OUTCOME_CONNECTION_ERROR = JudgeOutcome.CONNECTION_ERROR
OUTCOME_HTTP_ERROR = JudgeOutcome.HTTP_ERROR
OUTCOME_SERVER_ERROR = JudgeOutcome.SERVER_ERROR
OUTCOME_BAD_REPLY = JudgeOutcome.BAD_REPLY
OUTCOME_CANCELLED = JudgeOutcome.CANCELLED
OUTCOME_DISABLED = JudgeOutcome.DISABLED
SUCCESS_OUTCOMES = (OUTCOME_OK, OUTCOME_CACHED)
FAILURE_OUTCOMES = (
    OUTCOME_TIMEOUT,
    OUTCOME_CONNECTION_ERROR,
    OUTCOME_HTTP_ERROR,
    OUTCOME_SERVER_ERROR,
    OUTCOME_BAD_REPLY,
    OUTCOME_CANCELLED,
)
OUTCOMES = tuple(JudgeOutcome)
# numeric code of each outcome in per-rollout reward_extra_info (`acc_judge`); 0 = no judge call
OUTCOME_CODES = {outcome: outcome.code for outcome in JudgeOutcome}

_PREVIEW_CHARS = 200
_LOG_FIRST = 10
_LOG_EVERY = 100
_LATENCY_WINDOW = 10_000


@dataclass
class JudgeConfig:
    """Judge endpoint and call policy. The API key itself is never stored, only the env var's name.

    Times are in seconds. ``max_retries`` counts extra attempts after the first one. ``samples`` > 1
    asks for that many choices in one request (``n``) and averages them (consistency judge); it needs
    ``temperature`` > 0 to give different samples.
    """

    base_url: str | None = None  # OpenAI-compatible root, e.g. "http://127.0.0.1:8000/v1"; None = disabled
    model: str = "judge"
    api_key_env: str = "JUDGE_API_KEY"
    max_concurrency: int = 64
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    samples: int = 1
    seed: int | None = 0
    cache_size: int = 100_000
    max_reply_bytes: int = 1_000_000  # a longer reply body is not read further: bad_reply

    def __post_init__(self) -> None:
        if self.base_url is not None:
            self.base_url = str(self.base_url).strip().rstrip("/") or None
        checks = {
            "max_concurrency >= 1": self.max_concurrency >= 1,
            "timeout_s > 0": self.timeout_s > 0,
            "max_retries >= 0": self.max_retries >= 0,
            "backoff_s >= 0": self.backoff_s >= 0,
            "backoff_max_s >= 0": self.backoff_max_s >= 0,
            "temperature >= 0": self.temperature >= 0,
            "0 < top_p <= 1": 0 < self.top_p <= 1,
            "max_tokens >= 1": self.max_tokens >= 1,
            "samples >= 1": self.samples >= 1,
            "cache_size >= 0": self.cache_size >= 0,
            "max_reply_bytes >= 1": self.max_reply_bytes >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid JudgeConfig: need {', '.join(bad)}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> JudgeConfig:
        """Build from a dict or an omegaconf DictConfig; unknown keys raise ValueError naming them."""
        data = dict(m.items()) if m is not None else {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown judge config keys: {unknown}; known: {sorted(known)}")
        return cls(**data)

    @property
    def enabled(self) -> bool:
        return self.base_url is not None


@dataclass(frozen=True)
class JudgeResult(Generic[T]):
    """Outcome of one logical judge call. ``value`` is None unless ``outcome`` is ok/cached.

    ``attempts`` = HTTP requests this call sent (0 when cached or disabled); ``latency_s`` = wall time
    of the call in seconds, retries and backoff included; ``raw`` = last reply text (may be cut).
    """

    value: T | None
    outcome: str
    attempts: int
    latency_s: float
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCESS_OUTCOMES


def backoff_delay(retry: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): uniform in [d/2, d], d = min(cap, base*2^(retry-1))."""
    d = min(cap_s, base_s * 2.0 ** min(max(retry - 1, 0), 60))
    return d * (0.5 + 0.5 * rand())


def _percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 1]; 0.0 for no data."""
    if not sorted_values:
        return 0.0
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class _LoopState:
    """Everything bound to one event loop: the HTTP session, the semaphore, in-flight calls."""

    loop: asyncio.AbstractEventLoop
    session: Any  # aiohttp.ClientSession
    sem: asyncio.Semaphore
    inflight: dict[str, asyncio.Task] = field(default_factory=dict)


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
        self._states: dict[asyncio.AbstractEventLoop, _LoopState] = {}
        self._lock = threading.Lock()  # states, cache and counters are shared across threads
        self._cache: OrderedDict[str, tuple[Any, str | None]] = OrderedDict()
        self._rng = random.Random()
        self._fail_seen: dict[str, int] = {}  # lifetime failure counts, for log rate-limiting
        self._reset_stats()
        _LIVE_CLIENTS.add(self)
        # a client dropped without aclose()/close(): its sessions are closed when it is collected
        # (aiohttp would log "Unclosed client session" for each); not at exit, `_close_all_clients` does that
        weakref.finalize(self, _drop_sessions, self._states).atexit = False

    def __repr__(self) -> str:
        c = self.config
        return f"JudgeClient(base_url={c.base_url!r}, model={c.model!r}, max_concurrency={c.max_concurrency})"

    # ----------------------------------------------------------------------------------------- stats
    def _reset_stats(self) -> None:
        self._calls = 0
        self._attempts = 0
        self._cache_hits = 0
        self._short_replies = 0
        self._failures = dict.fromkeys(FAILURE_OUTCOMES, 0)
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)

    def _count_failure(self, outcome: str) -> None:
        with self._lock:
            self._failures[outcome] += 1

    def stats(self, reset: bool = False) -> dict[str, float]:
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
                self._reset_stats()
        return out

    # ------------------------------------------------------------------------------------ lifecycle
    def _loop_state(self) -> _LoopState:
        import aiohttp

        loop = asyncio.get_running_loop()
        st = self._states.get(loop)
        if st is not None and not st.session.closed:
            return st
        with self._lock:
            # sessions of loops that no longer run (finished asyncio.run, idle loops) are closed;
            # loops running in other threads keep theirs
            for other in [o for o in self._states if o is not loop and (o.is_closed() or not o.is_running())]:
                self._retire(self._states.pop(other))
            connector = aiohttp.TCPConnector(limit=self.config.max_concurrency)
            # per-attempt timeout on the session: no extra task per request, unlike asyncio.wait_for
            session = aiohttp.ClientSession(connector=connector,
                                            timeout=aiohttp.ClientTimeout(total=self.config.timeout_s))
            st = self._states[loop] = _LoopState(loop, session, asyncio.Semaphore(self.config.max_concurrency))
        return st

    @staticmethod
    def _retire(st: _LoopState, wait_s: float = 0.0, run_stopped: bool = True) -> None:
        """Close a session that belongs to another event loop. A loop still running in another thread
        closes it itself (waited for up to ``wait_s`` seconds); a stopped one is run until the session
        is closed (``run_stopped``, only where no loop runs in this thread); otherwise the connector's
        synchronous part of aiohttp's close() drops its connections here."""
        if st.session.closed:
            return
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if st.loop is not current and st.loop.is_running() and not st.loop.is_closed():
            future = asyncio.run_coroutine_threadsafe(st.session.close(), st.loop)
            if not wait_s:
                return
            try:
                future.result(wait_s)
                return
            except Exception:  # noqa: BLE001 - a stuck loop: close its connections without it
                logger.debug("judge session close on its own loop did not finish", exc_info=True)
        if run_stopped and current is None and not st.loop.is_running() and not st.loop.is_closed():
            try:  # a loop that stopped (not closed): let it close its session itself, now
                st.loop.run_until_complete(st.session.close())
                return
            except Exception:  # noqa: BLE001
                logger.debug("judge session close on its stopped loop failed", exc_info=True)
        if st.session.connector is not None:
            st.session.connector._close()

    def close(self, wait_s: float = 5.0) -> None:
        """Close every HTTP session of this client from synchronous code (not from inside a running
        loop that owns one: use ``aclose`` there). Sessions of loops running in other threads are
        closed on their loop (waiting up to ``wait_s`` seconds each); the cache is kept and a later
        call opens a new session."""
        with self._lock:
            states = list(self._states.values())
            self._states.clear()
        for st in states:
            self._retire(st, wait_s)

    async def aclose(self) -> None:
        """Close this event loop's HTTP session and drop sessions of loops that no longer run (a later
        call opens a new one). The cache is kept. Calls still in flight end with an outcome
        (``connection_error`` or ``cancelled``); ``complete`` never raises because of it."""
        loop = asyncio.get_running_loop()
        with self._lock:
            st = self._states.pop(loop, None)
            stale = [self._states.pop(o) for o in list(self._states) if o.is_closed() or not o.is_running()]
        for other in stale:
            self._retire(other)
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
        with self._lock:
            self._calls += 1
        body = self._body(messages, n)
        key = self._key(body, parse)

        hit = self._cache_get(key)
        if hit is not None:
            with self._lock:
                self._cache_hits += 1
            return JudgeResult(_copy(hit[0]), OUTCOME_CACHED, 0, time.perf_counter() - t0, hit[1])

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
            self._count_failure(OUTCOME_CANCELLED)
            me = asyncio.current_task()
            if me is not None and me.cancelling():  # our caller cancelled us: stop the request too
                if leader:
                    task.cancel()
                raise
            # the shared request was cancelled by its leader's caller
            return JudgeResult(None, OUTCOME_CANCELLED, 0, time.perf_counter() - t0, None)
        if not leader:
            if result.ok:
                with self._lock:
                    self._cache_hits += 1
                result = JudgeResult(_copy(result.value), OUTCOME_CACHED, 0, time.perf_counter() - t0, result.raw)
            else:
                self._count_failure(result.outcome)
        return result

    async def _fetch(self, st: _LoopState, messages: list[dict], parse: Callable, n: int, key: str,
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
            with self._lock:
                self._attempts += 1
            try:
                async with st.sem:
                    sent = time.perf_counter()
                    try:
                        status, text, retry_after = await self._post(st, body)
                    finally:
                        # server latency of this attempt (queueing for a slot excluded)
                        with self._lock:
                            self._latencies.append(time.perf_counter() - sent)
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
            texts = _choice_texts(text)
            if texts is None:
                outcome, detail = OUTCOME_BAD_REPLY, "body is not a chat completion with choices"
                continue
            if len(texts) < n:
                with self._lock:
                    self._short_replies += 1
            raw = texts[0] if n == 1 else json.dumps(texts, ensure_ascii=False)
            values = [v for v in (_safe_parse(parse, t) for t in texts[:n]) if v is not None]
            if not values:
                outcome, detail = OUTCOME_BAD_REPLY, "reply text not parsable"
                body = self._body(messages, n, seed_offset=attempt + 1)
                continue
            value = values[0] if n == 1 else values
            latency = time.perf_counter() - t0
            self._cache_put(key, value, raw)
            return JudgeResult(_copy(value), OUTCOME_OK, attempts, latency, raw)

        latency = time.perf_counter() - t0
        self._count_failure(outcome)
        self._log_failure(outcome, attempts, latency, detail, messages)
        return JudgeResult(None, outcome, attempts, latency, raw)

    async def _post(self, st: _LoopState, body: bytes) -> tuple[int, str | None, float]:
        """(status, body text or None when over ``max_reply_bytes``, Retry-After seconds or 0)."""
        headers = {"Content-Type": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = f"{self.config.base_url}/chat/completions"
        cap = self.config.max_reply_bytes
        async with st.session.post(url, data=body, headers=headers) as resp:
            retry_after = _retry_after_s(resp.headers.get("Retry-After"))
            if (resp.content_length or 0) > cap:
                return resp.status, None, retry_after
            chunks, size = [], 0
            while size <= cap:
                chunk = await resp.content.read(cap + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
            if size > cap:
                return resp.status, None, retry_after
            return resp.status, b"".join(chunks).decode(resp.get_encoding() or "utf-8", errors="replace"), retry_after

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

    # ----------------------------------------------------------------------------------------- cache
    def _cache_get(self, key: str) -> tuple[Any, str | None] | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def _cache_put(self, key: str, value: Any, raw: str | None) -> None:
        if self.config.cache_size <= 0:
            return
        with self._lock:
            self._cache[key] = (_copy(value), raw)
            self._cache.move_to_end(key)
            while len(self._cache) > self.config.cache_size:
                self._cache.popitem(last=False)


_LIVE_CLIENTS: weakref.WeakSet[JudgeClient] = weakref.WeakSet()


def _drop_sessions(states: dict) -> None:
    """Finalizer of a collected client (any thread, any moment): close its sessions without waiting
    and without running a loop."""
    for st in list(states.values()):
        try:
            JudgeClient._retire(st, run_stopped=False)
        except Exception:  # noqa: BLE001 - a finalizer must not raise
            pass
    states.clear()


@atexit.register
def _close_all_clients() -> None:
    """At interpreter exit (before the garbage collector finalizes sessions and warns about them):
    close every client's sessions, on their own loops when those still run (daemon threads do)."""
    for client in list(_LIVE_CLIENTS):
        try:
            client.close(wait_s=2.0)
        except Exception:  # noqa: BLE001 - exit must go on
            logger.debug("closing a judge client at exit failed", exc_info=True)


def _retry_after_s(value: str | None) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); 0 when absent or unusable."""
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _safe_parse(parse: Callable[[str], Any], text: str) -> Any:
    """A parser that raises is treated like one that returns None (unusable reply)."""
    try:
        return parse(text)
    except Exception:  # noqa: BLE001 - a buggy parser must not kill the batch
        logger.debug("judge parser raised", exc_info=True)
        return None


def _choice_texts(text: str) -> list[str] | None:
    """Message contents of a chat-completion body; None if the body is not one (or has no choices)."""
    try:
        data = json.loads(text)
        choices = data["choices"]
        if not isinstance(choices, list) or not choices:
            return None
        return [str(ch["message"].get("content") or "") for ch in choices]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


# --------------------------------------------------------------------------------------- convenience
async def judge_answer(client: JudgeClient, question: str, ground_truth: str, prediction: str) -> JudgeResult[bool]:
    """Accuracy judge: value True/False (same answer or not), None on failure. Always one sample."""
    return await client.complete(answer_equivalence_messages(question, ground_truth, prediction), parse_equivalence)


async def judge_consistency(client: JudgeClient, question: str, reference: str, target: str) -> JudgeResult[float]:
    """Consistency judge: value in [0, 1] = mean of the parsed rubric scores over ``config.samples``."""
    n = client.config.samples
    result = await client.complete(consistency_messages(question, reference, target), parse_consistency, n=n)
    if n > 1 and result.value is not None:
        result = dataclasses.replace(result, value=sum(result.value) / len(result.value))
    return result
