"""`aios venue ...` and the venue part of `aios status`: what reconciliation froze, shown and
settled by an operator, with every refusal leaving the store exactly as it was.

The stores are written by the real `VenueBroker` over the fake venue of test_venue_broker (an
order that timed out, one resting half-filled, a balance sold by hand), then read and changed
through the CLI only."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_venue_broker import SYMBOL, ReconcilingFake, at, order
from typer.testing import CliRunner

from aios.cli import app
from aios.exchange.ccxt_venue import VenueUnavailable
from aios.exchange.client_ids import FORMATS, venue_client_id
from aios.exchange.venue_broker import VenueBroker, VenueOrderError
from aios.exchange.venue_store import StoreLocked, VenueLock, VenueStore
from aios.model import OrderAction, OrderType
from aios.state import database_path

runner = CliRunner()


def broker_over(state: Path, venue: ReconcilingFake) -> VenueBroker:
    store = VenueStore(database_path(state), "binance")
    namespace = store.namespace()
    return VenueBroker(
        venue,
        quote_currency="USDT",
        cash_buffer_pct=0.0,
        store=store,
        venue_client_id=lambda cid: venue_client_id(FORMATS["binance"], namespace, cid),
        client_id_namespace=namespace,
    )


def no_answer(venue: ReconcilingFake, broker: VenueBroker, client_id: str) -> None:
    venue.script[broker._venue_id(client_id)] = VenueUnavailable(
        "timed out after 1 s", exchange="fake", call="create_order"
    )


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """o1: 1 ETH held, its CLOSE c1 unanswered (o1 frozen by c1); o2: an OPEN unanswered
    (no position yet); o3: a LIMIT buy resting on the venue with 0.4 ETH filled."""
    state = tmp_path / "state"
    venue = ReconcilingFake()
    broker = broker_over(state, venue)
    broker.submit(order("o1", quote_amount=100.0, stop_loss=90.0), at(0), 100.0)
    for client_id in ("c1", "o2"):
        no_answer(venue, broker, client_id)
    with pytest.raises(VenueOrderError):
        broker.submit(order("c1", OrderAction.CLOSE), at(1), 100.0)
    with pytest.raises(VenueOrderError):
        broker.submit(order("o2", quote_amount=50.0, stop_loss=80.0), at(1), 100.0)

    def rests(answer: dict[str, Any]) -> dict[str, Any]:
        return {**answer, "status": "open", "filled": 0.4, "remaining": 0.6, "cost": 40.0}

    venue.script[broker._venue_id("o3")] = rests
    broker.submit(order("o3", quote_amount=100.0, order_type=OrderType.LIMIT), at(2), 100.0)
    assert broker.store is not None
    broker.store.close()
    return state


def dump(state: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Everything the venue store and the journal hold (what a refusal must leave alone)."""
    connection = sqlite3.connect(database_path(state))
    try:
        tables = ["venue_orders", "venue_positions", "venue_freezes", "venue_decisions"]
        journal = connection.execute(
            "SELECT name FROM sqlite_master WHERE name = 'decisions'"
        ).fetchone()
        found = {
            t: connection.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in tables
        }
        found["decisions"] = (
            connection.execute("SELECT * FROM decisions").fetchall() if journal else []
        )
        return found
    finally:
        connection.close()


def venue(state: Path, *args: str) -> Any:
    return runner.invoke(app, ["venue", *args, "--state-dir", str(state)])


