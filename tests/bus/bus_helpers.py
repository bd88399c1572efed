"""Helpers shared by the bus tests."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aios.bus import Bus


class FakeClock:
    """Seconds since an epoch, moved only by the test."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def with_settings(bus: Bus, **changes: Any) -> Bus:
    """The same bus with other settings (the same connection and data)."""
    bus.settings = replace(bus.settings, **changes)
    return bus
