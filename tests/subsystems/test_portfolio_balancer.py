"""Portfolio Balancer: exposure caps (at the cap allowed, just past it blocked), cap order, sizing.

Positions are built at entry price 1.0, so a position's notional is its quantity, and the amounts
below are exact binary fractions (0.125, 0.25, ...) unless a test is about float rounding.
Equity is 1.0 unless said otherwise, so "25 %" of it is 0.25.
"""

from __future__ import annotations

from functools import cache

import pytest

from aios.model import EntryIntent, PortfolioView, Position, Side, Signal
from aios.policy import Policy
from aios.testing import T0, context, default_policy, position
from plugins.portfolio_balancer import PortfolioBalancer

PBA = PortfolioBalancer()
JUST_PAST = 1e-6  # far above float rounding (1e-9 relative), far below any real order

# Only the cap under test binds: the others are set out of reach.
ONLY_TOTAL_50 = """
subsystems:
  portfolio_balancer:
    max_total_exposure_pct: 50
    max_symbol_exposure_pct: 1000
    max_side_exposure_pct: 1000
    correlated_groups: []
"""
ONLY_SIDE_50 = """
subsystems:
  portfolio_balancer:
    max_total_exposure_pct: 1000
    max_symbol_exposure_pct: 1000
    max_side_exposure_pct: 50
    correlated_groups: []
"""
ONLY_GROUP_37_5 = """
subsystems:
  portfolio_balancer:
    max_total_exposure_pct: 1000
    max_symbol_exposure_pct: 1000
    max_side_exposure_pct: 1000
    correlated_groups:
      - {name: privacy_coins, symbols: [XMR/BTC, ZEC/BTC, DASH/BTC], max_exposure_pct: 37.5}
      - {name: majors, symbols: [ETH/BTC, LTC/BTC], max_exposure_pct: 1000}
"""


@cache
def policy(overlay: str | None = None) -> Policy:
    return default_policy(overlay)


def held(symbol: str, notional: float, side: Side = Side.LONG, pid: str = "") -> Position:
    """A position worth `notional` at its entry price 1.0."""
    return position(
        symbol,
        side,
        entry=1.0,
        quantity=notional,
        stop_loss=None,
        take_profit=None,
        position_id=pid or f"{symbol}-{side.value}-{notional}",
    )


def book(
    *positions: Position, equity: float = 1.0, prices: dict[str, float] | None = None
) -> PortfolioView:
    return PortfolioView(equity=equity, cash=equity, positions=positions, prices=prices or {})


def entry(
    amount: float, symbol: str = "ETH/BTC", side: Side = Side.LONG, sl_pct: float = 5.0
) -> EntryIntent:
    signal = Signal("sig-1", symbol, side, 0.7, "test", T0, 1.0)
    return EntryIntent(
        signal, tp_pct=10.0, sl_pct=sl_pct, quote_amount=amount, confidence_threshold=0.65
    )


def verdict(
    portfolio: PortfolioView, intent: EntryIntent, overlay: str | None = None
) -> tuple[bool, str]:
    result = PBA.aios_filter_entry(context(policy(overlay), portfolio=portfolio), intent)
    return result.allow, result.reason


# --- max_open_positions ------------------------------------------------------------------------


def test_open_positions_one_below_the_limit_is_allowed_at_the_limit_blocked() -> None:
    overlay = "subsystems:\n  portfolio_balancer:\n    max_open_positions: 2\n"
    one = book(held("ADA/BTC", 0.0625))
    two = book(held("ADA/BTC", 0.0625), held("LTC/BTC", 0.0625))

    assert verdict(one, entry(0.0625), overlay)[0] is True
    allow, reason = verdict(two, entry(0.0625), overlay)
    assert allow is False
    assert reason == "2 positions open, max_open_positions is 2"


# --- total exposure ----------------------------------------------------------------------------


def test_total_exposure_exactly_at_the_cap_is_allowed() -> None:
    # 0.25 open + 0.25 new = 0.5 = 50 % of equity 1.0: at the cap
    allow, _ = verdict(book(held("ADA/BTC", 0.25, Side.SHORT)), entry(0.25), ONLY_TOTAL_50)
    assert allow is True