def refused(result: Any, *fragments: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_orders_and_positions_list_what_the_store_holds(state: Path) -> None:
    result = venue(state, "orders", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {o["client_id"]: o for o in json.loads(result.stdout)["binance"]}
    assert {cid: o["status"] for cid, o in rows.items()} == {
        "o1": "filled",
        "c1": "unknown",
        "o2": "unknown",
        "o3": "open",
    }
    assert rows["o3"]["filled_booked"] == pytest.approx(0.4)
    assert rows["c1"]["side"] == "sell" and rows["c1"]["venue_client_id"].endswith(
        rows["c1"]["venue_client_id"][-13:]
    )
    unresolved = venue(state, "orders", "--unresolved")
    assert unresolved.exit_code == 0
    assert "UNRESOLVED c1" in unresolved.output and "o1 " not in unresolved.output

    positions = json.loads(venue(state, "positions", "--format", "json").output)["binance"]
    by_id = {p["position_id"]: p for p in positions}
    assert set(by_id) == {"o1", "o3"}
    assert by_id["o1"]["frozen"] and by_id["o1"]["frozen_by"] == ["c1"]
    assert "timed out after 1 s" in by_id["o1"]["message"]
    assert by_id["o3"]["quantity"] == pytest.approx(0.4)


def test_reading_needs_a_store(tmp_path: Path) -> None:
    refused(venue(tmp_path / "none", "orders"), "no state store at")
    VenueStore(database_path(tmp_path / "empty"), "binance").close()
    refused(venue(tmp_path / "empty", "positions"), "holds no venue store")


@pytest.mark.parametrize("command", ["orders", "positions"])
def test_a_state_store_that_is_not_a_database_is_named_and_left_untouched(
    tmp_path: Path, command: str
) -> None:
    path = database_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    garbage = b"not a database, " * 16
    path.write_bytes(garbage)
    refused(venue(tmp_path, command), f"cannot read the state store {path}", "not a database")
    assert path.read_bytes() == garbage


def test_resolve_filled_books_the_order_and_records_who_when_why(state: Path) -> None:
    result = venue(
        state, "resolve", "o2", "--as", "filled", "--price", "101", "--fee", "0.05",
        "--reason", "binance order history shows it filled",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "order:o2: filled by" in result.output
    store = VenueStore(database_path(state), "binance")
    try:
        position = store.positions()["o2"]
        assert position["quantity"] == pytest.approx(0.5)  # 50 USDT at 100 was the order
        assert position["entry_price"] == pytest.approx(101.0)
        assert position["stop_loss"] == 80.0  # the engine order's stops come with it
        stored = store.order("o2")
        assert stored is not None and stored.status == "filled"
        (decision,) = store.decisions()
        assert decision["decision"] == "filled"
        assert decision["reason"] == "binance order history shows it filled"
        assert decision["who"] and decision["at"]
    finally:
        store.close()
    journal = runner.invoke(
        app, ["journal", "--subsystem", "operator", "--format", "json", "--state-dir", str(state)]
    )
    assert journal.exit_code == 0, journal.output
    (row,) = json.loads(journal.output)
    assert (row["hook"], row["subject"], row["trace"]) == ("venue_resolve", "order:o2", "t1")
    assert "binance order history shows it filled" in row["reason"]


def test_resolve_cancelled_unfreezes_the_position_and_never_placed_settles_an_open(
    state: Path,
) -> None:
    ok = venue(state, "resolve", "c1", "--as", "cancelled", "--reason", "cancelled on the venue")
    assert ok.exit_code == 0, ok.output
    positions = json.loads(venue(state, "positions", "--format", "json").output)["binance"]
    # o1 trades again; o3 stays frozen by its own order, still resting on the venue.
    assert {p["position_id"]: p["frozen"] for p in positions} == {"o1": False, "o3": True}
    assert {p["position_id"]: p["quantity"] for p in positions}["o1"] == pytest.approx(1.0)
    # The venue's id works as well as aios's.
    venue_id = json.loads(venue(state, "orders", "--format", "json").output)["binance"][2][
        "venue_client_id"
    ]
    placed = venue(state, "resolve", venue_id, "--as", "never-placed", "--reason", "not there")
    assert placed.exit_code == 0, placed.output
    assert "order:o2: never-placed" in placed.output


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["resolve", "zz9", "--as", "cancelled"], ["no venue order 'zz9'", "c1, o2, o3"]),
        (["resolve", "o1", "--as", "cancelled"], ["order o1 is not unresolved", "filled"]),
        (["resolve", "o3", "--as", "never-placed"], ["cannot have been never placed", "0.4"]),
        (["resolve", "o2", "--as", "filled"], ["needs --price > 0"]),
        (["resolve", "o2", "--as", "filled", "--price", "-1"], ["needs --price > 0"]),
        (["resolve", "o2", "--as", "filled", "--price", "100", "--filled", "9"], ["cannot have filled 9"]),
        (["resolve", "o3", "--as", "filled", "--price", "100", "--filled", "0.1"], ["cannot be less"]),
        (["resolve", "o2", "--as", "cancelled", "--price", "100"], ["--as cancelled means"]),
        (["settle", "o9", "--as", "sold-outside"], ["no open position 'o9'", "o1, o3"]),
        (["settle", "o1", "--as", "sold-outside"], ["outcome is unknown: c1", "resolve them first"]),
        (["settle", "o3", "--as", "reduced", "--quantity", "0.1"], ["outcome is unknown: o3"]),
    ],
)  # fmt: skip
def test_a_contradicting_or_unknown_decision_is_refused_and_changes_nothing(
    state: Path, args: list[str], fragments: list[str]
) -> None:
    before = dump(state)
    refused(
        venue(state, *args, "--reason", "checked"),
        "refused" if args[1] != "zz9" else "",
        *fragments,
    )
    assert dump(state) == before


