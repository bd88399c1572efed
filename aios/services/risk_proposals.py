"""`aios service risk-proposals`: regime-weighted SL/TP/trailing proposals per open position.

Calculation only: nothing here changes a position. The service follows the streams without a
consumer group (it keeps its own read position, from the start of what the streams retain): the
candles (`market.candle:<SYMBOL>` of the policy's universe) make its market, the trade intents
and fills of one book (default: actual) make its view of the open positions. Every
`bus.risk_proposals_interval_s` (on its clock) it calls the `aios_protect` hook of the enabled
plugins (the built-in exit proposals: volatility regime, profit locks, trailing) for each open
position and publishes the actions on `risk.proposals:<SYMBOL>`.

What it does not know: the risk mode and the directives the gate holds (it assumes NORMAL and
none), and a position's best price since entry (trailing distances are proposed from the
position's own stops).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace

from aios.bus import CANDLES, EXECUTIONS, INTENTS, RISK_PROPOSALS, Bus, Clock, Delivery, per_symbol
from aios.bus.events import CandleClosed, ExecutionReported, RiskProposed, TradeIntentDecided, event
from aios.exchange.base import FillKind
from aios.market import InMemoryMarket
from aios.model import (
    CycleContext,
    Mode,
    OrderAction,
    OrderIntent,
    PortfolioView,
    Position,
    PositionAction,
    Stage,
    own_mode,
)
from aios.policy import Policy
from aios.registry import PluginSet, call_each

_CLOSING = {FillKind.CLOSE, FillKind.STOP_LOSS, FillKind.TAKE_PROFIT, FillKind.TRAILING_STOP}


class RiskProposalService:
    """Follows candles and fills; proposes stops for each open position on its interval."""

    def __init__(
        self,
        bus: Bus,
        policy: Policy,
        plugins: PluginSet,
        *,
        clock: Clock,
        book: str = "actual",
    ) -> None:
        self.bus = bus
        self.policy = policy
        self.plugins = plugins
        self.clock = clock
        self.book = book
        self.stop = threading.Event()
        configured = policy.get("universe", "symbols", default=[])
        self.symbols = [str(s) for s in configured] if isinstance(configured, list) else []
        self.market = InMemoryMarket({s: [] for s in self.symbols})
        self.positions: dict[str, Position] = {}
        self._orders: dict[str, OrderIntent] = {}
        self._read: dict[str, str] = {
            **{per_symbol(CANDLES, s): "0" for s in self.symbols},
            INTENTS: "0",
            EXECUTIONS: "0",
        }
        self._last_run: float | None = None
        self.published = 0

    # --- following the streams ---------------------------------------------------------------

    def follow(self, block_ms: int | None = None) -> int:
        deliveries = self.bus.read_after(self._read, block_ms=block_ms or None)
        for delivery in deliveries:
            self._read[delivery.stream] = delivery.entry_id
            self._apply(delivery)
        return len(deliveries)

    def _apply(self, delivery: Delivery) -> None:
        payload = delivery.event.payload
        if isinstance(payload, CandleClosed) and payload.candle is not None:
            last = self.market.last(payload.symbol)
            if last is None or payload.candle.time > last.time:
                self.market.append(payload.symbol, payload.candle)
        elif isinstance(payload, TradeIntentDecided) and payload.book == self.book:
            order = payload.order
            self._orders[order.id] = order
            held = self.positions.get(order.position_id or "")
            if held is not None and order.action is OrderAction.SET_STOPS:
                self.positions[held.id] = replace(
                    held,
                    stop_loss=order.stop_loss if order.stop_loss is not None else held.stop_loss,
                    take_profit=order.take_profit
                    if order.take_profit is not None
                    else held.take_profit,
                    trailing_stop_pct=order.trailing_stop_pct
                    if order.trailing_stop_pct is not None
                    else held.trailing_stop_pct,
                )
        elif isinstance(payload, ExecutionReported) and payload.book == self.book:
            self._fill(payload)

    def _fill(self, report: ExecutionReported) -> None:
        fill = report.fill
        held = self.positions.get(fill.position_id)
        if fill.kind is FillKind.OPEN and held is None:
            order = self._orders.get(fill.order_id)
            self.positions[fill.position_id] = Position(
                fill.position_id,
                fill.symbol,
                fill.side,
                fill.price,
                fill.quantity,
                fill.time,
                None if order is None else order.stop_loss,
                None if order is None else order.take_profit,
                initial_stop=None if order is None else order.stop_loss,
                confidence=None if order is None else order.confidence,
                trace="" if order is None else order.trace,
            )
        elif held is not None and fill.kind in (FillKind.OPEN, FillKind.SCALE_IN):
            quantity = held.quantity + fill.quantity
            entry = (held.entry_price * held.quantity + fill.price * fill.quantity) / quantity
            self.positions[held.id] = replace(held, quantity=quantity, entry_price=entry)
        elif held is not None and fill.kind is FillKind.REDUCE:
            self.positions[held.id] = replace(held, quantity=held.quantity - fill.quantity)
        elif held is not None and fill.kind in _CLOSING:
            del self.positions[held.id]

    # --- proposing -----------------------------------------------------------------------------

    def propose(self) -> list[RiskProposed]:
        """Every enabled `aios_protect` implementation's actions, per open position."""
        prices: dict[str, float] = {}
        for symbol in self.symbols:
            last = self.market.last(symbol)
            if last is not None:
                prices[symbol] = last.close
        times = [c.time for s in self.symbols if (c := self.market.last(s)) is not None]
        if not times:
            return []
        now = max(times)
        positions = tuple(self.positions.values())
        ctx = CycleContext(
            now,
            0,
            self.policy,
            Stage.AUTONOMY,  # calculation only: what would be proposed, whatever the stage
            self.market,
            PortfolioView(0.0, 0.0, positions, prices),
        )
        proposals = []
        for position in positions:
            price = prices.get(position.symbol)
            if price is None:
                continue
            actions: list[PositionAction] = []
            for result in call_each(
                self.plugins.manager,
                "aios_protect",
                {"ctx": ctx, "position": position, "assessment": None},
                lambda name: own_mode(self.policy, name) is not Mode.OFF,
            ):
                if result.error is None and result.value:
                    actions.extend(a for a in result.value if isinstance(a, PositionAction))
            proposals.append(RiskProposed(position.symbol, position.id, now, price, tuple(actions)))
        return proposals

    def poll(self, block_ms: int | None = None) -> int:
        wait = self.bus.settings.block_ms if block_ms is None else block_ms
        done = self.follow(wait)
        now = self.clock()
        interval = self.bus.settings.risk_proposals_interval_s
        if self._last_run is None or now - self._last_run >= interval:
            self._last_run = now
            for proposal in self.propose():
                item = event(
                    f"risk/{proposal.position_id}/{proposal.time.isoformat()}/{now:.0f}", proposal
                )
                self.bus.publish(per_symbol(RISK_PROPOSALS, proposal.symbol), item)
                self.published += 1
        return done

    def close(self) -> None:
        pass

    @property
    def open_positions(self) -> Mapping[str, Position]:
        return self.positions
