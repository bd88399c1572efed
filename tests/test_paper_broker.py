"""The paper exchange, checked against numbers computed by hand (the arithmetic is in comments).

Fee and slippage rates are chosen so that the hand arithmetic stays readable: taker 0.1 %,
maker 0.05 %, slippage 10 bps unless a test says otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aios.exchange.base import Broker, BrokerError, FillKind
from aios.exchange.paper import PaperBroker
from aios.model import Candle, OrderAction, OrderIntent, OrderType, Side
from aios.testing import default_policy

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOL = "ETH/USDT"


def approx(expected: float, abs: float | None = None) -> Any:
    """`pytest.approx`, typed loosely so that tuples mixing it with exact values type-check."""
    return pytest.approx(expected, abs=abs)


def at(index: int) -> datetime:
    return T0 + timedelta(minutes=5 * index)


def candle(index: int, o: float, h: float, low: float, c: float) -> Candle:
    return Candle(at(index), o, h, low, c, 100.0)


def broker(**settings: Any) -> PaperBroker:
    values: dict[str, Any] = {
        "starting_balance": 1000.0,
        "quote_currency": "USDT",
        "maker_fee_pct": 0.05,
        "taker_fee_pct": 0.1,
        "slippage_bps": 10.0,
    }
    values.update(settings)
    return PaperBroker(**values)


def order(
    order_id: str,
    action: OrderAction = OrderAction.OPEN,
    side: Side = Side.LONG,
    **fields: Any,
) -> OrderIntent:
    if action is not OrderAction.OPEN:
        fields.setdefault("position_id", "o1")
    return OrderIntent(
        id=order_id,
        symbol=SYMBOL,
        side=side,
        action=action,
        reason=fields.pop("reason", f"test {action.value.lower()}"),
        trace=fields.pop("trace", "sig-1"),
        **fields,
    )


def test_is_a_broker() -> None:
    paper: Broker = broker()
    assert paper.quote_currency == "USDT"
    assert paper.cash() == 1000.0


def test_from_policy_reads_exchange_paper() -> None:
    defaults = PaperBroker.from_policy(default_policy())
    assert (defaults.cash(), defaults.quote_currency) == (1.0, "BTC")
    assert (defaults.maker_fee_pct, defaults.taker_fee_pct, defaults.slippage_bps) == (
        0.1,
        0.1,
        5.0,
    )
    assert defaults.limit_ttl_candles == 3
    overlay = """\
exchange:
  paper:
    starting_balance: 2.5
    quote_currency: USDT
    maker_fee_pct: 0.02
    taker_fee_pct: 0.04
    slippage_bps: 7
