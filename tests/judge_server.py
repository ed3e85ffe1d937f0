"""A scriptable fake OpenAI-compatible judge: a real aiohttp server on 127.0.0.1 in a background thread.

Each request to ``/v1/chat/completions`` takes the next scripted :class:`Reply` (the default one when the
script is empty). The server records request bodies and headers and the peak number of requests in
flight. ``GET /v1/models`` lists ``models`` (OpenAI model list) and ``GET /health`` answers 200, as vLLM
does; neither is recorded. Used by tests only.

Also a stand-in for ``vllm serve`` (tests of scripts/serve_judge.sh)::

    python tests/judge_server.py serve MODEL [--host H] [--port P] [--served-model-name NAME]
                                 [--startup-delay S] [--exit-code N] [other vllm flags, ignored]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class Reply:
    """What the server does for one request. ``delay_s`` is slept before answering (seconds)."""

    texts: tuple[str, ...] = ("Verdict: 1",)
    status: int = 200
    delay_s: float = 0.0
    body: str | None = None  # raw body, overrides texts
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers, e.g. (("Retry-After", "1"),)
    n_choices: int | None = None  # answer with this many choices instead of the request's n


def ok(*texts: str, delay_s: float = 0.0) -> Reply:
    return Reply(texts=texts or ("Verdict: 1",), delay_s=delay_s)


def status(code: int) -> Reply:
    return Reply(status=code, body=json.dumps({"error": {"message": f"scripted {code}"}}))


def garbage() -> Reply:
    return Reply(body="<html>upstream exploded</html>", content_type="text/html")


def no_choices() -> Reply:
    return Reply(body=json.dumps({"id": "x", "object": "chat.completion", "choices": []}))


def hang(seconds: float = 10.0) -> Reply:
    return Reply(delay_s=seconds)


def dead_port() -> int:
    """A local TCP port with nothing listening on it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeJudgeServer:
    def __init__(self, models: Sequence[str] = ("judge",)) -> None:
        self.models = list(models)  # what GET /v1/models lists (vLLM: the --served-model-name values)
        self._lock = threading.Lock()
        self._script: deque[Reply] = deque()
        self.default = ok()
        self.responder: Callable[[dict[str, Any]], Reply] | None = None  # request body -> reply
        self.requests: list[dict[str, Any]] = []
        self.inflight = 0
        self.max_inflight = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply, default: Reply | None = None) -> None:
        with self._lock:
            self._script = deque(replies)
            if default is not None:
                self.default = default

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.default = ok()
            self.responder = None
            self.requests = []
            self.max_inflight = self.inflight

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self._lock:
            self.requests.append({"body": body, "headers": dict(request.headers), "path": request.path})
            if self._script:
                reply = self._script.popleft()
            else:
                reply = self.responder(body) if self.responder is not None else self.default
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.body is not None:
                return web.Response(status=reply.status, text=reply.body, content_type=reply.content_type,
                                    headers=dict(reply.headers))
            n = int(body.get("n", 1)) if reply.n_choices is None else reply.n_choices
            choices = [
                {"index": i, "message": {"role": "assistant", "content": reply.texts[i % len(reply.texts)]},
                 "finish_reason": "stop"}
                for i in range(n)
            ]
            return web.json_response({"id": "fake", "object": "chat.completion", "choices": choices},
                                     status=reply.status, headers=dict(reply.headers))
        finally:
            self.inflight -= 1

    async def _models(self, request: web.Request) -> web.StreamResponse:
        data = [{"id": name, "object": "model", "owned_by": "fake", "root": name} for name in list(self.models)]
        return web.json_response({"object": "list", "data": data})

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def _start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self.port = self._runner.addresses[0][1]

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeJudgeServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(host, port), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def main(argv: Sequence[str] | None = None) -> int:
    """`vllm serve` stand-in: serve until killed (or exit at once with --exit-code)."""
    parser = argparse.ArgumentParser(prog="judge_server.py")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None)
    parser.add_argument("--startup-delay", type=float, default=0.0, help="seconds before the port opens")
    parser.add_argument("--exit-code", type=int, default=None, help="die at once with this status (a failed start)")
    args, _ignored = parser.parse_known_args(argv)
    if args.exit_code is not None:
        print("fake vllm: simulated start-up failure (CUDA out of memory)", flush=True)
        return args.exit_code
    time.sleep(args.startup_delay)
    server = FakeJudgeServer(models=[args.served_model_name or args.model]).start(args.host, args.port)
    print(f"fake vllm: serving {server.models} on {args.host}:{server.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
