"""The model client's circuit breaker, owned outright.

purgatory (used before) lets every call through while half-open, so the client had to gate the
trial call itself, and its state (when the circuit opened, whether a trial is due) could be read only
through its private unit of work. The behaviour we want fits in this class:

- closed: calls go through; `threshold` consecutive failures open the circuit;
- opened: every call fails at once (CircuitOpen, with the seconds left as its Retry-After) until
  `ttl_s` has passed;
- half-opened: exactly one trial call goes through; the others fail at once while it is in flight.
  If it succeeds the circuit closes; if it fails the circuit opens for another TTL; if it is
  abandoned (cancelled) the next call becomes the trial.

One event loop uses it, with no await inside a method: no lock is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

CLOSED = "closed"
OPENED = "opened"
HALF_OPENED = "half-opened"


class CircuitOpen(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"circuit open: retry after {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s


class CircuitBreaker:
    # While a trial call is in flight, the others are told to come back after this long.
    TRIAL_RETRY_AFTER_S = 1.0
    # A circuit about to close is never advertised as "retry after 0 s".
    MIN_RETRY_AFTER_S = 0.5

    def __init__(self, *, threshold: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1 or ttl_s <= 0:
            raise ValueError("the breaker needs threshold >= 1 and ttl_s > 0")
        self.threshold = threshold
        self.ttl_s = ttl_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_in_flight = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._trial_in_flight or self._clock() >= self._opened_at + self.ttl_s:
            return HALF_OPENED
        return OPENED

    def admit(self) -> bool:
        """Let a call through, or raise CircuitOpen. True when the call is the trial: it must end in
        exactly one of succeeded, failed or abandoned with trial=True."""
        if self._opened_at is None:
            return False
        if self._trial_in_flight:
            raise CircuitOpen(self.TRIAL_RETRY_AFTER_S)
        left = self._opened_at + self.ttl_s - self._clock()
        if left > 0:
            raise CircuitOpen(max(self.MIN_RETRY_AFTER_S, left))
        self._trial_in_flight = True
        return True

    def succeeded(self, *, trial: bool) -> None:
        self._failures = 0
        if trial or self._opened_at is None:
            # A call let through before the circuit opened proves little: only the trial closes it.
            self._opened_at = None
            self._trial_in_flight = False

    def failed(self, *, trial: bool) -> None:
        if trial:
            self._open()
            return
        if self._opened_at is not None:
            return  # already open: a late failure of a call let through before does not extend it
        self._failures += 1
        if self._failures >= self.threshold:
            self._open()

    def abandoned(self, *, trial: bool) -> None:
        """The call was cancelled before it could tell: the next call is the trial."""
        if trial:
            self._trial_in_flight = False

    def _open(self) -> None:
        self._opened_at = self._clock()
        self._failures = 0
        self._trial_in_flight = False
