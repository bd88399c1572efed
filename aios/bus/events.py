"""The events that travel on the bus: versioned, typed, validated when read.

An event is an envelope (`id`, `type`, `version`) around one frozen record. On the wire (a Redis
stream entry, or the in-process bus's copy of one) it is four fields: `id`, `type`, `v` and
`data`, the record as JSON. Reading decodes `data` back into the record's dataclass, field by
field against its type hints, so a malformed entry fails with a reason that names the field
(`data.signals[0].confidence: expected a number, got 'high'`), never a traceback; the caller
sends it to the dead-letter stream and carries on.

The event id is deterministic (what the event is about, not when it was sent): a redelivered or
re-published event has the same id, which is what idempotent processing keys on.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from aios.exchange.base import Fill
from aios.model import Candle, ClosedTrade, OrderIntent, PositionAction, Signal


class EventInvalid(ValueError):
    """An entry that is not a valid event: `reason` says which field and what was wrong."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- the records ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CandleClosed:
    """Work for a worker: compute `symbol`'s signals as of `time`.

    `candle` is the symbol's candle at `time`, or None when the symbol has no candle at that time
    but is still in the market (the engine asks signal sources about it anyway)."""

    symbol: str
    time: datetime
    candle: Candle | None = None


@dataclass(frozen=True, slots=True)
class SignalsReported:
    """A worker's answer for one (symbol, time): its signals (possibly none) or the error its
    signal source raised. One per (symbol, time): it doubles as the worker's watermark."""

    symbol: str
    time: datetime
    worker: str
    signals: tuple[Signal, ...] = ()
    errors: tuple[tuple[str, str], ...] = ()  # (plugin, error text)


@dataclass(frozen=True, slots=True)
class TradeIntentDecided:
    """An order the risk gate decided for one book at one candle time."""

    book: str
    time: datetime
    order: OrderIntent


@dataclass(frozen=True, slots=True)
class ExecutionReported:
    """What the broker did for one book: a fill or a stop change."""

    book: str
    fill: Fill


@dataclass(frozen=True, slots=True)
class TradeClosedReported:
    """A closed trade of one book."""

    book: str
    trade: ClosedTrade


@dataclass(frozen=True, slots=True)
class RewardComputed:
    """The RL agent's reward for a closed trade: pnl_pct / 100."""

    position_id: str
    trace: str
    symbol: str
    book: str
    pnl_pct: float
    reward: float
    closed_at: datetime


@dataclass(frozen=True, slots=True)
class RiskProposed:
    """Regime-weighted SL/TP/trailing proposals for one open position (calculation only)."""

    symbol: str
    position_id: str
    time: datetime
    price: float
    actions: tuple[PositionAction, ...] = ()


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Event(Generic[R]):
    """An envelope: a deterministic `id`, the event `type` and its schema `version`."""

    id: str
    type: str
    payload: R
    version: int = 1
    meta: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventType:
    """One event type: its name, the record it carries and the versions a reader accepts."""

    name: str
    record: type[Any]
    version: int
    accepts: frozenset[int]


#: Every event type, by name. A reader accepts the versions listed; a writer writes `version`.
EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("market.candle", CandleClosed, 1, frozenset({1})),
        EventType("ai.signal_generated", SignalsReported, 1, frozenset({1})),
        EventType("trade.intent", TradeIntentDecided, 1, frozenset({1})),
        EventType("execution.result", ExecutionReported, 1, frozenset({1})),
        EventType("trade.closed", TradeClosedReported, 1, frozenset({1})),
        EventType("rl_rewards", RewardComputed, 1, frozenset({1})),
        EventType("risk.proposal", RiskProposed, 1, frozenset({1})),
    )
}
_TYPE_OF_RECORD = {t.record: t for t in EVENT_TYPES.values()}


def event(event_id: str, payload: Any) -> Event[Any]:
    """An envelope for `payload`, typed by the payload's record class."""
    kind = _TYPE_OF_RECORD.get(type(payload))
    if kind is None:
        raise TypeError(f"{type(payload).__name__} is not a bus event record")
    return Event(event_id, kind.name, payload, kind.version)


# --- encoding ------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value!r} cannot go on the bus")
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} on the bus")


def encode(item: Event[Any]) -> dict[str, str]:
    """The wire fields of an event (all strings, as Redis stores them)."""
    data = json.dumps(_plain(item.payload), separators=(",", ":"), allow_nan=False)
    fields = {"id": item.id, "type": item.type, "v": str(item.version), "data": data}
    for key, value in item.meta.items():
        fields[f"meta.{key}"] = value
    return fields


