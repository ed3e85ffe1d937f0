"""LLM judge: async OpenAI-compatible client plus our accuracy and consistency prompts.

Light to import (no torch/transformers; aiohttp is imported on the first network call).
"""

from .calls import judge_answer, judge_consistency
from .client import JudgeClient
from .config import JudgeConfig, backoff_delay
from .outcomes import (
    FAILURE_OUTCOMES,
    OUTCOME_BAD_REPLY,
    OUTCOME_CACHED,
    OUTCOME_CANCELLED,
    OUTCOME_CODES,
    OUTCOME_CONNECTION_ERROR,
    OUTCOME_DISABLED,
    OUTCOME_HTTP_ERROR,
    OUTCOME_OK,
    OUTCOME_SERVER_ERROR,
    OUTCOME_TIMEOUT,
    OUTCOMES,
    SUCCESS_OUTCOMES,
    JudgeOutcome,
    JudgeResult,
)
from .prompts import (
    RUBRIC,
    answer_equivalence_messages,
    consistency_messages,
    parse_consistency,
    parse_equivalence,
)

__all__ = [
    "FAILURE_OUTCOMES",
    "OUTCOME_BAD_REPLY",
    "OUTCOME_CACHED",
    "OUTCOME_CANCELLED",
    "OUTCOME_CODES",
    "OUTCOME_CONNECTION_ERROR",
    "OUTCOME_DISABLED",
    "OUTCOME_HTTP_ERROR",
    "OUTCOME_OK",
    "OUTCOME_SERVER_ERROR",
    "OUTCOME_TIMEOUT",
    "OUTCOMES",
    "RUBRIC",
    "SUCCESS_OUTCOMES",
    "JudgeClient",
    "JudgeConfig",
    "JudgeOutcome",
    "JudgeResult",
    "answer_equivalence_messages",
    "backoff_delay",
    "consistency_messages",
    "judge_answer",
    "judge_consistency",
    "parse_consistency",
    "parse_equivalence",
]
