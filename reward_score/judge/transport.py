"""HTTP transport of the judge client: one aiohttp session per event loop, the POST with its reply-size
cap, and closing sessions that belong to other (possibly stopped) loops.

aiohttp is imported lazily, on the first session, so importing this module is cheap.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from .config import JudgeConfig

logger = logging.getLogger(__name__)


@dataclass
class LoopSession:
    """Everything bound to one event loop: the HTTP session, the semaphore, in-flight calls."""

    loop: asyncio.AbstractEventLoop
    session: Any  # aiohttp.ClientSession
    sem: asyncio.Semaphore
    inflight: dict[str, asyncio.Task] = field(default_factory=dict)


def open_session(loop: asyncio.AbstractEventLoop, config: JudgeConfig) -> LoopSession:
    """A new session for `loop` (called on it): `max_concurrency` connections, `timeout_s` per attempt."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=config.max_concurrency)
    # per-attempt timeout on the session: no extra task per request, unlike asyncio.wait_for
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=config.timeout_s))
    return LoopSession(loop, session, asyncio.Semaphore(config.max_concurrency))


def retire(st: LoopSession, wait_s: float = 0.0, run_stopped: bool = True) -> None:
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


def drop_sessions(states: dict) -> None:
    """Finalizer of a collected client (any thread, any moment): close its sessions without waiting
    and without running a loop."""
    for st in list(states.values()):
        try:
            retire(st, run_stopped=False)
        except Exception:  # noqa: BLE001 - a finalizer must not raise
            pass
    states.clear()


async def post(st: LoopSession, config: JudgeConfig, body: bytes, api_key: str | None) -> tuple[int, str | None, float]:
    """POST `body` to the chat-completions endpoint: (status, body text or None when over
    ``max_reply_bytes``, Retry-After seconds or 0)."""
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    url = f"{config.base_url}/chat/completions"
    cap = config.max_reply_bytes
    async with st.session.post(url, data=body, headers=headers) as resp:
        retry_after = retry_after_s(resp.headers.get("Retry-After"))
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


def retry_after_s(value: str | None) -> float:
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


def choice_texts(text: str) -> list[str] | None:
    """Message contents of a chat-completion body; None if the body is not one (or has no choices)."""
    try:
        data = json.loads(text)
        choices = data["choices"]
        if not isinstance(choices, list) or not choices:
            return None
        return [str(ch["message"].get("content") or "") for ch in choices]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
