"""Benchmark of the iVGR step stage against a judge with injected latency. Prints figures; asserts nothing.

    python scripts/bench_step_stage.py [--textual 1280] [--latency 0.2] [--concurrency 128]

A step of 256 samples x n=5: 1,280 grounded and 1,280 textual rollouts (~1,500-character reasoning).
Times what the trainer does between reading the rollouts and writing rewards back: building stage
records from the rows, reference selection and archive update, the consistency judge calls, the
bonus written into jagged `rm_scores`. Target: within 1.25 x ceil(judge calls / concurrency) x latency,
plus under 1 s of our own overhead (reported separately: the stage with a zero-latency judge).
"""

from __future__ import annotations

import argparse
import math
import random
import time

import torch
from fake_judge import fake_judge

from recipe.ivgr.archive import RolloutArchive
from recipe.ivgr.stage import ConsistencySettings, ConsistencyStage
from recipe.ivgr.trainer import add_bonus, records_from_rows
from reward_score.background import BackgroundLoop
from reward_score.judge import JudgeClient, JudgeConfig

THINK = ("I look at the left part of the image, where a small object sits next to the window; its colour "
         "and outline match the description in the question. ") * 10


def make_rows(num_textual: int, n: int, step: int, seed: int = 0):
    """TransferQueue-shaped rows: dataset extra_info and the reward's reward_extra_info."""
    rng = random.Random(seed)
    infos, fields = [], []
    for sample in range(num_textual // n):
        sid = f"bench:{sample}"
        for stream in ("grounded", "textual"):
            for k in range(n):
                acc = float(rng.random() < 0.6)
                reward = {"score": 1 + acc, "format": 1.0, "acc": acc, "acc_undecided": 0.0,
                          "think": f"step {step} sample {sample} rollout {k}: {THINK}"}
                if stream == "grounded":
                    iou = rng.random()
                    reward.update(iou=iou, box_valid=1.0, num_boxes=2.0, score=2 + iou + acc)
                infos.append({"sample_id": sid, "stream": stream, "question": f"What is left of the window? ({sid})"})
                fields.append({"reward_extra_info": reward})
    return infos, fields


def run_stage(stage: ConsistencyStage, loop: BackgroundLoop, infos, fields, step: int) -> tuple[float, int]:
    rm_scores = torch.nested.as_nested_tensor([torch.zeros(400) for _ in infos], layout=torch.jagged)
    start = time.perf_counter()
    records = records_from_rows(infos, fields)
    out = loop.run(stage.run(records, step))
    add_bonus(rm_scores, out.bonus)
    wall = time.perf_counter() - start
    return wall, int(out.metrics.get("ivgr/judge/calls", 0) - out.metrics.get("ivgr/judge/cache_hits", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--textual", type=int, default=1280, help="textual rollouts per step")
    parser.add_argument("--n", type=int, default=5, help="rollouts per row")
    parser.add_argument("--latency", type=float, default=0.2, help="judge latency, seconds")
    parser.add_argument("--concurrency", type=int, default=128)
    args = parser.parse_args()

    loop = BackgroundLoop()
    results = {}
    for latency in (0.0, args.latency):
        with fake_judge(latency, "Comparison done. Score: 0.7") as url:
            judge = JudgeClient(JudgeConfig(base_url=url, max_concurrency=args.concurrency,
                                            timeout_s=30, max_retries=1))
            stage = ConsistencyStage(ConsistencySettings(), RolloutArchive(), judge)
            # step 1 opens the connection pool; step 2 (new reasoning texts, nothing cached) is steady state
            for step in (1, 2):
                infos, fields = make_rows(args.textual, args.n, step)
                results[(latency, step)] = run_stage(stage, loop, infos, fields, step)
            loop.run(judge.aclose())

    overhead, _ = results[(0.0, 2)]
    print(f"step: {args.textual} textual + {args.textual} grounded rollouts, judge concurrency {args.concurrency}")
    print(f"our overhead (zero-latency judge, warm pool): {overhead:.3f} s (target < 1 s)")
    for step, label in ((1, "step 1, cold pool"), (2, "step 2, warm pool")):
        wall, calls = results[(args.latency, step)]
        bound = math.ceil(calls / args.concurrency) * args.latency
        print(f"{label}: {calls} judge calls at {args.latency * 1000:.0f} ms: stage {wall:.3f} s; bound "
              f"{bound:.3f} s ({wall / bound:.3f}x); target 1.25 x bound + our overhead = "
              f"{1.25 * bound + overhead:.3f} s ({'met' if wall <= 1.25 * bound + overhead else 'missed'})")


if __name__ == "__main__":
    main()
