"""The event bus: one interface, an in-process implementation and a Redis Streams one.

Both keep the same promises, so services, workers and the risk gate run the same code on
either:

* streams of versioned events (`aios.bus.events`), named `<prefix>:stream:<name>`, bounded to
  about `maxlen` entries each;
* consumer groups: each entry is delivered to one consumer of a group and stays pending until
  acknowledged; an entry pending longer than `reclaim_idle_s` can be reclaimed by another
  consumer (the dead one's work is not lost);
* `commit` records an idempotency key, publishes the outputs and acknowledges the input in one
  atomic step: a redelivered event finds its key and has no second effect;
* an entry that does not decode into a valid event is moved to `<prefix>:stream:dead_letter`
  with the reason and the raw fields, acknowledged, and reading carries on;
* the bus reports its own health (connected, reconnects, dead letters), which the risk gate
  passes to self-healing with the other components.

`open_bus("memory://")` is the embedded default; `open_bus("redis://127.0.0.1:6379/0")` needs a
Redis server and imports `redis` only then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from aios.bus.events import Event

if TYPE_CHECKING:
    from aios.model import HealthReport
    from aios.policy import Policy

DEAD_LETTER = "dead_letter"

#: Logical stream names (under `<prefix>:stream:`), as the system this implements named them.
CANDLES = "market.candle"  # per symbol: market.candle:<SYMBOL>
SIGNALS = "ai.signal_generated"
INTENTS = "trade.intent"
EXECUTIONS = "execution.result"
CLOSED = "trade.closed"
REWARDS = "rl_rewards"
RISK_PROPOSALS = "risk.proposals"  # per symbol: risk.proposals:<SYMBOL>


def per_symbol(stream: str, symbol: str) -> str:
    return f"{stream}:{symbol}"


class BusError(RuntimeError):
    """The bus refused an operation (for instance a consumer group lost with a Redis restart)."""


class BusUnavailable(BusError):
    """The bus could not be reached after every reconnect attempt; `where` is the server (no
    password), `reason` the last connection error."""

    def __init__(self, message: str, *, where: str = "", reason: str = "") -> None:
        super().__init__(message)
        self.where = where
        self.reason = reason


@dataclass(frozen=True)
class BusSettings:
    """The policy's `bus` section (see policy_schema.json for what each knob means)."""

    prefix: str = "quantum"
    maxlen: int = 100_000
    reclaim_idle_s: float = 30.0
    block_ms: int = 1000
    batch: int = 100
    stats_interval_s: float = 60.0
    lease_s: float = 15.0
    idempotency_ttl_s: int = 7 * 86400
    replay_window: int = 64
    risk_proposals_interval_s: float = 60.0
    reconnect_initial_s: float = 0.1
    reconnect_max_s: float = 5.0
    reconnect_attempts: int = 20

    @classmethod
    def from_policy(cls, policy: Policy) -> BusSettings:
        section = policy.get("bus", default={})
        if not isinstance(section, Mapping):
            return cls()
        reconnect = section.get("reconnect", {})
        reconnect = reconnect if isinstance(reconnect, Mapping) else {}
        defaults = cls()
        return cls(
            prefix=str(section.get("prefix", defaults.prefix)),
            maxlen=int(section.get("maxlen", defaults.maxlen)),
            reclaim_idle_s=float(section.get("reclaim_idle_s", defaults.reclaim_idle_s)),
            block_ms=int(section.get("block_ms", defaults.block_ms)),
            batch=int(section.get("batch", defaults.batch)),
            stats_interval_s=float(section.get("stats_interval_s", defaults.stats_interval_s)),
            lease_s=float(section.get("lease_s", defaults.lease_s)),
            idempotency_ttl_s=int(section.get("idempotency_ttl_s", defaults.idempotency_ttl_s)),
            replay_window=int(section.get("replay_window", defaults.replay_window)),
            risk_proposals_interval_s=float(
                section.get("risk_proposals_interval_s", defaults.risk_proposals_interval_s)
            ),
            reconnect_initial_s=float(reconnect.get("initial_s", defaults.reconnect_initial_s)),
            reconnect_max_s=float(reconnect.get("max_s", defaults.reconnect_max_s)),
            reconnect_attempts=int(reconnect.get("attempts", defaults.reconnect_attempts)),
        )

    def stream(self, name: str) -> str:
        return f"{self.prefix}:stream:{name}"

    def key(self, kind: str, name: str) -> str:
        return f"{self.prefix}:{kind}:{name}"


