"""The broker interface the runtime trades through.

It is position-level, matching what the engine decides (`aios.model.OrderIntent`): open a
position with its TP/SL, scale in, reduce, close, move its stops. A paper broker simulates it
over candles; a venue broker maps it onto exchange orders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from aios.model import Candle, ClosedTrade, OrderIntent, Position, Side


class BrokerError(Exception):
    """An order the broker refuses (unknown position, not enough cash...), with why."""


class FillKind(StrEnum):
    OPEN = "OPEN"
    SCALE_IN = "SCALE_IN"
    REDUCE = "REDUCE"
    CLOSE = "CLOSE"
    STOP_LOSS = "STOP_LOSS"
    TAKE_PROFIT = "TAKE_PROFIT"
    TRAILING_STOP = "TRAILING_STOP"
    STOPS_SET = "STOPS_SET"


@dataclass(frozen=True, slots=True)
class Fill:
    """Something that happened to a position: a fill (with price, quantity, fee) or a stop change."""

    order_id: str
    position_id: str
    symbol: str
    side: Side
    kind: FillKind
    time: datetime
    price: float
    quantity: float
    fee: float
    reason: str


class Broker(Protocol):
    """What the runtime needs from a venue, paper or real."""

    @property
    def quote_currency(self) -> str: ...

    def cash(self) -> float:
        """Free quote balance."""
        ...

    def equity(self, prices: Mapping[str, float]) -> float:
        """Cash plus the value of open positions at `prices`."""
        ...

    def positions(self) -> tuple[Position, ...]: ...

    def submit(self, order: OrderIntent, now: datetime, price: float) -> list[Fill]:
        """Execute an engine order at reference `price` (market orders fill now; limit orders
        rest). Idempotent by `order.id`: a repeated id returns the first result, no new effect."""
        ...

    def on_candle(self, symbol: str, candle: Candle) -> list[Fill]:
        """Let a new candle act: resting limit orders, stop-loss, take-profit, trailing stops."""
        ...

    def closed_trades(self) -> Sequence[ClosedTrade]:
        """Every trade closed so far, oldest first."""
        ...
