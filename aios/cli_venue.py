"""`aios venue ...`: what the venue store holds, and an operator's decisions about what
reconciliation froze (docs/architecture.md, "The runtime").

A live run (`aios run --exchange ccxt:ID` without `--dry-run`) freezes a position when it cannot
tell what happened on the venue: an order whose outcome is unknown (no answer, the venue could
not be asked) or a balance that no longer covers the position. The run asks the venue again
periodically and at every start; these commands are for what only a person can settle:

    aios venue orders [--unresolved]          the venue orders recorded, with status and times
    aios venue positions                      the positions recorded, and why each is frozen
    aios venue resolve CLIENT_ID --as filled --price P [--filled QTY] [--fee F] --reason ...
    aios venue resolve CLIENT_ID --as cancelled | never-placed --reason ...
    aios venue settle POSITION --as sold-outside | reduced --quantity QTY --reason ...

A decision is refused (exit 1, nothing changed) for an unknown id, while a live run holds the
exchange's venue store (its lock), and when it contradicts what the store knows (an order the
venue reported fills of cannot have been never placed; a position not frozen has nothing to
settle...). An accepted one is applied to the store, kept there with who, when and why
(`venue_decisions`) and journaled (subsystem `operator`). Nothing here calls the venue.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

venue_app = typer.Typer(
    help="The venue store of live runs: orders, positions, and an operator's decisions about "
    "what reconciliation froze.",
    no_args_is_help=True,
)

_EXIT_REFUSED, _EXIT_USAGE = 1, 2


class _Format(StrEnum):
    text = "text"
    json = "json"


class OrderOutcome(StrEnum):
    """What the operator found on the venue for an order whose outcome was unknown."""

    filled = "filled"  # it executed (all of it, or --filled QTY in total) at --price
    cancelled = "cancelled"  # it ended with nothing filled beyond what is booked
    never_placed = "never-placed"  # the venue has no such order


class PositionOutcome(StrEnum):
    """What happened to a position whose balance the venue no longer covers."""

    sold_outside = "sold-outside"  # it was sold (or moved) outside aios: forget it
    reduced = "reduced"  # part of it is left: --quantity QTY


StateDir = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--state-dir", help="State directory (default: $AIOS_STATE_DIR, else ./state)."),
]
ExchangeOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--exchange", help="The ccxt exchange id (default: the one the store holds, if only one)."
    ),
]
FormatOption = Annotated[_Format, typer.Option("--format", help="text or json.")]
ReasonOption = Annotated[
    str, typer.Option("--reason", help="Why: what you checked on the venue (required).")
]


def _refuse(message: str, code: int = _EXIT_REFUSED) -> typer.Exit:
    typer.echo(f"aios: {message}", err=True)
    return typer.Exit(code)


def _database(state_dir: Path | None) -> Path:
    from aios.state import database_path

    path = database_path(state_dir)
    if not path.exists():
        raise _refuse(f"no state store at {path}: pass --state-dir, or run `aios run` first")
    return path


def _exchanges(path: Path, exchange: str | None) -> list[str]:
    from aios.exchange.venue_store import VenueStoreUnreadable, exchanges_in

    try:
        held = exchanges_in(path)
    except VenueStoreUnreadable as exc:
        raise _refuse(str(exc)) from None
    if not held:
        raise _refuse(f"{path} holds no venue store: no live run has traded from it")
    if exchange is None:
        return held
    if exchange not in held:
        raise _refuse(f"{path} holds no venue store for {exchange!r} (it holds {', '.join(held)})")
    return [exchange]


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- reading -------------------------------------------------------------------------------------


def attention(path: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per exchange, what needs an operator: orders whose outcome is unknown and frozen
    positions (with the message and since when). Read-only; {} without a venue store.
    `aios status` shows it."""
    from aios.exchange.venue_store import UNRESOLVED, exchanges_in

    found: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for exchange in exchanges_in(path):
        store = _read_only(path, exchange)
        try:
            unknown = [o.to_dict() for o in store.orders(UNRESOLVED)]
            frozen = _positions(store, only_frozen=True)
        finally:
            store.close()
        found[exchange] = {"unknown_orders": unknown, "frozen_positions": frozen}
    return found


