"""Execution layer: order type at the spread cap, urgency, slippage veto at its cap, slicing
arithmetic, the spread proxy and missing data.

Unless said otherwise the market has 20 flat candles (close 1.0, volume 100), so the average
quote volume per candle is 100 x 1.0 = 100, the split size is 0.05 x 100 = 5 (default
split_volume_fraction), and the impact of a slice s is 0.1 x 10000 x s / 100 = 10 x s bps.
Default caps: market_max_spread_bps 10, max_slippage_bps 30, limit_offset_bps 2,
max_child_orders 5.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cache

import pytest

from aios.model import Candle, EntryIntent, ExecutionPlan, OrderType, Side, Signal
from aios.policy import Policy
from aios.testing import T0, context, default_policy, market
from plugins.execution import ExecutionLayer, ceil_tolerant

AELM = ExecutionLayer()
SYMBOL = "ETH/BTC"
JUST_PAST = 1e-6
WIDE_SLIPPAGE = "subsystems:\n  execution:\n    max_slippage_bps: 1000\n"


@cache
def policy(overlay: str | None = None) -> Policy:
    return default_policy(overlay)


def candle(
    index: int,
    close: float = 1.0,
    volume: float = 100.0,
    high: float | None = None,
    low: float | None = None,
) -> Candle:
    return Candle(
        T0 + timedelta(minutes=5 * index),
        close,
        close if high is None else high,
        close if low is None else low,
        close,
        volume,
    )


def flat(count: int = 20, volume: float = 100.0, close: float = 1.0) -> list[Candle]:
    return [candle(i, close, volume) for i in range(count)]


def plan(
    amount: float,
    *,
    spread: float | None = 4.0,
    candles: list[Candle] | None = None,
    confidence: float = 0.7,
    overlay: str | None = None,
) -> ExecutionPlan:
    series = flat() if candles is None else candles
    view = market({SYMBOL: series}, spreads_bps=None if spread is None else {SYMBOL: spread})
    signal = Signal("sig-1", SYMBOL, Side.LONG, confidence, "test", T0, 1.0)
    intent = EntryIntent(signal, 10.0, 5.0, amount, 0.65)
    return AELM.aios_execution_plan(context(policy(overlay), market_view=view), intent)


# --- order type --------------------------------------------------------------------------------


def test_spread_exactly_at_the_cap_is_a_market_order() -> None:
    # spread 10 = market_max_spread_bps; amount 1: 5 (half spread) + 10 (impact) = 15 bps
    result = plan(1.0, spread=10.0)
    assert (result.order_type, result.slices, result.limit_offset_bps, result.veto) == (
        OrderType.MARKET,
        1,
        0.0,
        None,
    )
    assert result.reason == (
        "MARKET: spread 10 bps (venue) <= market_max_spread_bps 10; 1 slice (amount 1 <= 0.05 x "
        "average candle quote volume 100 = 5); expected slippage 15 bps = 5 (half spread) + 10 "
        "(impact 0.1 x 10000 x 1 / 100) <= max_slippage_bps 30"
    )


def test_spread_just_past_the_cap_is_a_limit_order_that_does_not_pay_the_spread() -> None:
    # spread 10.000001 > 10: LIMIT at 2 bps; slippage 0 + 10 (impact) = 10 bps
    result = plan(1.0, spread=10.0 + JUST_PAST)
    assert (result.order_type, result.limit_offset_bps, result.veto) == (OrderType.LIMIT, 2.0, None)
    assert "limit at 2 bps from the touch" in result.reason
    assert "expected slippage 10 bps = 0 (half spread) + 10" in result.reason


def test_urgent_confidence_at_0_9_goes_to_market_despite_a_wide_spread() -> None:
    # spread 20 > 10, confidence 0.9 = URGENT_CONFIDENCE: MARKET, 10 (half of 20) + 10 = 20 bps
    urgent = plan(1.0, spread=20.0, confidence=0.9)
    assert (urgent.order_type, urgent.veto) == (OrderType.MARKET, None)
    assert urgent.reason.startswith("MARKET: urgent (confidence 0.900 >= 0.9) despite spread 20")
    assert "expected slippage 20 bps = 10 (half spread) + 10" in urgent.reason
    assert plan(1.0, spread=20.0, confidence=0.8999).order_type is OrderType.LIMIT


def test_urgency_does_not_bypass_the_slippage_cap() -> None:
    # spread 50, urgent: 25 (half spread) + 10 (impact of 1) = 35 > 30: vetoed
    result = plan(1.0, spread=50.0, confidence=0.95)
    assert result.order_type is OrderType.MARKET
    assert result.veto is not None and "expected slippage 35 bps" in result.veto


# --- slippage veto -----------------------------------------------------------------------------


def test_market_slippage_exactly_at_the_cap_is_accepted_just_past_vetoed() -> None:
    # spread 10 (MARKET): 5 + 10 x 2.5 = 30 = max_slippage_bps -> accepted
    assert plan(2.5, spread=10.0).veto is None
    # 2.500001: 5 + 25.00001 = 30.00001 > 30 -> vetoed, with the numbers
    vetoed = plan(2.5 + JUST_PAST, spread=10.0)
    assert vetoed.veto == (
        "expected slippage 30.00001 bps = 5 (half spread) + 25.00001 (impact 0.1 x 10000 x 2.500001 / 100) "
        "> max_slippage_bps 30 (MARKET, 1 slice(s))"
    )


def test_limit_slippage_exactly_at_the_cap_is_accepted_just_past_vetoed() -> None:
    # spread 20 (LIMIT, no spread paid): 10 x 3 = 30 -> accepted; 3.000001 -> 30.00001 vetoed
    assert plan(3.0, spread=20.0).veto is None
    vetoed = plan(3.0 + JUST_PAST, spread=20.0)
    assert vetoed.order_type is OrderType.LIMIT
    assert vetoed.veto is not None and "> max_slippage_bps 30 (LIMIT, 1 slice(s))" in vetoed.veto


# --- slicing -----------------------------------------------------------------------------------


def test_amount_exactly_at_the_split_size_is_one_order() -> None:
    # 5 = 0.05 x 100: not larger than the split size
    result = plan(5.0, overlay=WIDE_SLIPPAGE)
    assert result.slices == 1
    assert "1 slice (amount 5 <= 0.05 x average candle quote volume 100 = 5)" in result.reason


def test_amount_just_past_the_split_size_is_two_slices() -> None:
    # 5.000001 / 5 = 1.0000002 -> ceil 2 slices of 2.5000005; impact 25.000005 bps per slice
    result = plan(5.0 + JUST_PAST, overlay=WIDE_SLIPPAGE)
    assert result.slices == 2
    assert "2 slices of 2.5000005 (amount 5.000001 > 0.05 x" in result.reason


def test_slices_are_ceil_of_amount_over_split_size_and_impact_is_per_slice() -> None:
    # 12 / 5 = 2.4 -> 3 slices of 4; impact 10 x 4 = 40; spread 4 -> 2 + 40 = 42 bps
    result = plan(12.0, overlay=WIDE_SLIPPAGE)
    assert (result.order_type, result.slices, result.veto) == (OrderType.MARKET, 3, None)
    assert "expected slippage 42 bps = 2 (half spread) + 40 (impact 0.1 x 10000 x 4 / 100)" in (
        result.reason
    )


def test_slices_are_capped_at_max_child_orders_and_bigger_slices_cost_more() -> None:
    # 100 / 5 = 20 -> min(5, 20) = 5 slices of 20: impact 200, + 2 = 202 bps
    result = plan(100.0, overlay=WIDE_SLIPPAGE)
    assert result.slices == 5
    assert "expected slippage 202 bps" in result.reason


def test_splitting_can_bring_slippage_under_the_cap() -> None:
    # split_volume_fraction 0.02 -> split size 2; amount 5: ceil(2.5) = 3 slices of 5/3;
    # impact 10 x 5/3 = 16.667, + 2 = 18.667 <= 30. Unsplit it would be 2 + 50 = 52.
    overlay = "subsystems:\n  execution:\n    split_volume_fraction: 0.02\n"
    result = plan(5.0, overlay=overlay)
    assert (result.slices, result.veto) == (3, None)
    assert "expected slippage 18.666667 bps" in result.reason


def test_float_rounding_does_not_add_a_slice() -> None:
    # split_volume_fraction 0.01, volume 1 at close 1.0: split size 0.01; 0.07 / 0.01 is
    # 7.000000000000001 in floats, exactly 7 in decimals: 7 slices, not 8
    overlay = (
        "subsystems:\n  execution:\n    split_volume_fraction: 0.01\n"
        "    max_child_orders: 20\n    max_slippage_bps: 1000\n"
    )
    assert 0.07 / 0.01 > 7
    assert plan(0.07, candles=flat(volume=1.0), overlay=overlay).slices == 7
    assert ceil_tolerant(11.5) == 12
    assert ceil_tolerant(2.0000001) == 3


# --- volume and spread data --------------------------------------------------------------------


def test_average_quote_volume_is_volume_times_close_over_the_last_20_candles() -> None:
    # 5 old candles with huge volume, then 20 at volume 50 and close 2.0: average 50 x 2 = 100
    old = [candle(i, 2.0, 1e6) for i in range(5)]
    recent = [candle(i, 2.0, 50.0) for i in range(5, 25)]
    result = plan(1.0, candles=old + recent)
    assert "average candle quote volume 100 = 5" in result.reason


def test_a_shorter_history_averages_what_there_is() -> None:
    # 4 candles: volumes 100, 100, 100, 300 at close 1.0 -> (100 x 3 + 300) / 4 = 150
    series = [*flat(3), candle(3, 1.0, 300.0)]
    assert "average candle quote volume 150" in plan(1.0, candles=series).reason


def test_without_a_venue_spread_the_last_candle_range_is_the_proxy() -> None:
    # last candle high 1.01, low 0.99, close 1.0: range 200 bps, spread ~ 0.1 x 200 = 20 > 10
    series = [*flat(19), candle(19, 1.0, 100.0, high=1.01, low=0.99)]
    result = plan(1.0, spread=None, candles=series)
    assert result.order_type is OrderType.LIMIT
    assert "spread 20 bps (estimated as 0.1 x last candle's range) > market_max_spread_bps" in (
        result.reason
    )
    # range 100 bps -> 10 bps: at the cap (1.005 - 0.995 is 0.010000000000000009 in floats)
    at_cap = [*flat(19), candle(19, 1.0, 100.0, high=1.005, low=0.995)]
    assert plan(1.0, spread=None, candles=at_cap).order_type is OrderType.MARKET


def test_the_venue_spread_wins_over_the_proxy() -> None:
    series = [*flat(19), candle(19, 1.0, 100.0, high=1.05, low=0.95)]  # proxy 100 bps
    result = plan(1.0, spread=3.0, candles=series)
    assert result.order_type is OrderType.MARKET
    assert "spread 3 bps (venue)" in result.reason


def test_no_volume_in_the_window_vetoes() -> None:
    result = plan(1.0, candles=flat(volume=0.0))
    assert result.veto == (
        "no quote volume for ETH/BTC over the last 20 candle(s): market impact cannot be estimated"
    )


def test_no_candles_vetoes_whatever_the_venue_spread() -> None:
    result = plan(1.0, spread=2.0, candles=[])
    assert result.veto is not None and "over the last 0 candle(s)" in result.veto
    no_spread = plan(1.0, spread=None, candles=[])
    assert no_spread.veto == ("no spread for ETH/BTC: the venue gives none and no candle is usable")


@pytest.mark.parametrize("amount", [0.0, 0.5])
def test_settings_are_read_per_call(amount: float) -> None:
    # the same plugin object under a stricter policy: max_slippage_bps 2 vetoes 2 + 10 x 0.5
    strict = "subsystems:\n  execution:\n    max_slippage_bps: 2\n"
    assert plan(amount).veto is None
    assert (plan(amount, overlay=strict).veto is None) is (amount == 0.0)


def test_impact_coefficient_comes_from_the_policy() -> None:
    # amount 5, volume 100, coefficient 0.02: impact 0.02 x 10000 x 5 / 100 = 10; + 2 half spread
    result = plan(5.0, overlay="subsystems:\n  execution:\n    impact_coefficient: 0.02\n")
    assert result.veto is None
    assert (
        "expected slippage 12 bps = 2 (half spread) + 10 (impact 0.02 x 10000 x 5 / 100)"
        in result.reason
    )
    # the default 0.1 makes the same order 2 + 50 = 52 bps: vetoed
    assert plan(5.0).veto is not None