@pytest.mark.parametrize(
    "args",
    [
        ["resolve", "o2", "--as", "filled-ish", "--reason", "x"],  # not in the vocabulary
        ["resolve", "o2", "--as", "cancelled"],  # no --reason
        ["resolve", "o2", "--as", "cancelled", "--reason", "  "],  # an empty one
        ["resolve", "o2", "--as", "filled", "--price", "abc", "--reason", "x"],
        ["settle", "o1", "--reason", "x"],  # no --as
    ],
)
def test_bad_input_is_a_usage_error_without_a_traceback(state: Path, args: list[str]) -> None:
    before = dump(state)
    refused(venue(state, *args), code=2)
    assert dump(state) == before


def test_a_decision_is_refused_while_a_live_run_holds_the_store(state: Path) -> None:
    before = dump(state)
    held = VenueLock(database_path(state), "binance", "a live run (aios run)")
    try:
        refused(
            venue(state, "resolve", "c1", "--as", "cancelled", "--reason", "x"),
            "in use by a live run (aios run) (pid",
        )
        with pytest.raises(StoreLocked):  # and a second live run cannot start either
            VenueStore(database_path(state), "binance", lock="a live run (aios run)")
        assert venue(state, "orders").exit_code == 0  # reading needs no lock
    finally:
        held.release()
    assert dump(state) == before
    assert venue(state, "resolve", "c1", "--as", "cancelled", "--reason", "x").exit_code == 0


