"""Benchmark of the per-rollout reward on a realistic step batch. Prints figures; asserts nothing.

    python scripts/bench_reward.py [--rollouts 5120] [--latency 0.2] [--concurrency 128] [--math-share 0.12]

1. Rule-only throughput of `compute_score` on one core (rollouts/s) on the non-math mix (target
   >= 20,000/s) and on the math items (target >= 2,000/s; GRPO groups repeat answers, so part of
   them are math-verify cache hits, reported), then on the whole mix.
2. Share of answers the rules decide without a judge.
3. Pathological math answers (`10^{10^{10}}`, `2^{10^{9}}`, `1000000!`): wall time per answer against
   `math_timeout_s`, and how often a thread of the same process ticked meanwhile (not frozen).
4. Judge path: `compute_score_async` against a local OpenAI-compatible fake judge (127.0.0.1, own
   process) that answers after `--latency` seconds; wall time vs the bound
   ceil(judge calls / concurrency) x latency (target <= 1.25x).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import threading
import time

from fake_judge import fake_judge

from reward_score import compute_score, compute_score_async

FILLER = (
    "I start from the whole image and scan the regions the question refers to. The objects on the "
    "left are partly occluded, so I compare their outlines, colours and positions with the "
    "description before I commit to an answer. "
)
COLOURS = ["red", "blue", "green", "yellow", "white", "black"]


def _think(rng: random.Random, n_boxes: int, width: int = 812, height: int = 1008) -> tuple[str, list]:
    """~1,500 characters of reasoning with n_boxes boxes, and the GT boxes in original pixels."""
    gt, parts = [], []
    for _ in range(n_boxes):
        x1, y1 = rng.uniform(0, width - 120), rng.uniform(0, height - 120)
        w, h = rng.uniform(20, 110), rng.uniform(20, 110)
        gt.append([x1 * 800 / 812, y1 * 1000 / 1008, (x1 + w) * 800 / 812, (y1 + h) * 1000 / 1008])
        jit = rng.uniform(-8, 8)
        parts.append(f"the {rng.choice(COLOURS)} object <box>[{x1 + jit:.0f}, {y1:.0f}, {x1 + w:.0f}, {y1 + h + jit:.0f}]</box>")
    body = (FILLER * 8)[: 1500 - 40 * n_boxes]
    return body + " I see " + ", ".join(parts) + ".", gt


MATH_GT = [("\\frac{3}{4}", ["0.75", "3/4", "\\frac{6}{8}", "0.7", "\\frac{3}{5}"]),
           ("\\sqrt{2}", ["\\sqrt{2}", "\\frac{2}{\\sqrt{2}}", "2^{1/2}", "\\sqrt{3}", "1.5"]),
           ("x^2+2x+1", ["(x+1)^2", "x^2+2x+1", "x^2+1", "(x+2)^2", "2x+1"]),
           ("\\frac{\\pi}{2}", ["\\pi/2", "\\frac{\\pi}{2}", "90", "\\pi", "1.57"]),
           ("12", ["12", "2^2 \\cdot 3", "\\boxed{12}", "13", "4 \\times 3"]),
           ("2\\sqrt{3}", ["\\sqrt{12}", "2\\sqrt{3}", "3.46", "\\sqrt{6}", "2 \\sqrt 3"])]
PATHOLOGICAL = [("10^{10^{10}}", "\\frac{1}{2}"), ("2^{10^{9}}", "3"), ("1000000!", "7")]


def _math_answer(rng: random.Random) -> tuple[str, str, str | None, list | None]:
    gt, preds = rng.choice(MATH_GT)
    return rng.choice(preds), gt, "math", None


def _answer(rng: random.Random, math_share: float = 0.0) -> tuple[str, str, str | None, list | None]:
    """(prediction, ground truth, answer_type, choices) for a mix of MC, yes/no, numeric, open and
    (a `math_share` of) math answers."""
    if rng.random() < math_share:
        return _math_answer(rng)
    kind = rng.random()
    if kind < 0.3:
        gt = rng.choice("ABCD")
        pred = rng.choice([gt, rng.choice("ABCD"), f"({gt}) {COLOURS[0]}", "I cannot tell", "B or C",
                           f"The answer is ({gt}).", "blue"])
        return pred, gt, "choice", ["A. red", "B. blue", "C. green", "D. yellow"]
    if kind < 0.5:
        gt = rng.choice(["yes", "no"])
        return rng.choice(["Yes.", "No", "yes, it is", "probably", "Right side"]), gt, None, None
    if kind < 0.75:
        gt = rng.choice([str(rng.randint(0, 12)), "2 m", "0.5", "30°", "3/4"])
        return rng.choice([gt, str(rng.randint(0, 12)), f"{gt} objects", "a few", "200 cm", "1/2", "thirty",
                           "0.75", "5 kg"]), gt, None, None
    gt = rng.choice(COLOURS) + " " + rng.choice(["car", "umbrella", "sign", "bag"])
    pred = rng.choice([gt, f"the {gt}", f"It looks like a {gt} near the door", "a dark vehicle"])
    return pred, gt, None, None


def make_batch(n: int, seed: int = 0, tag: str = "step 1", math_share: float = 0.0,
               only_math: bool = False) -> list[tuple[str, str, dict]]:
    rng = random.Random(seed)
    batch = []
    for i in range(n):
        stream = ("grounded", "textual", "textual", "grounded", "single")[i % 5]
        pred, gt, answer_type, choices = _math_answer(rng) if only_math else _answer(rng, math_share)
        # five rollouts per sample share a question, so identical answers within a sample hit the cache
        extra = {"stream": stream, "answer_type": answer_type, "choices": choices,
                 "question": f"{tag}, sample {i // 5}: what is shown?",
                 "image_size": [800, 1000], "min_pixels": 3136, "max_pixels": 1280 * 28 * 28}
        if stream == "grounded":
            think, gt_boxes = _think(rng, rng.randint(1, 6))
            extra["gt_boxes"] = gt_boxes
        else:
            think, _ = _think(rng, 0)
            think = think.replace(" I see .", ".")
        batch.append((f"<think>{think}</think><answer>{pred}</answer>", gt, extra))
    return batch


async def _judge_passes(batches, judge: dict) -> list[tuple[float, dict]]:
    """Score each batch with the judge, one after another on one event loop (one connection pool)."""
    from reward_score.scoring import shared_judge_client

    client = shared_judge_client(judge)
    # first use imports aiohttp and opens the session; keep that out of the timing
    await compute_score_async("warmup", "<answer>warm</answer>", "up", {"question": "warm-up"}, judge=judge)
    client.stats(reset=True)
    out = []
    for batch in batches:
        start = time.perf_counter()
        await asyncio.gather(*(compute_score_async("bench", text, gt, extra, judge=judge) for text, gt, extra in batch))
        out.append((time.perf_counter() - start, client.stats(reset=True)))
    return out


def _rule_pass(batch) -> tuple[float, list[dict]]:
    start = time.perf_counter()
    results = [compute_score("bench", text, gt, extra) for text, gt, extra in batch]
    return time.perf_counter() - start, results


def _pathological(timeout_s: float) -> list[tuple[str, float, float, str]]:
    """(answer, seconds, share of 10 ms ticks another thread got meanwhile, acc rule outcome)."""
    rows = []
    for pred, gt in PATHOLOGICAL:
        ticks, stop = [0], threading.Event()

        def tick():
            while not stop.is_set():
                time.sleep(0.01)
                ticks[0] += 1

        thread = threading.Thread(target=tick, daemon=True)
        thread.start()
        start = time.perf_counter()
        result = compute_score("bench", f"<think>x</think><answer>{pred}</answer>", gt, {"answer_type": "math"})
        elapsed = time.perf_counter() - start
        stop.set()
        thread.join()
        rows.append((pred, elapsed, min(1.0, ticks[0] * 0.01 / elapsed),
                     "math_timeout" if result["math_timeout"] else f"acc {result['acc']}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=5120)
    parser.add_argument("--latency", type=float, default=0.2, help="injected judge latency, seconds")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--math-share", type=float, default=0.12, help="share of math items in the full mix")
    args = parser.parse_args()

    from reward_score.mathcheck import math_pool

    pool = math_pool()
    pool.wait_idle()  # the pool's start-up (once per process) is not part of the steady state
    non_math = make_batch(args.rollouts)
    compute_score("warmup", *non_math[0])
    rule_s, _ = _rule_pass(non_math)
    math_batch = make_batch(max(args.rollouts // 5, 200), seed=7, only_math=True)
    before = pool.stats()
    math_s, _ = _rule_pass(math_batch)
    after = pool.stats()
    checks = after["checks"] - before["checks"]
    hits = after["cache_hits"] - before["cache_hits"]
    batch = make_batch(args.rollouts, seed=3, math_share=args.math_share)
    mix_s, results = _rule_pass(batch)
    decided = sum(r["acc_undecided"] == 0 for r in results) / len(results)
    mean_len = sum(len(t) for t, _, _ in batch) / len(batch)
    print(f"batch: {len(batch)} rollouts (grounded 40%, textual 40%, single 20%), mean {mean_len:.0f} chars")
    print(f"rule-only, non-math mix: {rule_s:.3f} s, {len(non_math) / rule_s:,.0f} rollouts/s on one core "
          f"(target >= 20,000)")
    print(f"rule-only, math items: {len(math_batch)} in {math_s:.3f} s, {len(math_batch) / math_s:,.0f} rollouts/s "
          f"(target >= 2,000); {checks} math-verify checks, {hits} of them cache hits")
    print(f"rule-only, full mix with {args.math_share:.0%} math: {len(batch) / mix_s:,.0f} rollouts/s")
    print(f"rules decide {decided:.1%} of answers without the judge")
    timeout_s = pool.timeout_s
    for pred, elapsed, share, outcome in _pathological(timeout_s):
        print(f"pathological {pred!r}: {elapsed:.2f} s (bound {timeout_s:.1f} s), {outcome}; "
              f"another thread got {share:.0%} of its ticks meanwhile")

    with fake_judge(args.latency, "Verdict: 1") as url:
        figures = {"rule_rollouts_per_s": round(len(non_math) / rule_s),
                   "math_rollouts_per_s": round(len(math_batch) / math_s),
                   "mix_rollouts_per_s": round(len(batch) / mix_s), "rule_decided_share": round(decided, 4)}
        rule_s = mix_s
        print(f"judge path: fake judge on 127.0.0.1, latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}")
        judge = {"base_url": url, "max_concurrency": args.concurrency,
                 "timeout_s": 30, "max_retries": 1}
        # step 1 opens the connection pool (cold, as in a job's first step); step 2 is a fresh batch
        # (nothing cached) on the warm pool that every later step has
        passes = asyncio.run(_judge_passes(
            [batch, make_batch(args.rollouts, seed=1, tag="step 2", math_share=args.math_share)], judge))
        for label, (wall, stats) in zip(("step 1, cold pool", "step 2, warm pool"), passes):
            calls = int(stats["calls"] - stats["cache_hits"])
            bound = math.ceil(calls / args.concurrency) * args.latency
            print(f"  {label}: {calls} judge calls ({int(stats['cache_hits'])} cache hits, {int(stats['failures'])} "
                  f"failures); wall {wall:.3f} s vs bound {bound:.3f} s -> {wall / bound:.3f}x (target <= 1.25x); "
                  f"server latency p50 {stats['latency_p50'] * 1000:.0f} ms, p95 {stats['latency_p95'] * 1000:.0f} ms")
            figures[f"judge_ratio_step{label[5]}"] = round(wall / bound, 3)
            print(f"    without the {rule_s:.3f} s of rule scoring that runs before the first judge request "
                  f"(all {len(batch)} rollouts submitted at once): {(wall - rule_s) / bound:.3f}x")
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