def render_attention(found: dict[str, dict[str, list[dict[str, Any]]]]) -> list[str]:
    """`attention()` as the lines `aios status` prints (none without a venue store)."""
    lines = []
    for exchange, items in found.items():
        unknown, frozen = items["unknown_orders"], items["frozen_positions"]
        if not unknown and not frozen:
            lines.append(f"venue {exchange}: nothing frozen, no order with an unknown outcome")
            continue
        lines.append(
            f"venue {exchange}: {len(frozen)} frozen position(s), {len(unknown)} order(s) with "
            "an unknown outcome (`aios venue resolve` / `settle`)"
        )
        for o in unknown:
            lines.append(
                f"  order {o['client_id']} (venue id {o['venue_client_id']}, {o['symbol']}, "
                f"position {o['position_id']}) {o['status']} since {o['updated_at']}: "
                f"{o['detail'] or 'outcome unknown'}"
            )
        for p in frozen:
            lines.append(
                f"  position {p['position_id']} ({p['symbol']}, {p['quantity']:.10g}) frozen "
                f"since {p['frozen_since']}: {p['message']}"
            )
    return lines


def _read_only(path: Path, exchange: str) -> Any:
    from aios.exchange.venue_store import VenueStore

    return VenueStore.read_only(path, exchange)


def _positions(store: Any, *, only_frozen: bool = False) -> list[dict[str, Any]]:
    from aios.exchange.venue_store import UNRESOLVED

    freezes = {f.position_id: f for f in store.freezes()}
    by_position: dict[str, list[Any]] = {}
    for order in store.orders(UNRESOLVED):
        by_position.setdefault(order.position_id, []).append(order)
    rows = []
    for position_id, state in store.positions().items():
        orders = by_position.get(position_id, [])
        freeze = freezes.get(position_id)
        if only_frozen and not orders and freeze is None:
            continue
        reasons = [
            f"order {o.client_id} ({o.status}): {o.detail or 'outcome unknown'}" for o in orders
        ]
        if freeze is not None:
            reasons.append(freeze.message)
        since = [o.updated_at for o in orders] + ([freeze.since] if freeze else [])
        rows.append(
            {
                "position_id": position_id,
                "symbol": state.get("symbol"),
                "quantity": state.get("quantity"),
                "entry_price": state.get("entry_price"),
                "opened_at": state.get("opened_at"),
                "stop_loss": state.get("stop_loss"),
                "take_profit": state.get("take_profit"),
                "frozen": bool(reasons),
                "frozen_since": min(since) if since else None,
                "frozen_by": [o.client_id for o in orders] + (["balance"] if freeze else []),
                "message": "; ".join(reasons),
            }
        )
    return rows


def _listed(
    state_dir: Path | None, exchange: str | None, read: Callable[[Any], list[dict[str, Any]]]
) -> dict[str, list[dict[str, Any]]]:
    """`read` of each exchange's venue store (or only `exchange`'s), opened read-only: what
    `aios venue orders` and `positions` list."""
    path = _database(state_dir)
    listed: dict[str, list[dict[str, Any]]] = {}
    for name in _exchanges(path, exchange):
        store = _read_only(path, name)
        try:
            listed[name] = read(store)
        finally:
            store.close()
    return listed


@venue_app.command("orders")
def orders(
    unresolved: Annotated[
        bool, typer.Option("--unresolved", help="Only orders whose outcome is unknown.")
    ] = False,
    exchange: ExchangeOption = None,
    output_format: FormatOption = _Format.text,
    state_dir: StateDir = None,
) -> None:
    """The venue orders the store recorded (every order is recorded before it is sent)."""
    from aios.exchange.venue_store import UNRESOLVED

    status = UNRESOLVED if unresolved else None
    listed = _listed(state_dir, exchange, lambda s: [o.to_dict() for o in s.orders(status)])
    if output_format is _Format.json:
        typer.echo(json.dumps(listed, indent=2))
        return
    for name, rows in listed.items():
        typer.echo(f"{name}: {len(rows)} order(s)")
        for o in rows:
            flag = "UNRESOLVED " if o["unresolved"] else ""
            typer.echo(
                f"  {flag}{o['client_id']} (venue id {o['venue_client_id']}) {o['side']} "
                f"{o['amount']:.10g} {o['symbol']}, position {o['position_id']}: {o['status']}"
                f" since {o['updated_at']}" + (f": {o['detail']}" if o["detail"] else "")
            )


