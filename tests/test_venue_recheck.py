"""A live run asks the venue again, every `exchange.recheck_frozen_s` of its clock, about what
reconciliation froze; the clock and the venue are the test's (no network, no sleeping)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_live import DEFAULT, RevealingVenue
from test_venue_broker import ReconcilingFake

from aios import app as application
from aios.data import bundled_data_dir
from aios.exchange.ccxt_venue import VenueUnavailable
from aios.exchange.client_ids import FORMATS, venue_client_id
from aios.exchange.paper import PaperBroker
from aios.exchange.venue_broker import VenueBroker, VenueOrderError
from aios.exchange.venue_store import VenueStore
from aios.live import LiveRunner
from aios.model import OrderAction, OrderIntent, Side
from aios.runtime import Runtime, load_series
from aios.state import database_path

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SYMBOL = "ETH/BTC"
WARMUP = 300


class Venue(ReconcilingFake):
    """Quoted in BTC; counts the lookups reconciliation makes; can be made unreachable."""

    def __init__(self) -> None:
        super().__init__()
        self.cash = 1.0
        self.fill_price = 0.05
        self.lookups: list[str] = []
        self.balance_lookups = 0

    def fetch_order_by_client_id(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        self.lookups.append(client_order_id)
        return super().fetch_order_by_client_id(client_order_id, symbol)

    def balances(self) -> dict[str, float]:
        self.balance_lookups += 1
        return {"BTC": self.cash, "ETH": self.base}


def broker(state: Path, venue: Venue, lock: str | None = None) -> VenueBroker:
    store = VenueStore(database_path(state), "binance", lock=lock)
    namespace = store.namespace()
    return VenueBroker(
        venue,
        quote_currency="BTC",
        cash_buffer_pct=0.0,
        store=store,
        venue_client_id=lambda cid: venue_client_id(FORMATS["binance"], namespace, cid),
        client_id_namespace=namespace,
    )


def intent(order_id: str, action: OrderAction, **fields: Any) -> OrderIntent:
    return OrderIntent(
        id=order_id, symbol=SYMBOL, side=Side.LONG, action=action, reason="t", trace="t1", **fields
    )


def close_executed_unanswered(state: Path, venue: Venue) -> None:
    """A previous process: p1 bought, then its CLOSE c1 executed on the venue, unanswered."""
    first = broker(state, venue)
    first.submit(intent("p1", OrderAction.OPEN, quote_amount=0.1), T0, 0.05)
    real = venue.create_order

    def executes_then_times_out(client_order_id: str, *args: Any, **kwargs: Any) -> Any:
        real(client_order_id, *args, **kwargs)
        raise VenueUnavailable("timed out", exchange="fake", call="create_order")

    venue.create_order = executes_then_times_out  # type: ignore[method-assign]
    with pytest.raises(VenueOrderError, match="outcome unknown"):
        first.submit(intent("c1", OrderAction.CLOSE, position_id="p1"), T0, 0.05)
    venue.create_order = real  # type: ignore[method-assign]
    assert first.store is not None
    first.store.close()


def test_a_frozen_position_is_rechecked_on_the_runs_clock_and_its_fills_recorded(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    venue = Venue()
    close_executed_unanswered(state, venue)
    venue.lookup_error = VenueUnavailable("still down", exchange="fake", call="fetch_order")

    actual = broker(state, venue, lock="test run")
    start = actual.reconcile(venue, T0, [SYMBOL])
    assert [(d.action, d.subject) for d in start if d.subject == "order:c1"] == [
        ("frozen", "order:c1")
    ]
    # Frozen twice over: c1's outcome is unknown, and the venue no longer holds p1's ETH.
    (why,) = actual.frozen().values()
    assert why.startswith("unresolved order(s) c1; aios tracks 2 ETH")

    policy, plugins = application.load([DEFAULT], env={})
    series = load_series(bundled_data_dir(), [SYMBOL])
    runtime = Runtime(
        policy, plugins, {SYMBOL: []}, state, PaperBroker.from_policy, actual_broker=actual
    )
    runtime.journal_reconciliation(start, T0)
    candles = RevealingVenue(series, start=WARMUP)
    clock = [T0]

    def wait(seconds: float) -> None:  # the runner's sleep: time passes, a candle closes
        clock[0] += timedelta(seconds=seconds)
        candles.tick()
        if clock[0] >= T0 + timedelta(seconds=500):
            venue.lookup_error = None  # the venue answers again

    runner = LiveRunner(
        runtime,
        candles,
        [SYMBOL],
        "5m",
        poll_s=60,
        warmup_candles=WARMUP,
        sleep=wait,
        live_orders=True,
        recheck=lambda now: actual.recheck(venue, now),
        recheck_s=300,
        clock=lambda: clock[0],
    )
    lookups_at_start = len(venue.lookups)
    report = runner.run(max_polls=12)  # polls at 0, 60, ..., 660 s
    assert report is not None
    assert actual.store is not None
    actual.store.close()

    # Asked again at 300 s (still down: frozen) and at 600 s (found: adopted), never between.
    assert len(venue.lookups) - lookups_at_start == 2
    assert [(d.action, d.subject) for d in runner.rechecked] == [
        ("frozen", "order:c1"),
        ("frozen", "position:p1"),
        ("adopted", "order:c1"),  # c1 sold p1: the position is gone, and so is its freeze
    ]
    connection = sqlite3.connect(database_path(state))
    try:
        rows = connection.execute(
            "SELECT time, subject, reason FROM decisions WHERE hook = 'reconcile' AND subject = 'order:c1' ORDER BY id"
        ).fetchall()
        closes = connection.execute(
            "SELECT order_id, position_id, kind, quantity FROM fills WHERE book = 'actual' AND order_id = 'c1'"
        ).fetchall()
    finally:
        connection.close()
    assert [(time, reason.split(":")[0]) for time, _, reason in rows] == [
        (T0.isoformat(), "frozen"),
        ((T0 + timedelta(seconds=300)).isoformat(), "frozen"),
        ((T0 + timedelta(seconds=600)).isoformat(), "adopted"),
    ]
    # The CLOSE the venue executed reaches the run's fills once, through the next candle.
    assert [(o, p, k) for o, p, k, _ in closes] == [("c1", "p1", "CLOSE")]
    assert closes[0][3] == pytest.approx(2.0)  # 0.1 BTC at 0.05
    assert actual.frozen() == {} and "p1" not in {p.id for p in actual.positions()}
    assert len(venue.sent_ids()) == len(set(venue.sent_ids()))  # nothing sent twice
    after = VenueStore(database_path(state), "binance")
    try:  # what the next start (and `aios status`) reads: nothing frozen, nothing unknown
        assert after.freezes() == [] and after.orders(("sending", "unknown", "open")) == []
    finally:
        after.close()


def test_nothing_frozen_means_no_venue_call(tmp_path: Path) -> None:
    venue = Venue()
    actual = broker(tmp_path, venue)
    actual.submit(intent("p1", OrderAction.OPEN, quote_amount=0.1), T0, 0.05)
    assert actual.recheck(venue, T0) == []
    assert (venue.lookups, venue.balance_lookups) == ([], 0)


def test_a_balance_freeze_is_lifted_when_the_venue_covers_the_position_again(
    tmp_path: Path,
) -> None:
    venue = Venue()
    first = broker(tmp_path, venue)
    first.submit(intent("p1", OrderAction.OPEN, quote_amount=0.1), T0, 0.05)
    held = venue.base
    venue.base = held / 2  # half of it moved away (to another account?)
    actual = broker(tmp_path, venue)
    (frozen,) = actual.reconcile(venue, T0, [SYMBOL])
    assert frozen.action == "frozen" and "the venue holds only 1" in frozen.detail
    assert actual.store is not None
    (stored,) = actual.store.freezes()
    assert (stored.position_id, stored.since) == ("p1", T0.isoformat())

    later = T0 + timedelta(minutes=5)
    (still,) = actual.recheck(venue, later)
    assert still.action == "frozen"
    (stored,) = actual.store.freezes()
    assert (stored.since, stored.checked_at) == (T0.isoformat(), later.isoformat())

    venue.base = held  # moved back
    (lifted,) = actual.recheck(venue, later + timedelta(minutes=5))
    assert (lifted.action, lifted.subject) == ("unfrozen", "position:p1")
    assert actual.store.freezes() == [] and actual.frozen() == {}
    assert actual.recheck(venue, later + timedelta(minutes=10)) == []  # nothing left to ask


def test_an_order_left_resting_is_cancelled_at_the_next_recheck(tmp_path: Path) -> None:
    from aios.model import OrderType

    venue = Venue()
    actual = broker(tmp_path, venue)

    def rests(answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "status": "open", "filled": 1.0, "remaining": 1.0, "cost": 0.05}

    venue.script[actual._venue_id("p1")] = rests
    actual.submit(
        intent("p1", OrderAction.OPEN, quote_amount=0.1, order_type=OrderType.LIMIT), T0, 0.05
    )
    assert [o.client_id for o in actual.unresolved()] == ["p1"]  # half of it rests
    (decision,) = actual.recheck(venue, T0 + timedelta(minutes=5))
    assert (decision.action, decision.subject) == ("cancelled", "order:p1")
    assert venue.cancelled == [actual._venue_id("p1")]
    assert actual.unresolved() == () and actual.frozen() == {}
    (position,) = actual.positions()
    assert position.quantity == pytest.approx(1.0)  # what filled before the cancel
