"""The bus's health reaches self-healing: a policy can stop new trades when Redis is lost."""

from __future__ import annotations

from pathlib import Path

from bus_helpers import FakeClock
from distributed import decisions, gate, worker

from aios.bus import BusSettings
from aios.bus.memory import InProcessBus
from aios.model import HealthReport, HealthStatus

LIMIT = 300


class LostBus(InProcessBus):
    """An in-process bus that reports what a RedisBus reports when Redis is unreachable."""

    def health(self) -> HealthReport:
        return HealthReport("bus", HealthStatus.CRITICAL, "unreachable", {"bus_connected": 0.0})


def replay(bus: InProcessBus, state: Path, files: list[Path], clock: FakeClock) -> list[tuple]:  # type: ignore[type-arg]
    one = worker(bus, "w", clock, files)
    risk_gate = gate(bus, state, LIMIT, files)
    risk_gate.start()
    while not risk_gate.finished:
        one.poll(block_ms=0)
        risk_gate.pump(block_ms=0)
    risk_gate.finish()
    return decisions(state)


def test_a_lost_bus_raises_no_new_trades_through_the_policy(tmp_path: Path) -> None:
    from distributed import DEFAULT_POLICY

    extra = tmp_path / "bus-directive.yaml"
    extra.write_text(
        "version: 1\n"
        "directives:\n"
        "  NO_NEW_TRADES:\n"
        "    trigger: bus_connected < 1\n"
        "    clear_when: bus_connected >= 1\n"
        "    clear_after_s: 0\n"
    )
    files = [DEFAULT_POLICY, extra]
    clock = FakeClock()
    healthy = replay(InProcessBus(BusSettings(), clock=clock), tmp_path / "ok", files, clock)
    lost = replay(LostBus(BusSettings(), clock=clock), tmp_path / "lost", files, clock)

    def shadow_orders(rows: list[tuple]) -> int:  # type: ignore[type-arg]
        return sum(1 for r in rows if len(r) == 12 and r[3] == "entry" and "shadow order" in r[11])

    assert shadow_orders(healthy) > 0
    assert shadow_orders(lost) == 0
    assert any("NO_NEW_TRADES forbids new trades" in r[11] for r in lost if len(r) == 12)
