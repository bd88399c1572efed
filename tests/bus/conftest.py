"""Fixtures for the bus tests: the real Redis on 127.0.0.1:6379, and a controllable clock.

Each test gets its own key prefix (deleted afterwards), so tests never see each other's streams.
When Redis is unreachable the Redis tests are skipped with the reason, except under CI=true,
where they fail: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from bus_helpers import FakeClock

from aios.bus import Bus, BusSettings, open_bus

REDIS_URL = os.environ.get("AIOS_TEST_REDIS", "redis://127.0.0.1:6379/15")


def redis_available(url: str = REDIS_URL) -> str | None:
    """None when Redis answers PING, else why not."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@pytest.fixture
def redis_url() -> str:
    problem = redis_available()
    if problem is not None:
        message = f"Redis at {REDIS_URL} is unreachable ({problem})"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{message}; CI must run the Redis tests (start redis-server)")
        pytest.skip(f"{message}; start redis-server to run the bus tests")
    return REDIS_URL


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefix() -> str:
    return f"aios-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_bus(redis_url: str, prefix: str, clock: FakeClock) -> Iterator[Bus]:
    bus = open_bus(redis_url, BusSettings(prefix=prefix), clock=clock, sleep=clock.sleep)
    yield bus
    bus.clear()
    bus.close()


@pytest.fixture(params=["memory", "redis"])
def bus(request: Any, prefix: str, clock: FakeClock) -> Iterator[Bus]:
    """Both implementations: every promise is tested on each."""
    if request.param == "memory":
        yield open_bus("memory://", BusSettings(prefix=prefix), clock=clock)
        return
    url = request.getfixturevalue("redis_url")
    made = open_bus(url, BusSettings(prefix=prefix), clock=clock, sleep=clock.sleep)
    yield made
    made.clear()
    made.close()