@dataclass(frozen=True)
class Delivery:
    """One entry handed to a consumer: which stream (logical name), its entry id, the event,
    and how many times it has been delivered (more than 1: a redelivery or a reclaim)."""

    stream: str
    entry_id: str
    event: Event[Any]
    deliveries: int = 1


@dataclass(frozen=True)
class DeadLetter:
    """What the dead-letter stream holds about one malformed entry."""

    source: str
    entry_id: str
    reason: str
    raw: Mapping[str, str]


def dead_letter_fields(
    source: str, entry_id: str, group: str, reason: str, raw: Mapping[str, str]
) -> dict[str, str]:
    """The dead-letter entry for a malformed one: where it was, who read it, why it was refused
    and its fields as they were (JSON), so nothing that arrived is lost."""
    return {
        "source": source,
        "entry_id": entry_id,
        "group": group,
        "reason": reason,
        "raw": json.dumps(dict(raw), sort_keys=True),
    }


def read_dead_letter(fields: Mapping[str, str]) -> DeadLetter:
    """A dead-letter entry, as `dead_letter_fields` wrote it."""
    return DeadLetter(
        fields["source"], fields["entry_id"], fields["reason"], json.loads(fields["raw"])
    )


class Bus(Protocol):
    """What services, workers and the risk gate need from a bus."""

    settings: BusSettings

    def publish(self, stream: str, item: Event[Any]) -> str:
        """Append an event to a stream (trimmed to about `maxlen`); returns the entry id."""
        ...

    def publish_raw(self, stream: str, fields: Mapping[str, str]) -> str:
        """Append fields as they are (tests and tools: this is how a malformed entry arrives)."""
        ...

    def ensure_group(self, stream: str, group: str) -> None:
        """Create the consumer group (reading from the stream's start) if it does not exist."""
        ...

    def consume(
        self,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        count: int | None = None,
        block_ms: int | None = None,
    ) -> list[Delivery]:
        """New entries for this consumer, oldest first per stream. Malformed entries go to the
        dead-letter stream (acknowledged) and are not returned."""
        ...

    def read_after(
        self, positions: Mapping[str, str], *, count: int | None = None, block_ms: int | None = None
    ) -> list[Delivery]:
        """Entries after the given entry ids ("0": from the start), without a group (XREAD):
        for a reader that keeps its own position. Malformed entries are skipped (and not
        dead-lettered: no group owns them)."""
        ...

    def reclaim(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        min_idle_s: float | None = None,
        count: int | None = None,
    ) -> list[Delivery]:
        """Take over entries pending longer than `min_idle_s` (default `reclaim_idle_s`) from
        any consumer of the group (XAUTOCLAIM), oldest first."""
        ...

    def commit(
        self,
        delivery: Delivery,
        group: str,
        outputs: Sequence[tuple[str, Event[Any]]] = (),
        *,
        key: str | None = None,
    ) -> bool:
        """Atomically: record the idempotency key (default `<group>:<event id>`), publish the
        outputs and acknowledge the entry. False when the key was recorded before: the outputs
        are not published again, the entry is still acknowledged."""
        ...

    def commit_many(
        self,
        deliveries: Sequence[Delivery],
        group: str,
        outputs: Sequence[tuple[str, Event[Any]]],
        *,
        key: str,
    ) -> bool:
        """`commit` for several entries of one stream under one key (the risk gate commits a
        candle time's reports with the time's outcome)."""
        ...

    def publish_many(self, items: Sequence[tuple[str, Event[Any]]]) -> list[str]:
        """Several events in one round trip (not atomic: for work that is idempotent anyway)."""
        ...

    def publish_once(self, key: str, outputs: Sequence[tuple[str, Event[Any]]]) -> bool:
        """Publish outputs unless the idempotency key was recorded before (atomically)."""
        ...

    def ack(self, delivery: Delivery, group: str) -> None: ...

    def pending(self, stream: str, group: str, consumer: str | None = None) -> int:
        """How many entries of the group (or of one consumer) wait for an acknowledgement."""
        ...

    def pending_ids(self, stream: str, group: str, consumer: str) -> list[str]:
        """The entry ids one consumer holds unacknowledged, oldest first."""
        ...

    def entries(self, stream: str) -> list[tuple[str, dict[str, str]]]:
        """Every entry still in a stream, raw (inspection, tests, the benchmark)."""
        ...

    def length(self, stream: str) -> int: ...

    def dead_letters(self) -> list[DeadLetter]: ...

    def take_dead_letters(self) -> list[DeadLetter]:
        """What this bus object moved to the dead-letter stream since the last call (no round
        trip): a reader waiting for an entry learns that it arrived malformed."""
        ...

    def write_hash(self, name: str, values: Mapping[str, str]) -> None:
        """Replace the fields of the hash `<prefix>:stats:<name>`."""
        ...

    def read_hash(self, name: str) -> dict[str, str]: ...

    def acquire_lease(self, name: str, owner: str, now: float, ttl_s: float) -> bool:
        """Hold the lease `name` until `now + ttl_s` (renewal when already held by `owner`);
        False while another owner's lease has not expired. Times are the caller's clock."""
        ...

    def release_lease(self, name: str, owner: str) -> None: ...

    def lease_owner(self, name: str, now: float) -> str | None: ...

    def heartbeat(self, group: str, member: str, now: float) -> None: ...

    def members(self, group: str, now: float, ttl_s: float) -> list[str]:
        """Members whose last heartbeat is younger than `ttl_s`, sorted."""
        ...

    def leave(self, group: str, member: str) -> None: ...

    def health(self) -> HealthReport: ...

    def ping(self, *, attempts: int | None = None) -> bool:
        """Reach the bus now, reconnecting with backoff up to `attempts` times (default the
        settings' `reconnect_attempts`); BusUnavailable when it cannot."""
        ...

    def clear(self) -> None:
        """Delete every key under the prefix (tests and `--fresh`)."""
        ...

    def close(self) -> None: ...


