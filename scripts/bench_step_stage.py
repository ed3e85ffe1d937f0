"""Benchmark of the iVGR step stage against a judge with injected latency. Prints figures and the target
they are held to; asserts nothing.

    python scripts/bench_step_stage.py [--textual 1280] [--latency 0.2 1.0] [--concurrency 128] [--dup-share 0.5]

A step of 256 samples x n=5: 1,280 grounded and 1,280 textual rollouts (~1,500-character reasoning).
Within each group a `--dup-share` of the rollouts repeat the reasoning of an earlier rollout of the
group word for word (short answers and repeated templates make this ordinary; a 2,560-rollout step
measured against the official reward had 639 of 1,260 consistency calls answered by an identical
request). Times what the trainer does between reading the rollouts and writing rewards back:
building stage records from the rows, reference selection and archive update, the consistency judge
calls, the bonus written into jagged `rm_scores`. Target: the stage within 1.25 x its bound
ceil(judge requests / concurrency) x latency at each latency; our own overhead (the stage with a
zero-latency judge) is reported beside it.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import sys
import time

import torch

from recipe.ivgr.archive import RolloutArchive
from recipe.ivgr.stage import ConsistencySettings, ConsistencyStage
from recipe.ivgr.trainer import add_bonus, records_from_rows
from reward_score.background import BackgroundLoop
from reward_score.judge import JudgeClient, JudgeConfig
from reward_score.result import RewardScore

TARGET = 1.25  # x ceil(requests / concurrency) x latency

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from judge_server import fake_judge  # noqa: E402  (the repository's one fake judge)

THINK = ("I look at the left part of the image, where a small object sits next to the window; its colour "
         "and outline match the description in the question. ") * 10


def make_rows(num_textual: int, n: int, step: int, seed: int = 0, dup_share: float = 0.5):
    """TransferQueue-shaped rows: dataset extra_info and the reward's reward_extra_info."""
    rng = random.Random(seed * 1000 + step)
    infos, fields = [], []
    for sample in range(num_textual // n):
        sid = f"bench:{sample}"
        for stream in ("grounded", "textual"):
            thinks: list[str] = []
            for k in range(n):
                if thinks and rng.random() < dup_share:
                    thinks.append(rng.choice(thinks))  # the group repeats itself word for word
                else:
                    thinks.append(f"step {step} sample {sample} {stream} rollout {k}: {THINK}")
                acc = float(rng.random() < 0.6)
                if stream == "grounded":
                    iou = rng.random()
                    result = RewardScore(score=2 + iou + acc, format=1.0, acc=acc, iou=iou, box_valid=1.0,
                                         num_boxes=2.0)
                else:
                    result = RewardScore(score=1 + acc, format=1.0, acc=acc)
                reward = {**result.as_dict(), "think": thinks[-1]}
                infos.append({"sample_id": sid, "stream": stream, "question": f"What is left of the window? ({sid})"})
                fields.append({"reward_extra_info": reward})
    return infos, fields


def run_stage(stage: ConsistencyStage, loop: BackgroundLoop, infos, fields, step: int) -> tuple[float, dict]:
    rm_scores = torch.nested.as_nested_tensor([torch.zeros(400) for _ in infos], layout=torch.jagged)
    start = time.perf_counter()
    records = records_from_rows(infos, fields)
    out = loop.run(stage.run(records, step))
    add_bonus(rm_scores, out.bonus)
    return time.perf_counter() - start, out.metrics


def load() -> str:
    return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--textual", type=int, default=1280, help="textual rollouts per step")
    parser.add_argument("--n", type=int, default=5, help="rollouts per row")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.2, 1.0], help="judge latencies, seconds")
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--dup-share", type=float, default=0.5,
                        help="share of rollouts repeating the reasoning of an earlier rollout of their group")
    args = parser.parse_args()

    loop = BackgroundLoop()
    print(f"step: {args.textual} textual + {args.textual} grounded rollouts in groups of {args.n}, "
          f"{args.dup_share:.0%} repeating their group's reasoning; judge concurrency {args.concurrency}")
    for latency in (0.0, *args.latency):
        with fake_judge(latency, "Comparison done. Score: 0.7") as url:
            judge = JudgeClient(JudgeConfig(base_url=url, max_concurrency=args.concurrency,
                                            timeout_s=30, max_retries=1))
            stage = ConsistencyStage(ConsistencySettings(), RolloutArchive(), judge)
            # step 1 opens the connection pool; step 2 (new reasoning texts, nothing cached) is steady state
            results = {}
            for step in (1, 2):
                infos, fields = make_rows(args.textual, args.n, step, dup_share=args.dup_share)
                gc.collect()
                gc.freeze()  # the harness's rows stay out of the collector's full passes during the timing
                results[step] = run_stage(stage, loop, infos, fields, step)
            loop.run(judge.aclose())
        if not latency:
            wall, _ = results[2]
            print(f"our overhead (zero-latency judge, warm pool): {wall:.3f} s; {load()}")
            continue
        for step, label in ((1, "step 1, cold pool"), (2, "step 2, warm pool")):
            wall, m = results[step]
            requests = int(m["ivgr/judge/calls"] - m["ivgr/judge/cache_hits"])
            calls = requests + int(m["ivgr/judge/cache_hits"] + m["ivgr/textual/judge_shared"])
            bound = math.ceil(requests / args.concurrency) * latency
            ratio = wall / bound
            print(f"{label}, {latency * 1000:.0f} ms: {calls} consistency calls, {requests} judge requests "
                  f"({int(m['ivgr/textual/judge_shared'])} shared with an identical one of the step); stage "
                  f"{wall:.3f} s, bound {bound:.3f} s -> {ratio:.3f}x (target <= {TARGET}x: "
                  f"{'met' if ratio <= TARGET else 'missed'}); judge p50 {m['ivgr/judge/latency_p50'] * 1000:.0f} ms, "
                  f"p95 {m['ivgr/judge/latency_p95'] * 1000:.0f} ms; {load()}")


if __name__ == "__main__":
    main()
