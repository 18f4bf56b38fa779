"""The model client's circuit breaker (evaluation_api/model_client/breaker.py) on a clock the test
moves: opening after the threshold, failing fast with the time left, exactly one trial, and what a
trial's success, failure or cancellation does. Through the API it is tested in test_resilience.py
and test_overload.py."""

from __future__ import annotations

import pytest

from evaluation_api.model_client.breaker import CLOSED, HALF_OPENED, OPENED, CircuitBreaker, CircuitOpen


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(threshold=3, ttl_s=5.0, clock=clock)


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.failed(trial=breaker.admit())


def test_it_opens_after_threshold_consecutive_failures_only(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.succeeded(trial=breaker.admit())  # a success in between resets the count
    fail(breaker, 2)
    assert breaker.state == CLOSED
    fail(breaker, 1)
    assert breaker.state == OPENED


def test_while_open_calls_fail_at_once_with_the_time_left(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 2.0
    with pytest.raises(CircuitOpen) as raised:
        breaker.admit()
    assert raised.value.retry_after_s == pytest.approx(3.0)
    clock.now += 2.9
    with pytest.raises(CircuitOpen) as raised:
        breaker.admit()
    assert raised.value.retry_after_s == CircuitBreaker.MIN_RETRY_AFTER_S  # never "retry after 0 s"


def test_after_the_ttl_exactly_one_trial_goes_through(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 5.0
    assert breaker.state == HALF_OPENED
    assert breaker.admit() is True
    for _ in range(3):
        with pytest.raises(CircuitOpen) as raised:
            breaker.admit()
        assert raised.value.retry_after_s == CircuitBreaker.TRIAL_RETRY_AFTER_S


def test_a_successful_trial_closes_it(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 5.0
    breaker.succeeded(trial=breaker.admit())
    assert breaker.state == CLOSED
    assert breaker.admit() is False


def test_a_failed_trial_opens_it_for_another_ttl(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 5.0
    breaker.failed(trial=breaker.admit())
    assert breaker.state == OPENED
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        breaker.admit()
    clock.now += 0.1
    assert breaker.admit() is True


def test_a_cancelled_trial_lets_the_next_call_be_the_trial(breaker: CircuitBreaker, clock: Clock) -> None:
    fail(breaker, 3)
    clock.now += 5.0
    breaker.abandoned(trial=breaker.admit())
    assert breaker.admit() is True


def test_calls_let_through_before_it_opened_neither_close_nor_extend_it(breaker: CircuitBreaker, clock: Clock) -> None:
    early = [breaker.admit() for _ in range(5)]  # five calls in flight while it is closed
    for trial in early[:3]:
        breaker.failed(trial=trial)
    assert breaker.state == OPENED
    clock.now += 1.0
    breaker.succeeded(trial=early[3])  # a late success proves little: it stays open
    breaker.failed(trial=early[4])  # a late failure does not restart its TTL
    assert breaker.state == OPENED
    clock.now += 4.0
    assert breaker.state == HALF_OPENED


def test_it_refuses_a_threshold_or_ttl_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(threshold=0, ttl_s=5.0)
    with pytest.raises(ValueError, match="ttl_s"):
        CircuitBreaker(threshold=3, ttl_s=0)