"""
    custom = PaperBroker.from_policy(default_policy(overlay), limit_ttl_candles=5)
    assert (custom.cash(), custom.quote_currency) == (2.5, "USDT")
    assert (custom.maker_fee_pct, custom.taker_fee_pct, custom.slippage_bps) == (0.02, 0.04, 7.0)
    assert custom.limit_ttl_candles == 5


def test_long_open_and_close_pay_slippage_and_taker_fees() -> None:
    paper = broker()
    # Buy at 100 * (1 + 10 bps) = 100.1; quote 100.1 buys exactly 1.0; fee 0.1 % of 100.1 = 0.1001.
    [opened] = paper.submit(order("o1", quote_amount=100.1), at(0), 100.0)
    assert (opened.kind, opened.price, opened.quantity, opened.fee) == (
        FillKind.OPEN,
        approx(100.1),
        approx(1.0),
        approx(0.1001),
    )
    assert paper.cash() == approx(1000 - 100.1 - 0.1001)  # 899.7999
    [pos] = paper.positions()
    assert (pos.id, pos.entry_price, pos.best_price) == ("o1", approx(100.1), approx(100.1))
    # Sell at 110 * (1 - 10 bps) = 109.89; PnL 9.79; fee 0.1 % of 109.89 = 0.10989;
    # returned 100.1 + 9.79 - 0.10989 = 109.78011.
    [closed] = paper.submit(order("c1", OrderAction.CLOSE), at(1), 110.0)
    assert (closed.kind, closed.price, closed.fee) == (
        FillKind.CLOSE,
        approx(109.89),
        approx(0.10989),
    )
    assert paper.cash() == approx(899.7999 + 109.78011)  # 1009.58001
    assert paper.positions() == ()
    [trade] = paper.closed_trades()
    assert trade.pnl_quote == approx(109.78011 - 100.2001)  # 9.58001: PnL 9.79 - both fees
    assert trade.pnl_pct == approx(9.79 / 100.1 * 100)  # 9.7802...%
    assert trade.reason == "test close"


def test_short_open_and_close_pay_slippage_and_taker_fees() -> None:
    paper = broker()
    # Sell at 100 * (1 - 10 bps) = 99.9; quote 99.9 is 1.0; fee 0.0999; cash 1000 - 99.9999.
    [opened] = paper.submit(order("o1", side=Side.SHORT, quote_amount=99.9), at(0), 100.0)
    assert (opened.price, opened.quantity, opened.fee) == (
        approx(99.9),
        approx(1.0),
        approx(0.0999),
    )
    assert paper.cash() == approx(900.0001)
    # Buy back at 90 * (1 + 10 bps) = 90.09; PnL (99.9 - 90.09) = 9.81; fee 0.09009;
    # returned 99.9 + 9.81 - 0.09009 = 109.61991.
    [closed] = paper.submit(order("c1", OrderAction.CLOSE, Side.SHORT), at(1), 90.0)
    assert (closed.price, closed.fee) == (approx(90.09), approx(0.09009))
    assert paper.cash() == approx(900.0001 + 109.61991)  # 1009.62001
    [trade] = paper.closed_trades()
    assert trade.side is Side.SHORT
    assert trade.pnl_pct == approx(9.81 / 99.9 * 100)  # +9.8198...%: the price fell
    assert trade.pnl_quote == approx(109.61991 - 99.9999)  # 9.62001


def test_equity_long_and_short_and_marks() -> None:
    paper = broker()
    paper.submit(order("o1", quote_amount=100.1), at(0), 100.0)  # long 1.0 @ 100.1
    paper.submit(order("o2", side=Side.SHORT, quote_amount=99.9), at(0), 100.0)  # short 1.0 @ 99.9
    cash = 1000 - 100.2001 - 99.9999  # 799.8
    assert paper.cash() == approx(cash)
    # At 120: long 100.1 + 19.9 = 120; short 99.9 - 20.1 = 79.8.
    assert paper.equity({SYMBOL: 120.0}) == approx(cash + 120.0 + 79.8)  # 999.6
    # No price given: each at its entry price (no candle seen yet): 100.1 + 99.9.
    assert paper.equity({}) == approx(cash + 200.0)
    # After a candle, the last close marks it: long 105, short 99.9 - 5.1 = 94.8.
    paper.on_candle(SYMBOL, candle(1, 101, 106, 100, 105))
    assert paper.equity({}) == approx(cash + 105.0 + 94.8)


def test_a_short_cannot_lose_more_than_its_collateral() -> None:
    paper = broker()
    paper.submit(order("o1", side=Side.SHORT, quote_amount=99.9), at(0), 100.0)  # cash 900.0001
    # At 250 the short is worth 99.9 - 150.1 < 0, floored at 0.
    assert paper.equity({SYMBOL: 250.0}) == approx(900.0001)
    paper.submit(order("c1", OrderAction.CLOSE, Side.SHORT), at(1), 250.0)
    assert paper.cash() == approx(900.0001)  # nothing returned, nothing taken: never negative
    assert paper.closed_trades()[0].pnl_quote == approx(-99.9999)


# --- stops inside a candle ----------------------------------------------------------------------


def opened_long(**fields: Any) -> PaperBroker:
    """No slippage: long 1.0 @ 100, fee 0.1, cash 899.9."""
    paper = broker(slippage_bps=0.0)
    paper.submit(order("o1", quote_amount=100.0, **fields), at(0), 100.0)
    return paper


def test_stop_and_take_profit_in_one_candle_fill_the_stop() -> None:
    paper = opened_long(stop_loss=95.0, take_profit=110.0)
    [fill] = paper.on_candle(SYMBOL, candle(1, 100, 111, 94, 100))
    assert (fill.kind, fill.price, fill.time) == (FillKind.STOP_LOSS, 95.0, at(1))
    # Returned 100 - 5 - 0.095 (0.1 % of 95) = 94.905.
    assert paper.cash() == approx(899.9 + 94.905)
    [trade] = paper.closed_trades()
    assert (trade.reason, trade.exit_price, trade.closed_at) == ("STOP_LOSS", 95.0, at(1))
    assert trade.pnl_pct == approx(-5.0)
    assert trade.pnl_quote == approx(94.905 - 100.1)  # -5.195


def test_stop_touched_exactly_fills_at_the_stop() -> None:
    paper = opened_long(stop_loss=95.0)
    assert paper.on_candle(SYMBOL, candle(1, 100, 101, 95.01, 99)) == []  # one tick above
    [fill] = paper.on_candle(SYMBOL, candle(2, 99, 100, 95.0, 96))
    assert (fill.kind, fill.price) == (FillKind.STOP_LOSS, 95.0)


def test_gap_through_the_stop_fills_at_the_open() -> None:
    paper = opened_long(stop_loss=95.0, take_profit=110.0)
    [fill] = paper.on_candle(SYMBOL, candle(1, 90, 92, 88, 91))
    assert fill.price == 90.0  # the open, worse than the stop
    assert paper.cash() == approx(899.9 + 100 - 10 - 0.09)  # 989.71


def test_short_gap_through_the_stop_fills_at_the_open() -> None:
    paper = broker(slippage_bps=0.0)
    paper.submit(order("o1", side=Side.SHORT, quote_amount=100.0, stop_loss=105.0), at(0), 100.0)
    [fill] = paper.on_candle(SYMBOL, candle(1, 108, 109, 107, 108))
    assert (fill.kind, fill.price) == (FillKind.STOP_LOSS, 108.0)
    assert paper.closed_trades()[0].pnl_pct == approx(-8.0)


def test_take_profit_touched_exactly_fills_at_its_price() -> None:
    paper = opened_long(stop_loss=95.0, take_profit=110.0)
    assert paper.on_candle(SYMBOL, candle(1, 100, 109.99, 99, 109)) == []
    [fill] = paper.on_candle(SYMBOL, candle(2, 109, 110.0, 108, 109))
    assert (fill.kind, fill.price, fill.fee) == (FillKind.TAKE_PROFIT, 110.0, approx(0.11))
    [trade] = paper.closed_trades()
    assert (trade.reason, trade.pnl_pct) == ("TAKE_PROFIT", approx(10.0))
    assert trade.pnl_quote == approx(10.0 - 0.1 - 0.11)  # 9.79


def test_gap_through_the_take_profit_is_no_gift() -> None:
    paper = opened_long(take_profit=110.0)
    [fill] = paper.on_candle(SYMBOL, candle(1, 115, 118, 113, 116))
    assert fill.price == 110.0  # not the better open 115


def test_trailing_stop_uses_the_best_price_before_the_candle() -> None:
    paper = opened_long(stop_loss=80.0, trailing_stop_pct=5.0)
    # Best before the candle 100 -> trail 95; the low 96 stays above. With the candle's own high
    # (120 -> trail 114) it would have stopped: that is exactly what the rule forbids.
    assert paper.on_candle(SYMBOL, candle(1, 100, 120, 96, 118)) == []
    assert paper.positions()[0].best_price == 120.0
    # Now the trail is 120 * 0.95 = 114; the low 113 touches it; the open 118 is above: at 114.
    [fill] = paper.on_candle(SYMBOL, candle(2, 118, 119, 113, 115))
    assert (fill.kind, fill.price) == (FillKind.TRAILING_STOP, approx(114.0))
    assert paper.closed_trades()[0].reason == "TRAILING_STOP"


def test_short_trailing_stop_touched_exactly() -> None:
    paper = broker(slippage_bps=0.0)
    paper.submit(
        order("o1", side=Side.SHORT, quote_amount=100.0, trailing_stop_pct=10.0), at(0), 100.0
    )
    # Best before 100 -> trail 110; the high 105 is below; best becomes the low 80.
    assert paper.on_candle(SYMBOL, candle(1, 100, 105, 80, 82)) == []
    # Trail 80 * 1.10 = 88, touched exactly by the high.
    [fill] = paper.on_candle(SYMBOL, candle(2, 82, 88.0, 81, 87))
    assert (fill.kind, fill.price) == (FillKind.TRAILING_STOP, approx(88.0))
    assert paper.closed_trades()[0].pnl_pct == approx(12.0)


def test_the_tighter_of_stop_and_trail_wins() -> None:
    paper = opened_long(stop_loss=97.0, trailing_stop_pct=5.0)
    # Trail 95 is looser than the stop 97: the low 96.5 hits the stop-loss.
    [fill] = paper.on_candle(SYMBOL, candle(1, 100, 101, 96.5, 99))
    assert (fill.kind, fill.price) == (FillKind.STOP_LOSS, 97.0)


def test_a_repeated_candle_does_not_act_twice() -> None:
    paper = opened_long(stop_loss=95.0)
    paper.on_candle(SYMBOL, candle(1, 100, 104, 99, 103))
    assert paper.on_candle(SYMBOL, candle(1, 100, 104, 94, 103)) == []
    assert len(paper.positions()) == 1


def test_other_symbols_are_untouched() -> None:
    paper = opened_long(stop_loss=95.0)
    assert paper.on_candle("BTC/USDT", candle(1, 100, 101, 1, 50)) == []
    assert len(paper.positions()) == 1


# --- limit orders -------------------------------------------------------------------------------


def test_limit_buy_fills_on_touch_at_the_limit_with_the_maker_fee() -> None:
    paper = broker()
    # Limit 100 * (1 - 50 bps) = 99.5; quote 99.5 buys 1.0; reserve 99.5 * 1.0005 = 99.54975.
    limit = order(
        "o1", quote_amount=99.5, order_type=OrderType.LIMIT, limit_offset_bps=50.0, stop_loss=90.0
    )
    assert paper.submit(limit, at(0), 100.0) == []
    assert paper.open_orders() == (limit,)
    assert paper.cash() == approx(1000 - 99.54975)
    assert paper.equity({}) == approx(1000.0)  # the reserve is still the trader's
    assert paper.on_candle(SYMBOL, candle(1, 100, 101, 99.51, 100)) == []  # not touched
    [fill] = paper.on_candle(SYMBOL, candle(2, 100, 100.5, 99.0, 99.8))
    # At the limit 99.5, not at the better low 99.0; maker fee 0.05 % of 99.5 = 0.04975.
    assert (fill.kind, fill.price, fill.quantity, fill.fee, fill.time) == (
        FillKind.OPEN,
        approx(99.5),
        approx(1.0),
        approx(0.04975),
        at(2),
    )
    assert paper.cash() == approx(1000 - 99.54975)  # the reserve paid exactly
    [pos] = paper.positions()
    assert (pos.entry_price, pos.opened_at, pos.initial_stop) == (approx(99.5), at(2), 90.0)
    assert paper.open_orders() == ()


def test_limit_sell_rests_above_and_fills_when_the_high_touches() -> None:
    paper = broker()
    limit = order(
        "o1",
        side=Side.SHORT,
        quote_amount=100.5,
        order_type=OrderType.LIMIT,
        limit_offset_bps=50.0,
    )
    paper.submit(limit, at(0), 100.0)  # limit 100.5
    [fill] = paper.on_candle(SYMBOL, candle(1, 100, 100.5, 99, 100))
    assert (fill.price, fill.quantity) == (approx(100.5), approx(1.0))


def test_limit_expires_after_the_ttl_and_releases_its_reserve() -> None:
    paper = broker()
    limit = order("o1", quote_amount=99.5, order_type=OrderType.LIMIT, limit_offset_bps=50.0)
    paper.submit(limit, at(0), 100.0)
    for index in (1, 2):
        assert paper.on_candle(SYMBOL, candle(index, 100, 101, 99.6, 100)) == []
        assert paper.expired() == ()
    assert paper.on_candle(SYMBOL, candle(3, 100, 101, 99.6, 100)) == []  # third candle: expires
    [expiry] = paper.expired()
    assert (expiry.order, expiry.limit_price, expiry.time) == (limit, approx(99.5), at(3))
    assert paper.cash() == approx(1000.0)
    assert paper.on_candle(SYMBOL, candle(4, 100, 101, 90, 95)) == []  # too late
    assert paper.positions() == ()


def test_limit_touched_on_the_last_candle_of_its_ttl_fills() -> None:
    paper = broker(limit_ttl_candles=2)
    limit = order("o1", quote_amount=99.5, order_type=OrderType.LIMIT, limit_offset_bps=50.0)
    paper.submit(limit, at(0), 100.0)
    assert paper.on_candle(SYMBOL, candle(1, 100, 101, 99.6, 100)) == []
    assert len(paper.on_candle(SYMBOL, candle(2, 100, 101, 99.5, 100))) == 1
    assert paper.expired() == ()


def test_position_opened_by_a_limit_meets_its_stop_in_the_same_candle() -> None:
    paper = broker()
    limit = order(
        "o1",
        quote_amount=99.5,
        order_type=OrderType.LIMIT,
        limit_offset_bps=50.0,
        stop_loss=98.0,
        take_profit=101.0,
    )
    paper.submit(limit, at(0), 100.0)
    # The candle touches 99.5, then (maybe) 98: pessimistically both; the TP 101 is not filled.
    fills = paper.on_candle(SYMBOL, candle(1, 100, 102, 97, 99))
    assert [(f.kind, f.price) for f in fills] == [
        (FillKind.OPEN, approx(99.5)),
        (FillKind.STOP_LOSS, 98.0),
    ]


def test_resting_exit_is_cancelled_when_the_stop_closes_the_position() -> None:
    paper = opened_long(stop_loss=95.0)
    exit_limit = order(
        "c1", OrderAction.CLOSE, order_type=OrderType.LIMIT, limit_offset_bps=500.0
    )  # sell limit 105
    paper.submit(exit_limit, at(0), 100.0)
    # The candle touches both 94 and 106: the stop first, then the exit has nothing to close.
    [fill] = paper.on_candle(SYMBOL, candle(1, 100, 106, 94, 100))
    assert fill.kind is FillKind.STOP_LOSS
    assert [e.order.id for e in paper.expired()] == ["c1"]
    assert paper.open_orders() == ()


# --- scale-in, reduce, stops --------------------------------------------------------------------


def test_scale_in_averages_the_entry() -> None:
    paper = opened_long(stop_loss=95.0)  # 1.0 @ 100, cash 899.9
    # 110 quote at 110 = 1.0 more; fee 0.11; entry (100 + 110) / 2 = 105.
    [add] = paper.submit(order("s1", OrderAction.SCALE_IN, quote_amount=110.0), at(1), 110.0)
    assert (add.kind, add.quantity, add.fee) == (FillKind.SCALE_IN, approx(1.0), approx(0.11))
    [pos] = paper.positions()
    assert (pos.entry_price, pos.quantity, pos.adds) == (approx(105.0), approx(2.0), 1)
    assert pos.initial_stop == 95.0
    assert paper.cash() == approx(899.9 - 110.11)  # 789.79
    # Close 2.0 at 120: returned 210 + 30 - 0.24 = 239.76.
    paper.submit(order("c1", OrderAction.CLOSE), at(2), 120.0)
    assert paper.cash() == approx(789.79 + 239.76)  # 1029.55
    [trade] = paper.closed_trades()
    assert (trade.entry_price, trade.exit_price, trade.quantity) == (
        approx(105.0),
        approx(120.0),
        approx(2.0),
    )
    assert trade.pnl_pct == approx(15 / 105 * 100)  # 14.2857%
    assert trade.pnl_quote == approx(239.76 - 210.21)  # 29.55 = 30 - (0.1 + 0.11 + 0.24)


def test_reduce_then_close_records_one_trade_over_both_lots() -> None:
    paper = broker(slippage_bps=0.0)
    paper.submit(order("o1", quote_amount=200.0), at(0), 100.0)  # 2.0 @ 100, fee 0.2
    # Reduce a quarter (0.5) at 110: PnL 5, fee 0.055, returned 50 + 5 - 0.055 = 54.945.
    [cut] = paper.submit(order("r1", OrderAction.REDUCE, fraction=0.25), at(1), 110.0)
    assert (cut.kind, cut.quantity, cut.fee) == (FillKind.REDUCE, approx(0.5), approx(0.055))
    assert paper.cash() == approx(799.8 + 54.945)
    assert paper.positions()[0].quantity == approx(1.5)
    assert paper.closed_trades() == ()
    # Close 1.5 at 90: PnL -15, fee 0.135, returned 150 - 15 - 0.135 = 134.865.
    paper.submit(order("c1", OrderAction.CLOSE), at(2), 90.0)
    assert paper.cash() == approx(854.745 + 134.865)  # 989.61
    [trade] = paper.closed_trades()
    assert trade.exit_price == approx((0.5 * 110 + 1.5 * 90) / 2)  # 95
    assert trade.pnl_pct == approx(-5.0)
    assert trade.pnl_quote == approx(-10.39)  # PnL 5 - 15, fees 0.2 + 0.055 + 0.135


def test_set_stops_changes_only_what_it_names() -> None:
    paper = opened_long(stop_loss=95.0, take_profit=110.0)
    [fill] = paper.submit(
        order("t1", OrderAction.SET_STOPS, stop_loss=98.0, trailing_stop_pct=3.0), at(1), 101.0
    )
    assert (fill.kind, fill.quantity, fill.fee) == (FillKind.STOPS_SET, 0.0, 0.0)
    [pos] = paper.positions()
    assert (pos.stop_loss, pos.take_profit, pos.trailing_stop_pct) == (98.0, 110.0, 3.0)
    assert pos.initial_stop == 95.0
    assert pos.r_multiple(105.0) == approx(1.0)  # 5 % over the initial 5 % risk
    paper.submit(order("t2", OrderAction.SET_STOPS), at(2), 101.0)  # all None: nothing removed
    assert paper.positions()[0].stop_loss == 98.0


def test_slices_give_equal_child_fills_at_one_price() -> None:
    paper = broker(slippage_bps=0.0)
    fills = paper.submit(order("o1", quote_amount=100.0, slices=4), at(0), 100.0)
    assert [(f.price, f.quantity, f.fee) for f in fills] == [
        (100.0, approx(0.25), approx(0.025))
    ] * 4
    assert paper.cash() == approx(899.9)


# --- idempotency, refusals, records -------------------------------------------------------------


def test_resubmitting_an_order_id_has_no_new_effect() -> None:
    paper = broker()
    first = paper.submit(order("o1", quote_amount=100.1), at(0), 100.0)
    again = paper.submit(order("o1", quote_amount=100.1), at(1), 120.0)
    assert again == first
    assert len(paper.positions()) == 1
    assert paper.cash() == approx(899.7999)
    paper.submit(order("c1", OrderAction.CLOSE), at(1), 110.0)
    assert paper.submit(order("c1", OrderAction.CLOSE), at(2), 50.0)[0].price == approx(109.89)
    assert len(paper.closed_trades()) == 1


def test_an_open_bigger_than_cash_is_reduced_then_refused() -> None:
    paper = broker(starting_balance=100.1, slippage_bps=0.0)
    # Exactly affordable: 100 + 0.1 fee = 100.1 -> nothing reduced, cash 0.
    [fill] = paper.submit(order("o1", quote_amount=100.0), at(0), 100.0)
    assert fill.quantity == approx(1.0)
    assert paper.cash() == approx(0.0, abs=1e-12)
    paper.submit(order("c1", OrderAction.CLOSE), at(1), 100.0)  # returns 100 - 0.1 = 99.9
    # Ask 200 with 99.9: reduced to 99.9 / 1.001 = 99.8002; cash ends at 0, never below.
    [fill] = paper.submit(order("o2", quote_amount=200.0), at(2), 100.0)
    assert fill.quantity == approx(99.9 / 1.001 / 100)
    assert paper.cash() == 0.0
    with pytest.raises(BrokerError, match="no cash"):
        paper.submit(order("o3", quote_amount=10.0), at(3), 100.0)
    with pytest.raises(BrokerError, match="no cash"):  # the refusal is remembered too
        paper.submit(order("o3", quote_amount=10.0), at(3), 100.0)
    assert [p.id for p in paper.positions()] == ["o2"]


def test_orders_for_unknown_positions_and_bad_sizes_are_refused() -> None:
    paper = opened_long()
    with pytest.raises(BrokerError, match="no open position"):
        paper.submit(order("c1", OrderAction.CLOSE, position_id="nope"), at(1), 100.0)
    with pytest.raises(BrokerError, match="fraction"):
        paper.submit(order("r1", OrderAction.REDUCE, fraction=1.5), at(1), 100.0)
    with pytest.raises(BrokerError, match="quote_amount"):
        paper.submit(order("o2"), at(1), 100.0)
    assert len(paper.positions()) == 1


def test_closed_trade_carries_the_positions_context() -> None:
    paper = opened_long(
        stop_loss=95.0, confidence=0.72, size_multiplier=1.5, trace="sig-9", reason="entry"
    )
    paper.on_candle(SYMBOL, candle(1, 100, 101, 94, 96))
    [trade] = paper.closed_trades()
    assert (trade.position_id, trade.symbol, trade.side) == ("o1", SYMBOL, Side.LONG)
    assert (trade.entry_price, trade.exit_price, trade.quantity) == (100.0, 95.0, approx(1.0))
    assert (trade.opened_at, trade.closed_at) == (at(0), at(1))
    assert (trade.confidence, trade.size_multiplier, trade.trace) == (0.72, 1.5, "sig-9")
    assert trade.reason == "STOP_LOSS"


def test_replay_is_deterministic() -> None:
    def run() -> tuple[object, ...]:
        paper = broker()
        paper.submit(
            order("o1", quote_amount=100.0, stop_loss=95.0, trailing_stop_pct=4), at(0), 100
        )
        fills = []
        for index, close in enumerate([102, 106, 103, 99, 97], start=1):
            fills += paper.on_candle(SYMBOL, candle(index, close - 1, close + 1, close - 2, close))
        return (tuple(fills), tuple(paper.closed_trades()), paper.cash())

    assert run() == run()


def test_closed_trades_is_an_immutable_list_that_follows_every_close() -> None:
    """Read several times per candle time, the list is not copied per read; what a caller
    holds never changes under it, and the next read has the new trade."""
    paper = broker()
    assert paper.closed_trades() == ()
    paper.submit(order("o1", quote_amount=100.1), at(0), 100.0)
    paper.submit(order("c1", OrderAction.CLOSE), at(1), 110.0)
    first = paper.closed_trades()
    assert isinstance(first, tuple) and paper.closed_trades() is first
    paper.submit(order("o2", quote_amount=100.1), at(2), 100.0)
    paper.submit(order("c2", OrderAction.CLOSE, position_id="o2"), at(3), 90.0)
    second = paper.closed_trades()
    assert [t.position_id for t in first] == ["o1"]
    assert [t.position_id for t in second] == ["o1", "o2"]
    assert second[0] is first[0] and second[1].pnl_quote < 0
