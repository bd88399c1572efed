"""A `Broker` that sends real orders to a spot venue through `CcxtVenue`.

The engine thinks in positions (open with TP/SL, scale in, reduce, close, move the stops); a spot
venue knows only buy and sell orders. This broker maps one onto the other and keeps the positions
itself, from what the venue answers, with the same `Position` / `ClosedTrade` records as the
paper exchange so that the runtime, the report and the plugins cannot tell the difference.

Spot only
    A SHORT is refused (`BrokerError`): selling what one does not hold needs a margin account
    (borrowing the base asset), which is another market type with liquidation rules this broker
    does not model. Derivative symbols (`BTC/USDT:USDT`) are refused for the same reason, and so
    is a symbol whose quote is not the broker's quote currency (cash is counted in one currency).

Orders
    * OPEN / SCALE_IN buy `quote_amount / price` base units, at most what the free cash allows
      after keeping `cash_buffer_pct` for fees and slippage (a market buy costs a little more than
      the reference price). REDUCE sells `fraction` of the quantity held, CLOSE all of it.
    * MARKET, or LIMIT at the reference price improved by `limit_offset_bps` (a buy lower, a sell
      higher). The client order id is the engine's order id; a sliced order sends one order per
      slice, `<id>-1` ... `<id>-<n>`, and stops at the first slice that fails.
    * The books follow the venue's answer, not the request: ccxt's unified `filled`, `average` and
      `fee`/`fees`. A fee paid in the base currency (a spot buy usually pays its fee in what it
      buys) reduces the quantity held; a fee in a third currency (an exchange token) cannot be
      valued here and is logged, not counted.
    * A CLOSE (or REDUCE of everything, or a triggered exit) that the venue filled to within
      `dust_ratio` closes the position: venues truncate amounts to their precision, and the dust
      left over cannot be sold anyway.
    * SET_STOPS only changes local state (see below): no venue call.

Failures (never retried blindly)
    * Refused by the venue (`VenueError`: insufficient funds, bad amount...): `BrokerError` with
      the venue's reason, redacted; nothing changes.
    * `VenueUnavailable` after the request left (timeout, network): the order may or may not
      exist. It is recorded as `unknown` in `unresolved()` with its client id, the position it
      belongs to is frozen (no more venue orders, no client-side stops: selling twice on spot
      could sell holdings that are not this position's), and `BrokerError` names the client id so
      an operator can look it up on the venue; `resolve()` applies the venue's answer later.
      An order that certainly never left (breaker open) is refused plainly.
    * A venue answer without `filled` (okx and bybit answer a placement with ids only) is looked
      up once by client id, when the venue can be asked; still without a filled amount, or an
      order still resting on the venue (a LIMIT that did not fill at once), it is unresolved
      too: the broker cannot watch resting orders, so whatever fills later is unknown until
      `resolve()` (or a re-check, `recheck()`).
    * Idempotent by engine order id: a repeated id returns the first result (or raises the first
      error again) and sends nothing. The venue also refuses a client id it has sent before; the
      broker never builds the same client id twice (triggered exits number their attempts).

Stops are client-side
    ccxt's unified API has no OCO (one-cancels-other) order for a spot TP + SL pair, and venues
    differ in the stop orders they accept, so the stop-loss, take-profit and trailing stop are
    kept here and checked by `on_candle` against each new *closed* candle, with the paper
    exchange's pessimistic rule: the effective stop is the tighter of the stop-loss and the
    trailing level (from the best price before this candle); when the stop and the take-profit
    are both touched, the stop wins. A hit sends a market sell with client id
    `<position id>:stop_loss` (`take_profit`, `trailing_stop`); a failed attempt is retried on the
    next candle of the symbol as `<position id>:stop_loss:2` and so on, since a stop that fired
    must get out. What this costs, honestly:
    * latency: a stop acts only when a candle has closed and been polled, up to one candle (plus
      the poll interval) after the price crossed it; nothing protects the position while this
      process is down;
    * price: the exit is a market sell *now*, at whatever the book gives, not at the stop or the
      take-profit level (a take-profit can exit below its level, a stop far below it after a gap).
    An exchange-side stop (a venue's native stop-loss / OCO order) would be better wherever the
    venue supports it: it acts on every trade and survives this process.

Cash is the venue's free quote balance, fetched at most once per candle time and again after
every fill; when the venue cannot be reached the last known balance is used (and logged).
equity(prices) = cash + sum of quantity x price over open positions.

Restarts (with a `VenueStore`)
    Every order is written to the store before it is sent and updated with the answer; open
    positions are written after every change. A new broker over the same store starts with
    those positions and with every order that may exist on the venue (sent, no answer; or
    resting) frozen, and `reconcile()` asks the venue, order by order (by client id):
    * found filled, partly filled or cancelled: *adopted*, the fills booked, the position
      unfrozen; found resting: *cancelled* (this broker cannot watch a resting order), then
      what filled is booked; not found: it never reached the venue, *resolved* as not placed;
    * the venue cannot answer: the position stays *frozen* (no order, no client-side stop),
      and the message says which client id to look up;
    * a stored position whose base currency the venue no longer holds in full (sold by hand?)
      is *frozen*, not sold: the numbers are in the message, and the freeze is kept in the
      store (since when, last checked) for `aios status`;
    * a resting order under this store's client-id namespace that nothing here knows of is
      *cancelled*; other resting orders on the account are left alone.
    During a run `recheck()` asks again about what is frozen (periodically, `aios.live`); with
    no run, `operator_resolve()` / `operator_settle()` book what an operator found on the venue
    (`aios venue resolve` / `settle`), refused when it contradicts what the store knows.
    Client ids are mapped to the venue's format (`aios.exchange.client_ids`) by the function
    given; the store refuses an id already recorded, so no order id is ever sent twice, across
    restarts too.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from aios.exchange.base import BrokerError, Fill, FillKind
from aios.exchange.book import OrderMemory, PositionBook, stop_trigger
from aios.exchange.ccxt_venue import VenueError, VenueUnavailable
from aios.exchange.venue_store import UNRESOLVED, ClientIdTaken, VenueStore
from aios.model import Candle, ClosedTrade, OrderAction, OrderIntent, OrderType, Position, Side

logger = logging.getLogger(__name__)

_BPS = 1e-4
_PCT = 1e-2
#: The marker, among a position's unresolved ids, of a freeze by a balance check.
_BALANCE = "balance"
#: ccxt order statuses after which nothing more can fill.
_DONE = frozenset({"closed", "canceled", "cancelled", "expired", "rejected"})


class OrderVenue(Protocol):
    """What the broker needs from a venue (`CcxtVenue` has it; tests use a small fake)."""

    def create_order(
        self,
        client_order_id: str,
        symbol: str,
        side: str,
        amount: float,
        order_type: str = "market",
        price: float | None = None,
        reduce_only: bool = False,
    ) -> dict[str, Any]: ...

    def balance(self, quote: str) -> float: ...

    def redact(self, text: str) -> str: ...


class ReconcilingVenue(OrderVenue, Protocol):
    """What reconciliation at start-up needs on top (`CcxtVenue` has it)."""

    def fetch_order_by_client_id(
        self, client_order_id: str, symbol: str
    ) -> dict[str, Any] | None: ...

    def cancel_order_by_client_id(
        self, client_order_id: str, symbol: str
    ) -> dict[str, Any] | None: ...

    def fetch_open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]: ...

    def balances(self) -> dict[str, float]: ...


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """One decision about the venue (at start-up, or a periodic re-check): adopted, cancelled,
    resolved, frozen, or unfrozen (a balance check passed again)."""

    action: str  # adopted | cancelled | resolved | frozen | unfrozen
    subject: str  # order:<client id> or position:<id>
    symbol: str
    detail: str


class DecisionRefused(Exception):
    """An operator's decision that contradicts what the store knows; nothing was changed."""


