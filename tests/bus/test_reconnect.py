"""Reconnecting with backoff, on a controllable clock (no real waits), and the bus's health."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import redis
from bus_helpers import FakeClock

from aios.bus import BusSettings, BusUnavailable
from aios.bus.redis_bus import RedisBus
from aios.model import HealthStatus


class FlakyRedis:
    """A client whose first `failures` calls (over all clients made) fail to connect."""

    state: ClassVar[dict[str, int]] = {"failures": 0, "made": 0}

    def __init__(self) -> None:
        FlakyRedis.state["made"] += 1

    def ping(self) -> bool:
        if FlakyRedis.state["failures"] > 0:
            FlakyRedis.state["failures"] -= 1
            raise redis.ConnectionError("Connection refused")
        return True

    def xlen(self, key: str) -> int:
        self.ping()
        return 7

    def close(self) -> None:
        pass


def flaky_bus(failures: int, attempts: int = 20) -> tuple[RedisBus, FakeClock]:
    FlakyRedis.state = {"failures": failures, "made": 0}
    clock = FakeClock()
    settings = BusSettings(
        reconnect_initial_s=0.1, reconnect_max_s=1.0, reconnect_attempts=attempts
    )
    factory: Any = FlakyRedis
    return RedisBus(factory, settings, clock=clock, sleep=clock.sleep), clock


def test_reconnects_with_exponential_backoff_capped() -> None:
    bus, clock = flaky_bus(failures=6)
    assert bus.length("x") == 7
    assert clock.slept == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert bus.reconnects == 6
    assert FlakyRedis.state["made"] == 7  # a fresh connection after each failure


def test_gives_up_after_the_attempts_with_a_clear_error() -> None:
    bus, clock = flaky_bus(failures=100, attempts=3)
    with pytest.raises(BusUnavailable, match="unreachable after 3 reconnect attempt"):
        bus.length("x")
    assert len(clock.slept) == 3


def test_a_ping_with_no_attempts_fails_at_once_then_a_full_ping_waits() -> None:
    bus, clock = flaky_bus(failures=2, attempts=3)
    with pytest.raises(BusUnavailable) as first:
        bus.ping(attempts=0)
    assert clock.slept == [] and bus.reconnects == 0  # nothing waited, no reconnect counted
    assert (first.value.where, first.value.reason) == (
        "redis",
        "ConnectionError: Connection refused",
    )
    assert bus.ping()  # the second failure, one backoff, then connected
    assert clock.slept == [0.1] and bus.reconnects == 1


def test_health_is_critical_when_unreachable_degraded_once_after_a_reconnect() -> None:
    bus, _ = flaky_bus(failures=100, attempts=1)
    report = bus.health()
    assert report.status is HealthStatus.CRITICAL
    assert report.metrics["bus_connected"] == 0.0
    FlakyRedis.state["failures"] = 0
    assert bus.health().status is HealthStatus.DEGRADED  # reconnects happened since last check
    assert bus.health().status is HealthStatus.OK
