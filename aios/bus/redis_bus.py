"""The bus on Redis Streams: consumer groups, XAUTOCLAIM, atomic commit, dead letters.

`commit` is one Lua script, so the idempotency key, the outputs and the XACK happen together or
not at all: a worker killed at any point leaves either nothing (the entry stays pending and is
reclaimed) or everything (the entry is acknowledged). A reclaimed entry whose key exists (a slow
consumer finished it meanwhile) is acknowledged without publishing anything twice.

Every Redis call goes through `_call`, which reconnects with exponential backoff (the clock and
the sleep are injectable, so the schedule is tested without waiting) and keeps the counts the
bus's health report carries.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from aios.bus import (
    DEAD_LETTER,
    BusError,
    BusSettings,
    BusUnavailable,
    Clock,
    DeadLetter,
    Delivery,
    Sleep,
    dead_letter_fields,
    read_dead_letter,
    redacted,
)
from aios.bus.events import Event, EventInvalid, decode, encode
from aios.model import HealthReport, HealthStatus

T = TypeVar("T")
#: redis-py's client. Typed as Any: its stubs describe replies as unions of every RESP type, and
#: this module parses each reply where it is read.
Client = Any

# KEYS: idempotency key, source stream, output streams...; ARGV: key value, key ttl, maxlen,
# group, id count, ids..., then per output: field count, field, value, ...
_COMMIT = """
local fresh = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2])
local nids = tonumber(ARGV[5])
if fresh then
  local at = 6 + nids
  for i = 3, #KEYS do
    local n = tonumber(ARGV[at])
    local args = {KEYS[i], 'MAXLEN', '~', ARGV[3], '*'}
    for j = 1, n do args[#args + 1] = ARGV[at + j] end
    redis.call('XADD', unpack(args))
    at = at + n + 1
  end
end
if nids > 0 then
  local ids = {}
  for j = 1, nids do ids[j] = ARGV[5 + j] end
  redis.call('XACK', KEYS[2], ARGV[4], unpack(ids))
end
if fresh then return 1 else return 0 end
"""

# KEYS: lease key; ARGV: owner, now, expires. A lease is "owner|expires" (caller's clock).
_LEASE = """
local held = redis.call('GET', KEYS[1])
if held then
  local sep = string.find(held, '|', 1, true)
  local owner = string.sub(held, 1, sep - 1)
  local expires = tonumber(string.sub(held, sep + 1))
  if owner ~= ARGV[1] and expires > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. ARGV[3])
