"""okx and bybit: the client order id aios builds reaches each venue in that venue's own field
(`clOrdId`, `orderLinkId`), through ccxt's real `okx` and `bybit` classes, signed as the venue
checks it, against the small fakes of tests/fake_venues.py (nothing of ccxt is patched).

What these tests establish, and what they do not, is written in docs/architecture.md
("Client ids in the venue's format"): placement on both, and okx's lookup by client id, are
exercised here; bybit's lookup is shown to fail safe; cancellations and open-order listings on
these two venues are not exercised."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fake_venues import fake_bybit, fake_okx, serve

from aios.exchange.ccxt_venue import CcxtVenue, VenueError
from aios.exchange.client_ids import FORMATS, venue_client_id

KEY, SECRET, PASSWORD = "test-key-5e1b", "test-secret-9c0d", "test-pass-77"
#: A long engine id (a retried stop of a late run): the readable part must be cut to fit.
ENGINE_ID = "run-12-40317-7:trailing_stop:3"
PLACE = {"okx": "/api/v5/trade/batch-orders", "bybit": "/v5/order/create"}


def environment(exchange: str, url: str) -> dict[str, str]:
    prefix = f"AIOS_{exchange.upper()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOS_")}
    return {
        **env,
        f"{prefix}_API_KEY": KEY,
        f"{prefix}_SECRET": SECRET,
        f"{prefix}_PASSWORD": PASSWORD,
        f"{prefix}_API_URL": url,
    }


def fake(exchange: str) -> Any:
    return fake_okx(KEY, SECRET, PASSWORD) if exchange == "okx" else fake_bybit(KEY, SECRET)


def placed_order(exchange: str, venue: Any) -> dict[str, Any]:
    (request,) = venue.sent("POST", PLACE[exchange])
    body = request.json()
    if exchange == "okx":  # ccxt places okx orders through batch-orders: a list of one
        (body,) = body
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("exchange", ["okx", "bybit"])
@pytest.mark.parametrize("side", ["buy", "sell"])
def test_the_client_id_reaches_the_venue_in_its_own_field(exchange: str, side: str) -> None:
    fmt = FORMATS[exchange]
    client_id = venue_client_id(fmt, "k3x9q2", ENGINE_ID)
    assert fmt.valid(client_id) and len(client_id) >= fmt.max_length - 1  # cut to fit
    venue_fake = fake(exchange)
    with (
        serve(venue_fake) as url,
        CcxtVenue(exchange, environment(exchange, url), timeout_s=10.0) as venue,
    ):
        answer = venue.create_order(client_id, "ETH/BTC", side, 0.5, "market")
    assert venue_fake.bad_signatures == []  # signed as the venue checks it
    # Spot markets only were loaded (no futures, swaps or options).
    markets = [r.query for r in venue_fake.requests if "instruments" in r.path]
    assert markets == ([{"instType": "SPOT"}] if exchange == "okx" else [{"category": "spot"}])
    order = placed_order(exchange, venue_fake)
    assert order[fmt.field] == client_id
    assert "clientOrderId" not in order  # ccxt moved it to the venue's field, not alongside
    if exchange == "okx":
        assert (order["instId"], order["side"], order["ordType"]) == ("ETH-BTC", side, "market")
        # Spot, in cash, and the size in the base currency for a buy too (tgtCcy base_ccy).
        assert (order["tdMode"], order["sz"], order["tgtCcy"]) == ("cash", "0.5", "base_ccy")
    else:
        assert (order["category"], order["symbol"], order["orderType"]) == (
            "spot",
            "ETHBTC",
            "Market",
        )
        assert (order["side"], order["qty"]) == (side.capitalize(), "0.5")
        # A unified account's market order counted in the base currency, as aios sizes it.
        assert order["marketUnit"] == "baseCoin"
    assert answer["clientOrderId"] == client_id
    # Both venues answer a placement with ids only: ccxt reports no filled amount, which the
    # venue broker books as an order whose outcome is unknown (see docs/architecture.md).
    assert answer["filled"] is None


def test_okx_refuses_what_the_format_rejects_before_anything_is_sent() -> None:
    # The okx format has no separator: an id with one would be refused by the venue (51000).
    fmt = FORMATS["okx"]
    assert not fmt.valid("k3x9q2-run-1") and fmt.valid(venue_client_id(fmt, "k3x9q2", "run-1"))


def test_an_okx_lookup_by_client_id_asks_by_clordid_and_reads_the_fills() -> None:
    fmt = FORMATS["okx"]
    client_id = venue_client_id(fmt, "k3x9q2", ENGINE_ID)
    never_sent = venue_client_id(fmt, "k3x9q2", "run-12-1-1")
    venue_fake = fake("okx")
    with (
        serve(venue_fake) as url,
        CcxtVenue("okx", environment("okx", url), timeout_s=10.0) as venue,
    ):
        venue.create_order(client_id, "ETH/BTC", "buy", 0.5, "market")
        found = venue.fetch_order_by_client_id(client_id, "ETH/BTC")
        missing = venue.fetch_order_by_client_id(never_sent, "ETH/BTC")
    assert venue_fake.bad_signatures == []
    asked = [r.query for r in venue_fake.sent("GET", "/api/v5/trade/order")]
    assert asked == [
        {"instId": "ETH-BTC", "clOrdId": client_id},
        {"instId": "ETH-BTC", "clOrdId": never_sent},
    ]
    assert found is not None
    assert (found["clientOrderId"], found["status"]) == (client_id, "closed")
    assert (found["filled"], found["average"]) == (0.5, 0.05)
    assert found["fee"] == {"cost": 0.0005, "currency": "ETH"}  # a buy's fee, in what it bought
    assert missing is None  # okx 51603, "Order does not exist": never placed


def test_the_venue_broker_books_an_okx_order_from_its_lookup(tmp_path: Path) -> None:
    # okx answers the placement with ids only; the broker asks once by clOrdId and books that.
    from aios.exchange.venue_broker import VenueBroker
    from aios.exchange.venue_store import VenueStore
    from aios.model import OrderAction, OrderIntent, Side

    venue_fake = fake("okx")
    store = VenueStore(tmp_path / "state.sqlite", "okx")
    namespace = store.namespace()
    with serve(venue_fake) as url, CcxtVenue("okx", environment("okx", url)) as venue:
        broker = VenueBroker(
            venue,
            quote_currency="BTC",
            cash_buffer_pct=0.0,
            store=store,
            venue_client_id=lambda cid: venue_client_id(FORMATS["okx"], namespace, cid),
            client_id_namespace=namespace,
        )
        entry = OrderIntent(
            id="run-1-300-1",
            symbol="ETH/BTC",
            side=Side.LONG,
            action=OrderAction.OPEN,
            reason="t",
            trace="t1",
            quote_amount=0.025,
        )
        (fill,) = broker.submit(entry, datetime(2026, 12, 1, tzinfo=UTC), 0.05)
    store.close()
    assert venue_fake.bad_signatures == []
    (placed,) = [placed_order("okx", venue_fake)]
    assert placed["clOrdId"].startswith(namespace) and placed["sz"] == "0.5"
    assert [r.query["clOrdId"] for r in venue_fake.sent("GET", "/api/v5/trade/order")] == [
        placed["clOrdId"]
    ]
    assert (fill.price, fill.quantity) == (0.05, pytest.approx(0.4995))  # fee taken in ETH
    assert broker.unresolved() == ()
    (position,) = broker.positions()
    assert position.quantity == pytest.approx(0.4995)


def test_a_bybit_lookup_by_client_id_is_never_taken_for_not_found() -> None:
    # ccxt's bybit fetchOrder refuses without `acknowledged` and does not map `clientOrderId`
    # to `orderLinkId`: aios must see an error (the position stays frozen), never "no such
    # order" (which reconciliation would resolve as never placed).
    venue_fake = fake("bybit")
    client_id = venue_client_id(FORMATS["bybit"], "k3x9q2", "run-1-2-3")
    with (
        serve(venue_fake) as url,
        CcxtVenue("bybit", environment("bybit", url), timeout_s=10.0) as venue,
        pytest.raises(VenueError) as info,
    ):
        venue.fetch_order_by_client_id(client_id, "ETH/BTC")
    assert not info.value.not_found
