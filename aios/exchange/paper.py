"""A paper exchange over candles: the `Broker` that replay and dry runs trade through.

Deterministic by construction (no randomness, no clock, no I/O): the same orders and candles
always give the same fills, so a replay can be compared with another run of itself.

Accounting (quote currency, one symmetric collateral model for long and short)
    * Opening (or adding) a notional N takes N + fee from cash: a position is fully
      collateralised (1x), whatever its side.
    * Closing a quantity q returns q * entry + PnL - fee, with PnL = q * (exit - entry) signed
      for the side. The return is floored at 0: a 1x position cannot lose more than its
      collateral (a short whose price more than doubles is worth nothing, as a venue would have
      liquidated it; liquidation itself is not simulated).
    * equity = cash + cash reserved by resting limit orders + sum over positions of
      (entry notional + unrealised PnL at `prices`), each floored at 0. A symbol missing from
      `prices` is valued at the last close seen by `on_candle`, else at its entry price.
    * Fees are percent of the fill's notional: taker on market fills and on triggered exits
      (stop-loss, trailing stop, take-profit: they execute as market orders when triggered),
      maker on resting limit fills.
    * Cash never goes negative: an OPEN or SCALE_IN costing more than the free cash (fee
      included) is reduced to what the cash allows; with no cash left it is refused with
      `BrokerError`. A resting limit OPEN/SCALE_IN reserves its cost at submission (so the
      check happens then) and releases it when it expires or is cancelled.

Execution
    * MARKET orders fill at once at the reference price moved against the trader by
      `slippage_bps` (a buy higher, a sell lower). A buy is an OPEN/SCALE_IN of a long or a
      REDUCE/CLOSE of a short; a sell is the opposite.
    * LIMIT orders rest at the reference price improved by `order.limit_offset_bps` (a buy lower,
      a sell higher) and fill on a later candle whose range touches them, at the limit price
      (never better: no gift from a gap), maker fee. Not filled after `limit_ttl_candles`
      candles of their symbol, they expire (`expired()`); a resting order whose position closed
      meanwhile is cancelled (also in `expired()`, with that reason).
    * `slices` > 1 gives that many equal child fills at the same price. Market impact of
      splitting is the execution strategy's model (it decides to split); the paper exchange
      charges the same slippage on every child.
    * SET_STOPS changes only the levels it names (stop, take-profit, trailing %, hold-until):
      None never removes a stop. The stop given at opening is kept as `initial_stop` so that R
      stays meaningful when the stop tightens (a position opened without one takes the first
      stop set).
    * Idempotent by `order.id`: a repeated id returns the first result (or raises the first
      refusal again) and changes nothing.

Inside a candle (`on_candle`), pessimistic because the path inside a candle is unknown
    * Existing positions first, then resting limits (a limit that would have helped a position
      does not save it from a stop touched in the same candle).
    * Per position: the effective stop is the tighter of the stop-loss and the trailing level;
      the trailing level uses the best price *before* this candle (the candle's own extreme only
      moves it for the next candle); then best_price is updated.
    * Stop touched: filled at the stop, or at the open when the candle gapped through it (worse
      than the stop). When the stop and the take-profit are both touched, the stop wins.
    * Take-profit touched: filled at the take-profit price, even on a favourable gap.
    * A position opened by a limit fill in this candle is checked against its stop-loss only
      (filled at the stop): the price may have gone on through it after the fill, while whether
      the take-profit came after the fill cannot be known.
    * A candle not newer than the last one seen for its symbol is ignored, so a replay that
      repeats a candle does not act twice. Fills of a candle carry the candle's time.

`positions()` reports the explicit stop-loss; the trailing level is derived from
`trailing_stop_pct` and `best_price`, both reported. A REDUCE realises part of a trade; the
`ClosedTrade` is recorded when the position is fully closed, with quantity-weighted entry and
exit prices over all closed lots and `pnl_quote` = everything returned - everything paid (fees
of every entry and exit included).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aios.exchange.base import BrokerError, Fill, FillKind
from aios.exchange.book import OrderMemory, PositionBook, stop_trigger
from aios.model import Candle, ClosedTrade, OrderAction, OrderIntent, OrderType, Position, Side

if TYPE_CHECKING:
    from aios.policy import Policy

_BPS = 1e-4
_PCT = 1e-2


@dataclass(frozen=True, slots=True)
class Expired:
    """A resting limit order that ended without a fill (no `Fill` exists for it): why and when."""

    order: OrderIntent
    limit_price: float
    time: datetime
    reason: str


@dataclass(slots=True)
class _Book(PositionBook):
    """The paper exchange's record of a position: the shared book, plus its collateral value."""

    def value(self, price: float) -> float:
        """Collateral plus unrealised PnL, floored at 0 (a 1x position loses at most itself)."""
        pnl = (price - self.entry_price) * self.quantity * self.side.sign
        return max(0.0, self.entry_price * self.quantity + pnl)


