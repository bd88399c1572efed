"""Subsystems as services on the bus: signal workers, the risk gate, the RL agent, risk proposals.

Each service is a loop object with `poll()` (one round of work, returns how much it did) and a
`stop` event; `run_until_stopped` drives it until SIGTERM/SIGINT sets the event, so a service
stops between two rounds, never in the middle of an event (what it has taken and not committed
is simply redelivered). Clocks are injected: every interval, lease and idle time is tested on a
controllable clock.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Protocol


class Service(Protocol):
    stop: threading.Event

    def poll(self) -> int: ...

    def close(self) -> None: ...


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`; the loop finishes its round and exits cleanly."""

    def handler(signum: int, frame: object) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_until_stopped(service: Service, *, on_round: Callable[[int], None] | None = None) -> None:
    """Poll until the stop event is set, then close the service."""
    try:
        while not service.stop.is_set():
            done = service.poll()
            if on_round is not None:
                on_round(done)
    finally:
        service.close()
