"""Workers and a risk gate on the in-process bus decide exactly what one process decides."""

from __future__ import annotations

from pathlib import Path

from bus_helpers import FakeClock
from distributed import decisions, gate, single_process, worker

from aios.bus import SIGNALS, BusSettings
from aios.bus.memory import InProcessBus

LIMIT = 400


def test_three_workers_and_a_gate_equal_one_process(tmp_path: Path) -> None:
    expected_report = single_process(tmp_path / "single", LIMIT)
    clock = FakeClock()
    bus = InProcessBus(BusSettings(prefix="t", replay_window=16), clock=clock)
    workers = [worker(bus, f"w{i}", clock) for i in range(3)]
    for each in workers:
        each.rebalance()
    for each in workers:  # every worker now sees three members: one symbol each
        each.rebalance()
    assert sorted(len(w.held) for w in workers) == [1, 1, 1]
    risk_gate = gate(bus, tmp_path / "multi", LIMIT)
    # a malformed report among the workers' ones: dead-lettered, the replay carries on
    bad = {"id": f"{risk_gate.replay_id}/signals/x", "type": "ai.signal_generated", "v": "1"}
    bus.publish_raw(SIGNALS, {**bad, "data": '{"symbol": "ETH/BTC", "time": "yesterday"}'})
    risk_gate.start()
    while not risk_gate.finished:
        for each in reversed(workers):
            each.poll(block_ms=0)
        risk_gate.pump(block_ms=0)
    report = risk_gate.finish()
    expected = decisions(tmp_path / "single")
    assert len(expected) > 100
    assert decisions(tmp_path / "multi") == expected
    assert report is not None
    assert report.books == expected_report.books
    assert sum(w.stats.processed for w in workers) == 3 * LIMIT
    (letter,) = bus.dead_letters()
    assert letter.source == SIGNALS
    assert letter.reason == "data.time: 'yesterday' is not an ISO 8601 time"


def test_a_worker_started_late_warms_up_and_the_decisions_still_equal(tmp_path: Path) -> None:
    expected_report = single_process(tmp_path / "single", LIMIT)
    clock = FakeClock()
    bus = InProcessBus(BusSettings(prefix="t", replay_window=4, lease_s=15), clock=clock)
    workers = [worker(bus, "early", clock)]
    risk_gate = gate(bus, tmp_path / "multi", LIMIT)
    risk_gate.start()
    late = None
    while not risk_gate.finished:
        if late is None and risk_gate.decided >= 300:  # long after the bootstrap model trained
            late = worker(bus, "late", clock)
            workers.append(late)
        for each in workers:
            each.poll(block_ms=0)
        risk_gate.pump(block_ms=0)
        clock.advance(1.0)  # leases renew every 5 s: "early" soon gives up a share
    report = risk_gate.finish()
    assert late is not None
    assert late.stats.processed > 0  # it did take symbols over
    assert decisions(tmp_path / "multi") == decisions(tmp_path / "single")
    assert report is not None
    assert report.books == expected_report.books


def test_a_malformed_report_counts_as_its_sources_error_and_the_replay_goes_on(
    tmp_path: Path,
) -> None:
    import sqlite3

    from aios.state import database_path

    clock = FakeClock()
    bus = InProcessBus(BusSettings(prefix="t", replay_window=8), clock=clock)
    one = worker(bus, "w", clock)
    risk_gate = gate(bus, tmp_path, 30)
    second = risk_gate.times[1]
    bus.publish_raw(
        SIGNALS,
        {
            "id": f"{risk_gate.replay_id}/signals/ETH/BTC/{second.isoformat()}",
            "type": "ai.signal_generated",
            "v": "1",
            "data": '{"symbol": "ETH/BTC"}',
        },
    )
    risk_gate.start()
    risk_gate.pump(block_ms=0)  # the malformed report arrives before the worker's
    while not risk_gate.finished:
        one.poll(block_ms=0)
        risk_gate.pump(block_ms=0)
    risk_gate.finish()
    connection = sqlite3.connect(str(database_path(tmp_path)))
    errors = connection.execute(
        "SELECT cycle, symbol, reason FROM decisions WHERE outcome = 'error'"
    ).fetchall()
    connection.close()
    assert len(errors) == 1
    cycle, _, reason = errors[0]
    assert cycle == 2
    assert "malformed report" in reason
    assert "data.time: missing (required by SignalsReported)" in reason
