"""Benchmark of the per-rollout reward on a realistic step batch. Prints figures and the targets they
are held to; asserts nothing.

    python scripts/bench_reward.py [--rollouts 5120] [--latency 0.2 1.0] [--concurrency 128]
                                   [--math-share 0.12] [--dup-share 0.5] [--repeat 5]

The batch is made of GRPO groups of 5 rollouts of one sample (grounded 40%, textual 40%, single 20%
of the groups): one question and ground truth per group, and within a group a `--dup-share` of the
rollouts repeat an earlier rollout of the group word for word (short answers, repeated templates),
as real steps do. Rows carry what the recipe's dataset writes into extra_info, the ground-truth
boxes already in the model's frame included (`--old-rows`: without them).

1. Rule-only throughput of `compute_score` on one core (rollouts/s, best and median of `--repeat`
   passes) on the non-math mix (target >= 25,000/s) and on math items (target >= 2,000/s; part of
   them are math-verify cache hits, reported), then on the whole mix; with the load average.
2. Share of answers the rules decide without a judge.
3. Pathological math answers (`10^{10^{10}}`, `2^{10^{9}}`, `1000000!`): wall time per answer against
   `math_timeout_s`, and how often a thread of the same process ticked meanwhile (not frozen).
4. Judge path, per `--latency`: `compute_score_async` on every rollout of a step at once against a
   local OpenAI-compatible fake judge (127.0.0.1, own process) that answers after that latency;
   wall time vs the bound ceil(judge requests / concurrency) x latency (target <= 1.25x), for the
   first step (cold connection pool) and the next one (warm pool, new texts).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import random
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from reward_score import compute_score, compute_score_async, scoring
from reward_score.scoring import gt_boxes_for_reward

TARGET_RULES = 25_000  # rollouts/s on one core, non-math mix
TARGET_MATH = 2_000  # rollouts/s, math items
TARGET_JUDGE = 1.25  # x ceil(requests / concurrency) x latency
GROUP = 5  # rollouts per sample (GRPO group)
SIZE, BOUNDS = [800, 1000], {"min_pixels": 3136, "max_pixels": 1280 * 28 * 28}  # seen as 812 x 1008

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from judge_server import fake_judge  # noqa: E402  (the repository's one fake judge)

FILLER = (
    "I start from the whole image and scan the regions the question refers to. The objects on the "
    "left are partly occluded, so I compare their outlines, colours and positions with the "
    "description before I commit to an answer. "
)
COLOURS = ["red", "blue", "green", "yellow", "white", "black"]


def _gt_boxes(rng: random.Random, n_boxes: int, width: int = 812, height: int = 1008) -> list[list[float]]:
    """n_boxes ground-truth boxes in ORIGINAL pixels (800 x 1000), drawn in the model's 812 x 1008 frame."""
    gt = []
    for _ in range(n_boxes):
        x1, y1 = rng.uniform(0, width - 120), rng.uniform(0, height - 120)
        w, h = rng.uniform(20, 110), rng.uniform(20, 110)
        gt.append([x1 * 800 / 812, y1 * 1000 / 1008, (x1 + w) * 800 / 812, (y1 + h) * 1000 / 1008])
    return gt


def _think(rng: random.Random, gt: list[list[float]]) -> str:
    """~1,500 characters of reasoning with one box (model frame, jittered) per GT box."""
    parts = []
    for x1, y1, x2, y2 in gt:
        x1, y1, x2, y2 = x1 * 812 / 800, y1 * 1008 / 1000, x2 * 812 / 800, y2 * 1008 / 1000
        jit = rng.uniform(-8, 8)
        parts.append(f"the {rng.choice(COLOURS)} object <box>[{x1 + jit:.0f}, {y1:.0f}, {x2:.0f}, {y2 + jit:.0f}]</box>")
    body = (FILLER * 8)[: 1500 - 40 * len(gt)]
    return body + " I see " + ", ".join(parts) + "." if parts else body