def test_total_exposure_just_past_the_cap_is_blocked_with_the_numbers() -> None:
    # 0.25 open + 0.250001 new = 0.500001 > 0.5; both sides count toward the total
    allow, reason = verdict(
        book(held("ADA/BTC", 0.25, Side.SHORT)), entry(0.25 + JUST_PAST), ONLY_TOTAL_50
    )
    assert allow is False
    assert reason == (
        "total exposure after entry 0.500001 (50.0001% of equity 1) = 0.25 open + 0.250001 new, "
        "above max_total_exposure_pct 50% (0.5)"
    )


def test_exposure_is_valued_at_current_prices_not_entry_prices() -> None:
    # 0.25 bought at 1.0 is worth 0.25 x 1.2 = 0.3 now; 0.3 + 0.25 = 0.55 > 0.5 (at entry
    # prices it would be 0.25 + 0.25 = 0.5, allowed)
    risen = book(held("ADA/BTC", 0.25), prices={"ADA/BTC": 1.2})
    allow, reason = verdict(risen, entry(0.25), ONLY_TOTAL_50)
    assert allow is False
    assert "0.3 open + 0.25 new" in reason


def test_float_rounding_at_the_cap_counts_as_at_the_cap() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floats: still "at" a 30 % cap of equity 1.0
    overlay = ONLY_TOTAL_50.replace("max_total_exposure_pct: 50", "max_total_exposure_pct: 30")
    assert verdict(book(held("ADA/BTC", 0.1)), entry(0.2), overlay)[0] is True
    assert verdict(book(held("ADA/BTC", 0.1)), entry(0.2 + JUST_PAST), overlay)[0] is False


# --- symbol exposure ---------------------------------------------------------------------------


def test_symbol_exposure_at_the_default_25_pct_cap_is_allowed_just_past_blocked() -> None:
    # default policy: max_symbol_exposure_pct 25 -> 0.25 of equity 1.0
    # 0.125 open + 0.125 new = 0.25: at the cap; + 0.125001 = 0.250001: past it
    open_eth = book(held("ETH/BTC", 0.125))
    assert verdict(open_eth, entry(0.125))[0] is True
    allow, reason = verdict(open_eth, entry(0.125 + JUST_PAST))
    assert allow is False
    assert reason == (
        "ETH/BTC exposure after entry 0.250001 (25.0001% of equity 1) = 0.125 open + 0.125001 new, "
        "above max_symbol_exposure_pct 25% (0.25)"
    )


def test_symbol_exposure_counts_both_sides_and_scales_with_equity() -> None:
    # equity 2.0: cap 25 % = 0.5; a 0.25 SHORT open + a 0.25 LONG entry = 0.5 gross: at the cap
    hedged = book(held("ETH/BTC", 0.25, Side.SHORT), equity=2.0)
    assert verdict(hedged, entry(0.25, side=Side.LONG))[0] is True
    allow, reason = verdict(hedged, entry(0.25 + JUST_PAST, side=Side.LONG))
    assert allow is False
    assert reason.startswith("ETH/BTC exposure after entry 0.500001 (25.00005% of equity 2)")


def test_other_symbols_do_not_count_toward_the_symbol_cap() -> None:
    # 0.25 in ADA and 0.25 in LTC; ETH itself empty: 0.25 new in ETH is at its cap
    assert verdict(book(held("ADA/BTC", 0.25), held("LTC/BTC", 0.25)), entry(0.25))[0] is True


# --- side exposure -----------------------------------------------------------------------------


def test_side_exposure_at_the_cap_is_allowed_just_past_blocked() -> None:
    # LONG: 0.25 ADA + 0.125 LTC open + 0.125 new = 0.5 = 50 %; the 0.5 SHORT does not count
    longs = book(held("ADA/BTC", 0.25), held("LTC/BTC", 0.125), held("XLM/BTC", 0.5, Side.SHORT))
    assert verdict(longs, entry(0.125), ONLY_SIDE_50)[0] is True
    allow, reason = verdict(longs, entry(0.125 + JUST_PAST), ONLY_SIDE_50)
    assert allow is False
    assert reason == (
        "LONG exposure after entry 0.500001 (50.0001% of equity 1) = 0.375 open + 0.125001 new, "
        "above max_side_exposure_pct 50% (0.5)"
    )


