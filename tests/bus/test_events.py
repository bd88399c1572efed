"""Events: every record survives the wire exactly; malformed data is refused with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from aios.bus.events import (
    EventInvalid,
    SignalsReported,
    TradeIntentDecided,
    decode,
    encode,
    event,
)
from aios.model import OrderAction, OrderIntent, OrderType, Side, Signal

NOW = datetime(2018, 1, 10, 12, 5, tzinfo=UTC)


def signals() -> SignalsReported:
    signal = Signal(
        "ETH_BTC@2018-01-10T12:05:00+00:00",
        "ETH_BTC",
        Side.SHORT,
        0.7123456789012345,
        "signal_model",
        NOW,
        0.0994766,
        {"returns_1": -0.1 / 3, "rsi_14": 55.0},
    )
    return SignalsReported("ETH_BTC", NOW, "w1", (signal,), (("other", "ValueError: x"),))


def test_records_round_trip_exactly() -> None:
    order = OrderIntent(
        "run-1-3-7",
        "LTC_BTC",
        Side.LONG,
        OrderAction.OPEN,
        "entry",
        "trace",
        quote_amount=0.02,
        order_type=OrderType.LIMIT,
        take_profit=1 / 3,
        hold_until=NOW,
    )
    for payload in (signals(), TradeIntentDecided("shadow", NOW, order)):
        item = event("id-1", payload)
        assert decode(encode(item)) == item


def test_non_finite_numbers_are_refused_when_written() -> None:
    bad = SignalsReported("ETH_BTC", NOW, "w1", (signals().signals[0],))
    broken = bad.signals[0].__class__(**{**_fields(bad.signals[0]), "confidence": float("nan")})
    with pytest.raises(ValueError, match="non-finite"):
        encode(event("x", SignalsReported("ETH_BTC", NOW, "w1", (broken,))))


def _fields(record: object) -> dict[str, object]:
    import dataclasses

    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}  # type: ignore[arg-type]


def _with_data(mutate: object) -> dict[str, str]:
    fields = encode(event("id-1", signals()))
    data = json.loads(fields["data"])
    mutate(data)  # type: ignore[operator]
    return {**fields, "data": json.dumps(data)}


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda d: d["signals"][0].update(confidence="high"),
            "data.signals[0].confidence: expected a number, got 'high'",
        ),
        (
            lambda d: d["signals"][0].update(side="UP"),
            "data.signals[0].side: 'UP' is not one of LONG, SHORT",
        ),
        (lambda d: d.pop("worker"), "data.worker: missing (required by SignalsReported)"),
        (lambda d: d.update(extra=1), "data: unknown field(s) extra for SignalsReported"),
        (
            lambda d: d.update(time="2018-01-10T12:05:00"),
            "data.time: '2018-01-10T12:05:00' has no time zone (UTC expected)",
        ),
        (lambda d: d.update(signals={}), "data.signals: expected a list, got {}"),
    ],
)
def test_malformed_data_is_refused_naming_the_field(mutate: object, reason: str) -> None:
    with pytest.raises(EventInvalid) as caught:
        decode(_with_data(mutate))
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"type": "rl_rewards", "v": "1", "data": "{}"}, "missing field 'id'"),
        ({"id": "x", "type": "nope", "v": "1", "data": "{}"}, "unknown event type 'nope'"),
        ({"id": "x", "type": "rl_rewards", "v": "one", "data": "{}"}, "version 'one'"),
        ({"id": "x", "type": "rl_rewards", "v": "1", "data": "{"}, "data is not JSON"),
        ({"id": "", "type": "rl_rewards", "v": "1", "data": "{}"}, "empty event id"),
    ],
)
def test_malformed_envelopes_are_refused(fields: dict[str, str], reason: str) -> None:
    with pytest.raises(EventInvalid, match=reason):
        decode(fields)