MATH_GT = [("\\frac{3}{4}", ["0.75", "3/4", "\\frac{6}{8}", "0.7", "\\frac{3}{5}"]),
           ("\\sqrt{2}", ["\\sqrt{2}", "\\frac{2}{\\sqrt{2}}", "2^{1/2}", "\\sqrt{3}", "1.5"]),
           ("x^2+2x+1", ["(x+1)^2", "x^2+2x+1", "x^2+1", "(x+2)^2", "2x+1"]),
           ("\\frac{\\pi}{2}", ["\\pi/2", "\\frac{\\pi}{2}", "90", "\\pi", "1.57"]),
           ("12", ["12", "2^2 \\cdot 3", "\\boxed{12}", "13", "4 \\times 3"]),
           ("2\\sqrt{3}", ["\\sqrt{12}", "2\\sqrt{3}", "3.46", "\\sqrt{6}", "2 \\sqrt 3"])]
PATHOLOGICAL = [("10^{10^{10}}", "\\frac{1}{2}"), ("2^{10^{9}}", "3"), ("1000000!", "7")]


def _item(rng: random.Random, math_share: float = 0.0, only_math: bool = False
          ) -> tuple[str, str | None, list | None, list[str]]:
    """(ground truth, answer_type, choices, candidate predictions) of one sample: multiple choice,
    yes/no, numeric, open answers and (a `math_share` of) math answers."""
    if only_math or rng.random() < math_share:
        gt, preds = rng.choice(MATH_GT)
        return gt, "math", None, preds
    kind = rng.random()
    if kind < 0.3:
        gt = rng.choice("ABCD")
        return gt, "choice", ["A. red", "B. blue", "C. green", "D. yellow"], [
            gt, *"ABCD", f"({gt}) {COLOURS[0]}", "I cannot tell", "B or C", f"The answer is ({gt}).", "blue"]
    if kind < 0.5:
        return rng.choice(["yes", "no"]), None, None, ["Yes.", "No", "yes, it is", "probably", "Right side"]
    if kind < 0.75:
        gt = rng.choice([str(rng.randint(0, 12)), "2 m", "0.5", "30°", "3/4"])
        return gt, None, None, [gt, str(rng.randint(0, 12)), f"{gt} objects", "a few", "200 cm", "1/2", "thirty",
                                "0.75", "5 kg"]
    gt = rng.choice(COLOURS) + " " + rng.choice(["car", "umbrella", "sign", "bag"])
    return gt, None, None, [gt, f"the {gt}", f"It looks like a {gt} near the door", "a dark vehicle"]


def make_batch(n: int, seed: int = 0, tag: str = "step 1", math_share: float = 0.0, only_math: bool = False,
               dup_share: float = 0.5, model_boxes: bool = True) -> list[tuple[str, str, dict]]:
    """n rollouts in groups of GROUP: (response text, ground truth, extra_info) per rollout."""
    rng = random.Random(seed)
    batch: list[tuple[str, str, dict]] = []
    for group in range(math.ceil(n / GROUP)):
        stream = ("grounded", "textual", "grounded", "textual", "single")[group % 5]
        gt, answer_type, choices, preds = _item(rng, math_share, only_math)
        extra = {"stream": stream, "answer_type": answer_type, "choices": choices, "sample_id": f"{tag}:{group}",
                 "question": f"{tag}, sample {group}: what is shown?", "image_size": SIZE, **BOUNDS,
                 "box_frame": "qwen2_5_vl", "gt_boxes": _gt_boxes(rng, rng.randint(1, 6)) if stream != "single" else []}
        if stream == "grounded" and model_boxes:
            extra["gt_boxes_model"] = gt_boxes_for_reward(extra)  # what the dataset writes
        texts: list[str] = []
        for _ in range(min(GROUP, n - len(batch))):
            if texts and rng.random() < dup_share:
                texts.append(rng.choice(texts))  # the same rollout again, word for word
            else:
                think = _think(rng, extra["gt_boxes"] if stream == "grounded" else [])
                texts.append(f"<think>{think}</think><answer>{rng.choice(preds)}</answer>")
            batch.append((texts[-1], gt, extra))
    return batch


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