class VenueOrderError(BrokerError):
    """A venue order that failed or whose outcome is unknown. `client_id` is what to look up on
    the venue; `fills` are those of earlier slices of the same engine order, already booked."""

    def __init__(
        self, message: str, *, client_id: str | None = None, fills: Sequence[Fill] = ()
    ) -> None:
        super().__init__(message)
        self.client_id = client_id
        self.fills = tuple(fills)


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """One order as sent to the venue and as the venue answered (the audit trail).

    status: filled, partial (the rest was cancelled), open (the rest rests on the venue),
    unfilled, unknown (no answer: check the venue), refused, not_sent, resolved."""

    client_id: str
    order_id: str
    position_id: str
    symbol: str
    side: str
    amount: float
    order_type: str
    limit_price: float | None
    status: str
    filled: float = 0.0
    average: float | None = None
    fee: float = 0.0
    venue_id: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Execution:
    """What a venue order executed, in totals, so that a later answer can be applied as a delta."""

    filled: float = 0.0  # base units
    cost: float = 0.0  # quote: filled x average price
    fee_quote: float = 0.0  # fees charged in the quote currency
    fee_base: float = 0.0  # fees charged in the base currency

    def minus(self, other: _Execution) -> _Execution:
        return _Execution(
            self.filled - other.filled,
            self.cost - other.cost,
            self.fee_quote - other.fee_quote,
            self.fee_base - other.fee_base,
        )


@dataclass(frozen=True, slots=True)
class _Intent:
    """One venue order and what it is for: enough to book its answer now or at `resolve()`."""

    client_id: str
    order_id: str  # the Fill's order id: the engine's, or `<position id>:<exit kind>`
    position_id: str
    symbol: str
    kind: FillKind
    amount: float
    order_type: str
    limit_price: float | None
    reason: str
    closes: bool  # a complete fill ends the position
    order: OrderIntent | None  # the engine order (an OPEN carries the stops and the context)

    @property
    def buy(self) -> bool:
        return self.kind in (FillKind.OPEN, FillKind.SCALE_IN)


@dataclass(frozen=True, slots=True)
class _Pending:
    """An order whose outcome is unknown, and what of it was booked already (so that the
    venue's answer, when it comes, books only the rest)."""

    intent: _Intent
    applied: _Execution


@dataclass(slots=True)
class _Book(PositionBook):
    """The venue broker's record of a position: the shared book, plus what live orders need."""

    #: Client ids of this position's orders with an unknown outcome: while any, it is frozen.
    unresolved: set[str] = field(default_factory=set)
    #: A triggered exit not done yet (refused, not sent, partly filled): retried every candle.
    exiting: tuple[FillKind, str] | None = None
    exit_attempts: dict[FillKind, int] = field(default_factory=dict)
    #: Engine orders that scaled in (a sliced SCALE_IN counts once, as on the paper exchange).
    scaled_by: set[str] = field(default_factory=set)