def test_a_short_entry_is_measured_against_the_short_side() -> None:
    # 0.5 LONG open is at the LONG cap, yet a 0.5 SHORT entry is at (not past) the SHORT cap
    longs = book(held("ADA/BTC", 0.5))
    assert verdict(longs, entry(0.5, side=Side.SHORT), ONLY_SIDE_50)[0] is True
    assert verdict(longs, entry(JUST_PAST, side=Side.LONG), ONLY_SIDE_50)[0] is False


# --- correlated groups -------------------------------------------------------------------------


def test_correlated_group_at_its_cap_is_allowed_just_past_blocked() -> None:
    # privacy_coins 37.5 % = 0.375: XMR 0.125 + ZEC 0.125 open + DASH 0.125 new = 0.375
    privacy = book(held("XMR/BTC", 0.125), held("ZEC/BTC", 0.125), held("ADA/BTC", 0.5))
    assert verdict(privacy, entry(0.125, symbol="DASH/BTC"), ONLY_GROUP_37_5)[0] is True
    allow, reason = verdict(privacy, entry(0.125 + JUST_PAST, symbol="DASH/BTC"), ONLY_GROUP_37_5)
    assert allow is False
    assert reason == (
        "group privacy_coins (XMR/BTC, ZEC/BTC, DASH/BTC) exposure after entry 0.375001 "
        "(37.5001% of equity 1) = 0.25 open + 0.125001 new, above privacy_coins.max_exposure_pct "
        "37.5% (0.375)"
    )


def test_a_symbol_outside_the_group_is_not_held_to_its_cap() -> None:
    # the privacy group is full (0.375) but ETH/BTC is not in it
    privacy = book(held("XMR/BTC", 0.25), held("ZEC/BTC", 0.125))
    assert verdict(privacy, entry(0.25, symbol="ETH/BTC"), ONLY_GROUP_37_5)[0] is True


def test_default_privacy_group_float_sum_at_30_pct_is_allowed() -> None:
    # default policy: privacy_coins 30 %; 0.1 + 0.1 + 0.1 = 0.30000000000000004 in floats
    privacy = book(held("XMR/BTC", 0.1), held("ZEC/BTC", 0.1))
    assert verdict(privacy, entry(0.1, symbol="DASH/BTC"))[0] is True
    allow, reason = verdict(privacy, entry(0.1 + JUST_PAST, symbol="DASH/BTC"))
    assert allow is False
    assert "above privacy_coins.max_exposure_pct 30% (0.3)" in reason


# --- order of the checks -----------------------------------------------------------------------


def test_the_first_failing_cap_in_order_is_reported() -> None:
    # default caps, equity 1.0. 0.75 DASH LONG open (3 x 0.25), then 0.3 new DASH LONG:
    # total 1.05 > 1.0, symbol 0.8 > 0.25, side 1.05 > 0.75, group 0.8 > 0.3: total comes first
    full = book(
        held("DASH/BTC", 0.25, pid="a"),
        held("DASH/BTC", 0.25, pid="b"),
        held("DASH/BTC", 0.25, pid="c"),
    )
    _, reason = verdict(full, entry(0.3, symbol="DASH/BTC"))
    assert reason.startswith("total exposure after entry 1.05")
    # 0.25 new: total 1.0 at its cap, so the symbol cap (1.0 > 0.25) is the first to fail
    _, reason = verdict(full, entry(0.25, symbol="DASH/BTC"))
    assert reason.startswith("DASH/BTC exposure after entry 1 ")
    # with a position limit of 3 reached, the count is reported before any exposure
    _, reason = verdict(
        full,
        entry(0.3, symbol="DASH/BTC"),
        "subsystems:\n  portfolio_balancer:\n    max_open_positions: 3\n",
    )
    assert reason == "3 positions open, max_open_positions is 3"


def test_side_is_checked_before_the_group() -> None:
    # side cap 50 % and group cap 37.5 %: 0.25 XMR LONG + 0.25 DASH LONG new = 0.5 on both;
    # side 0.5 is at its cap, group 0.5 > 0.375 fails; + 0.000001 fails both and side is named
    overlay = ONLY_GROUP_37_5.replace("max_side_exposure_pct: 1000", "max_side_exposure_pct: 50")
    _, reason = verdict(book(held("XMR/BTC", 0.25)), entry(0.25, symbol="DASH/BTC"), overlay)
    assert reason.startswith("group privacy_coins")
    _, reason = verdict(
        book(held("XMR/BTC", 0.25)), entry(0.25 + JUST_PAST, symbol="DASH/BTC"), overlay
    )
    assert reason.startswith("LONG exposure after entry 0.500001")


