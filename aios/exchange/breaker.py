"""A circuit breaker for exchange calls: stop hammering a venue that keeps failing.

After `failure_threshold` consecutive failures the breaker opens and refuses calls (raising
`CircuitOpen`) without touching the venue. Once `cooldown_s` has passed it is half-open: one
trial call goes through; its success closes the breaker, its failure opens it again for a
fresh cool-off. Time comes from an injected clock (monotonic seconds), so tests need no sleeps.

It also keeps the outcome of the last `window` calls, for self-healing's metrics:
`exchange_error_rate` (share of failures among them) and `circuit_breaker_open`.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from enum import StrEnum

logger = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class CircuitOpen(Exception):
    """A call refused by the breaker: it was never sent to the venue."""

    def __init__(self, message: str, retry_in_s: float) -> None:
        super().__init__(message)
        self.retry_in_s = retry_in_s


class CircuitBreaker:
    """CLOSED -> OPEN after consecutive failures; OPEN -> HALF_OPEN after the cool-off.

    Usage: `allow()` before a call (raises `CircuitOpen` when refused), then exactly one of
    `record_success()` / `record_failure()` with the call's outcome. Thread-safe: a venue may be
    called from several threads, and only one of them may hold the half-open trial.
    """

    def __init__(
        self,
        failure_threshold: int,
        cooldown_s: float,
        clock: Callable[[], float],
        *,
        window: int = 20,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not cooldown_s > 0:
            raise ValueError(f"cooldown_s must be > 0, got {cooldown_s}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.failure_threshold = int(failure_threshold)
        self.cooldown_s = float(cooldown_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._outcomes: deque[bool] = deque(maxlen=window)  # True = failure

    # --- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now: an OPEN breaker whose cool-off has passed reads HALF_OPEN."""
        with self._lock:
            return self._current()

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def _current(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            self._state = BreakerState.HALF_OPEN
            self._trial_in_flight = False
        return self._state

    def _remaining(self) -> float:
        return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    # --- the call protocol ---------------------------------------------------------------------

    def allow(self) -> None:
        """Let a call through, or raise `CircuitOpen` (OPEN, or a half-open trial under way)."""
        with self._lock:
            state = self._current()
            if state is BreakerState.CLOSED:
                return
            if state is BreakerState.HALF_OPEN and not self._trial_in_flight:
                self._trial_in_flight = True
                return
            if state is BreakerState.HALF_OPEN:
                raise CircuitOpen("circuit half-open: a trial call is under way", 0.0)
            remaining = self._remaining()
            raise CircuitOpen(
                f"circuit open after {self._consecutive_failures} consecutive failures; "
                f"next trial in {remaining:.3g} s",
                remaining,
            )

    def record_success(self) -> None:
        """A call completed: the failure streak ends; a successful trial closes the breaker."""
        with self._lock:
            self._outcomes.append(False)
            self._consecutive_failures = 0
            if self._state is not BreakerState.CLOSED:
                logger.info("circuit breaker closed: trial call succeeded")
            self._state = BreakerState.CLOSED
            self._trial_in_flight = False

    def record_failure(self) -> None:
        """A call failed: open at the threshold, or again at once after a failed trial."""
        with self._lock:
            self._outcomes.append(True)
            self._consecutive_failures += 1
            state = self._current()
            if state is BreakerState.HALF_OPEN or (
                state is BreakerState.CLOSED
                and self._consecutive_failures >= self.failure_threshold
            ):
                self._state = BreakerState.OPEN
                self._opened_at = self._clock()
                self._trial_in_flight = False
                logger.warning(
                    "circuit breaker open after %d consecutive failure(s); cool-off %g s",
                    self._consecutive_failures,
                    self.cooldown_s,
                )

    # --- metrics -------------------------------------------------------------------------------

    @property
    def error_rate(self) -> float:
        """Share of failures among the last `window` calls (refused calls are not calls)."""
        with self._lock:
            if not self._outcomes:
                return 0.0
            return sum(self._outcomes) / len(self._outcomes)

    def metrics(self) -> dict[str, float]:
        """What self-healing reads. `circuit_breaker_open` stays 1 while half-open: the venue is
        not known to be healthy until a trial succeeds, so time passing alone must not clear it."""
        open_ = self.state is not BreakerState.CLOSED
        return {
            "circuit_breaker_open": 1.0 if open_ else 0.0,
            "exchange_error_rate": self.error_rate,
        }

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state.value}, failures={self._consecutive_failures}/"
            f"{self.failure_threshold}, cooldown_s={self.cooldown_s:g})"
        )
