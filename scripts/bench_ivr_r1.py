"""Added wall time of IVR-R1 rectification per rollout phase vs the screened share, for policy and
teacher continuations.

Runs the real `ivr_r1_agent` loop (built through verl's agent-loop registry) for G groups x n sessions
concurrently against a scripted policy server (sleeps stand in for vLLM generation: originals
uniform in [gen_lo, gen_hi] s, policy continuations uniform in [cont_lo, cont_hi] s) and a real
loopback HTTP server (tests/judge_server.py) that attributes after 200 ms and, for
`continuation=teacher`, writes the teacher's continuation after uniform [teacher_lo, teacher_hi] s
(default: the policy continuation's latency, so the difference is the teacher path's own overhead:
HTTP, data-URL images, tokenizing the reply). The screened share is set by the fraction of rollouts
scripted wrong (qualify=all, no cap). Baseline: the same run with ivr_r1.enable=false.

    .venv-test/bin/python scripts/bench_ivr_r1.py [--groups 16] [--n 8] [--continuations policy,teacher]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import hydra  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from judge_server import FakeJudgeServer, ok  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap, _agent_loop_registry  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset  # noqa: E402
from verl.workers.rollout.replica import TokenOutput  # noqa: E402

from data_prep.offline_processor import build_tokenizer  # noqa: E402
from recipe.ivr_r1.attribution import ATTRIBUTOR_SYSTEM  # noqa: E402
from recipe.ivr_r1.main import AGENT_LOOP_CONFIG  # noqa: E402

CONFIG_DIR = os.path.join(HERE, "..", "recipe", "ivr_r1", "config")
CUE = " Look again. "
WRONG = "<think>There is a cup ({tag}).\n\nI see 2 cups.\n\nSo 2.</think><answer>2</answer>"  # unique per rollout
RIGHT = "<think>There is a cup.\n\nI see 3 cups.</think><answer>3</answer>"
CONT = "I see 3 cups.</think><answer>3</answer>"


class Server:
    def __init__(self, tok, wrong: set[tuple[int, int]], args, rng):
        self.tok, self.wrong, self.args, self.rng = tok, wrong, args, rng

    async def generate(self, request_id, prompt_ids, sampling_params, image_data=None, **kw):
        text = self.tok.decode(prompt_ids, skip_special_tokens=True)
        a = self.args
        if text.endswith(CUE):
            await asyncio.sleep(self.rng.uniform(a.cont_lo, a.cont_hi))
            reply = CONT
        else:
            g, s = map(int, re.search(r"\(g(\d+)s(\d+)\)", text).groups())
            await asyncio.sleep(self.rng.uniform(a.gen_lo, a.gen_hi))
            reply = WRONG.format(tag=f"{g}-{s}") if (g, s) in self.wrong else RIGHT
        return TokenOutput(token_ids=self.tok.encode(reply + "<|im_end|>", add_special_tokens=False))


def one_run(args, tok, url, share, enable, seed, continuation="policy"):
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        config = compose(config_name="ivr_r1_trainer", overrides=[
            "actor_rollout_ref.model.path=/nonexistent", f"actor_rollout_ref.rollout.n={args.n}",
            "actor_rollout_ref.rollout.response_length=400", f"ivr_r1.enable={str(enable).lower()}",
            f"ivr_r1.attributor.judge.base_url={url}", "+ivr_r1.attributor.judge.cache_size=0",
            "ivr_r1.screening.cap_per_group=0", f"ivr_r1.rereason.cue='{CUE}'",
            f"ivr_r1.rereason.continuation={continuation}", f"ivr_r1.rereason.teacher.base_url={url}",
            "+ivr_r1.rereason.teacher.cache_size=0",
            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_CONFIG}"])
    for entry in OmegaConf.load(AGENT_LOOP_CONFIG):
        _agent_loop_registry[entry.name] = entry
    rng = random.Random(seed)
    cells = [(g, s) for g in range(args.groups) for s in range(args.n)]
    wrong = set(rng.sample(cells, round(share * len(cells))))
    server = Server(tok, wrong, args, random.Random(seed + 1))

    def loop():
        return hydra.utils.instantiate(
            config=_agent_loop_registry["ivr_r1_agent"], trainer_config=DictConfigWrap(config=config),
            server_manager=server, tokenizer=tok, processor=None, hf_model_type=None, dataset_cls=RLHFDataset,
            data_config=DictConfigWrap(config.data), tools=ToolListWrap([]))

    async def go():
        tasks = []
        for g, s in cells:
            kwargs = {"raw_prompt": [{"role": "user", "content": f"How many cups? (g{g}s{s})"}], "uid": f"u{seed}x{g}",
                      "session_id": s, "reward_model": {"ground_truth": "3"},
                      "extra_info": {"question": "How many cups?", "answer_type": "number"}}
            tasks.append(loop().run({"temperature": 1.0}, **kwargs))
        t0 = time.perf_counter()
        outs = await asyncio.gather(*tasks)
        return time.perf_counter() - t0, outs

    from recipe.ivr_r1.agent_loop import IVRR1AgentLoop

    async def go_and_close():
        try:
            return await go()
        finally:
            for client in IVRR1AgentLoop._clients.values():
                await client.aclose()
            IVRR1AgentLoop._clients.clear()

    seconds, outs = asyncio.run(go_and_close())
    # join mode (the default): a rectified session returns [demonstration, flawed rollout]
    infos = [(o[-1] if isinstance(o, list) else o).extra_fields.get("ivr_r1", {}) for o in outs]
    rectified = sum(1 for i in infos if i.get("status") == "rectified")
    return seconds, rectified


def main():
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser()
    p.add_argument("--groups", type=int, default=16)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--gen-lo", type=float, default=1.0)
    p.add_argument("--gen-hi", type=float, default=3.0)
    p.add_argument("--cont-lo", type=float, default=0.5)
    p.add_argument("--cont-hi", type=float, default=1.5)
    p.add_argument("--teacher-lo", type=float, default=None, help="default: --cont-lo")
    p.add_argument("--teacher-hi", type=float, default=None, help="default: --cont-hi")
    p.add_argument("--attributor-ms", type=float, default=200)
    p.add_argument("--shares", default="0,0.125,0.25,0.5,0.75,1.0")
    p.add_argument("--continuations", default="policy,teacher")
    args = p.parse_args()
    teacher_lo = args.cont_lo if args.teacher_lo is None else args.teacher_lo
    teacher_hi = args.cont_hi if args.teacher_hi is None else args.teacher_hi
    tok = build_tokenizer()
    server = FakeJudgeServer().start()
    latency = random.Random(7)
    attribution = ok(json.dumps({"step": 2, "reason": "count again"}), delay_s=args.attributor_ms / 1000)
    counts = {"attribution": 0, "teacher": 0}

    def respond(body):  # runs in the server's thread
        if body["messages"][0]["content"] == ATTRIBUTOR_SYSTEM:
            counts["attribution"] += 1
            return attribution
        counts["teacher"] += 1
        return ok(CONT, delay_s=latency.uniform(teacher_lo, teacher_hi))

    server.responder = respond
    print(f"groups={args.groups} n={args.n} rollouts={args.groups * args.n} original gen U[{args.gen_lo},{args.gen_hi}]s "
          f"policy continuation U[{args.cont_lo},{args.cont_hi}]s teacher continuation U[{teacher_lo},{teacher_hi}]s "
          f"(loopback HTTP) attributor {args.attributor_ms:.0f} ms (loopback HTTP)")
    print(f"{'continuation':>12} {'share':>6} {'baseline_s':>10} {'ivr_r1_s':>9} {'added_s':>8} {'ratio':>6} "
          f"{'rectified':>9} {'attr_calls':>10} {'teacher_calls':>13}")
    try:
        for i, share in enumerate(float(x) for x in args.shares.split(",")):
            base, _ = one_run(args, tok, server.url, share, False, seed=100 + i)
            for continuation in args.continuations.split(","):
                before = dict(counts)
                ivr, rect = one_run(args, tok, server.url, share, True, seed=100 + i, continuation=continuation)
                print(f"{continuation:>12} {share:6.3f} {base:10.2f} {ivr:9.2f} {ivr - base:8.2f} {ivr / base:6.2f} "
                      f"{rect:9d} {counts['attribution'] - before['attribution']:10d} "
                      f"{counts['teacher'] - before['teacher']:13d}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
