"""The in-process bus: the same semantics as Redis Streams, in one process's memory.

Entries are stored encoded (the wire fields), so reading decodes and validates exactly as the
Redis bus does, and a malformed entry takes the same way to the dead-letter stream. Consumer
groups, pending entries, reclaim after an idle time (on the injected clock), atomic commit with
idempotency keys and trimming to about `maxlen` behave as on Redis. Thread-safe: one lock.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aios.bus import (
    DEAD_LETTER,
    BusError,
    BusSettings,
    Clock,
    DeadLetter,
    Delivery,
    dead_letter_fields,
    read_dead_letter,
)
from aios.bus.events import Event, EventInvalid, decode, encode
from aios.model import HealthReport, HealthStatus


@dataclass
class _Pending:
    consumer: str
    delivered_at: float
    deliveries: int = 1


@dataclass
class _Group:
    cursor: int = 0  # sequence number of the last entry delivered
    pending: dict[int, _Pending] = field(default_factory=dict)


@dataclass
class _Stream:
    entries: dict[int, dict[str, str]] = field(default_factory=dict)
    groups: dict[str, _Group] = field(default_factory=dict)


class InProcessBus:
    """A `Bus` in memory: the embedded default, and the reference for the Redis one."""

    def __init__(self, settings: BusSettings | None = None, *, clock: Clock) -> None:
        self.settings = settings or BusSettings()
        self._clock = clock
        self._lock = threading.Condition()
        self._streams: dict[str, _Stream] = {}
        self._sequence = itertools.count(1)
        self._done: dict[str, float] = {}
        self._hashes: dict[str, dict[str, str]] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._members: dict[str, dict[str, float]] = {}
        self.dead_lettered = 0
        self._moved: list[DeadLetter] = []

    @staticmethod
    def _id(sequence: int) -> str:
        return f"{sequence}-0"

    @staticmethod
    def _seq(entry_id: str) -> int:
        return int(entry_id.split("-")[0])

    def _get(self, stream: str) -> _Stream:
        return self._streams.setdefault(stream, _Stream())

    def _append(self, stream: str, fields: Mapping[str, str]) -> str:
        target = self._get(stream)
        sequence = next(self._sequence)
        target.entries[sequence] = dict(fields)
        while len(target.entries) > self.settings.maxlen:
            oldest = next(iter(target.entries))
            del target.entries[oldest]
        self._lock.notify_all()
        return self._id(sequence)

    def publish(self, stream: str, item: Event[Any]) -> str:
        return self.publish_raw(stream, encode(item))

    def publish_raw(self, stream: str, fields: Mapping[str, str]) -> str:
        with self._lock:
            return self._append(stream, fields)

    def ensure_group(self, stream: str, group: str) -> None:
        with self._lock:
            self._get(stream).groups.setdefault(group, _Group())

    def _decode(
        self, stream: str, group: str, sequence: int, fields: Mapping[str, str], count: int
    ) -> Delivery | None:
        try:
            item = decode(fields)
        except EventInvalid as exc:
            letter = dead_letter_fields(stream, self._id(sequence), group, exc.reason, fields)
            self._append(DEAD_LETTER, letter)
            self._get(stream).groups[group].pending.pop(sequence, None)
            self.dead_lettered += 1
            self._moved.append(DeadLetter(stream, self._id(sequence), exc.reason, dict(fields)))
            return None
        return Delivery(stream, self._id(sequence), item, count)

    def consume(
        self,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        count: int | None = None,
        block_ms: int | None = None,
    ) -> list[Delivery]:
        limit = count or self.settings.batch
        with self._lock:
            deliveries = self._take(streams, group, consumer, limit)
            if not deliveries and block_ms:
                self._lock.wait(block_ms / 1000.0)
                deliveries = self._take(streams, group, consumer, limit)
            return deliveries

    def _take(
        self, streams: Sequence[str], group: str, consumer: str, limit: int
    ) -> list[Delivery]:
        deliveries: list[Delivery] = []
        now = self._clock()
        for stream in streams:
            source = self._get(stream)
            state = source.groups.get(group)
            if state is None:
                raise BusError(f"NOGROUP no consumer group {group!r} on {stream!r}")
            fresh = [s for s in source.entries if s > state.cursor][:limit]
            for sequence in fresh:
                state.cursor = sequence
                state.pending[sequence] = _Pending(consumer, now)
                delivery = self._decode(stream, group, sequence, source.entries[sequence], 1)
                if delivery is not None:
                    deliveries.append(delivery)
        return deliveries

    def read_after(
        self, positions: Mapping[str, str], *, count: int | None = None, block_ms: int | None = None
    ) -> list[Delivery]:
        limit = count or self.settings.batch
        with self._lock:
            deliveries: list[Delivery] = []
            for stream, after in positions.items():
                start = self._seq(after) if after not in ("0", "$") else 0
                taken = [s for s in self._get(stream).entries if s > start][:limit]
                for sequence in taken:
                    try:
                        item = decode(self._get(stream).entries[sequence])
                    except EventInvalid:
                        continue
                    deliveries.append(Delivery(stream, self._id(sequence), item))
            return deliveries

    def reclaim(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        min_idle_s: float | None = None,
        count: int | None = None,
    ) -> list[Delivery]:
        idle = self.settings.reclaim_idle_s if min_idle_s is None else min_idle_s
        with self._lock:
            source = self._get(stream)
            state = source.groups.get(group)
            if state is None:
                return []
            now = self._clock()
            deliveries: list[Delivery] = []
            for sequence in sorted(state.pending):
                if count is not None and len(deliveries) >= count:
                    break
                entry = state.pending[sequence]
                if now - entry.delivered_at < idle:
                    continue
                if sequence not in source.entries:  # trimmed while pending
                    del state.pending[sequence]
                    continue
                entry.consumer, entry.delivered_at = consumer, now
                entry.deliveries += 1
                delivery = self._decode(
                    stream, group, sequence, source.entries[sequence], entry.deliveries
                )
                if delivery is not None:
                    deliveries.append(delivery)
            return deliveries

    def _expire_done(self, now: float) -> None:
        if len(self._done) > 100_000:
            self._done = {k: t for k, t in self._done.items() if t > now}

    def commit(
        self,
        delivery: Delivery,
        group: str,
        outputs: Sequence[tuple[str, Event[Any]]] = (),
        *,
        key: str | None = None,
    ) -> bool:
        encoded = [(stream, encode(item)) for stream, item in outputs]
        with self._lock:
            fresh = self._mark(key or f"{group}:{delivery.event.id}")
            if fresh:
                for stream, fields in encoded:
                    self._append(stream, fields)
            self._ack(delivery, group)
            return fresh

    def commit_many(
        self,
        deliveries: Sequence[Delivery],
        group: str,
        outputs: Sequence[tuple[str, Event[Any]]],
        *,
        key: str,
    ) -> bool:
        if len({d.stream for d in deliveries}) > 1:
            raise ValueError("commit_many acknowledges entries of one stream")
        encoded = [(stream, encode(item)) for stream, item in outputs]
        with self._lock:
            fresh = self._mark(key)
            if fresh:
                for stream, fields in encoded:
                    self._append(stream, fields)
            for delivery in deliveries:
                self._ack(delivery, group)
            return fresh

    def publish_once(self, key: str, outputs: Sequence[tuple[str, Event[Any]]]) -> bool:
        return self.commit_many([], "", outputs, key=key)

    def publish_many(self, items: Sequence[tuple[str, Event[Any]]]) -> list[str]:
        encoded = [(stream, encode(item)) for stream, item in items]
        with self._lock:
            return [self._append(stream, fields) for stream, fields in encoded]

    def _mark(self, key: str) -> bool:
        now = self._clock()
        self._expire_done(now)
        expires = self._done.get(key)
        if expires is not None and expires > now:
            return False
        self._done[key] = now + self.settings.idempotency_ttl_s
        return True

    def _ack(self, delivery: Delivery, group: str) -> None:
        state = self._get(delivery.stream).groups.get(group)
        if state is not None:
            state.pending.pop(self._seq(delivery.entry_id), None)

    def ack(self, delivery: Delivery, group: str) -> None:
        with self._lock:
            self._ack(delivery, group)

    def pending(self, stream: str, group: str, consumer: str | None = None) -> int:
        with self._lock:
            state = self._get(stream).groups.get(group)
            if state is None:
                return 0
            return sum(1 for p in state.pending.values() if consumer in (None, p.consumer))

    def pending_ids(self, stream: str, group: str, consumer: str) -> list[str]:
        with self._lock:
            state = self._get(stream).groups.get(group)
            if state is None:
                return []
            return [self._id(s) for s, p in sorted(state.pending.items()) if p.consumer == consumer]

    def entries(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            return [(self._id(s), dict(f)) for s, f in self._get(stream).entries.items()]

    def length(self, stream: str) -> int:
        with self._lock:
            return len(self._get(stream).entries)

    def take_dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            moved, self._moved = self._moved, []
            return moved

    def dead_letters(self) -> list[DeadLetter]:
        return [read_dead_letter(fields) for _, fields in self.entries(DEAD_LETTER)]

    def write_hash(self, name: str, values: Mapping[str, str]) -> None:
        with self._lock:
            self._hashes[name] = dict(values)

    def read_hash(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._hashes.get(name, {}))

    def acquire_lease(self, name: str, owner: str, now: float, ttl_s: float) -> bool:
        with self._lock:
            held = self._leases.get(name)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._leases[name] = (owner, now + ttl_s)
            return True

    def release_lease(self, name: str, owner: str) -> None:
        with self._lock:
            held = self._leases.get(name)
            if held is not None and held[0] == owner:
                del self._leases[name]

    def lease_owner(self, name: str, now: float) -> str | None:
        with self._lock:
            held = self._leases.get(name)
            return held[0] if held is not None and held[1] > now else None

    def heartbeat(self, group: str, member: str, now: float) -> None:
        with self._lock:
            self._members.setdefault(group, {})[member] = now

    def members(self, group: str, now: float, ttl_s: float) -> list[str]:
        with self._lock:
            beats = self._members.get(group, {})
            return sorted(m for m, t in beats.items() if now - t < ttl_s)

    def leave(self, group: str, member: str) -> None:
        with self._lock:
            self._members.get(group, {}).pop(member, None)

    def health(self) -> HealthReport:
        return HealthReport(
            "bus",
            HealthStatus.OK,
            "in-process bus",
            {
                "bus_connected": 1.0,
                "bus_reconnects": 0.0,
                "bus_dead_letters": float(self.dead_lettered),
            },
        )

    def ping(self, *, attempts: int | None = None) -> bool:
        return True

    def clear(self) -> None:
        with self._lock:
            self._streams.clear()
            self._done.clear()
            self._hashes.clear()
            self._leases.clear()
            self._members.clear()

    def close(self) -> None:
        pass
