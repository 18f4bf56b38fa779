"""Keeping retries from multiplying load on an overloaded model service: a retry budget, and the
model service's own Retry-After.

A retry budget (as in gRPC's retry throttling and Finagle's RetryBudget): every call deposits `ratio`
of a token, every retry withdraws a whole one, and the bucket holds at most `burst` tokens. Over any
stretch of time, retries are then at most `ratio` of the calls made plus `burst`; when most calls
fail (the service is overloaded or down), retries stop at once instead of doubling the load.
"""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime


class RetryBudget:
    """Not thread-safe: one per event loop (the ModelClient's)."""

    def __init__(self, *, ratio: float, burst: int) -> None:
        if not 0 <= ratio <= 1 or burst < 0:
            raise ValueError("ratio must be in [0, 1] and burst >= 0")
        self.ratio = ratio
        self.burst = float(burst)
        self._tokens = float(burst)

    @property
    def tokens(self) -> float:
        return self._tokens

    def record_call(self) -> None:
        """A first attempt was made: it earns `ratio` of a retry."""
        self._tokens = min(self.burst, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        """Whether one retry may be made now (and, if so, pay for it)."""
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After (RFC 9110: delay-seconds or an HTTP-date) as seconds from now; None when absent or
    unreadable. Never negative."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = moment.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else None
