"""Client order ids mapped to each venue's format: valid, deterministic, collision-safe."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aios.exchange.client_ids import FORMATS, format_for, venue_client_id

ENGINE_IDS = [
    "run-1-361-125",
    "run-12-40312-7-3",  # a slice
    "run-1-361-125:stop_loss",
    "run-1-361-125:trailing_stop:12",
    "run-1234567-99999999-99999-9999:take_profit:999",  # longer than every venue allows
]


@pytest.mark.parametrize("venue", sorted(FORMATS))
def test_every_engine_id_becomes_a_valid_venue_id(venue: str) -> None:
    fmt = FORMATS[venue]
    for engine_id in ENGINE_IDS:
        client_id = venue_client_id(fmt, "a1b2c3", engine_id)
        assert fmt.valid(client_id), (venue, client_id)
        assert len(client_id) <= fmt.max_length
        assert client_id.startswith("a1b2c3")


def test_the_documented_limits() -> None:
    assert (FORMATS["binance"].field, FORMATS["binance"].max_length) == ("newClientOrderId", 36)
    assert (FORMATS["okx"].field, FORMATS["okx"].max_length) == ("clOrdId", 32)
    assert (FORMATS["bybit"].field, FORMATS["bybit"].max_length) == ("orderLinkId", 36)
    assert not FORMATS["okx"].valid("run-1")  # alphanumerics only
    assert not FORMATS["binance"].valid("x" * 37)
    assert FORMATS["binance"].valid("abc_DEF-123")


def test_readable_where_the_venue_allows_it() -> None:
    assert "-run-1-361-125-" in venue_client_id(
        FORMATS["binance"], "a1b2", "run-1-361-125:stop_loss"
    )
    assert "run1361125" in venue_client_id(FORMATS["okx"], "a1b2", "run-1-361-125")


def test_deterministic_and_namespaced() -> None:
    fmt = FORMATS["binance"]
    assert venue_client_id(fmt, "a1b2c3", "run-1-2-3") == venue_client_id(
        fmt, "a1b2c3", "run-1-2-3"
    )
    assert venue_client_id(fmt, "a1b2c3", "run-1-2-3") != venue_client_id(
        fmt, "zzzz99", "run-1-2-3"
    )


def test_ids_that_read_the_same_on_the_venue_stay_distinct() -> None:
    # okx drops the dashes: both read "run1361125", the digest tells them apart.
    okx = FORMATS["okx"]
    assert venue_client_id(okx, "a1b2", "run-1-36-1125") != venue_client_id(
        okx, "a1b2", "run-13-6-1125"
    )


def test_no_collision_over_many_engine_ids() -> None:
    for fmt in FORMATS.values():
        ids = [f"run-{r}-{c}-{s}" for r in range(1, 4) for c in range(1, 300) for s in range(1, 12)]
        ids += [f"{i}:stop_loss:{n}" for i in ids[:2000] for n in (1, 2)]
        mapped = {venue_client_id(fmt, "ns01", engine_id) for engine_id in ids}
        assert len(mapped) == len(ids)


@given(st.text(min_size=1, max_size=80))
def test_any_engine_id_maps_to_a_valid_id(engine_id: str) -> None:
    for fmt in FORMATS.values():
        assert fmt.valid(venue_client_id(fmt, "ns01", engine_id))


def test_unknown_venues_and_bad_namespaces_are_refused() -> None:
    with pytest.raises(ValueError, match="does not know kraken's client order id format"):
        format_for("kraken")
    with pytest.raises(ValueError, match="namespace"):
        venue_client_id(FORMATS["okx"], "NS-1", "run-1")
