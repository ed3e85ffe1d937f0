"""The repository's one fake OpenAI-compatible judge: a real aiohttp server on 127.0.0.1 in a background
thread.

Each request to ``/v1/chat/completions`` takes the next scripted :class:`Reply` (the default one when the
script is empty, or the ``responder``'s answer to the request body). The server records request bodies
and headers and the peak number of requests in flight. ``GET /v1/models`` lists ``models`` (OpenAI model
list, what the preflight probes) and ``GET /health`` answers 200, as vLLM does; neither is recorded.

Users: the tests (fixture ``judge_server`` in tests/conftest.py), the benchmarks (`fake_judge`: the server
in its own process, so it shares no core with the code measured; scripts/bench_*.py put tests/ on their
path) and the CPU smoke run (scripts/smoke_cpu.sh)::

    python tests/judge_server.py loopback --port-file F [--latency S]   # serve SMOKE_REPLIES until killed
    python tests/judge_server.py serve MODEL [--host H] [--port P] [--served-model-name NAME]
                                 [--startup-delay S] [--exit-code N] [other vllm flags, ignored]

``serve`` is a stand-in for ``vllm serve`` (tests of scripts/serve_judge.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
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


Replies = str | Mapping[str, str | Callable[[str], str]]


def prompt_text(body: dict[str, Any]) -> str:
    """The text of a chat request's messages (text parts of multimodal content; images left out)."""
    parts = []
    for message in body.get("messages", []):
        content = message.get("content", "")
        if isinstance(content, list):
            parts.extend(str(item.get("text", "")) for item in content if isinstance(item, dict))
        else:
            parts.append(str(content))
    return " ".join(parts)


def keyword_responder(reply: Replies, delay_s: float = 0.0) -> Callable[[dict[str, Any]], Reply]:
    """A responder answering ``reply``, or with a {keyword: reply} mapping the reply of the first keyword
    found in the request's text (the first reply when none is; a callable reply is called with the
    prompt text); each answer after ``delay_s`` seconds."""
    def respond(body: dict[str, Any]) -> Reply:
        if isinstance(reply, str):
            return ok(reply, delay_s=delay_s)
        prompt = prompt_text(body)
        chosen = next((text for key, text in reply.items() if key in prompt), next(iter(reply.values())))
        return ok(chosen(prompt) if callable(chosen) else chosen, delay_s=delay_s)

    return respond


def teacher_continuation(prompt: str) -> str:
    """An IVR-R1 teacher's continuation (recipe.ivr_r1.teacher): it closes the reasoning and answers with
    the reference answer the request shows (ivr_r1.rereason.teacher.send_reference_answer=true); this
    server cannot see the image, so without one it answers "unknown" (not verified)."""
    match = re.search(r"<reference_answer>\s*(.*?)\s*</reference_answer>", prompt, re.DOTALL)
    answer = match.group(1) if match else "unknown"
    return f"Looking at the image again, the answer is {answer}.</think><answer>{answer}</answer>"


# replies of the smoke run's judge: IVR-R1 teacher requests get a continuation, attribution requests
# blame the first step, answers are judged different, textual reasoning mostly consistent (first
# keyword found in the prompt wins)
SMOKE_REPLIES: dict[str, str | Callable[[str], str]] = {
    "<partial_response>": teacher_continuation,
    "first wrong step": '{"step": 1, "reason": "The image shows something else there."}',
    "Verdict": "The answers differ.\nVerdict: 0",
    "Score": "Mostly consistent.\nScore: 0.7",
}


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
        await web.TCPSite(self._runner, host, port, backlog=1024).start()  # benchmarks open many connections
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


def _serve_in_process(port_file: str, latency_s: float, reply: Replies) -> None:
    """Serve ``keyword_responder(reply, latency_s)`` in this process; write the base URL to ``port_file``
    once serving; stop on SIGTERM/SIGINT."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # the server thread inherits it
    server = FakeJudgeServer().start()
    server.responder = keyword_responder(reply, latency_s)
    with open(port_file, "w", encoding="utf-8") as f:
        f.write(server.url)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop()


@contextlib.contextmanager
def fake_judge(latency_s: float, reply: Replies) -> Iterator[str]:
    """The judge in its own process for the duration of the block (benchmarks: no shared core with the
    code measured); answers every completion with ``reply`` (text, or {keyword: text}: see
    `keyword_responder`; it crosses the process boundary as JSON) after ``latency_s`` seconds. Yields its
    base URL (``http://127.0.0.1:PORT/v1``)."""
    with tempfile.TemporaryDirectory() as folder:
        port_file = os.path.join(folder, "url")
        replies = [] if reply is SMOKE_REPLIES else ["--replies", json.dumps(reply)]  # its default has callables
        server = subprocess.Popen([sys.executable, os.path.abspath(__file__), "loopback", "--port-file", port_file,
                                   "--latency", str(latency_s), *replies])
        try:
            deadline = time.monotonic() + 60
            while not (os.path.exists(port_file) and os.path.getsize(port_file)):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(f"the fake judge process did not start (exit {server.poll()})")
                time.sleep(0.05)
            with open(port_file, encoding="utf-8") as f:
                yield f.read()
        finally:
            server.terminate()
            server.wait(10)


def main(argv: Sequence[str] | None = None) -> int:
    """`loopback`: the smoke run's judge until killed; `serve`: a `vllm serve` stand-in (serve until
    killed, or exit at once with --exit-code)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["loopback"]:
        loopback = argparse.ArgumentParser(prog="judge_server.py loopback")
        loopback.add_argument("--port-file", required=True, help="file to write the base URL to once serving")
        loopback.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
        loopback.add_argument("--replies", type=json.loads, default=SMOKE_REPLIES,
                              help="JSON: one reply text, or {keyword: reply} (default: the smoke run's replies, "
                                   "teacher continuations included)")
        args = loopback.parse_args(argv[1:])
        _serve_in_process(args.port_file, args.latency, args.replies)
        return 0
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