def test_the_lock_of_a_killed_process_is_gone_with_it(tmp_path: Path) -> None:
    database = database_path(tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from aios.exchange.venue_store import VenueLock\n"
            f"held = VenueLock({str(database)!r}, 'binance', 'holder')\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreLocked, match="holder"):
            VenueLock(database, "binance", "me")
    finally:
        holder.kill()
        holder.wait(timeout=10)
    VenueLock(database, "binance", "me").release()


def balance_frozen(state: Path) -> None:
    """o1 (1 ETH) with the venue holding only 0.25 ETH: frozen by the balance check."""
    venue_fake = ReconcilingFake()
    broker = broker_over(state, venue_fake)
    broker.submit(order("o1", quote_amount=100.0), at(0), 100.0)
    venue_fake.base = 0.25  # sold by hand
    again = broker_over(state, venue_fake)
    (decision,) = again.reconcile(venue_fake, at(1), [SYMBOL])
    assert decision.action == "frozen"
    assert again.store is not None and broker.store is not None
    again.store.close()
    broker.store.close()


def test_status_shows_frozen_positions_and_unknown_orders(state: Path) -> None:
    replay = runner.invoke(
        app, ["run", "--limit", "3", "--quiet", "--no-watch", "--state-dir", str(state)]
    )
    assert replay.exit_code == 0, replay.output
    text = runner.invoke(app, ["status", "--state-dir", str(state)])
    assert text.exit_code == 0, text.output
    assert "venue binance: 2 frozen position(s), 3 order(s) with an unknown outcome" in text.output
    assert (
        "order c1 (venue id " in text.output
        and "ETH/USDT, position o1) unknown since 20" in text.output
    )
    assert "position o1 (ETH/USDT, 1) frozen since 20" in text.output
    assert "timed out after 1 s" in text.output
    as_json = json.loads(
        runner.invoke(app, ["status", "--format", "json", "--state-dir", str(state)]).output
    )
    unknown = as_json["venue"]["binance"]["unknown_orders"]
    assert [o["client_id"] for o in unknown] == ["c1", "o2", "o3"]


def test_settle_a_balance_freeze_reduced_then_the_next_start_adopts_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    balance_frozen(state)
    replay = runner.invoke(
        app, ["run", "--limit", "2", "--quiet", "--no-watch", "--state-dir", str(state)]
    )
    assert replay.exit_code == 0, replay.output
    status = runner.invoke(app, ["status", "--state-dir", str(state)]).output
    assert "position o1 (ETH/USDT, 1) frozen since" in status and "holds only 0.25" in status
    before = dump(state)
    refused(
        venue(state, "settle", "o1", "--as", "reduced", "--quantity", "2", "--reason", "x"),
        "reduced means less",
    )
    refused(
        venue(state, "settle", "o1", "--as", "reduced", "--reason", "x"), "needs --quantity > 0"
    )
    assert dump(state) == before
    ok = venue(
        state,
        "settle",
        "o1",
        "--as",
        "reduced",
        "--quantity",
        "0.25",
        "--reason",
        "sold 0.75 by hand",
    )
    assert ok.exit_code == 0, ok.output
    assert "reduced outside aios: 1 -> 0.25 ETH" in ok.output
    refused(venue(state, "settle", "o1", "--as", "sold-outside", "--reason", "x"), "is not frozen")

    venue_fake = ReconcilingFake()
    venue_fake.base = 0.25
    restarted = broker_over(state, venue_fake)
    assert [(d.action, d.subject) for d in restarted.reconcile(venue_fake, at(2), [SYMBOL])] == [
        ("adopted", "position:o1")
    ]
    assert restarted.frozen() == {}


def test_settle_sold_outside_forgets_the_position(tmp_path: Path) -> None:
    state = tmp_path / "state"
    balance_frozen(state)
    ok = venue(state, "settle", "o1", "--as", "sold-outside", "--reason", "sold it all by hand")
    assert ok.exit_code == 0, ok.output
    assert json.loads(venue(state, "positions", "--format", "json").output)["binance"] == []
    store = VenueStore(database_path(state), "binance")
    try:
        assert store.freezes() == []
        assert [d["decision"] for d in store.decisions()] == ["sold-outside"]
    finally:
        store.close()


def test_with_two_exchanges_the_one_holding_the_id_is_chosen_or_named(state: Path) -> None:
    other = VenueStore(database_path(state), "okx")
    other.sending("c1", "okxc1", "q1", "ETH/USDT", {"client_id": "c1"})  # the same engine id
    other.close()
    ambiguous = venue(state, "resolve", "c1", "--as", "cancelled", "--reason", "x")
    refused(ambiguous, "holds venue stores for binance, okx", "c1 is in binance, okx", "--exchange")
    unknown = venue(state, "resolve", "zz9", "--as", "cancelled", "--reason", "x")
    refused(unknown, "zz9 is in none of them")
    chosen = venue(state, "resolve", "o2", "--as", "never-placed", "--reason", "x")
    assert chosen.exit_code == 0 and chosen.output.startswith("binance order:o2"), chosen.output
    refused(venue(state, "orders", "--exchange", "kraken"), "no venue store for 'kraken'")
    assert set(json.loads(venue(state, "orders", "--format", "json").output)) == {"binance", "okx"}
