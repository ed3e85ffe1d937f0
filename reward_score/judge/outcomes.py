"""Judge call outcomes (`JudgeOutcome`, one enum with stable numeric codes) and a call's result."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


class JudgeOutcome(str, enum.Enum):
    """How a judge call ended: the one definition of the outcome names and of their numeric codes.

    Members are strings (`JudgeOutcome.OK == "ok"`), so metrics names and log lines use them as they
    are; `code` is the number a rollout's `reward_extra_info["acc_judge"]` carries (verl keeps only numbers
    there; 0 = no judge call) and `from_code` reads it back."""

    OK = "ok"  # reply received and parsed
    CACHED = "cached"  # value served from the response cache or from an identical in-flight call
    TIMEOUT = "timeout"  # last attempt got no complete reply within timeout_s
    CONNECTION_ERROR = "connection_error"  # last attempt could not connect / connection broke
    HTTP_ERROR = "http_error"  # non-retryable HTTP status (4xx other than 429); no retry
    SERVER_ERROR = "server_error"  # 5xx or 429 on the last attempt
    BAD_REPLY = "bad_reply"  # 2xx but body not JSON / no choices / no choice parsed / over the size cap
    CANCELLED = "cancelled"  # the caller cancelled the call (step deadline, circuit breaker)
    DISABLED = "disabled"  # judge not configured (base_url is None); no network

    def __str__(self) -> str:
        return self.value

    @property
    def code(self) -> int:
        """1-based position in declaration order (stable: new outcomes are appended)."""
        return list(JudgeOutcome).index(self) + 1

    @classmethod
    def from_code(cls, code: float | int | None) -> JudgeOutcome | None:
        """The outcome of a numeric code, None for 0 (no call) or an unknown code."""
        members = list(cls)
        index = int(code or 0) - 1
        return members[index] if 0 <= index < len(members) else None


OUTCOME_OK = JudgeOutcome.OK
OUTCOME_CACHED = JudgeOutcome.CACHED
OUTCOME_TIMEOUT = JudgeOutcome.TIMEOUT
OUTCOME_CONNECTION_ERROR = JudgeOutcome.CONNECTION_ERROR
OUTCOME_HTTP_ERROR = JudgeOutcome.HTTP_ERROR
OUTCOME_SERVER_ERROR = JudgeOutcome.SERVER_ERROR
OUTCOME_BAD_REPLY = JudgeOutcome.BAD_REPLY
OUTCOME_CANCELLED = JudgeOutcome.CANCELLED
OUTCOME_DISABLED = JudgeOutcome.DISABLED
SUCCESS_OUTCOMES = (OUTCOME_OK, OUTCOME_CACHED)
FAILURE_OUTCOMES = (
    OUTCOME_TIMEOUT,
    OUTCOME_CONNECTION_ERROR,
    OUTCOME_HTTP_ERROR,
    OUTCOME_SERVER_ERROR,
    OUTCOME_BAD_REPLY,
    OUTCOME_CANCELLED,
)
OUTCOMES = tuple(JudgeOutcome)
# numeric code of each outcome in per-rollout reward_extra_info (`acc_judge`); 0 = no judge call
OUTCOME_CODES = {outcome: outcome.code for outcome in JudgeOutcome}


@dataclass(frozen=True)
class JudgeResult(Generic[T]):
    """Outcome of one logical judge call. ``value`` is None unless ``outcome`` is ok/cached.

    ``attempts`` = HTTP requests this call sent (0 when cached or disabled); ``latency_s`` = wall time
    of the call in seconds, retries and backoff included; ``raw`` = last reply text (may be cut).
    """

    value: T | None
    outcome: str
    attempts: int
    latency_s: float
    raw: str | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in SUCCESS_OUTCOMES