# --- decoding, with reasons ----------------------------------------------------------------

_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = typing.get_type_hints(cls)
        _HINTS[cls] = hints
    return hints


def _describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _decode(kind: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(kind)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _decode(option, value, path)
            except EventInvalid as exc:
                errors.append(exc.reason)
        raise EventInvalid(errors[0] if len(errors) == 1 else f"{path}: {' / '.join(errors)}")
    if kind is Any:
        return value
    if origin is tuple:
        args = typing.get_args(kind)
        if not isinstance(value, list):
            raise EventInvalid(f"{path}: expected a list, got {_describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise EventInvalid(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(
            _decode(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin in (Mapping, dict, typing.get_origin(Mapping[str, Any])):
        key_kind, value_kind = typing.get_args(kind)
        if not isinstance(value, dict):
            raise EventInvalid(f"{path}: expected an object, got {_describe(value)}")
        return {
            _decode(key_kind, k, f"{path}.{k}"): _decode(value_kind, v, f"{path}.{k}")
            for k, v in value.items()
        }
    if kind is type(None):
        if value is not None:
            raise EventInvalid(f"{path}: expected null, got {_describe(value)}")
        return None
    if isinstance(kind, type) and issubclass(kind, Enum):
        try:
            return kind(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in kind)
            raise EventInvalid(f"{path}: {_describe(value)} is not one of {allowed}") from None
    if kind is bool:
        if not isinstance(value, bool):
            raise EventInvalid(f"{path}: expected true or false, got {_describe(value)}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise EventInvalid(f"{path}: expected an integer, got {_describe(value)}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EventInvalid(f"{path}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise EventInvalid(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise EventInvalid(f"{path}: expected a string, got {_describe(value)}")
        return value
    if kind is datetime:
        if not isinstance(value, str):
            raise EventInvalid(f"{path}: expected an ISO 8601 time, got {_describe(value)}")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise EventInvalid(f"{path}: {_describe(value)} is not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise EventInvalid(f"{path}: {_describe(value)} has no time zone (UTC expected)")
        return parsed
    if dataclasses.is_dataclass(kind) and isinstance(kind, type):
        return _record(kind, value, path)
    raise EventInvalid(f"{path}: no decoder for {kind!r}")  # a record type this module forgot


def _record(cls: type[Any], value: Any, path: str) -> Any:
    if not isinstance(value, dict):
        raise EventInvalid(f"{path}: expected an object ({cls.__name__}), got {_describe(value)}")
    hints = _hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise EventInvalid(f"{path}: unknown field(s) {', '.join(unknown)} for {cls.__name__}")
    arguments: dict[str, Any] = {}
    for name, spec in known.items():
        where = f"{path}.{name}"
        if name not in value:
            no_default = (
                spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
            )
            if no_default:
                raise EventInvalid(f"{where}: missing (required by {cls.__name__})")
            continue
        arguments[name] = _decode(hints[name], value[name], where)
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as exc:
        raise EventInvalid(f"{path}: {exc}") from None


def decode(fields: Mapping[str, str]) -> Event[Any]:
    """The event in an entry's fields, or EventInvalid naming what is wrong."""
    for required in ("id", "type", "v", "data"):
        if required not in fields:
            raise EventInvalid(f"missing field {required!r}")
    kind = EVENT_TYPES.get(fields["type"])
    if kind is None:
        raise EventInvalid(
            f"unknown event type {fields['type']!r} (known: {', '.join(sorted(EVENT_TYPES))})"
        )
    try:
        version = int(fields["v"])
    except ValueError:
        raise EventInvalid(f"version {fields['v']!r} is not an integer") from None
    if version not in kind.accepts:
        accepted = ", ".join(str(v) for v in sorted(kind.accepts))
        raise EventInvalid(f"{kind.name} version {version} is not supported (reads {accepted})")
    if not fields["id"]:
        raise EventInvalid("empty event id")
    try:
        data = json.loads(fields["data"])
    except ValueError as exc:
        raise EventInvalid(f"data is not JSON: {exc}") from None
    payload = _record(kind.record, data, "data")
    meta = {k[5:]: v for k, v in fields.items() if k.startswith("meta.")}
    return Event(fields["id"], kind.name, payload, version, meta)


__all__ = [
    "EVENT_TYPES",
    "CandleClosed",
    "Event",
    "EventInvalid",
    "EventType",
    "ExecutionReported",
    "RewardComputed",
    "RiskProposed",
    "SignalsReported",
    "TradeClosedReported",
    "TradeIntentDecided",
    "decode",
    "encode",
    "event",
]