@venue_app.command("positions")
def positions(
    exchange: ExchangeOption = None,
    output_format: FormatOption = _Format.text,
    state_dir: StateDir = None,
) -> None:
    """The open positions the store recorded, and why each frozen one is frozen."""
    listed = _listed(state_dir, exchange, _positions)
    if output_format is _Format.json:
        typer.echo(json.dumps(listed, indent=2))
        return
    for name, rows in listed.items():
        typer.echo(f"{name}: {len(rows)} open position(s)")
        for p in rows:
            state = f"FROZEN since {p['frozen_since']}: {p['message']}" if p["frozen"] else "ok"
            typer.echo(
                f"  {p['position_id']} {p['symbol']} {p['quantity']:.10g} at "
                f"{p['entry_price']:.10g} (opened {p['opened_at']}): {state}"
            )


# --- deciding ------------------------------------------------------------------------------------


def _decide(
    state_dir: Path | None,
    exchange: str | None,
    subject_id: str,
    reason: str,
    apply: Any,
    kind: str,
) -> None:
    """Open the exchange's store under its lock, apply the decision through the venue broker
    (offline), record it in the store and the journal, and print it."""
    from aios.exchange.venue_broker import DecisionRefused, VenueBroker
    from aios.exchange.venue_store import StoreLocked, VenueStore

    if not reason.strip():
        raise _refuse("--reason must say why (what you checked on the venue)", _EXIT_USAGE)
    path = _database(state_dir)
    names = _exchanges(path, exchange)
    if len(names) > 1:
        holders = [n for n in names if _holds(path, n, subject_id, kind)]
        if len(holders) != 1:
            where = ", ".join(holders) if holders else "none of them"
            raise _refuse(
                f"{path} holds venue stores for {', '.join(names)} ({subject_id} is in {where}): "
                "name one with --exchange"
            )
        names = holders
    (name,) = names
    try:
        store = VenueStore(path, name, lock=f"aios venue {kind}")
    except StoreLocked as exc:
        raise _refuse(str(exc)) from None
    try:
        if kind == "resolve":
            stored = store.order(subject_id)  # given by its venue id: the engine's is the subject
            subject_id = stored.client_id if stored is not None else subject_id
        now = datetime.now(UTC)
        symbols = [s.symbol for s in store.orders()] or [
            str(p.get("symbol", "")) for p in store.positions().values()
        ]
        quote = symbols[0].partition("/")[2] if symbols else ""
        broker = VenueBroker(_Offline(), quote_currency=quote, store=store)
        symbol, trace = _subject_context(store, subject_id, kind)
        try:
            detail, decision = apply(broker, now)
        except DecisionRefused as exc:
            raise _refuse(f"refused, nothing changed: {exc}") from None
        who = _who()
        subject = f"{'order' if kind == 'resolve' else 'position'}:{subject_id}"
        store.record_decision(
            subject, decision, reason, who, now, {"detail": detail, "symbol": symbol}
        )
    finally:
        store.close()
    _journal(path, now, kind, subject, decision, who, reason, detail, symbol, trace)
    typer.echo(f"{name} {subject}: {decision} by {who} at {now.isoformat()}: {detail}")


def _holds(path: Path, exchange: str, subject_id: str, kind: str) -> bool:
    store = _read_only(path, exchange)
    try:
        if kind == "resolve":
            return store.order(subject_id) is not None
        return subject_id in store.positions()
    finally:
        store.close()


