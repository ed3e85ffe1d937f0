"""A fake OpenAI-compatible judge for the benchmark scripts: an aiohttp server on 127.0.0.1 in its own
process (so it does not share a core with the code being measured) that answers every chat completion
with a fixed reply after a fixed latency. Imported by scripts/bench_*.py (scripts/ is on their path)."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import socket
import time
from collections.abc import Iterator


def _serve(port: int, latency_s: float, reply: str, ready) -> None:
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency_s)
        choices = [{"index": i, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                   for i in range(body.get("n", 1))]
        return web.json_response({"id": "bench", "object": "chat.completion", "choices": choices})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)


@contextlib.contextmanager
def fake_judge(latency_s: float, reply: str) -> Iterator[str]:
    """Run the server for the duration of the block; yields its base URL (`http://127.0.0.1:PORT/v1`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = mp.Event()
    server = mp.Process(target=_serve, args=(port, latency_s, reply, ready), daemon=True)
    server.start()
    ready.wait(30)
    time.sleep(0.5)  # run_app binds after `ready`
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.join(5)
