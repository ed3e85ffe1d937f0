"""Judge transport: our aiohttp `JudgeClient` against `openai.AsyncOpenAI` on the same fake judge.
Prints figures; asserts nothing. Needs `pip install openai` (not a project dependency).

    python scripts/bench_judge_transport.py [--calls 4000] [--concurrency 128] [--latency 0.0 0.2]

Each client sends `--calls` distinct chat completions (no cache hits) with at most `--concurrency`
in flight to a local OpenAI-compatible server (own process, 127.0.0.1) that answers after
`--latency` seconds. Reported: wall time, calls/s, client CPU seconds per 1,000 calls (the cost
the reward worker pays), and the ratio to the bound ceil(calls / concurrency) x latency.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import time


from reward_score.judge import JudgeClient, JudgeConfig, answer_equivalence_messages, parse_equivalence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from judge_server import fake_judge  # noqa: E402  (the repository's one fake judge)


async def ours(url: str, calls: int, concurrency: int) -> int:
    client = JudgeClient(JudgeConfig(base_url=url, max_concurrency=concurrency, cache_size=0, max_retries=1))
    try:
        results = await asyncio.gather(*(client.complete(answer_equivalence_messages("Q", "red", f"pred {i}"),
                                                         parse_equivalence) for i in range(calls)))
    finally:
        await client.aclose()
    return sum(r.ok for r in results)


async def sdk(url: str, calls: int, concurrency: int) -> int:
    import httpx
    import openai

    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency))
    client = openai.AsyncOpenAI(base_url=url, api_key="unused", max_retries=1, timeout=60.0, http_client=http)
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> bool:
        async with sem:
            reply = await client.chat.completions.create(
                model="judge", messages=answer_equivalence_messages("Q", "red", f"pred {i}"), temperature=0.0,
                top_p=1.0, max_tokens=256, n=1, seed=0)
        return parse_equivalence(reply.choices[0].message.content) is not None

    try:
        return sum(await asyncio.gather(*(one(i) for i in range(calls))))
    finally:
        await client.close()


def measure(name: str, fn, url: str, calls: int, concurrency: int, latency: float) -> None:
    asyncio.run(fn(url, 8, concurrency))  # imports and first connection outside the timing
    wall0, cpu0 = time.perf_counter(), time.process_time()
    ok = asyncio.run(fn(url, calls, concurrency))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    bound = math.ceil(calls / concurrency) * latency
    ratio = f"{wall / bound:.2f}x the bound" if bound else "no latency bound"
    print(f"  {name:8} {ok}/{calls} ok, wall {wall:.2f} s ({calls / wall:,.0f} calls/s), "
          f"client CPU {cpu / calls * 1000:.2f} s per 1,000 calls, {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.2])
    args = parser.parse_args()
    try:
        import openai
    except ImportError:
        openai = None
    for latency in args.latency:
        with fake_judge(latency, "Verdict: 1") as url:
            print(f"latency {latency * 1000:.0f} ms, {args.calls} calls, concurrency {args.concurrency}")
            measure("ours", ours, url, args.calls, args.concurrency, latency)
            if openai is None:
                print("  openai   not installed (pip install openai)")
            else:
                measure(f"openai {openai.__version__}", sdk, url, args.calls, args.concurrency, latency)


if __name__ == "__main__":
    main()
