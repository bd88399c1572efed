"""The bus's promises, on both implementations: delivery, acknowledgement, reclaim,
idempotent commit, trimming, dead letters, leases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bus_helpers import FakeClock, with_settings

from aios.bus import DEAD_LETTER, Bus, Delivery
from aios.bus.events import CandleClosed, RewardComputed, event
from aios.model import Candle

T0 = datetime(2018, 1, 10, tzinfo=UTC)


def candle_event(symbol: str, index: int) -> object:
    time = T0 + timedelta(minutes=5 * index)
    return event(
        f"candle:{symbol}:{time.isoformat()}",
        CandleClosed(symbol, time, Candle(time, 1.0, 1.1, 0.9, 1.05, 10.0 + index)),
    )


def reward(index: int) -> object:
    return event(
        f"reward:{index}",
        RewardComputed(f"p{index}", f"t{index}", "ETH_BTC", "shadow", 1.5, 0.015, T0),
    )


def test_a_group_delivers_each_entry_once_in_order_until_acknowledged(bus: Bus) -> None:
    bus.ensure_group("work", "g")
    for index in range(5):
        bus.publish("work", candle_event("ETH_BTC", index))  # type: ignore[arg-type]
    first = bus.consume(["work"], "g", "a", count=3)
    second = bus.consume(["work"], "g", "b", count=10)
    assert [d.event.payload.candle.volume for d in first] == [10.0, 11.0, 12.0]
    assert [d.event.payload.candle.volume for d in second] == [13.0, 14.0]
    assert bus.consume(["work"], "g", "a") == []
    assert bus.pending("work", "g") == 5
    assert bus.pending("work", "g", "a") == 3
    for delivery in first:
        bus.ack(delivery, "g")
    assert bus.pending("work", "g") == 2
    assert bus.pending("work", "g", "a") == 0


def test_each_group_gets_its_own_copy(bus: Bus) -> None:
    bus.ensure_group("work", "one")
    bus.ensure_group("work", "two")
    bus.publish("work", reward(1))  # type: ignore[arg-type]
    assert len(bus.consume(["work"], "one", "x")) == 1
    assert len(bus.consume(["work"], "two", "x")) == 1


def test_reclaim_takes_over_only_entries_idle_long_enough(bus: Bus) -> None:
    bus.ensure_group("work", "g")
    for index in range(3):
        bus.publish("work", candle_event("ETH_BTC", index))  # type: ignore[arg-type]
    taken = bus.consume(["work"], "g", "dead")
    assert len(taken) == 3
    bus.ack(taken[0], "g")
    assert bus.reclaim("work", "g", "alive", min_idle_s=3600) == []
    assert bus.pending_ids("work", "g", "dead") == [d.entry_id for d in taken[1:]]
    reclaimed = bus.reclaim("work", "g", "alive", min_idle_s=0)
    assert [d.entry_id for d in reclaimed] == [d.entry_id for d in taken[1:]]
    assert all(d.deliveries == 2 for d in reclaimed)
    assert bus.pending("work", "g", "dead") == 0
    assert bus.pending("work", "g", "alive") == 2


def test_in_process_reclaim_follows_the_clock(prefix: str) -> None:
    from aios.bus import BusSettings
    from aios.bus.memory import InProcessBus

    clock = FakeClock()
    bus = InProcessBus(BusSettings(prefix=prefix, reclaim_idle_s=30), clock=clock)
    bus.ensure_group("work", "g")
    bus.publish("work", reward(1))  # type: ignore[arg-type]
    bus.consume(["work"], "g", "dead")
    clock.advance(29.9)
    assert bus.reclaim("work", "g", "alive") == []
    clock.advance(0.1)
    assert len(bus.reclaim("work", "g", "alive")) == 1


def test_commit_is_idempotent_by_event_id(bus: Bus) -> None:
    bus.ensure_group("work", "g")
    bus.publish("work", candle_event("ETH_BTC", 0))  # type: ignore[arg-type]
    slow = bus.consume(["work"], "g", "slow")[0]
    stolen = bus.reclaim("work", "g", "fast", min_idle_s=0)[0]
    assert stolen.event.id == slow.event.id
    assert bus.commit(stolen, "g", [("out", reward(1))]) is True  # type: ignore[list-item]
    # the slow consumer finishes the same event later: no second effect, still acknowledged
    assert bus.commit(slow, "g", [("out", reward(1))]) is False  # type: ignore[list-item]
    assert bus.length("out") == 1
    assert bus.pending("work", "g") == 0


def test_publish_once_publishes_a_key_once(bus: Bus) -> None:
    assert bus.publish_once("k", [("out", reward(1))]) is True  # type: ignore[list-item]
    assert bus.publish_once("k", [("out", reward(1))]) is False  # type: ignore[list-item]
    assert bus.length("out") == 1


def test_streams_are_trimmed_to_about_maxlen(bus: Bus) -> None:
    with_settings(bus, maxlen=10)
    for index in range(500):
        bus.publish("big", reward(index))  # type: ignore[arg-type]
    # Redis trims whole macro nodes (MAXLEN ~): bounded, not exact
    assert 10 <= bus.length("big") <= 200


def test_a_malformed_entry_goes_to_the_dead_letter_stream_and_reading_continues(bus: Bus) -> None:
    bus.ensure_group("work", "g")
    bus.publish("work", reward(1))  # type: ignore[arg-type]
    bad_id = bus.publish_raw(
        "work",
        {"id": "reward:2", "type": "rl_rewards", "v": "1", "data": '{"position_id": 3}'},
    )
    bus.publish_raw("work", {"id": "x", "type": "rl_rewards", "v": "9", "data": "{}"})
    bus.publish("work", reward(4))  # type: ignore[arg-type]
    delivered = bus.consume(["work"], "g", "a")
    assert [d.event.id for d in delivered] == ["reward:1", "reward:4"]
    letters = bus.dead_letters()
    assert letters[0].entry_id == bad_id
    assert letters[0].source == "work"
    assert letters[0].reason == "data.position_id: expected a string, got 3"
    assert letters[0].raw["data"] == '{"position_id": 3}'
    assert letters[1].reason == "rl_rewards version 9 is not supported (reads 1)"
    # dead-lettered entries are acknowledged: only the two good ones wait
    assert bus.pending("work", "g") == 2
    assert bus.length(DEAD_LETTER) == 2
    assert bus.health().metrics["bus_dead_letters"] == 2.0


def test_a_lease_is_held_until_it_expires_on_the_callers_clock(bus: Bus) -> None:
    assert bus.acquire_lease("symbol:ETH_BTC", "w1", 100.0, 15.0)
    assert not bus.acquire_lease("symbol:ETH_BTC", "w2", 114.9, 15.0)
    assert bus.lease_owner("symbol:ETH_BTC", 114.9) == "w1"
    assert bus.acquire_lease("symbol:ETH_BTC", "w1", 110.0, 15.0)  # renewal
    assert not bus.acquire_lease("symbol:ETH_BTC", "w2", 124.9, 15.0)
    assert bus.acquire_lease("symbol:ETH_BTC", "w2", 125.0, 15.0)  # expired: taken over
    bus.release_lease("symbol:ETH_BTC", "w1")  # not the owner any more: no effect
    assert bus.lease_owner("symbol:ETH_BTC", 126.0) == "w2"
    bus.release_lease("symbol:ETH_BTC", "w2")
    assert bus.lease_owner("symbol:ETH_BTC", 126.0) is None


def test_members_are_those_with_a_recent_heartbeat(bus: Bus) -> None:
    bus.heartbeat("workers", "w1", 100.0)
    bus.heartbeat("workers", "w2", 90.0)
    assert bus.members("workers", 104.0, 15.0) == ["w1", "w2"]
    assert bus.members("workers", 105.0, 15.0) == ["w1"]
    bus.leave("workers", "w1")
    assert bus.members("workers", 105.0, 15.0) == []


def test_stats_hash_is_replaced_whole(bus: Bus) -> None:
    bus.write_hash("rl_agent", {"trades": "3", "mean_reward": "0.01"})
    bus.write_hash("rl_agent", {"trades": "4"})
    assert bus.read_hash("rl_agent") == {"trades": "4"}


def _ids(deliveries: list[Delivery]) -> list[str]:
    return [d.event.id for d in deliveries]


def test_reading_a_group_that_does_not_exist_is_a_bus_error(bus: Bus) -> None:
    import pytest

    from aios.bus import BusError

    bus.publish("work", reward(1))  # type: ignore[arg-type]
    with pytest.raises(BusError, match="NOGROUP"):
        bus.consume(["work"], "nobody", "x")
