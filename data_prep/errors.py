"""The one error type that carries a reject reason: a short code (`reason`, counted in summaries and written to
rejects files) and a human detail. Images, boxes, records and benchmark rows each subclass it."""

from __future__ import annotations


class ReasonError(ValueError):
    """An input that cannot be used; `reason` is its short code, `detail` says what was found."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
