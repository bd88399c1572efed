"""Tests of the example plugin, written with aios.testing as a plugin author would."""

from __future__ import annotations

from collections.abc import Callable

from aios_spike_guard import SpikeGuard

from aios.model import EntryIntent, Side, Signal
from aios.policy import Policy
from aios.testing import (
    T0,
    Harness,
    candles_from_closes,
    context,
    market,
    policy_with_plugins,
    signal,
)

ENABLED = "subsystems:\n  spike_guard:\n    mode: ENFORCED\n"


def policy() -> Policy:
    """The default policy plus this plugin's section (its schema default: 5 %)."""
    return policy_with_plugins([SpikeGuard()], ENABLED)


def intent_for(symbol: str) -> EntryIntent:
    signal = Signal("s1", symbol, Side.LONG, 0.8, "test", T0, 100.0)
    return EntryIntent(signal, 6.0, 8.0, 0.02, 0.65)


def test_blocks_a_spike_beyond_the_limit_and_allows_one_at_it() -> None:
    # default limit 5 %: closes 100 -> 105 range (105 - 100) / 100 = 5 % (allowed), 100 -> 105.1 blocked
    guard = SpikeGuard()
    at_limit = context(
        policy(), market_view=market({"ETH/BTC": candles_from_closes([100.0, 105.0])})
    )
    assert guard.aios_filter_entry(at_limit, intent_for("ETH/BTC")).allow is True
    beyond = context(policy(), market_view=market({"ETH/BTC": candles_from_closes([100.0, 105.1])}))
    verdict = guard.aios_filter_entry(beyond, intent_for("ETH/BTC"))
    assert verdict.allow is False and verdict.reason == "last candle range 5.100% > 5%"


def test_metric_is_the_largest_range() -> None:
    view = market(
        {"A/BTC": candles_from_closes([100.0, 102.0]), "B/BTC": candles_from_closes([100.0, 97.0])}
    )
    # A: 2 / 100 = 2 %; B: 3 / 97 = 3.0928 %
    value = SpikeGuard().aios_collect_metrics(context(policy(), market_view=view))[
        "max_candle_range_pct"
    ]
    assert round(value, 4) == 3.0928


def test_through_the_engine_a_spike_blocks_the_entry(aios_harness: Callable[..., Harness]) -> None:
    # the harness fixture comes with aios (pytest11); the default limit is 5 %
    harness = aios_harness([SpikeGuard()], ENABLED)
    spiky = harness.market({"ETH/BTC": [100.0, 106.0]})  # range (106 - 100) / 100 = 6 %
    result = harness.entry_cycle(spiky, signals=[signal("ETH/BTC")])
    assert result.orders == ()
    [row] = result.proposals("spike_guard")
    assert row.applied and row.reason == "blocks: last candle range 6.000% > 5%"
    harness.clock.advance(minutes=5)
    calm = harness.market({"ETH/BTC": [100.0, 101.0]})
    assert [o.symbol for o in harness.entry_cycle(calm, signals=[signal("ETH/BTC")]).orders] == [
        "ETH/BTC"
    ]
