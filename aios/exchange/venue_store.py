"""What the venue broker must not forget across a crash: its orders and its positions.

Every venue order is written *before* it is sent (status `sending`), then updated with the
venue's answer; every open position is written after each change. A process that dies at any
point leaves a store from which the next one knows which orders may exist on the venue (to be
looked up by client id) and which positions it holds (to be checked against the balances).
SQLite, in the state database, one row per order and per position, keyed by exchange.

The store also holds the client-id namespace of this state store (see
`aios.exchange.client_ids`): created once, random, and then fixed, so the ids are
deterministic for this store and distinct from another store's on the same account.

What reconciliation froze is kept here too, for `aios status` and the operator: a position the
venue's balances did not cover (`venue_freezes`, with its message and since when), and every
order whose outcome is unknown (`venue_orders` in an `UNRESOLVED` status). An operator's
decision about either (`aios venue resolve` / `settle`) is a row of `venue_decisions`: who,
when, why, and what it changed.

One process at a time: a live run holds an exclusive lock on the exchange's part of the store
(`VenueLock`, an OS file lock next to the database, released by the OS however the process
ends), from before reconciliation until it closes; an operator command takes the same lock, so
it is refused while a live run trades on that exchange, and a run cannot start meanwhile.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

_DDL = """
CREATE TABLE IF NOT EXISTS venue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS venue_orders (
    exchange TEXT NOT NULL,
    client_id TEXT NOT NULL,
    venue_client_id TEXT NOT NULL,
    position_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    status TEXT NOT NULL,
    intent TEXT NOT NULL,
    applied TEXT NOT NULL,
    detail TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (exchange, client_id),
    UNIQUE (exchange, venue_client_id)
);
CREATE TABLE IF NOT EXISTS venue_positions (
    exchange TEXT NOT NULL,
    position_id TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (exchange, position_id)
);
CREATE TABLE IF NOT EXISTS venue_freezes (
    exchange TEXT NOT NULL,
    position_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    message TEXT NOT NULL,
    since TEXT NOT NULL,
    checked_at TEXT NOT NULL,
    PRIMARY KEY (exchange, position_id)
);
CREATE TABLE IF NOT EXISTS venue_decisions (
    id INTEGER PRIMARY KEY,
    exchange TEXT NOT NULL,
    subject TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    who TEXT NOT NULL,
    at TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""

#: Statuses after which the order may still exist on the venue with an unknown outcome.
UNRESOLVED = ("sending", "unknown", "open")


@dataclass(frozen=True, slots=True)
class StoredOrder:
    client_id: str
    venue_client_id: str
    position_id: str
    symbol: str
    status: str
    intent: Mapping[str, Any]
    applied: Mapping[str, float]
    detail: str
    #: When the order was recorded (sent), and when its status last changed (ISO 8601, UTC).
    created_at: str = ""
    updated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "venue_client_id": self.venue_client_id,
            "position_id": self.position_id,
            "symbol": self.symbol,
            "status": self.status,
            "unresolved": self.status in UNRESOLVED,
            "side": "buy" if self.intent.get("kind") in ("OPEN", "SCALE_IN") else "sell",
            "amount": self.intent.get("amount"),
            "filled_booked": float(self.applied.get("filled", 0.0)),
            "detail": self.detail,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class Freeze:
    """A position frozen because the venue's balances did not cover it (or could not be read)."""

    position_id: str
    symbol: str
    message: str
    since: str
    checked_at: str


class ClientIdTaken(Exception):
    """A venue client id is already recorded for another engine order: never send it."""


class StoreLocked(Exception):
    """Another process (a live run, or an operator command) holds the exchange's venue store."""


class VenueStoreUnreadable(Exception):
    """The state database cannot be read (not a database, corrupt, locked); says which."""


class VenueLock:
    """An exclusive, non-blocking OS lock on one exchange's venue store (see the module
    docstring). The holder's pid and start time are written into the lock file, so a refusal
    can say who holds it; the lock itself is the kernel's, so a killed holder never leaves a
    stale one."""

    def __init__(self, database: Path | str, exchange: str, purpose: str) -> None:
        self.path = Path(f"{database}.venue-{exchange}.lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle: IO[str] = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held open)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise StoreLocked(
                f"the {exchange} venue store is in use by {holder}; stop that first "
                "(a live run: SIGTERM), then try again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{purpose} (pid {os.getpid()}, since {_now()})")
        handle.flush()
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the lock
            self._handle = None


class VenueStore:
    """The venue broker's durable memory for one exchange."""

    def __init__(self, path: Path | str, exchange: str, *, lock: str | None = None) -> None:
        """`lock`: take the exchange's `VenueLock` for this purpose (raises `StoreLocked`)
        before anything is read, and hold it until `close()`."""
        self.exchange = exchange
        self.path = path
        self._lock: VenueLock | None = None
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if lock is not None:
                self._lock = VenueLock(path, exchange, lock)
        self.connection = sqlite3.connect(
            str(path), isolation_level=None, timeout=10.0, check_same_thread=False
        )
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.executescript(_DDL)
        columns = {row[1] for row in self.connection.execute("PRAGMA table_info(venue_orders)")}
        if "created_at" not in columns:  # a store written before orders kept their send time
            self.connection.execute(
                "ALTER TABLE venue_orders ADD COLUMN created_at TEXT NOT NULL DEFAULT ''"
            )
            self.connection.execute("UPDATE venue_orders SET created_at = updated_at")

    @classmethod
    def read_only(cls, path: Path | str, exchange: str) -> VenueStore:
        """The store over a read-only connection, for `aios status` and `aios venue orders`:
        reading never writes, creates a table or waits for the lock (WAL readers do not)."""
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
        columns = {row[1] for row in connection.execute("PRAGMA table_info(venue_orders)")}
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        if "created_at" not in columns or not {"venue_freezes", "venue_decisions"} <= tables:
            connection.close()  # written by an older aios: bring the schema up to date once
            return cls(path, exchange)
        store = cls.__new__(cls)
        store.exchange, store.path, store._lock = exchange, path, None
        store.connection = connection
        return store

    def namespace(self) -> str:
        """This store's client-id namespace (6 of [a-z0-9]), created on first use."""
        key = "client_id_namespace"
        row = self.connection.execute(
            "SELECT value FROM venue_meta WHERE key = ?", (key,)
        ).fetchone()
        if row is not None:
            return str(row[0])
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        # A letter first: some venues refuse ids that start with a digit.
        value = secrets.choice(alphabet[:26]) + "".join(secrets.choice(alphabet) for _ in range(5))
        self.connection.execute(
            "INSERT OR IGNORE INTO venue_meta (key, value) VALUES (?, ?)", (key, value)
        )
        row = self.connection.execute(
            "SELECT value FROM venue_meta WHERE key = ?", (key,)
        ).fetchone()
        return str(row[0])

    # --- orders --------------------------------------------------------------------------------

    def sending(
        self,
        client_id: str,
        venue_client_id: str,
        position_id: str,
        symbol: str,
        intent: Mapping[str, Any],
    ) -> None:
        """Write-ahead: the order is about to be sent. Refuses an id already recorded."""
        try:
            self.connection.execute(
                "INSERT INTO venue_orders (exchange, client_id, venue_client_id, position_id,"
                " symbol, status, intent, applied, detail, updated_at, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'sending', ?, '{}', '', ?, ?)",
                (
                    self.exchange,
                    client_id,
                    venue_client_id,
                    position_id,
                    symbol,
                    json.dumps(intent, sort_keys=True),
                    now := _now(),
                    now,
                ),
            )
        except sqlite3.IntegrityError:
            row = self.connection.execute(
                "SELECT client_id FROM venue_orders WHERE exchange = ? AND (client_id = ? OR venue_client_id = ?)",
                (self.exchange, client_id, venue_client_id),
            ).fetchone()
            other = row[0] if row else "?"
            raise ClientIdTaken(
                f"client id {client_id!r} (venue id {venue_client_id!r}) is already recorded "
                f"for order {other!r}; not sending it again"
            ) from None

    def update(
        self,
        client_id: str,
        status: str,
        detail: str = "",
        applied: Mapping[str, float] | None = None,
    ) -> None:
        if applied is None:
            self.connection.execute(
                "UPDATE venue_orders SET status = ?, detail = ?, updated_at = ? WHERE exchange = ? AND client_id = ?",
                (status, detail, _now(), self.exchange, client_id),
            )
        else:
            self.connection.execute(
                "UPDATE venue_orders SET status = ?, detail = ?, applied = ?, updated_at = ? WHERE exchange = ? AND client_id = ?",
                (status, detail, json.dumps(dict(applied)), _now(), self.exchange, client_id),
            )

    def orders(self, statuses: tuple[str, ...] | None = None) -> list[StoredOrder]:
        query = "SELECT client_id, venue_client_id, position_id, symbol, status, intent, applied, detail, created_at, updated_at FROM venue_orders WHERE exchange = ?"
        args: list[Any] = [self.exchange]
        if statuses is not None:
            query += f" AND status IN ({', '.join('?' for _ in statuses)})"
            args.extend(statuses)
        return [
            StoredOrder(c, v, p, s, st, json.loads(i), json.loads(a), d, ca, ua)
            for c, v, p, s, st, i, a, d, ca, ua in self.connection.execute(
                query + " ORDER BY rowid", args
            )
        ]

    def order(self, client_id: str) -> StoredOrder | None:
        """The order recorded under an engine client id or a venue client id, if any."""
        for stored in self.orders():
            if client_id in (stored.client_id, stored.venue_client_id):
                return stored
        return None

    def client_ids(self) -> set[str]:
        return {
            row[0]
            for row in self.connection.execute(
                "SELECT client_id FROM venue_orders WHERE exchange = ?", (self.exchange,)
            )
        }

    # --- positions -----------------------------------------------------------------------------

    def save_positions(self, states: Mapping[str, Mapping[str, Any]]) -> None:
        """The open positions, all of them (those not in `states` are closed), in one go."""
        with self.connection:
            self.connection.execute("BEGIN")
            self.connection.execute(
                "DELETE FROM venue_positions WHERE exchange = ?", (self.exchange,)
            )
            self.connection.executemany(
                "INSERT INTO venue_positions VALUES (?, ?, ?, ?)",
                [
                    (self.exchange, position_id, json.dumps(state, sort_keys=True), _now())
                    for position_id, state in states.items()
                ],
            )

    def positions(self) -> dict[str, dict[str, Any]]:
        return {
            position_id: json.loads(state)
            for position_id, state in self.connection.execute(
                "SELECT position_id, state FROM venue_positions WHERE exchange = ? ORDER BY rowid",
                (self.exchange,),
            )
        }

    # --- freezes and operator decisions ---------------------------------------------------------

    def save_freezes(self, frozen: Mapping[str, tuple[str, str]], now: datetime) -> None:
        """The positions frozen by a balance check (`position id -> (symbol, message)`), all of
        them, in one go; a position frozen before keeps its `since`."""
        checked = now.isoformat()
        with self.connection:
            self.connection.execute("BEGIN")
            since = {
                position_id: started
                for position_id, started in self.connection.execute(
                    "SELECT position_id, since FROM venue_freezes WHERE exchange = ?",
                    (self.exchange,),
                )
            }
            self.connection.execute(
                "DELETE FROM venue_freezes WHERE exchange = ?", (self.exchange,)
            )
            self.connection.executemany(
                "INSERT INTO venue_freezes VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (
                        self.exchange,
                        position_id,
                        symbol,
                        message,
                        since.get(position_id, checked),
                        checked,
                    )
                    for position_id, (symbol, message) in frozen.items()
                ],
            )

    def freezes(self) -> list[Freeze]:
        return [
            Freeze(*row)
            for row in self.connection.execute(
                "SELECT position_id, symbol, message, since, checked_at FROM venue_freezes"
                " WHERE exchange = ? ORDER BY rowid",
                (self.exchange,),
            )
        ]

    def record_decision(
        self,
        subject: str,
        decision: str,
        reason: str,
        who: str,
        at: datetime,
        detail: Mapping[str, Any],
    ) -> None:
        self.connection.execute(
            "INSERT INTO venue_decisions (exchange, subject, decision, reason, who, at, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.exchange,
                subject,
                decision,
                reason,
                who,
                at.isoformat(),
                json.dumps(detail, sort_keys=True),
            ),
        )

    def decisions(self) -> list[dict[str, Any]]:
        return [
            {"subject": s, "decision": d, "reason": r, "who": w, "at": a, "detail": json.loads(x)}
            for s, d, r, w, a, x in self.connection.execute(
                "SELECT subject, decision, reason, who, at, detail FROM venue_decisions"
                " WHERE exchange = ? ORDER BY id",
                (self.exchange,),
            )
        ]

    def close(self) -> None:
        self.connection.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def exchanges_in(path: Path | str) -> list[str]:
    """The exchanges a state database holds venue orders or positions of (read-only; [] when
    it has no venue store; VenueStoreUnreadable when it cannot be read)."""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return []
    found: set[str] = set()
    try:
        # Tables looked up first, so that only a missing table means "no venue store": a
        # corrupt or locked file is an error, not an empty answer.
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        for table in ("venue_orders", "venue_positions", "venue_freezes"):
            if table in tables:
                found.update(row[0] for row in connection.execute(f"SELECT exchange FROM {table}"))
    except sqlite3.DatabaseError as exc:
        raise VenueStoreUnreadable(f"cannot read the state store {path}: {exc}") from None
    finally:
        connection.close()
    return sorted(found)


def _now() -> str:
    return datetime.now(UTC).isoformat()


__all__ = [
    "UNRESOLVED",
    "ClientIdTaken",
    "Freeze",
    "StoreLocked",
    "StoredOrder",
    "VenueLock",
    "VenueStore",
    "exchanges_in",
]