@dataclass(slots=True)
class _Resting:
    """A limit order waiting for a candle to touch its price."""

    order: OrderIntent
    limit_price: float
    quote_amount: float | None  # OPEN/SCALE_IN: the amount after the cash check
    reserved: float  # cash set aside for it (amount + maker fee), 0 for exits
    candles: int = 0


def _is_buy(side: Side, action: OrderAction) -> bool:
    """Adding to a long or reducing a short buys; the opposite sells."""
    return (side is Side.LONG) == (action in (OrderAction.OPEN, OrderAction.SCALE_IN))


class PaperBroker:
    """A simulated venue implementing `aios.exchange.base.Broker` over candles."""

    def __init__(
        self,
        *,
        starting_balance: float = 1.0,
        quote_currency: str = "BTC",
        maker_fee_pct: float = 0.1,
        taker_fee_pct: float = 0.1,
        slippage_bps: float = 5.0,
        limit_ttl_candles: int = 3,
    ) -> None:
        if starting_balance <= 0:
            raise ValueError(f"starting_balance must be > 0, got {starting_balance}")
        if maker_fee_pct < 0 or taker_fee_pct < 0:
            raise ValueError("fees must be >= 0")
        if slippage_bps < 0:
            raise ValueError(f"slippage_bps must be >= 0, got {slippage_bps}")
        if limit_ttl_candles < 1:
            raise ValueError(f"limit_ttl_candles must be >= 1, got {limit_ttl_candles}")
        self._quote_currency = quote_currency
        self.maker_fee_pct = float(maker_fee_pct)
        self.taker_fee_pct = float(taker_fee_pct)
        self.slippage_bps = float(slippage_bps)
        self.limit_ttl_candles = int(limit_ttl_candles)
        self._cash = float(starting_balance)
        self._positions: dict[str, _Book] = {}
        self._resting: dict[str, _Resting] = {}
        self._expired: list[Expired] = []
        self._closed: list[ClosedTrade] = []
        #: `closed_trades()` as last handed out: read several times per candle time, it
        #: changes only when a trade closes (a fresh copy per read grew with the run).
        self._closed_view: tuple[ClosedTrade, ...] = ()
        self._memory = OrderMemory()
        self._last_candle: dict[str, Candle] = {}
        #: Counts the calls that may change what the broker reports (`submit`, `on_candle`):
        #: while it stays the same, cash, equity at the same prices, positions and closed
        #: trades are what they were (the runtime reuses its portfolio view on that).
        self.revision = 0

    @classmethod
    def from_policy(cls, policy: Policy, *, limit_ttl_candles: int = 3) -> PaperBroker:
        """The paper exchange the policy's `exchange.paper` section describes (schema defaults
        for what it leaves out). The limit TTL is not a policy setting, hence the argument."""
        section: Any = policy.get("exchange", "paper", default={})
        settings: Mapping[str, Any] = section if isinstance(section, Mapping) else {}
        return cls(
            starting_balance=float(settings.get("starting_balance", 1.0)),
            quote_currency=str(settings.get("quote_currency", "BTC")),
            maker_fee_pct=float(settings.get("maker_fee_pct", 0.1)),
            taker_fee_pct=float(settings.get("taker_fee_pct", 0.1)),
            slippage_bps=float(settings.get("slippage_bps", 5.0)),
            limit_ttl_candles=limit_ttl_candles,
        )

    # --- the Broker protocol -------------------------------------------------------------------

    @property
    def quote_currency(self) -> str:
        return self._quote_currency

    def cash(self) -> float:
        """Free quote balance (cash reserved by resting limit orders excluded)."""
        return self._cash

    def equity(self, prices: Mapping[str, float]) -> float:
        total = self._cash + sum(resting.reserved for resting in self._resting.values())
        for book in self._positions.values():
            total += book.value(self._mark(book, prices))
        return total

    def positions(self) -> tuple[Position, ...]:
        return tuple(book.snapshot() for book in self._positions.values())

    def closed_trades(self) -> Sequence[ClosedTrade]:
        if len(self._closed_view) != len(self._closed):
            self._closed_view = tuple(self._closed)
        return self._closed_view

    def submit(self, order: OrderIntent, now: datetime, price: float) -> list[Fill]:
        """Execute `order` at reference `price`; see the module docstring for the rules."""
        self.revision += 1
        return self._memory.once(order.id, lambda: self._submit(order, now, price))

    def on_candle(self, symbol: str, candle: Candle) -> list[Fill]:
        """Let a closed candle act: stops and take-profits of open positions, then resting
        limit orders (see the module docstring for the order and the pessimistic rules)."""
        last = self._last_candle.get(symbol)
        if last is not None and candle.time <= last.time:
            return []
        self.revision += 1
        self._last_candle[symbol] = candle
        fills: list[Fill] = []
        if self._positions:
            for book in [b for b in self._positions.values() if b.symbol == symbol]:
                fills.extend(self._protect(book, candle))
        if self._resting:
            fills.extend(self._fill_resting(symbol, candle))
        return fills

    # --- extras for the runtime and tests ------------------------------------------------------

    def open_orders(self) -> tuple[OrderIntent, ...]:
        """Resting limit orders, oldest first."""
        return tuple(resting.order for resting in self._resting.values())

    def expired(self) -> tuple[Expired, ...]:
        """Limit orders that expired or were cancelled without a fill, oldest first."""
        return tuple(self._expired)

    # --- orders --------------------------------------------------------------------------------

    def _submit(self, order: OrderIntent, now: datetime, price: float) -> list[Fill]:
        if not price > 0:
            raise BrokerError(f"order {order.id}: reference price must be > 0, got {price}")
        if order.slices < 1:
            raise BrokerError(f"order {order.id}: slices must be >= 1, got {order.slices}")
        limit = order.order_type is OrderType.LIMIT
        fee_pct = self.maker_fee_pct if limit else self.taker_fee_pct
        if order.action is OrderAction.OPEN:
            amount = self._affordable(order, self._positive_amount(order), fee_pct)
            if limit:
                return self._rest(order, price, amount)
            fill_price = self._slipped(order.side, order.action, price)
            return self._open(order, now, fill_price, amount, fee_pct)
        book = self._book(order)
        if order.action is OrderAction.SET_STOPS:
            return [book.set_stops(order, now, price)]
        added: float | None = None
        if order.action is OrderAction.SCALE_IN:
            added = self._affordable(order, self._positive_amount(order), fee_pct)
        else:
            self._exit_quantity(book, order)  # validate now, not when a limit fills
        if limit:
            return self._rest(order, price, added)
        fill_price = self._slipped(order.side, order.action, price)
        return self._execute(book, order, now, fill_price, added, fee_pct)

    def _execute(
        self,
        book: _Book,
        order: OrderIntent,
        now: datetime,
        fill_price: float,
        amount: float | None,
        fee_pct: float,
    ) -> list[Fill]:
        """SCALE_IN, REDUCE or CLOSE on an existing position at `fill_price`."""
        if order.action is OrderAction.SCALE_IN:
            assert amount is not None
            return self._scale_in(book, order, now, fill_price, amount, fee_pct)
        quantity = self._exit_quantity(book, order)
        kind = FillKind.CLOSE if order.action is OrderAction.CLOSE else FillKind.REDUCE
        return self._exit(
            book, quantity, fill_price, fee_pct, now, kind, order.id, order.reason, order.slices
        )

    def _positive_amount(self, order: OrderIntent) -> float:
        if order.quote_amount is None or not order.quote_amount > 0:
            raise BrokerError(
                f"order {order.id}: {order.action} needs a quote_amount > 0, "
                f"got {order.quote_amount}"
            )
        return order.quote_amount

    def _affordable(self, order: OrderIntent, amount: float, fee_pct: float) -> float:
        """The amount the free cash can pay for with its fee; refuses when nothing is left."""
        fee_rate = fee_pct * _PCT
        if self._cash <= 0:
            raise BrokerError(
                f"order {order.id}: no cash left for {order.action} of {amount} "
                f"{self._quote_currency}"
            )
        return min(amount, self._cash / (1.0 + fee_rate))

    def _book(self, order: OrderIntent) -> _Book:
        book = self._positions.get(order.position_id or "")
        if book is None:
            raise BrokerError(f"order {order.id}: no open position {order.position_id!r}")
        if book.symbol != order.symbol or book.side is not order.side:
            raise BrokerError(
                f"order {order.id}: is {order.symbol} {order.side}, position {book.id} is "
                f"{book.symbol} {book.side}"
            )
        return book

    def _exit_quantity(self, book: _Book, order: OrderIntent) -> float:
        if order.action is OrderAction.CLOSE:
            return book.quantity
        fraction = order.fraction
        if fraction is None or not 0 < fraction <= 1:
            raise BrokerError(
                f"order {order.id}: REDUCE needs a fraction in (0, 1], got {fraction}"
            )
        return book.quantity if fraction == 1 else book.quantity * fraction

    def _slipped(self, side: Side, action: OrderAction, price: float) -> float:
        move = self.slippage_bps * _BPS
        return price * (1.0 + move) if _is_buy(side, action) else price * (1.0 - move)

    def _spend(self, cost: float) -> None:
        """Take `cost` from cash; a rounding hair below zero (spending it all) becomes 0."""
        self._cash = max(0.0, self._cash - cost)

    def _open(
        self, order: OrderIntent, now: datetime, fill_price: float, amount: float, fee_pct: float
    ) -> list[Fill]:
        quantity = amount / fill_price
        fee = amount * fee_pct * _PCT
        self._spend(amount + fee)
        book = _Book(
            id=order.id,
            symbol=order.symbol,
            side=order.side,
            entry_price=fill_price,
            quantity=quantity,
            opened_at=now,
            stop_loss=order.stop_loss,
            take_profit=order.take_profit,
            initial_stop=order.stop_loss,
            trailing_stop_pct=order.trailing_stop_pct,
            best_price=fill_price,
            hold_until=order.hold_until,
            confidence=order.confidence,
            size_multiplier=order.size_multiplier,
            trace=order.trace,
            paid=amount + fee,
        )
        self._positions[book.id] = book
        return self._fills(
            order.id,
            book,
            FillKind.OPEN,
            now,
            fill_price,
            quantity,
            fee,
            order.reason,
            order.slices,
        )

    def _scale_in(
        self,
        book: _Book,
        order: OrderIntent,
        now: datetime,
        fill_price: float,
        amount: float,
        fee_pct: float,
    ) -> list[Fill]:
        quantity = amount / fill_price
        fee = amount * fee_pct * _PCT
        self._spend(amount + fee)
        total = book.quantity + quantity
        book.entry_price = (book.entry_price * book.quantity + fill_price * quantity) / total
        book.quantity = total
        book.adds += 1
        book.paid += amount + fee
        return self._fills(
            order.id,
            book,
            FillKind.SCALE_IN,
            now,
            fill_price,
            quantity,
            fee,
            order.reason,
            order.slices,
        )

    def _exit(
        self,
        book: _Book,
        quantity: float,
        fill_price: float,
        fee_pct: float,
        now: datetime,
        kind: FillKind,
        order_id: str,
        reason: str,
        slices: int = 1,
    ) -> list[Fill]:
        """Close `quantity` of `book` (all of it when equal); record the trade when it ends."""
        full = quantity >= book.quantity
        if full:
            quantity = book.quantity
        pnl = (fill_price - book.entry_price) * quantity * book.side.sign
        fee = fill_price * quantity * fee_pct * _PCT
        proceeds = max(0.0, book.entry_price * quantity + pnl - fee)
        self._cash += proceeds
        book.returned += proceeds
        book.closed_quantity += quantity
        book.closed_entry_value += book.entry_price * quantity
        book.closed_exit_value += fill_price * quantity
        fills = self._fills(order_id, book, kind, now, fill_price, quantity, fee, reason, slices)
        if full:
            book.quantity = 0.0
            del self._positions[book.id]
            self._record(book, now, kind, reason)
            self._cancel_resting_of(book.id, now)
        else:
            book.quantity -= quantity
        return fills

    def _record(self, book: _Book, now: datetime, kind: FillKind, reason: str) -> None:
        self._closed.append(book.closed_trade(now, kind, reason))

    def _fills(
        self,
        order_id: str,
        book: _Book,
        kind: FillKind,
        now: datetime,
        price: float,
        quantity: float,
        fee: float,
        reason: str,
        slices: int,
    ) -> list[Fill]:
        """`slices` equal child fills; the last takes the rounding remainder so sums are exact."""
        fills: list[Fill] = []
        child_quantity, child_fee = quantity / slices, fee / slices
        for index in range(slices):
            last = index == slices - 1
            fills.append(
                Fill(
                    order_id=order_id,
                    position_id=book.id,
                    symbol=book.symbol,
                    side=book.side,
                    kind=kind,
                    time=now,
                    price=price,
                    quantity=quantity - child_quantity * (slices - 1) if last else child_quantity,
                    fee=fee - child_fee * (slices - 1) if last else child_fee,
                    reason=reason,
                )
            )
        return fills

    # --- resting limit orders ------------------------------------------------------------------

    def _rest(self, order: OrderIntent, price: float, amount: float | None) -> list[Fill]:
        offset = order.limit_offset_bps * _BPS
        buy = _is_buy(order.side, order.action)
        limit = price * (1.0 - offset) if buy else price * (1.0 + offset)
        reserved = 0.0
        if amount is not None:
            reserved = amount * (1.0 + self.maker_fee_pct * _PCT)
            self._spend(reserved)
        self._resting[order.id] = _Resting(order, limit, amount, reserved)
        return []

    def _fill_resting(self, symbol: str, candle: Candle) -> list[Fill]:
        fills: list[Fill] = []
        for order_id, resting in list(self._resting.items()):
            order = resting.order
            if order.symbol != symbol or order_id not in self._resting:
                continue
            resting.candles += 1
            buy = _is_buy(order.side, order.action)
            touched = (
                candle.low <= resting.limit_price if buy else candle.high >= resting.limit_price
            )
            if touched:
                del self._resting[order_id]
                fills.extend(self._fill_limit(resting, candle))
            elif resting.candles >= self.limit_ttl_candles:
                del self._resting[order_id]
                self._release(resting, candle.time, f"not filled in {resting.candles} candles")
        return fills

    def _fill_limit(self, resting: _Resting, candle: Candle) -> list[Fill]:
        order, price, now = resting.order, resting.limit_price, candle.time
        self._cash += resting.reserved  # the reserve pays for the fill
        if order.action is OrderAction.OPEN:
            assert resting.quote_amount is not None
            fills = self._open(order, now, price, resting.quote_amount, self.maker_fee_pct)
            book = self._positions[order.id]
            fills.extend(self._stop_after_fill(book, candle))
            return fills
        book = self._positions[order.position_id or ""]
        return self._execute(book, order, now, price, resting.quote_amount, self.maker_fee_pct)

    def _release(self, resting: _Resting, time: datetime, reason: str) -> None:
        self._cash += resting.reserved
        self._expired.append(Expired(resting.order, resting.limit_price, time, reason))

    def _cancel_resting_of(self, position_id: str, time: datetime) -> None:
        """Resting orders of a position that just closed can no longer fill: cancel them."""
        for order_id, resting in list(self._resting.items()):
            if resting.order.action is not OrderAction.OPEN and (
                resting.order.position_id == position_id
            ):
                del self._resting[order_id]
                self._release(resting, time, f"position {position_id} closed")

    # --- stops inside a candle -----------------------------------------------------------------

    def _protect(self, book: _Book, candle: Candle) -> list[Fill]:
        """The shared intra-candle rule (aios.exchange.book.stop_trigger); a gap through the
        stop fills at the open, the take-profit at its level (no gift)."""
        trigger = stop_trigger(book, candle)
        if trigger is None:
            return []
        if trigger.kind is FillKind.TAKE_PROFIT:
            reason = f"TAKE_PROFIT {trigger.level:.10g} touched"
            return self._trigger(book, candle, trigger.kind, trigger.level, reason)
        price = candle.open if trigger.gapped else trigger.level
        why = (
            f"gapped through {trigger.level:.10g}, filled at the open"
            if trigger.gapped
            else "touched"
        )
        return self._trigger(
            book, candle, trigger.kind, price, f"{trigger.kind.value} {trigger.level:.10g} {why}"
        )

    def _stop_after_fill(self, book: _Book, candle: Candle) -> list[Fill]:
        """A position born inside this candle: only its stop-loss, at the stop (pessimistic)."""
        stop = book.stop_loss
        if stop is None:
            return []
        touched = candle.low <= stop if book.side is Side.LONG else candle.high >= stop
        if not touched:
            return []
        reason = f"STOP_LOSS {stop:.10g} touched in the candle the limit filled"
        return self._trigger(book, candle, FillKind.STOP_LOSS, stop, reason)

    def _trigger(
        self, book: _Book, candle: Candle, kind: FillKind, price: float, reason: str
    ) -> list[Fill]:
        exit_id = f"{book.id}:{kind.value.lower()}"
        return self._exit(
            book, book.quantity, price, self.taker_fee_pct, candle.time, kind, exit_id, reason
        )

    def _mark(self, book: _Book, prices: Mapping[str, float]) -> float:
        price = prices.get(book.symbol)
        if price is not None:
            return price
        last = self._last_candle.get(book.symbol)
        return last.close if last is not None else book.entry_price
