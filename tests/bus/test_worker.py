"""Workers share the symbols through leases on the clock; a taken-over symbol stays in order."""

from __future__ import annotations

from bus_helpers import FakeClock
from distributed import load_fresh, series, worker

from aios.bus import CANDLES, DEAD_LETTER, SIGNALS, BusSettings, per_symbol
from aios.bus.events import CandleClosed, decode, event
from aios.bus.memory import InProcessBus
from aios.services.worker import WORKERS, lease_name


def setup(clock: FakeClock) -> InProcessBus:
    return InProcessBus(BusSettings(prefix="t", lease_s=15, reclaim_idle_s=30), clock=clock)


def publish_work(bus: InProcessBus, symbol: str, count: int, start: int = 0) -> None:
    policy, _ = load_fresh()
    for candle in series(policy)[symbol][start : start + count]:
        work = CandleClosed(symbol, candle.time, candle)
        bus.publish(per_symbol(CANDLES, symbol), event(f"r/candle/{symbol}/{candle.time}", work))


def test_fair_share_and_takeover_after_the_lease_expires() -> None:
    clock = FakeClock()
    bus = setup(clock)
    first, second = worker(bus, "a", clock), worker(bus, "b", clock)
    first.rebalance()
    assert first.held == ["ETH/BTC", "LTC/BTC", "XMR/BTC"]  # alone: everything
    second.rebalance()
    first.rebalance()  # two members now: a keeps ceil(3/2) = 2 and releases the third
    second.rebalance()
    assert first.held == ["ETH/BTC", "LTC/BTC"]
    assert second.held == ["XMR/BTC"]
    clock.advance(14.9)
    second.rebalance()  # a's leases still run: b takes nothing more
    assert second.held == ["XMR/BTC"]
    clock.advance(0.2)  # a has not renewed for 15.1 s: gone
    second.rebalance()
    assert second.held == ["XMR/BTC", "ETH/BTC", "LTC/BTC"]
    assert bus.lease_owner(lease_name("ETH/BTC"), clock()) == "b"


def test_a_taken_over_symbol_reclaims_pending_work_before_new_work() -> None:
    clock = FakeClock()
    bus = setup(clock)
    dead, alive = worker(bus, "dead", clock), worker(bus, "alive", clock)
    dead.rebalance()
    publish_work(bus, "ETH/BTC", 5)
    taken = bus.consume([per_symbol(CANDLES, "ETH/BTC")], WORKERS, "dead", count=3)
    assert len(taken) == 3  # "dead" took three entries and died with them in hand
    publish_work(bus, "ETH/BTC", 2, start=5)
    clock.advance(16)  # its leases expired
    alive.rebalance()
    assert "ETH/BTC" in alive.held
    clock.advance(10)  # 26 s idle < reclaim_idle_s (30): not reclaimable yet...
    alive.poll(block_ms=0)
    eth = [decode(f).payload for _, f in bus.entries(SIGNALS)]
    assert [r for r in eth if r.symbol == "ETH/BTC"] == []  # ...and new ETH work waits too
    clock.advance(5)
    alive.poll(block_ms=0)
    alive.poll(block_ms=0)
    reports = [decode(f).payload for _, f in bus.entries(SIGNALS)]
    times = [r.time for r in reports if r.symbol == "ETH/BTC"]
    assert len(times) == 7
    assert times == sorted(times)  # in order: the reclaimed three first
    assert alive.stats.reclaimed == 3
    assert bus.pending(per_symbol(CANDLES, "ETH/BTC"), WORKERS) == 0


def test_malformed_work_is_dead_lettered_and_the_worker_carries_on() -> None:
    clock = FakeClock()
    bus = setup(clock)
    one = worker(bus, "w", clock)
    stream = per_symbol(CANDLES, "ETH/BTC")
    bus.publish_raw(
        stream, {"id": "r/candle/x", "type": "market.candle", "v": "1", "data": '{"symbol": 1}'}
    )
    publish_work(bus, "ETH/BTC", 1)
    one.poll(block_ms=0)
    assert bus.length(SIGNALS) == 1
    (letter,) = bus.dead_letters()
    assert letter.source == stream
    assert letter.reason == "data.symbol: expected a string, got 1"
    assert bus.length(DEAD_LETTER) == 1
    assert bus.pending(stream, WORKERS) == 0


def test_a_candle_the_worker_does_not_have_is_reported_as_an_error() -> None:
    clock = FakeClock()
    bus = setup(clock)
    one = worker(bus, "w", clock)
    policy, _ = load_fresh()
    real = series(policy)["ETH/BTC"][10]
    forged = CandleClosed("ETH/BTC", real.time, real.__class__(real.time, 1, 2, 0.5, 1.5, 9))
    bus.publish(per_symbol(CANDLES, "ETH/BTC"), event("r/candle/forged", forged))
    one.poll(block_ms=0)
    (report,) = [decode(f).payload for _, f in bus.entries(SIGNALS)]
    assert report.signals == ()
    assert report.errors[0][0] == "worker"
    assert report.errors[0][1].startswith("DataMismatch: ETH/BTC at 2018-")


def test_worker_statistics_every_interval_on_the_clock() -> None:
    clock = FakeClock()
    bus = setup(clock)
    one = worker(bus, "w", clock)
    one.poll(block_ms=0)
    assert bus.read_hash("worker:w")["processed"] == "0"
    publish_work(bus, "ETH/BTC", 2)
    clock.advance(59)
    one.poll(block_ms=0)
    assert bus.read_hash("worker:w")["processed"] == "0"  # 59 s < stats_interval_s (60)
    clock.advance(1)
    one.poll(block_ms=0)
    stats = bus.read_hash("worker:w")
    assert stats["processed"] == "2"
    assert stats["held"] == "ETH/BTC,LTC/BTC,XMR/BTC"
