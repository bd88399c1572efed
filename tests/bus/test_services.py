"""The RL agent and risk-proposal services: one effect per event, intervals on the clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from bus_helpers import FakeClock
from distributed import load_fresh

from aios.bus import CANDLES, CLOSED, EXECUTIONS, INTENTS, REWARDS, RISK_PROPOSALS, Bus, per_symbol
from aios.bus.events import (
    CandleClosed,
    ExecutionReported,
    TradeClosedReported,
    TradeIntentDecided,
    decode,
    event,
)
from aios.exchange.base import Fill, FillKind
from aios.model import ActionKind, Candle, ClosedTrade, OrderAction, OrderIntent, Side
from aios.services.risk_proposals import RiskProposalService
from aios.services.rl_agent import GROUP, RlAgentService

T0 = datetime(2018, 1, 10, tzinfo=UTC)


def closed(index: int, pnl_pct: float, book: str = "shadow") -> object:
    trade = ClosedTrade(
        f"p{index}",
        "ETH/BTC",
        Side.LONG,
        0.1,
        0.1 * (1 + pnl_pct / 100),
        1.0,
        T0,
        T0 + timedelta(hours=1),
        pnl_pct,
        0.1 * pnl_pct / 100,
        "TAKE_PROFIT",
        confidence=0.72,
        size_multiplier=1.25,
        trace=f"s{index}",
    )
    return event(f"r/closed/{book}/p{index}", TradeClosedReported(book, trade))


def agent(bus: Bus, state: Path, clock: FakeClock) -> RlAgentService:
    policy, _ = load_fresh()
    return RlAgentService(bus, policy, state, clock=clock)


def test_rewards_are_pnl_pct_over_100_and_learned_once(
    bus: Bus, tmp_path: Path, clock: FakeClock
) -> None:
    service = agent(bus, tmp_path, clock)
    bus.publish(CLOSED, closed(1, 2.0))  # type: ignore[arg-type]
    bus.publish(CLOSED, closed(2, -1.0, book="actual"))  # type: ignore[arg-type]  # other book
    bus.publish(CLOSED, closed(1, 2.0))  # type: ignore[arg-type]  # the same trade again
    service.poll(block_ms=0)
    rewards = [decode(fields).payload for _, fields in bus.entries(REWARDS)]
    assert [(r.position_id, r.reward) for r in rewards] == [("p1", 0.02)]
    assert service.trades == 1
    learning_rate = 0.1  # the default policy's
    arm = service.values[("[0.7, 0.8)", 1.25)]
    assert arm.updates == 1
    assert arm.value == pytest.approx(learning_rate * 1.25 * 0.02, rel=1e-12)
    assert bus.pending(CLOSED, GROUP) == 0
    service.close()


def test_a_restarted_agent_keeps_its_values_and_does_not_learn_twice(
    bus: Bus, tmp_path: Path, clock: FakeClock
) -> None:
    first = agent(bus, tmp_path, clock)
    bus.publish(CLOSED, closed(1, 2.0))  # type: ignore[arg-type]
    taken = bus.consume([CLOSED], GROUP, "crashing")
    # the first agent learned durably, then died before publishing and acknowledging
    assert first._learn(taken[0].event.id, 0.72, 1.25, 0.02)
    first.db.close()
    second = agent(bus, tmp_path, clock)
    assert second.values[("[0.7, 0.8)", 1.25)].updates == 1
    assert len(second.bus.reclaim(CLOSED, GROUP, "x", min_idle_s=0)) == 1
    for delivery in bus.reclaim(CLOSED, GROUP, "second", min_idle_s=0):
        assert second.process(delivery) is False  # no second update...
    assert second.values[("[0.7, 0.8)", 1.25)].updates == 1
    assert bus.length(REWARDS) == 1  # ...but the reward it had not published yet is published
    assert bus.pending(CLOSED, GROUP) == 0
    second.close()


def test_statistics_hash_every_interval_on_the_clock(
    bus: Bus, tmp_path: Path, clock: FakeClock
) -> None:
    service = agent(bus, tmp_path, clock)
    assert service.publish_stats()  # the first round publishes
    bus.publish(CLOSED, closed(1, 3.0))  # type: ignore[arg-type]
    clock.advance(59.9)
    service.poll(block_ms=0)
    assert bus.read_hash("rl_agent")["trades"] == "0"  # not yet: 59.9 s < 60 s
    clock.advance(0.1)
    service.poll(block_ms=0)
    stats = bus.read_hash("rl_agent")
    assert stats["trades"] == "1"
    assert float(stats["mean_reward"]) == 0.03
    assert json.loads(stats["values"])[0]["multiplier"] == 1.25
    service.close()


def candle(index: int, close: float) -> Candle:
    time = T0 + timedelta(minutes=5 * index)
    return Candle(time, close, close * 1.01, close * 0.99, close, 100.0)


def test_risk_proposals_follow_fills_and_publish_on_their_interval(
    bus: Bus, clock: FakeClock
) -> None:
    policy, plugins = load_fresh()
    service = RiskProposalService(bus, policy, plugins, clock=clock)
    symbol = service.symbols[0]
    for index in range(30):
        item = CandleClosed(symbol, candle(index, 0.1).time, candle(index, 0.1 + index * 1e-4))
        bus.publish(per_symbol(CANDLES, symbol), event(f"c{index}", item))
    opened = T0 + timedelta(minutes=5 * 20)
    order = OrderIntent(
        "o1", symbol, Side.LONG, OrderAction.OPEN, "entry", "s1", stop_loss=0.09, take_profit=0.12
    )
    bus.publish(INTENTS, event("i1", TradeIntentDecided("actual", opened, order)))
    fill = Fill("o1", "pos1", symbol, Side.LONG, FillKind.OPEN, opened, 0.102, 1.0, 0.0, "entry")
    bus.publish(EXECUTIONS, event("f1", ExecutionReported("actual", fill)))
    service.poll(block_ms=0)
    assert list(service.positions) == ["pos1"]
    proposals = [decode(f).payload for _, f in bus.entries(per_symbol(RISK_PROPOSALS, symbol))]
    assert len(proposals) == 1
    assert proposals[0].position_id == "pos1"
    assert any(a.kind is ActionKind.SET_STOPS and a.stop_loss > 0.09 for a in proposals[0].actions)
    clock.advance(30)
    service.poll(block_ms=0)  # the interval (60 s) has not passed
    assert bus.length(per_symbol(RISK_PROPOSALS, symbol)) == 1
    close = Fill("x", "pos1", symbol, Side.LONG, FillKind.STOP_LOSS, opened, 0.1, 1.0, 0.0, "sl")
    bus.publish(EXECUTIONS, event("f2", ExecutionReported("actual", close)))
    clock.advance(30)
    service.poll(block_ms=0)
    assert service.positions == {}  # closed: nothing left to propose for
    assert bus.length(per_symbol(RISK_PROPOSALS, symbol)) == 1
