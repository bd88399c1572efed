"""The venue broker over a fake venue (no ccxt, no network): the order mapping, the books kept
from the venue's answers, client-side stops, client ids, and failures that are never retried
blindly.

The fake fills a market order at `venue.fill_price`, a limit order at its limit, with a 0.1 % fee
in the quote currency unless a test scripts the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aios.exchange.base import Broker, BrokerError, FillKind
from aios.exchange.ccxt_venue import CcxtVenue, VenueError, VenueUnavailable
from aios.exchange.venue_broker import OrderVenue, VenueBroker, VenueOrderError
from aios.model import Candle, OrderAction, OrderIntent, OrderType, Side

T0 = datetime(2024, 1, 1, tzinfo=UTC)
SYMBOL = "ETH/USDT"
SECRET = "SK-very-secret"


def at(index: int) -> datetime:
    return T0 + timedelta(minutes=5 * index)


def candle(index: int, o: float, h: float, low: float, c: float) -> Candle:
    return Candle(at(index), o, h, low, c, 100.0)


def approx(expected: float) -> Any:
    return pytest.approx(expected, rel=1e-12, abs=1e-12)


class FakeVenue:
    """`create_order` and `balance` with ccxt's shapes; refuses a repeated client id, as
    `CcxtVenue` does locally. `script` maps a client id to an exception to raise or a function
    turning the default answer into another."""

    def __init__(self, cash: float = 1000.0, fee_rate: float = 0.001) -> None:
        self.cash = cash
        self.base = 0.0
        self.fee_rate = fee_rate
        self.fill_price = 100.0
        self.calls: list[dict[str, Any]] = []
        self.balance_calls = 0
        self.balance_error: Exception | None = None
        self.script: dict[str, Exception | Callable[[dict[str, Any]], dict[str, Any]]] = {}
        self._sent: set[str] = set()

    def create_order(
        self,
        client_order_id: str,
        symbol: str,
        side: str,
        amount: float,
        order_type: str = "market",
        price: float | None = None,
        reduce_only: bool = False,
    ) -> dict[str, Any]:
        if client_order_id in self._sent:
            raise VenueError(
                f"client order id {client_order_id!r} was already sent",
                exchange="fake",
                call="create_order",
            )
        self._sent.add(client_order_id)
        self.calls.append(
            {
                "id": client_order_id,
                "side": side,
                "amount": amount,
                "type": order_type,
                "price": price,
            }
        )
        action = self.script.get(client_order_id)
        if isinstance(action, Exception):
            raise action
        fill = price if order_type == "limit" and price is not None else self.fill_price
        cost = amount * fill
        fee = cost * self.fee_rate
        if side == "buy":
            self.cash -= cost + fee
            self.base += amount
        else:
            self.cash += cost - fee
            self.base -= amount
        answer: dict[str, Any] = {
            "id": f"v{len(self.calls)}",
            "clientOrderId": client_order_id,
            "symbol": symbol,
            "type": order_type,
            "side": side,
            "amount": amount,
            "price": price,
            "status": "closed",
            "filled": amount,
            "remaining": 0.0,
            "average": fill,
            "cost": cost,
            "fee": {"cost": fee, "currency": "USDT"},
        }
        return answer if action is None else action(answer)

    def balance(self, quote: str) -> float:
        self.balance_calls += 1
        if self.balance_error is not None:
            raise self.balance_error
        return self.cash

    def redact(self, text: str) -> str:
        return text.replace(SECRET, "***")

    def sent_ids(self) -> list[str]:
        return [call["id"] for call in self.calls]


def make(venue: FakeVenue | None = None, **settings: Any) -> tuple[VenueBroker, FakeVenue]:
    venue = venue or FakeVenue()
    settings.setdefault("cash_buffer_pct", 0.0)
    return VenueBroker(venue, quote_currency="USDT", **settings), venue


def order(
    order_id: str,
    action: OrderAction = OrderAction.OPEN,
    side: Side = Side.LONG,
    **fields: Any,
) -> OrderIntent:
    if action is not OrderAction.OPEN:
        fields.setdefault("position_id", "o1")
    fields.setdefault("reason", "test")
    return OrderIntent(id=order_id, symbol=SYMBOL, side=side, action=action, trace="t1", **fields)


def open_o1(broker: VenueBroker, amount: float = 100.0, **fields: Any) -> None:
    broker.submit(order("o1", quote_amount=amount, **fields), at(0), 100.0)


def test_is_a_broker() -> None:
    broker: Broker = make()[0]
    assert broker.quote_currency == "USDT"


# --- mapping and quantities --------------------------------------------------------------------


def test_open_is_a_market_buy_of_quote_over_price_under_the_engine_order_id() -> None:
    broker, venue = make()
    fills = broker.submit(order("o1", quote_amount=250.0, stop_loss=92.0), at(0), 125.0)
    assert venue.calls == [
        {"id": "o1", "side": "buy", "amount": approx(2.0), "type": "market", "price": None}
    ]
    # the venue filled at 100 (not the reference 125): the book follows the venue
    assert [(f.kind, f.price, f.quantity, f.fee) for f in fills] == [
        (FillKind.OPEN, 100.0, approx(2.0), approx(0.2))
    ]
    (position,) = broker.positions()
    assert (position.id, position.side, position.entry_price, position.quantity) == (
        "o1",
        Side.LONG,
        100.0,
        approx(2.0),
    )
    assert (position.stop_loss, position.initial_stop, position.trace) == (92.0, 92.0, "t1")


def test_limit_orders_improve_the_reference_price_by_the_offset() -> None:
    broker, venue = make()
    fields: dict[str, Any] = {"order_type": OrderType.LIMIT, "limit_offset_bps": 50.0}
    open_o1(broker, 100.0, **fields)
    broker.submit(order("c1", OrderAction.CLOSE, **fields), at(1), 110.0)
    buy, sell = venue.calls
    assert (buy["type"], buy["price"], buy["amount"]) == ("limit", approx(99.5), approx(1.0))
    assert (sell["side"], sell["type"], sell["price"]) == ("sell", "limit", approx(110.55))
    assert broker.positions() == ()


def test_reduce_and_close_sell_the_quantity_held() -> None:
    broker, venue = make()
    open_o1(broker, 300.0)  # 3 ETH
    broker.submit(order("r1", OrderAction.REDUCE, fraction=0.25), at(1), 100.0)
    assert broker.positions()[0].quantity == approx(2.25)
    broker.submit(order("c1", OrderAction.CLOSE), at(2), 100.0)
    assert [(c["id"], c["side"], c["amount"]) for c in venue.calls] == [
        ("o1", "buy", approx(3.0)),
        ("r1", "sell", approx(0.75)),
        ("c1", "sell", approx(2.25)),
    ]
    assert broker.positions() == ()


def test_sliced_orders_send_one_order_per_slice_with_numbered_client_ids() -> None:
    broker, venue = make()
    fills = broker.submit(order("o1", quote_amount=300.0, slices=3), at(0), 100.0)
    assert venue.sent_ids() == ["o1-1", "o1-2", "o1-3"]
    assert sum(c["amount"] for c in venue.calls) == approx(3.0)
    assert [(f.order_id, f.kind) for f in fills] == [("o1", FillKind.OPEN)] * 3
    assert broker.positions()[0].quantity == approx(3.0)


def test_a_buy_is_capped_by_the_free_cash_minus_the_buffer() -> None:
    broker, venue = make(FakeVenue(cash=201.0), cash_buffer_pct=0.5)
    open_o1(broker, 500.0)
    assert venue.calls[0]["amount"] == approx(201.0 / 1.005 / 100.0)


def test_no_cash_refuses_without_sending() -> None:
    broker, venue = make(FakeVenue(cash=0.0))
    with pytest.raises(BrokerError, match="no USDT left"):
        open_o1(broker)
    assert venue.calls == []


@pytest.mark.parametrize(
    ("symbol", "why"),
    [("BTC/USDT:USDT", "not a spot market"), ("ETH/BTC", "not a spot market quoted in USDT")],
)
def test_derivatives_and_other_quotes_are_refused(symbol: str, why: str) -> None:
    broker, venue = make()
    bad = OrderIntent(
        id="o1", symbol=symbol, side=Side.LONG, action=OrderAction.OPEN, reason="", trace="",
        quote_amount=10.0,
    )  # fmt: skip
    with pytest.raises(BrokerError, match=why):
        broker.submit(bad, at(0), 100.0)
    assert venue.calls == []


def test_short_is_refused_because_spot_cannot_short() -> None:
    broker, venue = make()
    with pytest.raises(BrokerError, match=r"SHORT refused.*margin"):
        broker.submit(order("o1", side=Side.SHORT, quote_amount=100.0), at(0), 100.0)
    assert venue.calls == [] and broker.positions() == ()


# --- fees, average prices, closed trades -------------------------------------------------------


def test_scale_in_averages_the_venues_prices_and_counts_fees() -> None:
    broker, venue = make()
    open_o1(broker, 100.0)  # 1 ETH at 100, fee 0.1
    venue.fill_price = 120.0  # the venue fills worse than the reference
    fills = broker.submit(order("s1", OrderAction.SCALE_IN, quote_amount=100.0), at(1), 100.0)
    # 1 ETH at 120: the amount came from the reference price, the price from the venue
    assert [(f.kind, f.price, f.quantity, f.fee) for f in fills] == [
        (FillKind.SCALE_IN, 120.0, approx(1.0), approx(0.12))
    ]
    (position,) = broker.positions()
    assert (position.quantity, position.entry_price, position.adds) == (approx(2.0), 110.0, 1)


def test_a_fee_in_the_base_currency_reduces_the_quantity_held() -> None:
    broker, venue = make()

    def base_fee(answer: dict[str, Any]) -> dict[str, Any]:
        answer["fee"] = None
        answer["fees"] = [{"cost": 0.001, "currency": "ETH"}]
        answer["average"] = None  # cost / filled then
        answer["cost"] = 101.0
        return answer

    venue.script["o1"] = base_fee
    (fill,) = broker.submit(order("o1", quote_amount=100.0), at(0), 100.0)
    assert (fill.price, fill.quantity, fill.fee) == (101.0, approx(0.999), approx(0.101))
    assert broker.positions()[0].quantity == approx(0.999)


def test_a_fee_in_a_third_currency_is_reported_not_counted() -> None:
    broker, venue = make()

    def bnb_fee(answer: dict[str, Any]) -> dict[str, Any]:
        answer["fee"] = {"cost": 0.0002, "currency": "BNB"}
        return answer

    venue.script["o1"] = bnb_fee
    (fill,) = broker.submit(order("o1", quote_amount=100.0), at(0), 100.0)
    assert fill.fee == 0.0
    assert "0.0002 BNB not counted" in broker.orders()[0].detail


def test_closed_trade_pnl_counts_every_fee_and_weights_the_lots() -> None:
    broker, venue = make()
    open_o1(broker, 200.0)  # 2 ETH at 100: paid 200 + 0.2
    venue.fill_price = 110.0
    broker.submit(order("r1", OrderAction.REDUCE, fraction=0.5), at(1), 110.0)  # 1 at 110
    venue.fill_price = 90.0
    broker.submit(order("c1", OrderAction.CLOSE, reason="done"), at(2), 90.0)  # 1 at 90
    (trade,) = broker.closed_trades()
    assert (trade.position_id, trade.quantity, trade.entry_price, trade.exit_price) == (
        "o1",
        approx(2.0),
        100.0,
        approx(100.0),
    )
    # returned (110 - 0.11) + (90 - 0.09) = 199.8; paid 200.2
    assert trade.pnl_quote == approx(199.8 - 200.2)
    assert trade.pnl_pct == approx(0.0)
    assert (trade.reason, trade.closed_at, trade.trace) == ("done", at(2), "t1")


def test_a_close_filled_but_for_precision_dust_ends_the_position() -> None:
    broker, venue = make()
    open_o1(broker, 100.0 / 3)

    def truncated(answer: dict[str, Any]) -> dict[str, Any]:
        answer["filled"] = answer["amount"] = round(answer["filled"] - 5e-5, 4)
        return answer

    venue.script["c1"] = truncated
    broker.submit(order("c1", OrderAction.CLOSE), at(1), 100.0)
    assert broker.positions() == ()
    assert broker.closed_trades()[0].quantity == approx(0.3333)


def test_cash_is_the_venue_balance_cached_per_candle_and_refreshed_after_fills() -> None:
    broker, venue = make()
    assert broker.cash() == 1000.0
    assert broker.cash() == 1000.0
    assert venue.balance_calls == 1
    broker.on_candle(SYMBOL, candle(1, 100, 101, 99, 100))
    broker.on_candle("BTC/USDT", candle(1, 10, 11, 9, 10))  # same candle time: still cached
    broker.cash()
    assert venue.balance_calls == 2
    open_o1(broker, 100.0)  # reads the balance (cached), fills, invalidates it
    assert broker.cash() == approx(1000.0 - 100.0 - 0.1)
    assert venue.balance_calls == 3
    assert broker.equity({SYMBOL: 120.0}) == approx(899.9 + 120.0)
    assert broker.equity({}) == approx(899.9 + 100.0)  # the last candle's close


def test_cash_falls_back_to_the_last_balance_when_the_venue_is_down() -> None:
    broker, venue = make()
    venue.balance_error = VenueUnavailable(
        f"fake: fetch_balance timed out {SECRET}", exchange="fake", call="fetch_balance"
    )
    with pytest.raises(BrokerError, match=r"no USDT balance from the venue: .*\*\*\*") as info:
        broker.cash()
    assert SECRET not in str(info.value)
    venue.balance_error = None
    assert broker.cash() == 1000.0
    broker.on_candle(SYMBOL, candle(1, 100, 101, 99, 100))
    venue.balance_error = VenueUnavailable("down", exchange="fake", call="fetch_balance")
    assert broker.cash() == 1000.0


# --- client-side stops -------------------------------------------------------------------------


def test_stop_loss_sells_at_market_under_a_deterministic_client_id() -> None:
    broker, venue = make()
    open_o1(broker, 100.0, stop_loss=95.0, take_profit=110.0)
    assert broker.on_candle(SYMBOL, candle(1, 100, 105, 96, 104)) == []
    venue.fill_price = 94.0
    (fill,) = broker.on_candle(SYMBOL, candle(2, 104, 104, 94.5, 95))
    assert (fill.kind, fill.order_id, fill.price, fill.time) == (
        FillKind.STOP_LOSS,
        "o1:stop_loss",
        94.0,
        at(2),
    )
    assert venue.calls[-1] == {
        "id": "o1:stop_loss",
        "side": "sell",
        "amount": approx(1.0),
        "type": "market",
        "price": None,
    }
    (trade,) = broker.closed_trades()
    assert (trade.reason, trade.exit_price) == ("STOP_LOSS", 94.0)


def test_when_stop_and_take_profit_are_both_touched_the_stop_wins() -> None:
    broker, venue = make()
    open_o1(broker, 100.0, stop_loss=95.0, take_profit=110.0)
    (fill,) = broker.on_candle(SYMBOL, candle(1, 100, 111, 94, 100))
    assert fill.kind is FillKind.STOP_LOSS
    assert venue.sent_ids() == ["o1", "o1:stop_loss"]


def test_take_profit_alone() -> None:
    broker, venue = make()
    open_o1(broker, 100.0, stop_loss=95.0, take_profit=110.0)
    venue.fill_price = 109.0  # a market sell after the candle: it may exit below the level
    (fill,) = broker.on_candle(SYMBOL, candle(1, 100, 110, 99, 108))
    assert (fill.kind, fill.order_id, fill.price) == (FillKind.TAKE_PROFIT, "o1:take_profit", 109)


def test_trailing_level_uses_the_best_price_before_the_candle() -> None:
    broker, _ = make()
    open_o1(broker, 100.0, stop_loss=80.0, trailing_stop_pct=5.0)
    # high 120 moves the best price only for later candles: 95 (from 100) is not touched by 96
    assert broker.on_candle(SYMBOL, candle(1, 100, 120, 96, 118)) == []
    assert broker.positions()[0].best_price == 120.0
    (fill,) = broker.on_candle(SYMBOL, candle(2, 118, 118, 113.9, 115))  # trail 114
    assert (fill.kind, fill.order_id) == (FillKind.TRAILING_STOP, "o1:trailing_stop")
    assert "TRAILING_STOP 114 touched" in fill.reason


def test_set_stops_is_local_and_changes_only_the_levels_named() -> None:
    broker, venue = make()
    open_o1(broker, 100.0, stop_loss=90.0, take_profit=120.0)
    (fill,) = broker.submit(order("m1", OrderAction.SET_STOPS, stop_loss=97.0), at(1), 100.0)
    assert fill.kind is FillKind.STOPS_SET
    (position,) = broker.positions()
    assert (position.stop_loss, position.initial_stop, position.take_profit) == (97.0, 90.0, 120.0)
    assert venue.sent_ids() == ["o1"]


def test_old_candles_and_other_symbols_do_not_act() -> None:
    broker, venue = make()
    open_o1(broker, 100.0, stop_loss=95.0)
    broker.on_candle(SYMBOL, candle(2, 100, 101, 99, 100))
    assert broker.on_candle(SYMBOL, candle(1, 100, 100, 50, 60)) == []  # not newer
    assert broker.on_candle("BTC/USDT", candle(3, 100, 100, 50, 60)) == []
    assert venue.sent_ids() == ["o1"]


def test_a_failed_stop_is_retried_next_candle_under_a_new_client_id() -> None:
    broker, venue = make()
    open_o1(broker, 100.0, stop_loss=95.0)
    venue.script["o1:stop_loss"] = VenueError(
        "fake: create_order refused: InsufficientFunds", exchange="fake", call="create_order"
    )
    assert broker.on_candle(SYMBOL, candle(1, 100, 100, 94, 96)) == []
    assert "refused: fake: create_order refused: InsufficientFunds" in broker.errors[0]
    assert len(broker.positions()) == 1
    # the price came back above the stop, but a stop that fired must get out
    (fill,) = broker.on_candle(SYMBOL, candle(2, 96, 99, 96, 98))
    assert (fill.kind, fill.order_id) == (FillKind.STOP_LOSS, "o1:stop_loss")
    assert venue.sent_ids() == ["o1", "o1:stop_loss", "o1:stop_loss:2"]
    assert broker.positions() == ()


# --- idempotency and failures ------------------------------------------------------------------


def test_a_repeated_order_id_returns_the_first_result_and_sends_nothing() -> None:
    broker, venue = make()
    first = broker.submit(order("o1", quote_amount=100.0), at(0), 100.0)
    again = broker.submit(order("o1", quote_amount=500.0), at(1), 50.0)
    assert again == first
    assert venue.sent_ids() == ["o1"]
    broker.submit(order("c1", OrderAction.CLOSE), at(2), 100.0)
    assert broker.submit(order("c1", OrderAction.CLOSE), at(3), 100.0)[0].kind is FillKind.CLOSE
    assert venue.sent_ids() == ["o1", "c1"]


def test_client_ids_are_never_reused() -> None:
    broker, venue = make()
    open_o1(broker, 100.0, stop_loss=95.0)
    broker.submit(order("r1", OrderAction.REDUCE, fraction=0.5, slices=2), at(1), 100.0)
    broker.on_candle(SYMBOL, candle(2, 100, 100, 90, 92))
    ids = venue.sent_ids()
    assert ids == ["o1", "r1-1", "r1-2", "o1:stop_loss"]
    assert len(set(ids)) == len(ids)


def test_a_refusal_raises_with_the_venues_redacted_reason() -> None:
    broker, venue = make()
    venue.script["o1"] = VenueError(
        f"fake: create_order(o1) refused: InsufficientFunds key={SECRET}",
        exchange="fake",
        call="create_order(o1)",
    )
    with pytest.raises(BrokerError, match=r"refused: .*InsufficientFunds key=\*\*\*") as info:
        open_o1(broker)
    assert SECRET not in str(info.value)
    assert broker.positions() == () and broker.unresolved() == ()
    assert broker.orders()[0].status == "refused"
    with pytest.raises(BrokerError, match="InsufficientFunds"):  # the first result, again
        open_o1(broker)
    assert venue.sent_ids() == ["o1"]


def test_a_timeout_leaves_an_unresolved_order_and_never_resends() -> None:
    broker, venue = make()
    open_o1(broker, 200.0, stop_loss=95.0)
    venue.script["r1"] = VenueUnavailable(
        "fake: create_order(r1) timed out after 10 s", exchange="fake", call="create_order(r1)"
    )
    with pytest.raises(BrokerError, match=r"outcome unknown.*check client id r1") as info:
        broker.submit(order("r1", OrderAction.REDUCE, fraction=0.5), at(1), 100.0)
    assert isinstance(info.value, VenueOrderError) and info.value.client_id == "r1"
    (unknown,) = broker.unresolved()
    assert (unknown.client_id, unknown.status, unknown.side) == ("r1", "unknown", "sell")
    # the position is frozen: no further venue orders, no client-side stops, until resolved
    with pytest.raises(BrokerError, match=r"unresolved venue order.*r1"):
        broker.submit(order("c1", OrderAction.CLOSE), at(1), 100.0)
    assert broker.on_candle(SYMBOL, candle(2, 100, 100, 90, 92)) == []
    with pytest.raises(BrokerError, match="outcome unknown"):  # a repeat sends nothing
        broker.submit(order("r1", OrderAction.REDUCE, fraction=0.5), at(1), 100.0)
    assert venue.sent_ids() == ["o1", "r1"]

    # the operator found it filled on the venue: book it, and the position moves again
    filled = {"id": "v9", "status": "closed", "filled": 1.0, "average": 101.0, "fee": None}
    (fill,) = broker.resolve("r1", filled, at(3))
    assert (fill.kind, fill.price, fill.quantity) == (FillKind.REDUCE, 101.0, 1.0)
    assert broker.unresolved() == ()
    assert broker.positions()[0].quantity == approx(1.0)
    (stop,) = broker.on_candle(SYMBOL, candle(4, 94, 94, 90, 92))
    assert stop.kind is FillKind.STOP_LOSS


def test_an_order_that_never_left_is_refused_not_unresolved() -> None:
    broker, venue = make()
    venue.script["o1"] = VenueUnavailable(
        "fake: create_order(o1) not sent: breaker open", exchange="fake", call="c", sent=False
    )
    with pytest.raises(BrokerError, match=r"not sent: .*breaker open"):
        open_o1(broker)
    assert broker.unresolved() == ()
    assert broker.orders()[0].status == "not_sent"


def test_an_answer_without_a_filled_amount_is_unresolved() -> None:
    broker, venue = make()

    def bare(answer: dict[str, Any]) -> dict[str, Any]:
        return {"id": answer["id"], "clientOrderId": "o1", "filled": None}

    venue.script["o1"] = bare
    with pytest.raises(BrokerError, match="did not report the filled amount"):
        open_o1(broker)
    assert [o.client_id for o in broker.unresolved()] == ["o1"]
    assert broker.resolve("o1", None, at(1)) == []  # never placed, says the operator
    assert broker.unresolved() == () and broker.positions() == ()


def test_an_answer_without_a_filled_amount_is_looked_up_once_by_client_id() -> None:
    venue = ReconcilingFake()
    full: dict[str, dict[str, Any]] = {}
    lookups: list[str] = []

    def ids_only(answer: dict[str, Any]) -> dict[str, Any]:  # okx and bybit answer like this
        full[answer["clientOrderId"]] = answer
        return {"id": answer["id"], "clientOrderId": answer["clientOrderId"], "filled": None}

    def fetch(client_order_id: str, symbol: str) -> dict[str, Any] | None:
        lookups.append(client_order_id)
        if client_order_id == "o2":
            raise VenueUnavailable("timed out", exchange="fake", call="fetch_order")
        return full.get(client_order_id)

    venue.fetch_order_by_client_id = fetch  # type: ignore[method-assign]
    venue.script.update({"o1": ids_only, "o2": ids_only})
    broker, _ = make(venue)
    (fill,) = broker.submit(order("o1", quote_amount=100.0), at(0), 100.0)
    assert (fill.quantity, lookups, broker.unresolved()) == (approx(1.0), ["o1"], ())
    # A lookup that fails leaves the order unknown (its position frozen); nothing is re-sent.
    with pytest.raises(BrokerError, match="did not report the filled amount"):
        broker.submit(order("o2", quote_amount=100.0), at(1), 100.0)
    assert lookups == ["o1", "o2"] and venue.sent_ids() == ["o1", "o2"]
    assert [o.client_id for o in broker.unresolved()] == ["o2"]


def test_a_limit_left_resting_on_the_venue_is_unresolved_until_resolved() -> None:
    broker, venue = make()

    def resting(answer: dict[str, Any]) -> dict[str, Any]:
        answer.update(status="open", filled=0.0, remaining=answer["amount"], average=None)
        answer["fee"] = None
        return answer

    venue.script["o1"] = resting
    fields: dict[str, Any] = {
        "order_type": OrderType.LIMIT,
        "limit_offset_bps": 100.0,
        "stop_loss": 90.0,
    }
    assert broker.submit(order("o1", quote_amount=100.0, **fields), at(0), 100.0) == []
    (pending,) = broker.unresolved()
    assert (pending.status, pending.limit_price) == ("open", approx(99.0))
    assert broker.positions() == ()
    done = {
        "status": "closed",
        "filled": 1.0,
        "average": 99.0,
        "fee": {"cost": 0.05, "currency": "USDT"},
    }
    (fill,) = broker.resolve("o1", done, at(2))
    assert (fill.kind, fill.price, fill.fee) == (FillKind.OPEN, 99.0, 0.05)
    (position,) = broker.positions()
    assert (position.id, position.stop_loss, position.opened_at) == ("o1", 90.0, at(2))


def test_a_failed_slice_stops_the_order_and_carries_the_earlier_fills() -> None:
    broker, venue = make()
    venue.script["o1-2"] = VenueUnavailable("timed out", exchange="fake", call="create_order")
    with pytest.raises(VenueOrderError, match="check client id o1-2") as info:
        broker.submit(order("o1", quote_amount=300.0, slices=3), at(0), 100.0)
    assert [f.quantity for f in info.value.fills] == [approx(1.0)]
    assert venue.sent_ids() == ["o1-1", "o1-2"]
    assert broker.positions()[0].quantity == approx(1.0)
    assert [o.client_id for o in broker.unresolved()] == ["o1-2"]


def test_resolve_of_an_unknown_client_id_is_refused() -> None:
    broker, _ = make()
    with pytest.raises(BrokerError, match="no unresolved order"):
        broker.resolve("nope", None, at(0))


def test_a_sliced_scale_in_counts_as_one_add() -> None:
    broker, _ = make()
    open_o1(broker, 100.0)
    broker.submit(order("s1", OrderAction.SCALE_IN, quote_amount=100.0, slices=2), at(1), 100.0)
    (position,) = broker.positions()
    assert (position.adds, position.quantity) == (1, approx(2.0))


# --- through the real CcxtVenue (a fake async exchange behind it, no network) ------------------


def test_ccxt_venue_is_an_order_venue() -> None:
    def typed(venue: CcxtVenue) -> OrderVenue:
        return venue  # checked by mypy: the protocol matches the facade

    assert callable(typed)


class AsyncExchange:
    """Just enough of a ccxt async exchange for the facade: fills market orders at 100."""

    def __init__(self, exchange_id: str, config: dict[str, Any]) -> None:
        self.params: list[dict[str, Any]] = []
        self.hang = False

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: float,
        price: float | None = None,
        params: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self.params.append(dict(params or {}))
        if self.hang:
            await asyncio.sleep(3600)
        fee = {"cost": amount * 0.1, "currency": "USDT"}
        return {"id": "x", "status": "closed", "filled": amount, "average": 100.0, "fee": fee}

    async def fetch_balance(self) -> dict[str, Any]:
        return {"free": {"USDT": 500.0}}

    async def close(self) -> None:
        return None


def test_through_ccxt_venue_client_ids_reach_the_exchange_and_a_timeout_is_unresolved() -> None:
    exchanges: list[AsyncExchange] = []

    def factory(exchange_id: str, config: dict[str, Any]) -> AsyncExchange:
        exchanges.append(AsyncExchange(exchange_id, config))
        return exchanges[-1]

    env = {"AIOS_FAKE_API_KEY": "k", "AIOS_FAKE_SECRET": "s"}
    with CcxtVenue("fake", env, timeout_s=0.2, exchange_factory=factory) as venue:
        broker = VenueBroker(venue, quote_currency="USDT")
        assert broker.cash() == 500.0
        broker.submit(order("o1", quote_amount=100.0), at(0), 100.0)
        assert broker.positions()[0].quantity == approx(1.0)
        exchanges[0].hang = True
        with pytest.raises(BrokerError, match="outcome unknown"):
            broker.submit(order("c1", OrderAction.CLOSE), at(1), 100.0)
        assert [p["clientOrderId"] for p in exchanges[0].params] == ["o1", "c1"]
        assert [o.client_id for o in broker.unresolved()] == ["c1"]


# --- restarts: the store, reconciliation -------------------------------------------------------


class ReconcilingFake(FakeVenue):
    """FakeVenue plus what reconciliation asks: orders by client id, open orders, balances."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, dict[str, Any]] = {}
        self.resting: list[dict[str, Any]] = []
        self.cancelled: list[str] = []
        self.lookup_error: Exception | None = None

    def create_order(self, client_order_id: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = super().create_order(client_order_id, *args, **kwargs)
        self.records[client_order_id] = answer
        return answer

    def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        if self.lookup_error is not None:
            raise self.lookup_error
        return self.records.get(client_order_id)

    def cancel_order_by_client_id(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        self.cancelled.append(client_order_id)
        record = self.records.get(client_order_id)
        if record is not None:
            record["status"] = "canceled"
        return record

    def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        return list(self.resting)

    def balances(self) -> dict[str, float]:
        return {"USDT": self.cash, "ETH": self.base}


def stored_broker(tmp_path: Any, venue: ReconcilingFake) -> VenueBroker:
    from aios.exchange.client_ids import FORMATS, venue_client_id
    from aios.exchange.venue_store import VenueStore

    store = VenueStore(tmp_path / "state.sqlite", "binance")
    namespace = store.namespace()
    return VenueBroker(
        venue,
        quote_currency="USDT",
        cash_buffer_pct=0.0,
        store=store,
        venue_client_id=lambda cid: venue_client_id(FORMATS["binance"], namespace, cid),
        client_id_namespace=namespace,
    )


def test_a_restart_keeps_positions_and_reconciles_an_order_whose_answer_was_lost(
    tmp_path: Any,
) -> None:
    venue = ReconcilingFake()
    first = stored_broker(tmp_path, venue)
    first.submit(order("o1", quote_amount=100.0, stop_loss=90.0, take_profit=120.0), at(0), 100.0)
    # The second buy executes on the venue, but its answer never arrives.
    real_create = venue.create_order

    def executes_then_times_out(client_order_id: str, *args: Any, **kwargs: Any) -> Any:
        real_create(client_order_id, *args, **kwargs)
        raise VenueUnavailable("timed out", exchange="fake", call="create_order")

    venue.create_order = executes_then_times_out  # type: ignore[method-assign]
    with pytest.raises(VenueOrderError, match="outcome unknown"):
        first.submit(order("o2", quote_amount=50.0, stop_loss=80.0), at(1), 100.0)
    venue.create_order = real_create  # type: ignore[method-assign]

    second = stored_broker(tmp_path, venue)  # a new process over the same store
    assert [p.id for p in second.positions()] == ["o1"]
    (restored,) = second.positions()
    assert (restored.stop_loss, restored.take_profit) == (90.0, 120.0)
    assert [o.client_id for o in second.unresolved()] == ["o2"]
    decisions = second.reconcile(venue, at(2), [SYMBOL])
    assert [(d.action, d.subject) for d in decisions] == [
        ("adopted", "order:o2"),
        ("adopted", "position:o1"),
        ("adopted", "position:o2"),
    ]
    assert second.unresolved() == ()
    assert {p.id: p.stop_loss for p in second.positions()} == {"o1": 90.0, "o2": 80.0}
    # Nothing was sent twice, and no id is sent again after the restart.
    assert len(venue.sent_ids()) == len(set(venue.sent_ids())) == 2
    with pytest.raises(BrokerError, match="already"):
        second.submit(order("o2", quote_amount=50.0), at(3), 100.0)
    assert len(venue.sent_ids()) == 2


def test_reconciliation_freezes_what_it_cannot_settle(tmp_path: Any) -> None:
    venue = ReconcilingFake()
    first = stored_broker(tmp_path, venue)
    first.submit(order("o1", quote_amount=100.0), at(0), 100.0)
    original = venue.create_order
    venue.create_order = lambda *a, **k: (_ for _ in ()).throw(  # type: ignore[method-assign]
        VenueUnavailable("no answer", exchange="fake", call="create_order")
    )
    with pytest.raises(VenueOrderError):
        first.submit(order("c1", OrderAction.CLOSE), at(1), 100.0)
    venue.create_order = original  # type: ignore[method-assign]
    venue.lookup_error = VenueUnavailable("still down", exchange="fake", call="fetch_order")
    venue.base = 0.5  # someone sold half of it by hand meanwhile

    second = stored_broker(tmp_path, venue)
    decisions = {d.subject: d for d in second.reconcile(venue, at(2), [SYMBOL])}
    assert decisions["order:c1"].action == "frozen"
    assert (
        "asked again at the next check, or look the order up there" in decisions["order:c1"].detail
    )
    assert decisions["position:o1"].action == "frozen"
    assert "the venue holds only 0.5" in decisions["position:o1"].detail
    # Frozen: no venue order for the position, no client-side stop.
    with pytest.raises(BrokerError, match="unresolved"):
        second.submit(order("r1", OrderAction.REDUCE, fraction=0.5), at(3), 100.0)
    assert second.on_candle(SYMBOL, candle(3, 100, 100, 1, 2)) == []


def test_a_resting_order_is_cancelled_and_a_stray_one_of_ours_too(tmp_path: Any) -> None:
    venue = ReconcilingFake()
    first = stored_broker(tmp_path, venue)
    first_id: list[str] = []

    def rests(answer: dict[str, Any]) -> dict[str, Any]:
        first_id.append(answer["clientOrderId"])
        return {**answer, "status": "open", "filled": 0.4, "remaining": 0.6, "cost": 40.0}

    for client_id in ("o1",):
        mapped = first._venue_id(client_id)
        venue.script[mapped] = rests
    first.submit(order("o1", quote_amount=100.0, order_type=OrderType.LIMIT), at(0), 100.0)
    assert [o.status for o in first.unresolved()] == ["open"]  # 0.6 still rests on the venue
    stray = f"{first.client_id_namespace}-run-9-1-1-zzzzzzzzzzzzz"
    venue.resting = [{"clientOrderId": stray}, {"clientOrderId": "someone-else"}]

    second = stored_broker(tmp_path, venue)
    decisions = [(d.action, d.subject) for d in second.reconcile(venue, at(1), [SYMBOL])]
    assert ("cancelled", "order:o1") in decisions
    assert ("cancelled", f"order:{stray}") in decisions
    assert venue.cancelled == [first_id[0], stray]  # never someone else's order
    (position,) = second.positions()
    assert position.quantity == approx(0.4)  # what filled before the cancel is booked


def test_an_order_the_venue_never_received_is_resolved_as_not_placed(tmp_path: Any) -> None:
    from aios.exchange.venue_store import VenueStore

    venue = ReconcilingFake()
    broker = stored_broker(tmp_path, venue)
    mapped = broker._venue_id("o9")
    assert broker.store is not None
    broker.store.sending(
        "o9",
        mapped,
        "o9",
        SYMBOL,
        {
            "client_id": "o9",
            "order_id": "o9",
            "position_id": "o9",
            "symbol": SYMBOL,
            "kind": "OPEN",
            "amount": 1.0,
            "order_type": "market",
            "limit_price": None,
            "reason": "test",
            "closes": False,
            "order": None,
        },
    )  # the process died right after the write-ahead, before sending
    again = stored_broker(tmp_path, venue)
    assert [(d.action, d.subject) for d in again.reconcile(venue, at(0), [SYMBOL])] == [
        ("resolved", "order:o9")
    ]
    assert again.positions() == ()
    assert VenueStore(tmp_path / "state.sqlite", "binance").orders(("sending",)) == []