async def _judge_passes(batches, judge: dict) -> list[tuple[float, dict]]:
    """Score each batch with the judge, one after another on one event loop (one connection pool)."""
    client = scoring.shared_judge_client(judge)
    # first use imports aiohttp and opens the session; keep that out of the timing
    await compute_score_async("warmup", "<answer>warm</answer>", "up", {"question": "warm-up"}, judge=judge)
    client.stats(reset=True)
    out = []
    try:
        for batch in batches:
            start = time.perf_counter()
            await asyncio.gather(*(compute_score_async("bench", text, gt, extra, judge=judge)
                                   for text, gt, extra in batch))
            out.append((time.perf_counter() - start, client.stats(reset=True)))
    finally:
        await client.aclose()
    return out


def _rule_pass(batch) -> tuple[float, float, list[dict]]:
    """(wall seconds, CPU seconds of this thread, results) of one rule-only pass over `batch`."""
    start, cpu = time.perf_counter(), time.thread_time()
    results = [compute_score("bench", text, gt, extra) for text, gt, extra in batch]
    return time.perf_counter() - start, time.thread_time() - cpu, results


def _rates(batch, repeat: int) -> tuple[float, float, float, list[dict]]:
    """(best wall, median wall, best CPU) rollouts/s over `repeat` passes, and the last pass's results.
    The CPU rate (rollouts per second of this thread's CPU time) is what one idle core gives; on a
    shared machine the wall rate also counts the time other processes held the core."""
    walls, cpus, results = [], [], []
    for _ in range(repeat):
        wall, cpu, results = _rule_pass(batch)
        walls.append(len(batch) / wall)
        cpus.append(len(batch) / cpu)
    return max(walls), statistics.median(walls), max(cpus), results


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
    parser.add_argument("--latency", type=float, nargs="+", default=[0.2, 1.0], help="judge latencies, seconds")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--math-share", type=float, default=0.12, help="share of math items in the full mix")
    parser.add_argument("--dup-share", type=float, default=0.5,
                        help="share of rollouts repeating an earlier rollout of their group")
    parser.add_argument("--repeat", type=int, default=5, help="rule-only passes per figure (best and median)")
    parser.add_argument("--old-rows", action="store_true", help="rows without gt_boxes_model (older datasets)")
    parser.add_argument("--skip-rules", action="store_true", help="only the judge path")
    args = parser.parse_args()
    kw = {"dup_share": args.dup_share, "model_boxes": not args.old_rows}
    figures: dict[str, float] = {}

    from reward_score.mathcheck import math_pool

    pool = math_pool()
    pool.wait_idle()  # the pool's start-up (once per process) is not part of the steady state
    with ThreadPoolExecutor(pool.workers) as warm:  # nor each worker's first check (sympy's lazy set-up)
        list(warm.map(lambda i: pool.check(f"\\frac{{{i}}}{{2}}", f"\\sqrt{{{i}}}"), range(pool.workers)))
    batch = make_batch(args.rollouts, seed=3, math_share=args.math_share, **kw)
    mean_len = sum(len(t) for t, _, _ in batch) / len(batch)
    print(f"batch: {len(batch)} rollouts in groups of {GROUP} (grounded 40%, textual 40%, single 20% of the "
          f"groups), {args.dup_share:.0%} of rollouts repeat one of their group, mean {mean_len:.0f} chars; "
          f"{'rows without' if args.old_rows else 'rows with'} model-frame GT boxes")
    if not args.skip_rules:
        non_math = make_batch(args.rollouts, **kw)
        compute_score("warmup", *non_math[0])
        best, median, cpu_rate, _ = _rates(non_math, args.repeat)
        print(f"rule-only, non-math mix: {cpu_rate:,.0f} rollouts per CPU-second on one core (target >= "
              f"{TARGET_RULES:,}: {'met' if cpu_rate >= TARGET_RULES else 'missed'}); wall {best:,.0f}/s (median "
              f"{median:,.0f} of {args.repeat}); {load()}")
        math_batch = make_batch(max(args.rollouts // 5, 200), seed=7, only_math=True, **kw)
        before = pool.stats()
        math_s, _, _ = _rule_pass(math_batch)  # the first pass: the cache holds only what repeats in it
        after = pool.stats()
        checks, hits = after["checks"] - before["checks"], after["cache_hits"] - before["cache_hits"]
        math_rate = len(math_batch) / math_s
        print(f"rule-only, math items: {math_rate:,.0f} rollouts/s wall (target >= {TARGET_MATH:,}: "
              f"{'met' if math_rate >= TARGET_MATH else 'missed'}); {len(math_batch)} items, {checks} math-verify "
              f"checks, {hits} of them cache hits; {load()}")
        mix_best, mix_median, _, results = _rates(batch, args.repeat)
        decided = sum(r["acc_undecided"] == 0 for r in results) / len(results)
        print(f"rule-only, full mix with {args.math_share:.0%} math: {mix_best:,.0f} rollouts/s "
              f"(median {mix_median:,.0f}); rules decide {decided:.1%} of answers without the judge")
        figures.update(rule_rollouts_per_cpu_s=round(cpu_rate), rule_rollouts_per_s=round(best), rule_median=round(median),
                       math_rollouts_per_s=round(len(math_batch) / math_s), mix_rollouts_per_s=round(mix_best),
                       rule_decided_share=round(decided, 4))
        timeout_s = pool.timeout_s
        for pred, elapsed, share, outcome in _pathological(timeout_s):
            print(f"pathological {pred!r}: {elapsed:.2f} s (bound {timeout_s:.1f} s), {outcome}; "
                  f"another thread got {share:.0%} of its ticks meanwhile")

    steps = {latency: make_batch(args.rollouts, seed=1, tag="step 2", math_share=args.math_share, **kw)
             for latency in args.latency}
    # the harness's own 10,000s of long-lived rollouts are not what a reward worker holds (its rollouts
    # arrive and leave): keep them out of the garbage collector's full passes during the timing
    gc.collect()
    gc.freeze()
    for latency in args.latency:
        with fake_judge(latency, "Verdict: 1") as url:
            print(f"judge path: fake judge on 127.0.0.1, latency {latency * 1000:.0f} ms, concurrency "
                  f"{args.concurrency}")
            judge = {"base_url": url, "max_concurrency": args.concurrency, "timeout_s": 30, "max_retries": 1}
            # step 1 opens the connection pool (cold, as in a job's first step); step 2 is a fresh batch
            # (nothing cached) on the warm pool that every later step has
            passes = asyncio.run(_judge_passes([batch, steps[latency]], judge))
        for label, (wall, stats) in zip(("step 1, cold pool", "step 2, warm pool"), passes):
            requests = int(stats["calls"] - stats["cache_hits"])
            bound = math.ceil(requests / args.concurrency) * latency
            ratio = wall / bound
            print(f"  {label}: {requests} judge requests ({int(stats['cache_hits'])} calls answered by an identical "
                  f"one, {int(stats['failures'])} failures); wall {wall:.3f} s vs bound {bound:.3f} s -> "
                  f"{ratio:.3f}x (target <= {TARGET_JUDGE}x: {'met' if ratio <= TARGET_JUDGE else 'missed'}); "
                  f"server latency p50 {stats['latency_p50'] * 1000:.0f} ms, p95 "
                  f"{stats['latency_p95'] * 1000:.0f} ms; {load()}")
            figures[f"judge_ratio_{latency * 1000:.0f}ms_step{label[5]}"] = round(ratio, 3)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