Clock = Callable[[], float]
Sleep = Callable[[float], None]


def redacted(url: str) -> str:
    """The URL without its user and password (what error messages and health reports show)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else url.rpartition("@")[2]


def check_redis_url(url: str) -> None:
    """Refuse a Redis URL that redis-py would misread: it raises a bare ValueError for a port
    that is not a number when it first connects, and silently uses database 0 for a database
    that is not one."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    shown = redacted(url)
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"bad bus URL {shown!r}: the port is not a number (0 to 65535)") from None
    if parts.scheme in ("redis", "rediss"):
        database = parts.path.strip("/")
        if database and not database.isdigit():
            raise ValueError(
                f"bad bus URL {shown!r}: the database {database!r} is not a number "
                "(redis://host:port/db, db 0 to 15 by default)"
            )


def open_bus(
    url: str,
    settings: BusSettings | None = None,
    *,
    clock: Clock = time.time,
    sleep: Sleep = time.sleep,
    client_name: str | None = None,
) -> Bus:
    """A bus from a URL: `memory://` (in-process) or `redis://host:port/db`. `client_name`
    names the Redis connection (CLIENT LIST shows which service is which)."""
    chosen = settings or BusSettings()
    if url in ("memory://", "memory", ""):
        from aios.bus.memory import InProcessBus

        return InProcessBus(chosen, clock=clock)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from aios.bus.redis_bus import RedisBus

        check_redis_url(url)

        return RedisBus.from_url(url, chosen, clock=clock, sleep=sleep, client_name=client_name)
    raise ValueError(f"unknown bus {redacted(url)!r}: use memory:// or redis://host:port/db")


__all__ = [
    "CANDLES",
    "CLOSED",
    "DEAD_LETTER",
    "EXECUTIONS",
    "INTENTS",
    "REWARDS",
    "RISK_PROPOSALS",
    "SIGNALS",
    "Bus",
    "BusError",
    "BusSettings",
    "BusUnavailable",
    "DeadLetter",
    "Delivery",
    "open_bus",
    "per_symbol",
]
