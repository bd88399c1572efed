"""What the venue broker must not forget across a crash: its orders and its positions.

Every venue order is written *before* it is sent (status `sending`), then updated with the
venue's answer; every open position is written after each change. A process that dies at any
point leaves a store from which the next one knows which orders may exist on the venue (to be
looked up by client id) and which positions it holds (to be checked against the balances).
SQLite, in the state database, one row per order and per position, keyed by exchange.

The store also holds the client-id namespace of this state store (see
`aios.exchange.client_ids`): created once, random, and then fixed, so the ids are
deterministic for this store and distinct from another store's on the same account.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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


class ClientIdTaken(Exception):
    """A venue client id is already recorded for another engine order: never send it."""


class VenueStore:
    """The venue broker's durable memory for one exchange."""

    def __init__(self, path: Path | str, exchange: str) -> None:
        self.exchange = exchange
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(
            str(path), isolation_level=None, timeout=10.0, check_same_thread=False
        )
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.executescript(_DDL)

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
                "INSERT INTO venue_orders VALUES (?, ?, ?, ?, ?, 'sending', ?, '{}', '', ?)",
                (
                    self.exchange,
                    client_id,
                    venue_client_id,
                    position_id,
                    symbol,
                    json.dumps(intent, sort_keys=True),
                    _now(),
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
        query = "SELECT client_id, venue_client_id, position_id, symbol, status, intent, applied, detail FROM venue_orders WHERE exchange = ?"
        args: list[Any] = [self.exchange]
        if statuses is not None:
            query += f" AND status IN ({', '.join('?' for _ in statuses)})"
            args.extend(statuses)
        return [
            StoredOrder(c, v, p, s, st, json.loads(i), json.loads(a), d)
            for c, v, p, s, st, i, a, d in self.connection.execute(query + " ORDER BY rowid", args)
        ]

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

    def close(self) -> None:
        self.connection.close()


def _now() -> str:
    return datetime.now(UTC).isoformat()


__all__ = ["UNRESOLVED", "ClientIdTaken", "StoredOrder", "VenueStore"]