return 1
"""

_RELEASE = """
local held = redis.call('GET', KEYS[1])
if held and string.sub(held, 1, #ARGV[1] + 1) == ARGV[1] .. '|' then
  redis.call('DEL', KEYS[1])
end
return 0
"""


def _autoclaim(
    key: str, group: str, consumer: str, idle_ms: int, start: str, count: int, client: Client
) -> Any:
    return client.xautoclaim(key, group, consumer, idle_ms, start_id=start, count=count)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisBus:
    """A `Bus` on a Redis server (5.0+ for streams, 6.2+ for XAUTOCLAIM)."""

    def __init__(
        self,
        factory: Callable[[], Client],
        settings: BusSettings,
        *,
        clock: Clock,
        sleep: Sleep,
        where: str = "redis",
    ) -> None:
        self.settings = settings
        self._factory = factory
        self._client: Client | None = None
        self._clock = clock
        self._sleep = sleep
        self._where = where
        self.connected = False
        self.reconnects = 0
        self.dead_lettered = 0
        self._reconnects_reported = 0
        self._last_error = ""
        self._scripts: dict[str, Any] = {}
        self._moved: list[DeadLetter] = []

    @classmethod
    def from_url(
        cls,
        url: str,
        settings: BusSettings,
        *,
        clock: Clock,
        sleep: Sleep,
        client_name: str | None = None,
    ) -> RedisBus:
        import redis

        def factory() -> Client:
            return redis.Redis.from_url(
                url,
                decode_responses=True,
                socket_timeout=30,
                socket_connect_timeout=5,
                client_name=client_name,
            )

        where = redacted(url)  # never a password in a health report
        return cls(factory, settings, clock=clock, sleep=sleep, where=where)

    # --- the connection, with backoff --------------------------------------------------------

    def _call(self, operation: Callable[[Client], T], *, attempts: int | None = None) -> T:
        import redis

        allowed = self.settings.reconnect_attempts if attempts is None else attempts
        delay = self.settings.reconnect_initial_s
        attempt = 0
        while True:
            try:
                if self._client is None:
                    self._client = self._factory()
                    self._scripts = {}
                result = operation(self._client)
                self.connected = True
                return result
            except redis.ResponseError as exc:
                self.connected = True
                raise BusError(f"Redis at {self._where} refused: {exc}") from None
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                self.connected = False
                self._last_error = f"{type(exc).__name__}: {exc}"
                attempt += 1
                if self._client is not None:
                    with contextlib.suppress(redis.RedisError):
                        self._client.close()
                self._client = None
                if attempt > allowed:
                    raise BusUnavailable(
                        f"Redis at {self._where} unreachable after {attempt - 1} reconnect "
                        f"attempt(s): {self._last_error}",
                        where=self._where,
                        reason=self._last_error,
                    ) from None
                self.reconnects += 1
                self._sleep(delay)
                delay = min(delay * 2, self.settings.reconnect_max_s)

    def _script(self, client: Client, name: str, source: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = client.register_script(source)
            self._scripts[name] = script
        return script

    def ping(self, *, attempts: int | None = None) -> bool:
        return bool(self._call(lambda c: c.ping(), attempts=attempts))

    # --- streams -------------------------------------------------------------------------------

    def _stream(self, name: str) -> str:
        return self.settings.stream(name)

    def publish(self, stream: str, item: Event[Any]) -> str:
        return self.publish_raw(stream, encode(item))

    def publish_raw(self, stream: str, fields: Mapping[str, str]) -> str:
        key = self._stream(stream)
        return _text(
            self._call(
                lambda c: c.xadd(key, dict(fields), maxlen=self.settings.maxlen, approximate=True)
            )
        )

    def ensure_group(self, stream: str, group: str) -> None:
        import redis

        key = self._stream(stream)

        def create(client: Client) -> None:
            try:
                client.xgroup_create(key, group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        self._call(create)

    def _deliveries(
        self, stream: str, group: str, entries: Sequence[Any], counts: Mapping[str, int]
    ) -> list[Delivery]:
        deliveries = []
        for entry_id, fields in entries:
            if fields is None:  # deleted by trimming while pending
                continue
            entry_id = _text(entry_id)
            raw = {_text(k): _text(v) for k, v in fields.items()}
            try:
                item = decode(raw)
            except EventInvalid as exc:
                self._dead_letter(stream, group, entry_id, raw, exc.reason)
                continue
            deliveries.append(Delivery(stream, entry_id, item, counts.get(entry_id, 1)))
        return deliveries

    def _dead_letter(
        self, stream: str, group: str, entry_id: str, raw: Mapping[str, str], reason: str
    ) -> None:
        letter = dead_letter_fields(stream, entry_id, group, reason, raw)
        source, target = self._stream(stream), self._stream(DEAD_LETTER)

        def move(client: Client) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.xadd(target, letter, maxlen=self.settings.maxlen, approximate=True)
            pipe.xack(source, group, entry_id)
            pipe.execute()

        self._call(move)
        self.dead_lettered += 1
        self._moved.append(DeadLetter(stream, entry_id, reason, dict(raw)))

    def consume(
        self,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        count: int | None = None,
        block_ms: int | None = None,
    ) -> list[Delivery]:
        if not streams:
            return []
        keys = {self._stream(s): ">" for s in streams}
        names = {self._stream(s): s for s in streams}
        response = self._call(
            lambda c: c.xreadgroup(
                group,
                consumer,
                keys,
                count=count or self.settings.batch,
                block=block_ms,
            )
        )
        deliveries: list[Delivery] = []
        for key, entries in response or []:
            deliveries.extend(self._deliveries(names[_text(key)], group, entries, {}))
        return deliveries

    def read_after(
        self, positions: Mapping[str, str], *, count: int | None = None, block_ms: int | None = None
    ) -> list[Delivery]:
        if not positions:
            return []
        keys = {self._stream(s): i for s, i in positions.items()}
        names = {self._stream(s): s for s in positions}
        response = self._call(
            lambda c: c.xread(keys, count=count or self.settings.batch, block=block_ms)
        )
        deliveries: list[Delivery] = []
        for key, entries in response or []:
            for entry_id, fields in entries:
                raw = {_text(k): _text(v) for k, v in fields.items()}
                try:
                    item = decode(raw)
                except EventInvalid:
                    continue
                deliveries.append(Delivery(names[_text(key)], _text(entry_id), item))
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
        idle_ms = int(1000 * (self.settings.reclaim_idle_s if min_idle_s is None else min_idle_s))
        key = self._stream(stream)
        claimed: list[Any] = []
        cursor = "0-0"
        while True:
            reply = self._call(
                functools.partial(_autoclaim, key, group, consumer, idle_ms, cursor, count or 100)
            )
            cursor, entries = _text(reply[0]), reply[1]
            claimed.extend(entries)
            if cursor == "0-0" or (count is not None and len(claimed) >= count):
                break
        claimed.sort(key=lambda e: tuple(int(p) for p in _text(e[0]).split("-")))
        counts: dict[str, int] = {}
        if claimed:
            first, last = _text(claimed[0][0]), _text(claimed[-1][0])
            details = self._call(
                lambda c: c.xpending_range(key, group, first, last, len(claimed) + 10, consumer)
            )
            counts = {_text(d["message_id"]): int(d["times_delivered"]) for d in details}
        return self._deliveries(stream, group, claimed, counts)

    def commit(
        self,
        delivery: Delivery,
        group: str,
        outputs: Sequence[tuple[str, Event[Any]]] = (),
        *,
        key: str | None = None,
    ) -> bool:
        return self.commit_many(
            [delivery], group, outputs, key=key or f"{group}:{delivery.event.id}"
        )

    def commit_many(
        self,
        deliveries: Sequence[Delivery],
        group: str,
        outputs: Sequence[tuple[str, Event[Any]]],
        *,
        key: str,
    ) -> bool:
        streams = {d.stream for d in deliveries}
        if len(streams) > 1:
            raise ValueError(
                f"commit_many acknowledges entries of one stream, got {sorted(streams)}"
            )
        source = self._stream(streams.pop() if streams else DEAD_LETTER)
        keys = [self.settings.key("done", key), source]
        args: list[Any] = [
            "1",
            self.settings.idempotency_ttl_s,
            self.settings.maxlen,
            group,
            len(deliveries),
            *(d.entry_id for d in deliveries),
        ]
        for stream, item in outputs:
            keys.append(self._stream(stream))
            fields = encode(item)
            args.append(2 * len(fields))
            for name, value in fields.items():
                args.extend((name, value))
        result = self._call(lambda c: self._script(c, "commit", _COMMIT)(keys=keys, args=args))
        return bool(int(result))

    def publish_once(self, key: str, outputs: Sequence[tuple[str, Event[Any]]]) -> bool:
        return self.commit_many([], "", outputs, key=key)

    def publish_many(self, items: Sequence[tuple[str, Event[Any]]]) -> list[str]:
        """Several events in one round trip (a pipeline, not atomic)."""

        def send(client: Client) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for stream, item in items:
                pipe.xadd(
                    self._stream(stream),
                    encode(item),
                    maxlen=self.settings.maxlen,
                    approximate=True,
                )
            return list(pipe.execute())

        return [_text(i) for i in self._call(send)] if items else []

    def ack(self, delivery: Delivery, group: str) -> None:
        key = self._stream(delivery.stream)
        self._call(lambda c: c.xack(key, group, delivery.entry_id))

    def pending(self, stream: str, group: str, consumer: str | None = None) -> int:
        key = self._stream(stream)
        if consumer is None:
            summary = self._call(lambda c: c.xpending(key, group))
            return int(summary["pending"])
        details = self._call(lambda c: c.xpending_range(key, group, "-", "+", 1_000_000, consumer))
        return len(details)

    def pending_ids(self, stream: str, group: str, consumer: str) -> list[str]:
        key = self._stream(stream)
        details = self._call(lambda c: c.xpending_range(key, group, "-", "+", 1_000_000, consumer))
        return [_text(d["message_id"]) for d in details]

    def entries(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        key = self._stream(stream)
        rows = self._call(lambda c: c.xrange(key))
        return [(_text(i), {_text(k): _text(v) for k, v in f.items()}) for i, f in rows]

    def length(self, stream: str) -> int:
        key = self._stream(stream)
        return int(self._call(lambda c: c.xlen(key)))

    def take_dead_letters(self) -> list[DeadLetter]:
        moved, self._moved = self._moved, []
        return moved

    def dead_letters(self) -> list[DeadLetter]:
        return [read_dead_letter(fields) for _, fields in self.entries(DEAD_LETTER)]

    # --- hashes, leases, membership ------------------------------------------------------------

    def write_hash(self, name: str, values: Mapping[str, str]) -> None:
        key = self.settings.key("stats", name)

        def write(client: Client) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.delete(key)
            if values:
                pipe.hset(key, mapping=dict(values))
            pipe.execute()

        self._call(write)

    def read_hash(self, name: str) -> dict[str, str]:
        key = self.settings.key("stats", name)
        return {_text(k): _text(v) for k, v in self._call(lambda c: c.hgetall(key)).items()}

    def acquire_lease(self, name: str, owner: str, now: float, ttl_s: float) -> bool:
        key = self.settings.key("lease", name)
        args = [owner, repr(now), repr(now + ttl_s)]
        return bool(
            int(self._call(lambda c: self._script(c, "lease", _LEASE)(keys=[key], args=args)))
        )

    def release_lease(self, name: str, owner: str) -> None:
        key = self.settings.key("lease", name)
        self._call(lambda c: self._script(c, "release", _RELEASE)(keys=[key], args=[owner]))

    def lease_owner(self, name: str, now: float) -> str | None:
        key = self.settings.key("lease", name)
        held = self._call(lambda c: c.get(key))
        if held is None:
            return None
        owner, _, expires = _text(held).rpartition("|")
        return owner if float(expires) > now else None

    def heartbeat(self, group: str, member: str, now: float) -> None:
        key = self.settings.key("members", group)
        self._call(lambda c: c.hset(key, member, repr(now)))

    def members(self, group: str, now: float, ttl_s: float) -> list[str]:
        key = self.settings.key("members", group)
        beats = self._call(lambda c: c.hgetall(key))
        return sorted(_text(m) for m, t in beats.items() if now - float(_text(t)) < ttl_s)

    def leave(self, group: str, member: str) -> None:
        key = self.settings.key("members", group)
        self._call(lambda c: c.hdel(key, member))

    # --- health and housekeeping ---------------------------------------------------------------

    def health(self) -> HealthReport:
        """CRITICAL while Redis is unreachable, DEGRADED for the report after a reconnect.

        Read from the last call's outcome (the gate calls Redis every candle time); only a bus
        that is not connected is pinged, to find out whether it is back."""
        if not self.connected:
            with contextlib.suppress(BusUnavailable):
                self.ping()
        fresh_reconnects = self.reconnects - self._reconnects_reported
        if self.connected:
            self._reconnects_reported = self.reconnects
        metrics = {
            "bus_connected": 1.0 if self.connected else 0.0,
            "bus_reconnects": float(self.reconnects),
            "bus_dead_letters": float(self.dead_lettered),
        }
        if not self.connected:
            return HealthReport(
                "bus",
                HealthStatus.CRITICAL,
                f"Redis at {self._where} unreachable: {self._last_error}",
                metrics,
            )
        if fresh_reconnects:
            return HealthReport(
                "bus",
                HealthStatus.DEGRADED,
                f"Redis at {self._where}: {fresh_reconnects} reconnect(s) since the last check",
                metrics,
            )
        return HealthReport("bus", HealthStatus.OK, f"Redis at {self._where}", metrics)

    def clear(self) -> None:
        pattern = f"{self.settings.prefix}:*"

        def wipe(client: Client) -> None:
            keys = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])

        self._call(wipe)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