def test_no_equity_blocks_every_entry() -> None:
    allow, reason = verdict(book(equity=0.0), entry(0.01))
    assert allow is False
    assert reason == "equity is 0: no exposure cap can be met"


def test_an_allowed_entry_says_where_it_leaves_each_cap() -> None:
    # 0.125 ETH open + 0.0625 new: total = symbol = side = 0.1875 = 18.75 %
    allow, reason = verdict(book(held("ETH/BTC", 0.125)), entry(0.0625))
    assert allow is True
    assert reason == (
        "within caps with 0.0625 new on LONG ETH/BTC: 1/8 positions, total 18.75%, "
        "symbol 18.75%, side 18.75% of equity 1"
    )


# --- sizing ------------------------------------------------------------------------------------


def size(
    portfolio: PortfolioView, intent: EntryIntent, overlay: str | None = None
) -> tuple[float | None, str]:
    proposal = PBA.aios_size(context(policy(overlay), portfolio=portfolio), intent)
    assert proposal.multiplier is None
    return proposal.quote_amount, proposal.reason


def test_risk_per_trade_sizes_the_loss_at_the_stop() -> None:
    # equity 1.0 x risk 1 % / SL 5 % = 0.2; losing 5 % of 0.2 is 0.01 = 1 % of equity
    amount, reason = size(book(), entry(0.02, sl_pct=5.0))
    assert amount == pytest.approx(0.2, rel=1e-12)
    assert reason == "risk 1% of equity 1 at SL 5.000%: 1 x 1 / 5.000 = 0.2"


def test_risk_sizing_scales_with_equity_and_inverse_stop() -> None:
    # equity 3.0 x risk 1 % / SL 8 % = 0.375 (below the symbol cap 0.75)
    amount, _ = size(book(equity=3.0), entry(0.02, sl_pct=8.0))
    assert amount == pytest.approx(0.375, rel=1e-12)


def test_sizing_exactly_at_the_symbol_headroom_is_not_capped() -> None:
    # equity 2.0 x 1 % / SL 4 % = 0.5 = 25 % of 2.0: exactly the symbol cap
    amount, reason = size(book(equity=2.0), entry(0.02, sl_pct=4.0))
    assert amount == pytest.approx(0.5, rel=1e-12)
    assert "capped" not in reason


def test_sizing_is_capped_at_the_symbol_headroom() -> None:
    # risk 2 %: 1.0 x 2 / 4 = 0.5; cap 0.25 with 0.125 ETH open leaves 0.125
    overlay = "subsystems:\n  portfolio_balancer:\n    risk_per_trade_pct: 2\n"
    amount, reason = size(book(held("ETH/BTC", 0.125)), entry(0.02, sl_pct=4.0), overlay)
    assert amount == pytest.approx(0.125, rel=1e-12)
    assert reason == (
        "risk 2% of equity 1 at SL 4.000%: 1 x 2 / 4.000 = 0.5; capped to ETH/BTC headroom "
        "0.125 (max_symbol_exposure_pct 25% = 0.25, 0.125 open)"
    )


def test_sizing_never_goes_below_zero_when_the_symbol_is_over_its_cap() -> None:
    # 0.3 ETH open > cap 0.25: headroom max(0, 0.25 - 0.3) = 0
    amount, _ = size(book(held("ETH/BTC", 0.3)), entry(0.02, sl_pct=5.0))
    assert amount == 0.0


def test_sizing_without_a_stop_distance_proposes_nothing_to_trade() -> None:
    amount, reason = size(book(), entry(0.02, sl_pct=0.0))
    assert amount == 0.0
    assert "without a stop" in reason


def test_settings_are_read_per_call_so_a_reload_takes_effect() -> None:
    # the same plugin object: risk 1 % -> 0.2, then a policy with risk 0.5 % -> 0.1
    first, _ = size(book(), entry(0.02, sl_pct=5.0))
    second, _ = size(
        book(),
        entry(0.02, sl_pct=5.0),
        "subsystems:\n  portfolio_balancer:\n    risk_per_trade_pct: 0.5\n",
    )
    assert first == pytest.approx(0.2, rel=1e-12)
    assert second == pytest.approx(0.1, rel=1e-12)
