"""What every broker keeps per open position, and the one rule for stops inside a candle.

Shared by the paper exchange and the venue broker, so that a replay and a live run protect a
position the same way (and a fix to the rule lands in both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aios.exchange.base import BrokerError, Fill, FillKind
from aios.model import Candle, ClosedTrade, OrderIntent, Position, Side

_PCT = 1e-2
#: Exits the broker triggers itself (not an engine order).
TRIGGERED_EXITS = frozenset({FillKind.STOP_LOSS, FillKind.TAKE_PROFIT, FillKind.TRAILING_STOP})


@dataclass
class PositionBook:
    """A broker's mutable record of an open position (snapshots go out as `Position`)."""

    id: str
    symbol: str
    side: Side
    entry_price: float
    quantity: float
    opened_at: datetime
    stop_loss: float | None
    take_profit: float | None
    initial_stop: float | None
    trailing_stop_pct: float | None
    best_price: float
    hold_until: datetime | None
    confidence: float | None
    size_multiplier: float | None
    trace: str
    adds: int = 0
    # For the ClosedTrade: what went in and out over the whole life of the position.
    paid: float = 0.0
    returned: float = 0.0
    closed_quantity: float = 0.0
    closed_entry_value: float = 0.0
    closed_exit_value: float = 0.0

    def snapshot(self) -> Position:
        return Position(
            id=self.id,
            symbol=self.symbol,
            side=self.side,
            entry_price=self.entry_price,
            quantity=self.quantity,
            opened_at=self.opened_at,
            stop_loss=self.stop_loss,
            take_profit=self.take_profit,
            initial_stop=self.initial_stop,
            trailing_stop_pct=self.trailing_stop_pct,
            best_price=self.best_price,
            adds=self.adds,
            hold_until=self.hold_until,
            confidence=self.confidence,
            trace=self.trace,
        )

    def closed_trade(self, now: datetime, kind: FillKind, reason: str) -> ClosedTrade:
        """The finished trade: entry and exit averaged over every partial close, PnL after all
        fees; a stop, trailing stop or take-profit names itself as the reason."""
        entry = self.closed_entry_value / self.closed_quantity
        exit_price = self.closed_exit_value / self.closed_quantity
        return ClosedTrade(
            position_id=self.id,
            symbol=self.symbol,
            side=self.side,
            entry_price=entry,
            exit_price=exit_price,
            quantity=self.closed_quantity,
            opened_at=self.opened_at,
            closed_at=now,
            pnl_pct=(exit_price - entry) / entry * 100.0 * self.side.sign,
            pnl_quote=self.returned - self.paid,
            reason=kind.value if kind in TRIGGERED_EXITS else reason,
            confidence=self.confidence,
            size_multiplier=self.size_multiplier,
            trace=self.trace,
        )

    def set_stops(self, order: OrderIntent, now: datetime, price: float) -> Fill:
        """Only the levels the order names change; None never removes a stop. The first stop
        ever set becomes the initial stop (R stays meaningful when stops tighten)."""
        if order.stop_loss is not None:
            self.stop_loss = order.stop_loss
            if self.initial_stop is None:
                self.initial_stop = order.stop_loss
        if order.take_profit is not None:
            self.take_profit = order.take_profit
        if order.trailing_stop_pct is not None:
            self.trailing_stop_pct = order.trailing_stop_pct
        if order.hold_until is not None:
            self.hold_until = order.hold_until
        return Fill(
            order_id=order.id,
            position_id=self.id,
            symbol=self.symbol,
            side=self.side,
            kind=FillKind.STOPS_SET,
            time=now,
            price=price,
            quantity=0.0,
            fee=0.0,
            reason=order.reason,
        )


@dataclass(frozen=True)
class StopTrigger:
    """A protective level a candle reached: which, at what level, and whether it gapped."""

    kind: FillKind
    level: float
    gapped: bool


def tighter(side: Side, a: float | None, b: float | None) -> float | None:
    """The stop closer to the price: the higher for a long, the lower for a short."""
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b) if side is Side.LONG else min(a, b)


def stop_trigger(book: PositionBook, candle: Candle) -> StopTrigger | None:
    """The pessimistic rule for one closed candle.

    The effective stop is the tighter of the stop-loss and the trailing level, the trailing level
    taken from the best price *before* this candle. When the stop and the take-profit are both
    touched, the stop wins (the order inside a candle is unknown). Nothing triggered: the best
    price moves to the candle's extreme, for the next candle.
    """
    long = book.side is Side.LONG
    trail = None
    if book.trailing_stop_pct is not None:
        trail = book.best_price * (1.0 - book.side.sign * book.trailing_stop_pct * _PCT)
    stop = tighter(book.side, book.stop_loss, trail)
    if stop is not None and (candle.low <= stop if long else candle.high >= stop):
        kind = FillKind.STOP_LOSS if stop == book.stop_loss else FillKind.TRAILING_STOP
        return StopTrigger(kind, stop, candle.open <= stop if long else candle.open >= stop)
    take_profit = book.take_profit
    if take_profit is not None and (
        candle.high >= take_profit if long else candle.low <= take_profit
    ):
        return StopTrigger(FillKind.TAKE_PROFIT, take_profit, False)
    book.best_price = (
        max(book.best_price, candle.high) if long else min(book.best_price, candle.low)
    )
    return None


class OrderMemory:
    """Idempotency by order id: a repeated id gets the first answer again (the same fills, or
    the same refusal re-raised) and never a second effect."""

    def __init__(self) -> None:
        self._results: dict[str, list[Fill] | BrokerError] = {}

    def once(self, order_id: str, execute: Callable[[], list[Fill]]) -> list[Fill]:
        previous = self._results.get(order_id)
        if isinstance(previous, BrokerError):
            raise previous
        if previous is not None:
            return list(previous)
        try:
            fills = execute()
        except BrokerError as error:
            self._results[order_id] = error
            raise
        self._results[order_id] = fills
        return list(fills)