def _number(value: Any) -> float | None:
    """A finite float from a ccxt field (which may be None, a string or garbage), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _currencies(symbol: str) -> tuple[str, str]:
    base, _, quote = symbol.partition("/")
    return base, quote


class VenueBroker:
    """`aios.exchange.base.Broker` over a real spot venue; see the module docstring."""

    def __init__(
        self,
        venue: OrderVenue,
        *,
        quote_currency: str,
        cash_buffer_pct: float = 0.5,
        dust_ratio: float = 1e-3,
        store: VenueStore | None = None,
        venue_client_id: Callable[[str], str] | None = None,
        client_id_namespace: str | None = None,
    ) -> None:
        if not 0 <= cash_buffer_pct < 100:
            raise ValueError(f"cash_buffer_pct must be in [0, 100), got {cash_buffer_pct}")
        if not 0 <= dust_ratio < 1:
            raise ValueError(f"dust_ratio must be in [0, 1), got {dust_ratio}")
        self.venue = venue
        self._quote_currency = quote_currency
        self.cash_buffer_pct = float(cash_buffer_pct)
        self.dust_ratio = float(dust_ratio)
        self._cash: float | None = None
        self._cash_fresh = False
        self._cash_time: datetime | None = None
        self._positions: dict[str, _Book] = {}
        self._closed: list[ClosedTrade] = []
        self._memory = OrderMemory()
        self._last_candle: dict[str, Candle] = {}
        self._sent: set[str] = set()
        self._orders: list[VenueOrder] = []
        self._pending: dict[str, _Pending] = {}
        #: Client-side exits that failed inside `on_candle` (which cannot raise), newest last.
        self.errors: list[str] = []
        #: Positions frozen by a balance check, and the check's message.
        self._frozen: dict[str, str] = {}
        #: Fills of orders settled by `recheck()`, handed to the run by `on_candle`.
        self._held: list[Fill] = []
        self.store = store
        self._venue_id = venue_client_id or (lambda client_id: client_id)
        #: The prefix of every venue client id this store sends (None: ids are not mapped,
        #: and resting orders on the venue are never taken for ours).
        self.client_id_namespace = client_id_namespace
        if store is not None:
            self._restore(store)

    # --- the Broker protocol -------------------------------------------------------------------

    @property
    def quote_currency(self) -> str:
        return self._quote_currency

    def cash(self) -> float:
        """The venue's free quote balance; fetched once per candle time and after fills."""
        cash = self._cash
        if cash is None or not self._cash_fresh:
            try:
                cash = float(self.venue.balance(self._quote_currency))
            except VenueError as exc:
                reason = self.venue.redact(str(exc))
                if cash is None:
                    raise BrokerError(
                        f"no {self._quote_currency} balance from the venue: {reason}"
                    ) from None
                logger.warning("using the last known balance %g: %s", cash, reason)
            self._cash, self._cash_fresh = cash, True
        return cash

    def equity(self, prices: Mapping[str, float]) -> float:
        return self.cash() + sum(
            book.quantity * self._mark(book, prices) for book in self._positions.values()
        )

    def positions(self) -> tuple[Position, ...]:
        return tuple(book.snapshot() for book in self._positions.values())

    def closed_trades(self) -> Sequence[ClosedTrade]:
        return tuple(self._closed)

    def submit(self, order: OrderIntent, now: datetime, price: float) -> list[Fill]:
        """Send `order` to the venue at reference `price`; see the module docstring."""
        try:
            return self._memory.once(order.id, lambda: self._submit(order, now, price))
        finally:
            self._save_positions()

    def on_candle(self, symbol: str, candle: Candle) -> list[Fill]:
        """Client-side stops against a new closed candle (never raises: failures are logged and
        kept in `errors`, and the exit is retried on the next candle)."""
        last = self._last_candle.get(symbol)
        if last is not None and candle.time <= last.time:
            return []
        self._last_candle[symbol] = candle
        if self._cash_time is None or candle.time > self._cash_time:
            self._cash_time, self._cash_fresh = candle.time, False
        fills = [fill for fill in self._held if fill.symbol == symbol]
        if fills:
            self._held = [fill for fill in self._held if fill.symbol != symbol]
        for book in [b for b in self._positions.values() if b.symbol == symbol]:
            if book.unresolved:
                logger.warning(
                    "position %s: client-side stops suspended until %s is resolved",
                    book.id,
                    ", ".join(sorted(book.unresolved)),
                )
                continue
            trigger = book.exiting or self._protect(book, candle)
            if trigger is not None:
                fills.extend(self._exit(book, trigger, candle))
        self._save_positions()
        return fills

    # --- extras for operators and tests --------------------------------------------------------

    def orders(self) -> tuple[VenueOrder, ...]:
        """Every venue order sent (or attempted), oldest first."""
        return tuple(self._orders)

    def unresolved(self) -> tuple[VenueOrder, ...]:
        """Orders whose outcome is not known (no answer, or still resting on the venue): check
        each on the venue by its client id, then `resolve()` it."""
        latest = {o.client_id: o for o in self._orders}
        return tuple(latest[client_id] for client_id in self._pending)

    def resolve(
        self, client_id: str, result: Mapping[str, Any] | None, now: datetime
    ) -> list[Fill]:
        """Apply what the venue says about an unresolved order: its ccxt order structure (e.g.
        from `fetch_order`), or None when it was never placed. Unfreezes its position."""
        pending = self._pending.get(client_id)
        if pending is None:
            raise BrokerError(f"no unresolved order with client id {client_id!r}")
        intent = pending.intent
        last = self._last_candle.get(intent.symbol)
        reference = intent.limit_price or (None if last is None else last.close)
        if (
            result is not None
            and reference is None
            and not any(
                (_number(result.get(key)) or 0.0) > 0 for key in ("average", "cost", "price")
            )
        ):
            raise BrokerError(f"order {client_id}: the answer has no price to book it at")
        del self._pending[client_id]
        book = self._positions.get(intent.position_id)
        if book is not None:
            book.unresolved.discard(client_id)
        try:
            if result is None:
                self._log(intent, "resolved", detail="never placed")
                return []
            return self._book_answer(
                intent, result, now, reference, pending.applied, resolving=True
            )
        finally:
            self._save_positions()

    # --- restarts --------------------------------------------------------------------------------

    def _restore(self, store: VenueStore) -> None:
        """Positions, balance freezes and possibly-live orders from the store; those orders
        freeze their positions until `reconcile()` (or `resolve()`) settles them."""
        for state in store.positions().values():
            book = _book_from_state(state)
            self._positions[book.id] = book
        for freeze in store.freezes():
            frozen = self._positions.get(freeze.position_id)
            if frozen is not None:
                frozen.unresolved.add(_BALANCE)
                self._frozen[freeze.position_id] = freeze.message
        self._sent.update(store.client_ids())
        for stored in store.orders(UNRESOLVED):
            intent = _intent_from_state(stored.intent)
            applied = _Execution(
                float(stored.applied.get("filled", 0.0)),
                float(stored.applied.get("cost", 0.0)),
                float(stored.applied.get("fee_quote", 0.0)),
                float(stored.applied.get("fee_base", 0.0)),
            )
            self._pending[intent.client_id] = _Pending(intent, applied)
            self._log(
                intent,
                stored.status,
                persist=False,  # the stored row stays as it is (its time says since when)
                detail=stored.detail or "restored after a restart",
            )
            frozen = self._positions.get(intent.position_id)
            if frozen is not None:
                frozen.unresolved.add(intent.client_id)

    def _save_positions(self) -> None:
        if self.store is not None:
            self.store.save_positions(
                {book.id: _book_state(book) for book in self._positions.values()}
            )

    def reconcile(
        self, venue: ReconcilingVenue, now: datetime, symbols: Sequence[str] = ()
    ) -> list[Reconciliation]:
        """Settle what the store says may exist on the venue (see the module docstring);
        every decision is returned, for the journal and the operator. What the settled orders
        filled is booked into the positions (no run is going on to record those fills)."""
        done = self._settle_orders(venue, now)
        self._held.clear()
        done.extend(self._reconcile_positions(venue, now))
        done.extend(self._cancel_strays(venue, symbols))
        self._save_positions()
        return done

    def frozen(self) -> dict[str, str]:
        """Frozen positions and why: unresolved client ids, or the balance check's message."""
        why: dict[str, str] = {}
        for book in self._positions.values():
            if book.unresolved:
                orders = sorted(book.unresolved - {_BALANCE})
                parts = [f"unresolved order(s) {', '.join(orders)}"] if orders else []
                if _BALANCE in book.unresolved:
                    parts.append(self._frozen.get(book.id, "balance not checked"))
                why[book.id] = "; ".join(parts)
        return why

    def recheck(self, venue: ReconcilingVenue, now: datetime) -> list[Reconciliation]:
        """During a live run: ask the venue again about every order whose outcome is unknown
        and every position frozen by a balance check, as the start-up reconciliation does
        (no venue call when nothing is frozen). A position whose orders are settled and whose
        balance is covered trades again (`unfrozen`). Fills the settled orders made are
        returned by the next `on_candle` of their symbol, so the run records them."""
        if not self._pending and not self._frozen:
            return []
        done = self._settle_orders(venue, now)
        if self._frozen:
            done.extend(self._reconcile_positions(venue, now, only_frozen=True))
        self._save_positions()
        return done

    def _settle_orders(self, venue: ReconcilingVenue, now: datetime) -> list[Reconciliation]:
        """Every pending order looked up by its client id (adopted, cancelled, resolved or
        frozen); the fills are kept in `_held`."""
        done: list[Reconciliation] = []
        for client_id in list(self._pending):
            intent = self._pending[client_id].intent
            venue_id = self._venue_id(client_id)
            subject = f"order:{client_id}"
            try:
                found = venue.fetch_order_by_client_id(venue_id, intent.symbol)
                action = "adopted"
                if found is not None and str(found.get("status") or "") == "open":
                    cancelled = venue.cancel_order_by_client_id(venue_id, intent.symbol)
                    found = venue.fetch_order_by_client_id(venue_id, intent.symbol) or cancelled
                    action = "cancelled"
                if found is None:
                    self.resolve(client_id, None, now)
                    done.append(
                        Reconciliation(
                            "resolved",
                            subject,
                            intent.symbol,
                            f"{venue_id} is not on the venue: it was never placed",
                        )
                    )
                    continue
                fills = self.resolve(client_id, found, now)
            except BrokerError as exc:
                done.append(
                    Reconciliation(
                        "frozen",
                        subject,
                        intent.symbol,
                        f"{venue_id} could not be settled ({self.venue.redact(str(exc))}): "
                        f"position {intent.position_id} stays frozen; the venue is asked again at "
                        f"the next check, or look the order up there and record what you find "
                        f"with `aios venue resolve {client_id}`",
                    )
                )
                continue
            self._held.extend(fills)
            filled = sum(fill.quantity for fill in fills)
            verb = "cancelled on the venue (it was resting)" if action == "cancelled" else "found"
            done.append(
                Reconciliation(
                    action,
                    subject,
                    intent.symbol,
                    f"{venue_id} {verb}, status {found.get('status')}: {filled:.10g} "
                    f"{intent.symbol.partition('/')[0]} booked from it",
                )
            )
        return done

    def _reconcile_positions(
        self, venue: ReconcilingVenue, now: datetime, *, only_frozen: bool = False
    ) -> list[Reconciliation]:
        """Each position against the venue's balance of its base currency (all positions of
        one base together); `only_frozen` reports only the positions a balance check froze."""
        if not self._positions:
            self._save_freezes(now)
            return []
        reported = [
            book for book in self._positions.values() if not only_frozen or book.id in self._frozen
        ]
        try:
            totals = venue.balances()
        except BrokerError as exc:
            reason = self.venue.redact(str(exc))
            unavailable: list[Reconciliation] = []
            for book in reported:
                book.unresolved.add(_BALANCE)
                message = self._frozen.get(book.id) or (
                    f"balances unavailable ({reason}); frozen until checked"
                )
                self._frozen[book.id] = message
                unavailable.append(
                    Reconciliation(
                        "frozen",
                        f"position:{book.id}",
                        book.symbol,
                        f"balances unavailable ({reason}); frozen until checked",
                    )
                )
            self._save_freezes(now)
            return unavailable
        held: dict[str, float] = {}
        for book in self._positions.values():
            base = book.symbol.partition("/")[0]
            held[base] = held.get(base, 0.0) + book.quantity
        done: list[Reconciliation] = []
        for book in reported:
            base = book.symbol.partition("/")[0]
            on_venue = totals.get(base, 0.0)
            subject = f"position:{book.id}"
            if on_venue + self.dust_ratio * held[base] >= held[base]:
                was_frozen = self._frozen.pop(book.id, None) is not None
                book.unresolved.discard(_BALANCE)
                action = "unfrozen" if was_frozen else "adopted"
                detail = f"{book.quantity:.10g} {base} tracked, the venue holds {on_venue:.10g}"
                if book.unresolved:
                    action = "frozen"
                    detail += f"; frozen until {', '.join(sorted(book.unresolved))} is resolved"
            else:
                book.unresolved.add(_BALANCE)
                action, detail = (
                    "frozen",
                    (
                        f"aios tracks {held[base]:.10g} {base} in positions, the venue holds only "
                        f"{on_venue:.10g} (sold outside aios?): frozen, nothing is sold; settle "
                        f"it on the venue, or record what happened with `aios venue settle "
                        f"{book.id}` (checked again periodically and at the next start)"
                    ),
                )
                self._frozen[book.id] = detail
            done.append(Reconciliation(action, subject, book.symbol, detail))
        self._save_freezes(now)
        return done

    def _save_freezes(self, now: datetime) -> None:
        for position_id in [p for p in self._frozen if p not in self._positions]:
            del self._frozen[position_id]
        if self.store is not None:
            self.store.save_freezes(
                {p: (self._positions[p].symbol, message) for p, message in self._frozen.items()},
                now,
            )

    # --- an operator's decisions (`aios venue resolve` / `settle`), with no run going on ---------

    def operator_resolve(
        self,
        client_id: str,
        outcome: str,
        now: datetime,
        *,
        filled: float | None = None,
        price: float | None = None,
        fee: float = 0.0,
    ) -> str:
        """Record what the operator found on the venue for an order whose outcome is unknown:
        `filled` (`filled` base units in total, default all of it, at average `price`, `fee`
        in the quote currency), `cancelled` (nothing filled beyond what is booked), or
        `never-placed`. Refused (`DecisionRefused`) when it contradicts the store. Returns what
        was booked, for the journal."""
        pending = self._pending.get(client_id)
        if pending is None:
            raise DecisionRefused(self._not_pending(client_id))
        intent, applied = pending.intent, pending.applied
        base, quote = _currencies(intent.symbol)
        booked = f"{applied.filled:.10g} {base} already booked from it"
        if outcome == "never-placed":
            if applied.filled > 0:
                raise DecisionRefused(
                    f"order {client_id} cannot have been never placed: the venue reported "
                    f"{applied.filled:.10g} {base} filled from it before; use --as cancelled or "
                    "--as filled"
                )
            if filled is not None or price is not None:
                raise DecisionRefused("--as never-placed takes no --filled or --price")
            self.resolve(client_id, None, now)
            self._retag(client_id, "resolved", "never placed (operator)")
            return "never placed: nothing booked"
        if outcome == "cancelled":
            if filled is not None or price is not None:
                raise DecisionRefused(
                    "--as cancelled means nothing filled beyond what is booked; an order that "
                    "filled (in part) before it was cancelled is --as filled --filled QTY --price P"
                )
            del self._pending[client_id]
            book = self._positions.get(intent.position_id)
            if book is not None:
                book.unresolved.discard(client_id)
            self._retag(client_id, "cancelled", f"cancelled (operator); {booked}")
            self._save_positions()
            return f"cancelled: {booked}, nothing more"
        if outcome != "filled":
            raise DecisionRefused(
                f"unknown outcome {outcome!r}: use filled, cancelled or never-placed"
            )
        if price is None or not math.isfinite(price) or price <= 0:
            raise DecisionRefused(
                f"--as filled needs --price > 0 (the average fill price), got {price}"
            )
        total = intent.amount if filled is None else filled
        if not math.isfinite(total) or total <= 0:
            raise DecisionRefused(f"--filled must be > 0, got {total}")
        if total > intent.amount * (1.0 + self.dust_ratio):
            raise DecisionRefused(
                f"order {client_id} was for {intent.amount:.10g} {base}; it cannot have filled "
                f"{total:.10g}"
            )
        if total < applied.filled * (1.0 - 1e-9):
            raise DecisionRefused(
                f"the venue reported {applied.filled:.10g} {base} filled from order {client_id} "
                f"before; the total filled cannot be less ({total:.10g})"
            )
        if not math.isfinite(fee) or fee < applied.fee_quote:
            raise DecisionRefused(
                f"--fee is the order's whole fee in {quote}; {applied.fee_quote:.10g} of it is "
                f"already booked, got {fee}"
            )
        answer = {
            "status": "closed",
            "filled": total,
            "average": price,
            "cost": total * price,
            "fee": {"cost": fee, "currency": quote},
        }
        fills = self.resolve(client_id, answer, now)
        self._retag(client_id, None, f"filled (operator): {total:.10g} {base} at {price:.10g}")
        quantity = sum(f.quantity for f in fills)
        return f"filled: {total:.10g} {base} at {price:.10g} in total, {quantity:.10g} booked now"

    def operator_settle(
        self, position_id: str, outcome: str, now: datetime, *, quantity: float | None = None
    ) -> str:
        """Record what happened to a position a balance check froze: `sold-outside` (it is
        gone: forgotten, nothing is sold) or `reduced` to `quantity` (what aios tracks from
        now on). Refused (`DecisionRefused`) for a position that is not frozen by a balance
        check, or that has orders whose outcome is unknown."""
        book = self._positions.get(position_id)
        if book is None:
            known = ", ".join(sorted(self._positions)) or "none"
            raise DecisionRefused(
                f"no open position {position_id!r} in the venue store (open positions: {known})"
            )
        orders = sorted(book.unresolved - {_BALANCE})
        if orders:
            raise DecisionRefused(
                f"position {position_id} has order(s) whose outcome is unknown: "
                f"{', '.join(orders)}; resolve them first (`aios venue resolve`)"
            )
        if position_id not in self._frozen:
            raise DecisionRefused(
                f"position {position_id} is not frozen: the last balance check found it covered "
                "by the venue; there is nothing to settle"
            )
        base = book.symbol.partition("/")[0]
        if outcome == "sold-outside":
            if quantity is not None:
                raise DecisionRefused("--as sold-outside takes no --quantity (it is all gone)")
            del self._positions[position_id]
            detail = (
                f"sold outside aios: {book.quantity:.10g} {base} bought at {book.entry_price:.10g}"
                " forgotten (no closed trade is recorded: its exit price is unknown)"
            )
        elif outcome == "reduced":
            if quantity is None or not math.isfinite(quantity) or quantity <= 0:
                raise DecisionRefused(
                    f"--as reduced needs --quantity > 0 (what is left), got {quantity}"
                )
            if quantity >= book.quantity:
                raise DecisionRefused(
                    f"position {position_id} tracks {book.quantity:.10g} {base}; reduced means "
                    f"less, got {quantity:.10g}"
                )
            detail = f"reduced outside aios: {book.quantity:.10g} -> {quantity:.10g} {base}"
            book.quantity = quantity
            book.unresolved.discard(_BALANCE)
        else:
            raise DecisionRefused(f"unknown outcome {outcome!r}: use sold-outside or reduced")
        self._frozen.pop(position_id, None)
        self._save_positions()
        self._save_freezes(now)
        return detail

    def _not_pending(self, client_id: str) -> str:
        stored = None if self.store is None else self.store.order(client_id)
        if stored is not None:
            return (
                f"order {stored.client_id} is not unresolved: its status is {stored.status} "
                f"(since {stored.updated_at}); there is nothing to resolve"
            )
        unresolved = ", ".join(self._pending) or "none"
        return f"no venue order {client_id!r} in the store (unresolved ones: {unresolved})"

    def _retag(self, client_id: str, status: str | None, detail: str) -> None:
        if self.store is not None:
            stored = self.store.order(client_id)
            if stored is not None:
                self.store.update(client_id, status or stored.status, detail)

    def _cancel_strays(
        self, venue: ReconcilingVenue, symbols: Sequence[str]
    ) -> list[Reconciliation]:
        """Resting orders under this store's namespace that nothing here knows of."""
        prefix = self.client_id_namespace
        if not prefix:
            return []
        known = {self._venue_id(client_id) for client_id in self._pending}
        done: list[Reconciliation] = []
        for symbol in sorted(set(symbols) | {b.symbol for b in self._positions.values()}):
            try:
                resting = venue.fetch_open_orders(symbol)
            except BrokerError as exc:
                done.append(
                    Reconciliation(
                        "frozen",
                        f"symbol:{symbol}",
                        symbol,
                        f"open orders unavailable ({self.venue.redact(str(exc))}): not checked",
                    )
                )
                continue
            for order in resting:
                venue_id = str(order.get("clientOrderId") or "")
                if not venue_id.startswith(prefix) or venue_id in known:
                    continue
                try:
                    venue.cancel_order_by_client_id(venue_id, symbol)
                    detail = f"{venue_id} rested on the venue, unknown to this store: cancelled"
                    action = "cancelled"
                except BrokerError as exc:
                    action = "frozen"
                    detail = f"{venue_id} could not be cancelled: {self.venue.redact(str(exc))}"
                done.append(Reconciliation(action, f"order:{venue_id}", symbol, detail))
        return done

    # --- orders --------------------------------------------------------------------------------

    def _submit(self, order: OrderIntent, now: datetime, price: float) -> list[Fill]:
        if order.side is Side.SHORT:
            raise BrokerError(
                f"order {order.id}: SHORT refused: a spot venue cannot sell what is not held "
                f"(shorting needs a margin account)"
            )
        if not price > 0:
            raise BrokerError(f"order {order.id}: reference price must be > 0, got {price}")
        if order.slices < 1:
            raise BrokerError(f"order {order.id}: slices must be >= 1, got {order.slices}")
        if order.action is OrderAction.OPEN:
            base, quote = _currencies(order.symbol)
            if ":" in order.symbol or not base or quote != self._quote_currency:
                raise BrokerError(
                    f"order {order.id}: {order.symbol} is not a spot market quoted in "
                    f"{self._quote_currency}"
                )
            amount = self._affordable(order)
            return self._trade(order, order.id, FillKind.OPEN, amount / price, now, price)
        book = self._book(order)
        if order.action is OrderAction.SET_STOPS:
            return [book.set_stops(order, now, price)]
        if book.unresolved:
            raise BrokerError(
                f"order {order.id}: position {book.id} has unresolved venue order(s) "
                f"{', '.join(sorted(book.unresolved))}; check them on the venue first"
            )
        if order.action is OrderAction.SCALE_IN:
            amount = self._affordable(order)
            return self._trade(order, book.id, FillKind.SCALE_IN, amount / price, now, price)
        if order.action is OrderAction.CLOSE:
            return self._trade(order, book.id, FillKind.CLOSE, book.quantity, now, price)
        fraction = order.fraction
        if fraction is None or not 0 < fraction <= 1:
            raise BrokerError(
                f"order {order.id}: REDUCE needs a fraction in (0, 1], got {fraction}"
            )
        quantity = book.quantity * fraction
        return self._trade(order, book.id, FillKind.REDUCE, quantity, now, price, fraction == 1)

    def _affordable(self, order: OrderIntent) -> float:
        """The quote amount to spend: the order's, capped by the free cash minus the buffer."""
        if order.quote_amount is None or not order.quote_amount > 0:
            raise BrokerError(
                f"order {order.id}: {order.action} needs a quote_amount > 0, "
                f"got {order.quote_amount}"
            )
        cash = self.cash()
        if cash <= 0:
            raise BrokerError(
                f"order {order.id}: no {self._quote_currency} left for {order.action} of "
                f"{order.quote_amount}"
            )
        return min(order.quote_amount, cash / (1.0 + self.cash_buffer_pct * _PCT))

    def _book(self, order: OrderIntent) -> _Book:
        book = self._positions.get(order.position_id or "")
        if book is None or book.symbol != order.symbol:
            raise BrokerError(
                f"order {order.id}: no open {order.symbol} position {order.position_id!r}"
            )
        return book

    def _trade(
        self,
        order: OrderIntent,
        position_id: str,
        kind: FillKind,
        quantity: float,
        now: datetime,
        price: float,
        closes: bool = False,
    ) -> list[Fill]:
        """One venue order per slice, booked as each answers; stops at the first failure."""
        buy = kind in (FillKind.OPEN, FillKind.SCALE_IN)
        closes = closes or kind is FillKind.CLOSE
        limit_price: float | None = None
        if order.order_type is OrderType.LIMIT:
            offset = order.limit_offset_bps * _BPS
            limit_price = price * (1.0 - offset) if buy else price * (1.0 + offset)
        slices = order.slices
        part = quantity / slices
        fills: list[Fill] = []
        for index in range(1, slices + 1):
            last = index == slices
            intent = _Intent(
                client_id=order.id if slices == 1 else f"{order.id}-{index}",
                order_id=order.id,
                position_id=position_id,
                symbol=order.symbol,
                kind=kind,
                amount=quantity - part * (slices - 1) if last else part,
                order_type="limit" if limit_price is not None else "market",
                limit_price=limit_price,
                reason=order.reason,
                closes=closes and last,
                order=order,
            )
            try:
                fills.extend(self._place(intent, now, price))
            except VenueOrderError as error:
                raise VenueOrderError(str(error), client_id=error.client_id, fills=fills) from None
        return fills

    def _place(self, intent: _Intent, now: datetime, reference: float) -> list[Fill]:
        """Send one order and book the answer; every failure is recorded, then raised."""
        client_id = intent.client_id
        if client_id in self._sent:  # cannot happen by construction; never risk a double order
            raise VenueOrderError(f"client id {client_id!r} was already used", client_id=client_id)
        self._sent.add(client_id)
        side = "buy" if intent.buy else "sell"
        venue_id = self._venue_id(client_id)
        what = f"{side} {intent.amount:.10g} {intent.symbol} (client id {venue_id})"
        if self.store is not None:
            try:  # write-ahead: a crash from here on leaves the order to reconcile
                self.store.sending(
                    client_id, venue_id, intent.position_id, intent.symbol, _intent_state(intent)
                )
            except ClientIdTaken as exc:
                raise VenueOrderError(f"{what}: {exc}", client_id=client_id) from None
        try:
            result = self.venue.create_order(
                venue_id,
                intent.symbol,
                side,
                intent.amount,
                intent.order_type,
                intent.limit_price,
            )
        except VenueUnavailable as exc:
            reason = self.venue.redact(str(exc))
            self._cash_fresh = False
            if not exc.sent:
                self._log(intent, "not_sent", detail=reason)
                raise VenueOrderError(f"{what} not sent: {reason}", client_id=client_id) from None
            self._log(intent, "unknown", detail=reason)
            self._unknown(intent, reason)
            raise VenueOrderError(
                f"{what}: outcome unknown ({reason}); check client id {client_id} on the venue "
                f"before anything else trades this position",
                client_id=client_id,
            ) from None
        except VenueError as exc:
            reason = self.venue.redact(str(exc))
            self._log(intent, "refused", detail=reason)
            raise VenueOrderError(f"{what} refused: {reason}", client_id=client_id) from None
        return self._book_answer(intent, result, now, reference, _Execution())

    def _unknown(self, intent: _Intent, detail: str, applied: _Execution | None = None) -> None:
        """Keep an order whose outcome only the venue knows for `resolve()`, and freeze its
        position (created first when part of the order filled)."""
        self._pending[intent.client_id] = _Pending(intent, applied or _Execution())
        if self.store is not None:
            done = applied or _Execution()
            self.store.update(
                intent.client_id,
                "open" if applied is not None and applied.filled > 0 else "unknown",
                detail,
                {
                    "filled": done.filled,
                    "cost": done.cost,
                    "fee_quote": done.fee_quote,
                    "fee_base": done.fee_base,
                },
            )
        book = self._positions.get(intent.position_id)
        if book is not None:
            book.unresolved.add(intent.client_id)
        logger.warning(
            "venue order %s (%s) is unresolved: %s", intent.client_id, intent.symbol, detail
        )

    def _book_answer(
        self,
        intent: _Intent,
        result: Mapping[str, Any],
        now: datetime,
        reference: float | None,
        applied: _Execution,
        *,
        resolving: bool = False,
    ) -> list[Fill]:
        """Book a ccxt order structure, minus what was booked of it before (`applied`)."""
        prefix = "resolved: " if resolving else ""
        filled = _number(result.get("filled"))
        if filled is None and not resolving:
            result = self._look_up(intent) or result
            filled = _number(result.get("filled"))
        venue_id = None if result.get("id") is None else str(result.get("id"))
        if filled is None:
            self._cash_fresh = False
            detail = "the venue did not report the filled amount"
            self._log(intent, prefix + "unknown", venue_id=venue_id, detail=detail)
            self._unknown(intent, detail, applied)
            raise VenueOrderError(
                f"{intent.symbol} order {intent.client_id} (venue id {venue_id}): {detail}; "
                f"check it on the venue",
                client_id=intent.client_id,
            )
        total, foreign = self._execution(intent, result, filled, reference)
        average = total.cost / filled if filled > 0 else None
        status = str(result.get("status") or "")
        remaining = max(0.0, intent.amount - filled)
        complete = remaining <= self.dust_ratio * intent.amount
        resting = status == "open" or (status not in _DONE and not complete)
        label = "open" if resting else "filled" if complete else "partial" if filled else "unfilled"
        self._log(
            intent,
            prefix + label,
            filled=filled,
            average=average,
            fee=total.fee_quote + total.fee_base * (average or 0.0),
            venue_id=venue_id,
            detail="; ".join(foreign),
        )
        delta = total.minus(applied)
        fills: list[Fill] = []
        if delta.filled > 0:
            self._cash_fresh = False
            if intent.buy:
                fills.append(self._bought(intent, delta, now))
            else:
                fills.extend(self._sold(intent, delta, now, complete and not resting))
        if resting:
            self._unknown(
                intent, f"{remaining:.10g} of {intent.amount:.10g} open on the venue", total
            )
        return fills

    def _look_up(self, intent: _Intent) -> Mapping[str, Any] | None:
        """The venue's record of an order it accepted without saying what filled (okx and
        bybit answer a placement with ids only), asked once by client id; None when the venue
        cannot be asked or does not answer with a filled amount (the order is then unknown:
        "not found" right after an accepted placement proves nothing)."""
        fetch = getattr(self.venue, "fetch_order_by_client_id", None)
        if not callable(fetch):
            return None
        try:
            found = fetch(self._venue_id(intent.client_id), intent.symbol)
        except BrokerError as exc:
            logger.warning(
                "order %s: no filled amount, and the lookup failed: %s",
                intent.client_id,
                self.venue.redact(str(exc)),
            )
            return None
        if not isinstance(found, Mapping) or _number(found.get("filled")) is None:
            return None
        return found

    def _execution(
        self, intent: _Intent, result: Mapping[str, Any], filled: float, reference: float | None
    ) -> tuple[_Execution, list[str]]:
        """Totals from ccxt's `average` (else cost / filled, else price, else the reference)
        and `fees` (else `fee`); fees in a third currency are returned apart, not counted."""
        base, quote = _currencies(intent.symbol)
        average = _number(result.get("average"))
        if average is None or average <= 0:
            cost = _number(result.get("cost"))
            average = cost / filled if cost and filled > 0 else _number(result.get("price"))
        if average is None or average <= 0:
            average = reference or 0.0
            if filled > 0:
                logger.warning(
                    "order %s: no fill price reported, booked at %g", intent.client_id, average
                )
        fee_quote = fee_base = 0.0
        fees = result.get("fees")
        entries = fees if isinstance(fees, list) and fees else [result.get("fee")]
        foreign: list[str] = []
        for entry in entries:
            if not isinstance(entry, Mapping):
                continue
            cost = _number(entry.get("cost")) or 0.0
            currency = entry.get("currency")
            if currency == quote:
                fee_quote += cost
            elif currency == base:
                fee_base += cost
            elif cost:
                foreign.append(f"fee {cost:g} {currency} not counted")
        if foreign:
            logger.warning("order %s: %s", intent.client_id, "; ".join(foreign))
        return _Execution(filled, filled * average, fee_quote, fee_base), foreign

    def _bought(self, intent: _Intent, done: _Execution, now: datetime) -> Fill:
        price = done.cost / done.filled
        received = max(0.0, done.filled - done.fee_base)  # a fee in base is taken from the buy
        fee = done.fee_quote + done.fee_base * price
        book = self._positions.get(intent.position_id)
        if book is None:
            order = intent.order
            stop = None if order is None else order.stop_loss
            book = _Book(
                id=intent.position_id,
                symbol=intent.symbol,
                side=Side.LONG,
                entry_price=price,
                quantity=received,
                opened_at=now,
                stop_loss=stop,
                take_profit=None if order is None else order.take_profit,
                initial_stop=stop,
                trailing_stop_pct=None if order is None else order.trailing_stop_pct,
                best_price=price,
                hold_until=None if order is None else order.hold_until,
                confidence=None if order is None else order.confidence,
                size_multiplier=None if order is None else order.size_multiplier,
                trace="" if order is None else order.trace,
            )
            self._positions[book.id] = book
        else:
            total = book.quantity + received
            if total > 0:
                book.entry_price = (book.entry_price * book.quantity + price * received) / total
            book.quantity = total
            if intent.kind is FillKind.SCALE_IN and intent.order_id not in book.scaled_by:
                book.scaled_by.add(intent.order_id)
                book.adds += 1
        book.paid += done.cost + done.fee_quote
        return self._fill(intent, book.id, now, price, received, fee)

    def _sold(self, intent: _Intent, done: _Execution, now: datetime, complete: bool) -> list[Fill]:
        price = done.cost / done.filled
        fee = done.fee_quote + done.fee_base * price
        book = self._positions.get(intent.position_id)
        if book is None:
            logger.warning(
                "order %s sold %g of a position no longer held", intent.client_id, done.filled
            )
            return [self._fill(intent, intent.position_id, now, price, done.filled, fee)]
        sold = min(done.filled, book.quantity)
        book.returned += sold * price - fee
        book.closed_quantity += sold
        book.closed_entry_value += book.entry_price * sold
        book.closed_exit_value += price * sold
        book.quantity -= sold
        fill = self._fill(intent, book.id, now, price, sold, fee)
        if (intent.closes and complete) or book.quantity <= 0:
            if book.quantity > 0:
                logger.info("position %s closed; dust %g left on the venue", book.id, book.quantity)
            book.quantity = 0.0
            del self._positions[book.id]
            self._record(book, now, intent)
        return [fill]

    def _record(self, book: _Book, now: datetime, intent: _Intent) -> None:
        self._closed.append(book.closed_trade(now, intent.kind, intent.reason))

    def _fill(
        self,
        intent: _Intent,
        position_id: str,
        now: datetime,
        price: float,
        quantity: float,
        fee: float,
    ) -> Fill:
        return Fill(
            order_id=intent.order_id,
            position_id=position_id,
            symbol=intent.symbol,
            side=Side.LONG,
            kind=intent.kind,
            time=now,
            price=price,
            quantity=quantity,
            fee=fee,
            reason=intent.reason,
        )

    def _log(self, intent: _Intent, status: str, *, persist: bool = True, **answer: Any) -> None:
        if self.store is not None and persist:
            self.store.update(
                intent.client_id,
                status.removeprefix("resolved: "),
                str(answer.get("detail", "")),
            )
        self._orders.append(
            VenueOrder(
                client_id=intent.client_id,
                order_id=intent.order_id,
                position_id=intent.position_id,
                symbol=intent.symbol,
                side="buy" if intent.buy else "sell",
                amount=intent.amount,
                order_type=intent.order_type,
                limit_price=intent.limit_price,
                status=status,
                **answer,
            )
        )

    # --- client-side stops ---------------------------------------------------------------------

    def _protect(self, book: _Book, candle: Candle) -> tuple[FillKind, str] | None:
        """The paper exchange's rule (aios.exchange.book.stop_trigger); here a trigger becomes a
        market sell, so the price is the venue's, not the level."""
        trigger = stop_trigger(book, candle)
        if trigger is None:
            return None
        gapped = " (gapped through at the open)" if trigger.gapped else ""
        return (
            trigger.kind,
            f"{trigger.kind.value} {trigger.level:.10g} touched{gapped}: market sell",
        )

    def _exit(self, book: _Book, trigger: tuple[FillKind, str], candle: Candle) -> list[Fill]:
        """A market sell of the whole position; a failure keeps the exit pending for the next
        candle, under a new client id (`:2`, `:3`...), since a stop that fired must get out."""
        kind, reason = trigger
        book.exiting = trigger
        attempt = book.exit_attempts.get(kind, 0) + 1
        book.exit_attempts[kind] = attempt
        exit_id = f"{book.id}:{kind.value.lower()}"
        intent = _Intent(
            client_id=exit_id if attempt == 1 else f"{exit_id}:{attempt}",
            order_id=exit_id,
            position_id=book.id,
            symbol=book.symbol,
            kind=kind,
            amount=book.quantity,
            order_type="market",
            limit_price=None,
            reason=reason,
            closes=True,
            order=None,
        )
        try:
            return self._place(intent, candle.time, candle.close)
        except BrokerError as exc:
            message = f"{candle.time.isoformat()} position {book.id}: {exc}"
            self.errors.append(message)
            logger.warning("%s", message)
            return []

    def _mark(self, book: _Book, prices: Mapping[str, float]) -> float:
        price = prices.get(book.symbol)
        if price is not None:
            return price
        last = self._last_candle.get(book.symbol)
        return last.close if last is not None else book.entry_price


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _when(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _order_state(order: OrderIntent) -> dict[str, Any]:
    return {
        "id": order.id,
        "symbol": order.symbol,
        "side": order.side.value,
        "action": order.action.value,
        "reason": order.reason,
        "trace": order.trace,
        "position_id": order.position_id,
        "quote_amount": order.quote_amount,
        "fraction": order.fraction,
        "order_type": order.order_type.value,
        "slices": order.slices,
        "limit_offset_bps": order.limit_offset_bps,
        "take_profit": order.take_profit,
        "stop_loss": order.stop_loss,
        "trailing_stop_pct": order.trailing_stop_pct,
        "hold_until": _iso(order.hold_until),
        "confidence": order.confidence,
        "size_multiplier": order.size_multiplier,
    }


def _intent_state(intent: _Intent) -> dict[str, Any]:
    """An order as the store keeps it: enough to book the venue's answer after a restart."""
    return {
        "client_id": intent.client_id,
        "order_id": intent.order_id,
        "position_id": intent.position_id,
        "symbol": intent.symbol,
        "kind": intent.kind.value,
        "amount": intent.amount,
        "order_type": intent.order_type,
        "limit_price": intent.limit_price,
        "reason": intent.reason,
        "closes": intent.closes,
        "order": None if intent.order is None else _order_state(intent.order),
    }


def _intent_from_state(state: Mapping[str, Any]) -> _Intent:
    raw = state.get("order")
    order = None
    if isinstance(raw, Mapping):
        order = OrderIntent(
            id=str(raw["id"]),
            symbol=str(raw["symbol"]),
            side=Side(raw["side"]),
            action=OrderAction(raw["action"]),
            reason=str(raw["reason"]),
            trace=str(raw["trace"]),
            position_id=raw.get("position_id"),
            quote_amount=raw.get("quote_amount"),
            fraction=raw.get("fraction"),
            order_type=OrderType(raw.get("order_type", "MARKET")),
            slices=int(raw.get("slices", 1)),
            limit_offset_bps=float(raw.get("limit_offset_bps", 0.0)),
            take_profit=raw.get("take_profit"),
            stop_loss=raw.get("stop_loss"),
            trailing_stop_pct=raw.get("trailing_stop_pct"),
            hold_until=_when(raw.get("hold_until")),
            confidence=raw.get("confidence"),
            size_multiplier=raw.get("size_multiplier"),
        )
    return _Intent(
        client_id=str(state["client_id"]),
        order_id=str(state["order_id"]),
        position_id=str(state["position_id"]),
        symbol=str(state["symbol"]),
        kind=FillKind(state["kind"]),
        amount=float(state["amount"]),
        order_type=str(state["order_type"]),
        limit_price=state.get("limit_price"),
        reason=str(state["reason"]),
        closes=bool(state["closes"]),
        order=order,
    )


def _book_state(book: _Book) -> dict[str, Any]:
    """A position as the store keeps it (every field, so that a restart trades it the same)."""
    return {
        "id": book.id,
        "symbol": book.symbol,
        "side": book.side.value,
        "entry_price": book.entry_price,
        "quantity": book.quantity,
        "opened_at": book.opened_at.isoformat(),
        "stop_loss": book.stop_loss,
        "take_profit": book.take_profit,
        "initial_stop": book.initial_stop,
        "trailing_stop_pct": book.trailing_stop_pct,
        "best_price": book.best_price,
        "hold_until": _iso(book.hold_until),
        "confidence": book.confidence,
        "size_multiplier": book.size_multiplier,
        "trace": book.trace,
        "adds": book.adds,
        "paid": book.paid,
        "returned": book.returned,
        "closed_quantity": book.closed_quantity,
        "closed_entry_value": book.closed_entry_value,
        "closed_exit_value": book.closed_exit_value,
        "exiting": None if book.exiting is None else [book.exiting[0].value, book.exiting[1]],
        "exit_attempts": {kind.value: n for kind, n in book.exit_attempts.items()},
        "scaled_by": sorted(book.scaled_by),
    }


def _book_from_state(state: Mapping[str, Any]) -> _Book:
    exiting = state.get("exiting")
    opened = _when(state["opened_at"])
    assert opened is not None
    return _Book(
        id=str(state["id"]),
        symbol=str(state["symbol"]),
        side=Side(state["side"]),
        entry_price=float(state["entry_price"]),
        quantity=float(state["quantity"]),
        opened_at=opened,
        stop_loss=state.get("stop_loss"),
        take_profit=state.get("take_profit"),
        initial_stop=state.get("initial_stop"),
        trailing_stop_pct=state.get("trailing_stop_pct"),
        best_price=float(state["best_price"]),
        hold_until=_when(state.get("hold_until")),
        confidence=state.get("confidence"),
        size_multiplier=state.get("size_multiplier"),
        trace=str(state.get("trace", "")),
        adds=int(state.get("adds", 0)),
        paid=float(state.get("paid", 0.0)),
        returned=float(state.get("returned", 0.0)),
        closed_quantity=float(state.get("closed_quantity", 0.0)),
        closed_entry_value=float(state.get("closed_entry_value", 0.0)),
        closed_exit_value=float(state.get("closed_exit_value", 0.0)),
        exiting=None if not exiting else (FillKind(exiting[0]), str(exiting[1])),
        exit_attempts={FillKind(k): int(n) for k, n in (state.get("exit_attempts") or {}).items()},
        scaled_by=set(state.get("scaled_by") or ()),
    )


__all__ = [
    "DecisionRefused",
    "OrderVenue",
    "Reconciliation",
    "ReconcilingVenue",
    "VenueBroker",
    "VenueOrder",
    "VenueOrderError",
]
