"""The exchange circuit breaker, on a fake clock: every transition at its exact boundary."""

from __future__ import annotations

import pytest

from aios.exchange.breaker import BreakerState, CircuitBreaker, CircuitOpen


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read through a call, so that mypy does not narrow the property between two reads."""
    return breaker.state


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(
    threshold: int = 3, cooldown: float = 60.0, window: int = 20
) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(threshold, cooldown, clock, window=window), clock


def fail(b: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        b.allow()
        b.record_failure()


def test_starts_closed_and_allows() -> None:
    b, _ = breaker()
    assert state(b) is BreakerState.CLOSED
    b.allow()
    b.record_success()
    assert b.metrics() == {"circuit_breaker_open": 0.0, "exchange_error_rate": 0.0}


def test_opens_exactly_at_the_threshold() -> None:
    b, _ = breaker(threshold=3)
    fail(b, 2)
    assert state(b) is BreakerState.CLOSED  # one short of the threshold
    b.allow()
    b.record_failure()
    assert state(b) is BreakerState.OPEN
    with pytest.raises(CircuitOpen, match="3 consecutive failures"):
        b.allow()


def test_a_success_resets_the_streak() -> None:
    b, _ = breaker(threshold=3)
    fail(b, 2)
    b.allow()
    b.record_success()
    fail(b, 2)
    assert state(b) is BreakerState.CLOSED
    assert b.consecutive_failures == 2


def test_threshold_of_one_opens_on_the_first_failure() -> None:
    b, _ = breaker(threshold=1)
    fail(b, 1)
    assert state(b) is BreakerState.OPEN


def test_refuses_until_the_cooldown_has_passed_then_half_open() -> None:
    b, clock = breaker(threshold=1, cooldown=60.0)
    fail(b, 1)
    clock.now += 59.999
    assert state(b) is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as refused:
        b.allow()
    assert refused.value.retry_in_s == pytest.approx(0.001)
    clock.now += 0.001  # exactly cooldown_s after opening
    assert state(b) is BreakerState.HALF_OPEN
    b.allow()  # the trial call


def test_half_open_lets_only_one_trial_through() -> None:
    b, clock = breaker(threshold=1, cooldown=10.0)
    fail(b, 1)
    clock.now += 10.0
    b.allow()
    with pytest.raises(CircuitOpen, match="trial"):
        b.allow()


def test_successful_trial_closes() -> None:
    b, clock = breaker(threshold=2, cooldown=10.0)
    fail(b, 2)
    clock.now += 10.0
    b.allow()
    b.record_success()
    assert state(b) is BreakerState.CLOSED
    assert b.consecutive_failures == 0
    fail(b, 1)  # the streak starts over: one failure does not reopen it
    assert state(b) is BreakerState.CLOSED


def test_failed_trial_reopens_and_the_cooloff_restarts() -> None:
    b, clock = breaker(threshold=2, cooldown=10.0)
    fail(b, 2)
    clock.now += 25.0  # well past the first cool-off
    b.allow()
    b.record_failure()
    assert state(b) is BreakerState.OPEN
    clock.now += 9.999  # measured from the failed trial, not from the first opening
    with pytest.raises(CircuitOpen):
        b.allow()
    clock.now += 0.001
    assert state(b) is BreakerState.HALF_OPEN
    b.allow()
    b.record_success()
    assert state(b) is BreakerState.CLOSED


def test_open_metric_is_one_until_a_trial_succeeds() -> None:
    b, clock = breaker(threshold=1, cooldown=10.0)
    fail(b, 1)
    assert b.metrics()["circuit_breaker_open"] == 1.0
    clock.now += 10.0
    assert state(b) is BreakerState.HALF_OPEN
    assert b.metrics()["circuit_breaker_open"] == 1.0  # time alone proves nothing
    b.allow()
    b.record_success()
    assert b.metrics()["circuit_breaker_open"] == 0.0


def test_error_rate_over_the_last_window_calls() -> None:
    b, _ = breaker(threshold=100, window=4)
    fail(b, 1)
    assert b.error_rate == 1.0
    for _ in range(3):
        b.allow()
        b.record_success()
    assert b.error_rate == 0.25
    b.allow()
    b.record_success()  # the failure leaves the window
    assert b.metrics()["exchange_error_rate"] == 0.0


def test_refused_calls_do_not_count_as_calls() -> None:
    b, _ = breaker(threshold=1, window=4)
    fail(b, 1)
    for _ in range(5):
        with pytest.raises(CircuitOpen):
            b.allow()
    assert b.error_rate == 1.0


@pytest.mark.parametrize(
    ("threshold", "cooldown", "window"), [(0, 1.0, 1), (1, 0.0, 1), (1, -1.0, 1), (1, 1.0, 0)]
)
def test_rejects_nonsense_settings(threshold: int, cooldown: float, window: int) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, cooldown, FakeClock(), window=window)
