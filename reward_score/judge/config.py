"""`JudgeConfig`: the judge endpoint and its call policy (timeouts, retries, backoff, decoding, cache)."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass
class JudgeConfig:
    """Judge endpoint and call policy. The API key itself is never stored, only the env var's name.

    Times are in seconds. ``max_retries`` counts extra attempts after the first one. ``samples`` > 1
    asks for that many choices in one request (``n``) and averages them (consistency judge); it needs
    ``temperature`` > 0 to give different samples.
    """

    base_url: str | None = None  # OpenAI-compatible root, e.g. "http://127.0.0.1:8000/v1"; None = disabled
    model: str = "judge"
    api_key_env: str = "JUDGE_API_KEY"
    max_concurrency: int = 64
    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_s: float = 0.5
    backoff_max_s: float = 8.0
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    samples: int = 1
    seed: int | None = 0
    cache_size: int = 100_000
    max_reply_bytes: int = 1_000_000  # a longer reply body is not read further: bad_reply

    def __post_init__(self) -> None:
        if self.base_url is not None:
            self.base_url = str(self.base_url).strip().rstrip("/") or None
        checks = {
            "max_concurrency >= 1": self.max_concurrency >= 1,
            "timeout_s > 0": self.timeout_s > 0,
            "max_retries >= 0": self.max_retries >= 0,
            "backoff_s >= 0": self.backoff_s >= 0,
            "backoff_max_s >= 0": self.backoff_max_s >= 0,
            "temperature >= 0": self.temperature >= 0,
            "0 < top_p <= 1": 0 < self.top_p <= 1,
            "max_tokens >= 1": self.max_tokens >= 1,
            "samples >= 1": self.samples >= 1,
            "cache_size >= 0": self.cache_size >= 0,
            "max_reply_bytes >= 1": self.max_reply_bytes >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid JudgeConfig: need {', '.join(bad)}")

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | None) -> JudgeConfig:
        """Build from a dict or an omegaconf DictConfig; unknown keys raise ValueError naming them."""
        data = dict(m.items()) if m is not None else {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in known)
        if unknown:
            raise ValueError(f"unknown judge config keys: {unknown}; known: {sorted(known)}")
        return cls(**data)

    @property
    def enabled(self) -> bool:
        return self.base_url is not None


def backoff_delay(retry: int, base_s: float, cap_s: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``retry`` (1-based): uniform in [d/2, d], d = min(cap, base*2^(retry-1))."""
    d = min(cap_s, base_s * 2.0 ** min(max(retry - 1, 0), 60))
    return d * (0.5 + 0.5 * rand())
