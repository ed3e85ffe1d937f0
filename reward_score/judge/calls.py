"""The judge calls of the reward: answer equivalence (accuracy) and reasoning consistency."""

from __future__ import annotations

import dataclasses

from .client import JudgeClient
from .outcomes import JudgeResult
from .prompts import answer_equivalence_messages, consistency_messages, parse_consistency, parse_equivalence


async def judge_answer(client: JudgeClient, question: str, ground_truth: str, prediction: str) -> JudgeResult[bool]:
    """Accuracy judge: value True/False (same answer or not), None on failure. Always one sample."""
    return await client.complete(answer_equivalence_messages(question, ground_truth, prediction), parse_equivalence)


async def judge_consistency(client: JudgeClient, question: str, reference: str, target: str) -> JudgeResult[float]:
    """Consistency judge: value in [0, 1] = mean of the parsed rubric scores over ``config.samples``."""
    n = client.config.samples
    result = await client.complete(consistency_messages(question, reference, target), parse_consistency, n=n)
    if n > 1 and result.value is not None:
        result = dataclasses.replace(result, value=sum(result.value) / len(result.value))
    return result