def _subject_context(store: Any, subject_id: str, kind: str) -> tuple[str | None, str | None]:
    """The symbol and the trace (signal id) of the order's or position's chain, so that
    `aios explain` shows the decision with the rest of it."""
    position_id = subject_id
    symbol = None
    if kind == "resolve":
        stored = store.order(subject_id)
        if stored is None:
            return None, None
        position_id, symbol = stored.position_id, stored.symbol
        order = stored.intent.get("order") or {}
        if order.get("trace"):
            return symbol, str(order["trace"])
    state = store.positions().get(position_id) or {}
    return symbol or state.get("symbol"), (str(state["trace"]) if state.get("trace") else None)


def _journal(
    path: Path,
    now: datetime,
    kind: str,
    subject: str,
    decision: str,
    who: str,
    reason: str,
    detail: str,
    symbol: str | None,
    trace: str | None,
) -> None:
    from aios.journal import OPERATOR_RUN_ID, Decision, Journal, JournalError

    try:
        journal = Journal(path)
        try:
            journal.record(
                Decision(
                    OPERATOR_RUN_ID,
                    0,
                    now,
                    "operator",
                    f"venue_{kind}",
                    subject,
                    {"decision": decision, "who": who, "detail": detail},
                    "OPERATOR",
                    "applied",
                    True,
                    f"{decision} by {who}: {reason} ({detail})",
                    "",
                    symbol,
                    trace,
                )
            )
        finally:
            journal.close()
    except JournalError as exc:  # the store has the decision already; say what is missing
        raise _refuse(
            f"the decision is recorded in the venue store, but the journal could not take it: {exc}"
        ) from None


class _Offline:
    """The venue of an operator command: none. The broker books the operator's answer; any
    attempt to reach a venue is a bug, refused."""

    def create_order(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        from aios.exchange.base import BrokerError

        raise BrokerError("an operator command sends no order")

    def balance(self, quote: str) -> float:
        from aios.exchange.base import BrokerError

        raise BrokerError("an operator command reads no balance")

    def redact(self, text: str) -> str:
        return text


@venue_app.command("resolve")
def resolve(
    client_id: Annotated[
        str, typer.Argument(help="The order's client id (aios's, or the venue's).")
    ],
    outcome: Annotated[
        OrderOutcome, typer.Option("--as", help="What the venue shows for this order.")
    ],
    reason: ReasonOption,
    filled: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="--as filled: base units filled in total (default: the whole order)."),
    ] = None,
    price: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="--as filled: the average fill price, in the quote currency."),
    ] = None,
    fee: Annotated[
        float, typer.Option(help="--as filled: the order's whole fee, in the quote currency.")
    ] = 0.0,
    exchange: ExchangeOption = None,
    state_dir: StateDir = None,
) -> None:
    """Record what the venue shows for an order whose outcome is unknown, and book it."""

    def apply(broker: Any, now: datetime) -> tuple[str, str]:
        stored = broker.store.order(client_id)
        engine_id = client_id if stored is None else stored.client_id
        detail = broker.operator_resolve(
            engine_id, outcome.value, now, filled=filled, price=price, fee=fee
        )
        return detail, outcome.value

    _decide(state_dir, exchange, client_id, reason, apply, "resolve")


@venue_app.command("settle")
def settle(
    position_id: Annotated[str, typer.Argument(help="The frozen position's id.")],
    outcome: Annotated[
        PositionOutcome, typer.Option("--as", help="What happened to it outside aios.")
    ],
    reason: ReasonOption,
    quantity: Annotated[
        Optional[float],  # noqa: UP045
        typer.Option(help="--as reduced: the base units left that aios tracks from now on."),
    ] = None,
    exchange: ExchangeOption = None,
    state_dir: StateDir = None,
) -> None:
    """Record what happened to a position a balance check froze (nothing is sold)."""

    def apply(broker: Any, now: datetime) -> tuple[str, str]:
        detail = broker.operator_settle(position_id, outcome.value, now, quantity=quantity)
        return detail, outcome.value

    _decide(state_dir, exchange, position_id, reason, apply, "settle")


__all__ = ["attention", "render_attention", "venue_app"]
