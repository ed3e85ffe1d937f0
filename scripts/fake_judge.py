"""A fake OpenAI-compatible judge for the benchmark scripts and the CPU smoke run: an aiohttp server on
127.0.0.1 in its own process (so it does not share a core with the code being measured) that answers
every chat completion with a fixed reply after a fixed latency. Imported by scripts/bench_*.py
(scripts/ is on their path); `python scripts/fake_judge.py --port-file F` serves until killed
(scripts/smoke_cpu.sh), replying to answer-equivalence prompts ("Verdict"), consistency prompts
("Score"), IVR-R1 attribution prompts and IVR-R1 teacher-continuation prompts each in its own form."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import re
import socket
import time
from collections.abc import Callable, Iterator

Replies = str | dict[str, str | Callable[[str], str]]


def _prompt_text(body: dict) -> str:
    """The text of a chat request's messages (text parts of multimodal content; images left out)."""
    parts = []
    for message in body.get("messages", []):
        content = message.get("content", "")
        if isinstance(content, list):
            parts.extend(str(item.get("text", "")) for item in content if isinstance(item, dict))
        else:
            parts.append(str(content))
    return " ".join(parts)


def _reply_for(body: dict, reply: Replies) -> str:
    """`reply`, or with a {keyword: reply} mapping the reply of the first keyword found in the prompt (a
    callable reply is called with the prompt text)."""
    if isinstance(reply, str):
        return reply
    prompt = _prompt_text(body)
    chosen = next((text for key, text in reply.items() if key in prompt), next(iter(reply.values())))
    return chosen(prompt) if callable(chosen) else chosen


def _serve(port: int, latency_s: float, reply: Replies, ready) -> None:
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(latency_s)
        content = _reply_for(body, reply)
        choices = [{"index": i, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                   for i in range(body.get("n", 1))]
        return web.json_response({"id": "bench", "object": "chat.completion", "choices": choices})

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    ready.set()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None, backlog=1024)


@contextlib.contextmanager
def fake_judge(latency_s: float, reply: Replies) -> Iterator[str]:
    """Run the server for the duration of the block; yields its base URL (`http://127.0.0.1:PORT/v1`)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = mp.Event()
    server = mp.Process(target=_serve, args=(port, latency_s, reply, ready), daemon=True)
    server.start()
    ready.wait(30)
    deadline = time.monotonic() + 30
    while True:  # run_app binds after `ready`: wait until the port accepts connections
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or not server.is_alive():
                server.terminate()
                raise RuntimeError("fake judge did not start") from None
            time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.terminate()
        server.join(5)


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
SMOKE_REPLIES = {
    "<partial_response>": teacher_continuation,
    "first wrong step": '{"step": 1, "reason": "The image shows something else there."}',
    "Verdict": "The answers differ.\nVerdict: 0",
    "Score": "Mostly consistent.\nScore: 0.7",
}


def main() -> int:
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="serve the fake judge on 127.0.0.1 until killed")
    parser.add_argument("--port-file", required=True, help="file to write the base URL to once serving")
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with fake_judge(args.latency, SMOKE_REPLIES) as url:
        with open(args.port_file, "w", encoding="utf-8") as f:
            f.write(url)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})  # after the server started
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
