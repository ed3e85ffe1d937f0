"""The distillation's judge requests: k rewrites per selected sample, at most `concurrency` in flight,
every answered sample appended to a journal so that a re-run asks only for the samples it lacks."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm

from recipe.ivgr.distill.references import Candidate
from recipe.ivgr.distill.rewrite import parse_rewrite, rewrite_messages
from reward_score.families import DEFAULT_FAMILY


def read_journal(path: Path) -> dict[str, list[str]]:
    """sample_id -> raw judge choices, from a previous run's journal (torn last line ignored)."""
    done: dict[str, list[str]] = {}
    if not path.is_file():
        return done
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                entry = json.loads(line)
                done[str(entry["sample_id"])] = [str(c) for c in entry["choices"]]
            except (ValueError, KeyError, TypeError):
                continue
    return done


async def ask_judge(candidates: Sequence[Candidate], records: dict[str, dict], client, k: int, concurrency: int,
                    journal: Path, quiet: bool, frame: str = DEFAULT_FAMILY) -> Counter:
    """Ask for k rewrites of every candidate (at most `concurrency` in flight); append answers to `journal`."""
    from reward_score.frames import get_frame, resized_size
    from reward_score.judge.client import SUCCESS_OUTCOMES

    failures: Counter = Counter()
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(candidates), unit="sample", disable=quiet, desc="judge rewrites", mininterval=1.0)
    with open(journal, "a", encoding="utf-8") as handle:

        async def one(candidate: Candidate) -> None:
            record = records[candidate.sample_id]
            size = resized_size(*record["image_size"], frame, *(candidate.bounds or (None, None))) \
                if not get_frame(frame).relative else None
            answer = candidate.answer or record["answer"]
            messages = rewrite_messages(record["question"], candidate.think, answer, frame, size)
            async with gate:
                result = await client.complete(messages, parse_rewrite, n=k)
            if result.outcome in SUCCESS_OUTCOMES and result.value:
                # the client gives one parsed value for n == 1 and a list for n > 1
                choices = result.value if isinstance(result.value, list) else [result.value]
                handle.write(json.dumps({"sample_id": candidate.sample_id, "choices": choices},
                                        ensure_ascii=False) + "\n")
                handle.flush()
            else:
                failures[result.outcome] += 1
                record["judge_failure"] = result.outcome
            bar.update(1)

        try:
            await asyncio.gather(*(one(c) for c in candidates))
        finally:
            bar.close()
            await client.aclose()
    return failures
