"""The decision journal: every proposal, with its provenance, in SQLite (WAL).

Rows are queued by the engine (a list append on the hot path) and written in batches by a
writer thread. Before the engine acts on a decision it calls `flush()`, which returns only when
every row queued so far is committed: what the engine acted on is durable before the action.
A clean stop flushes; a crash loses at most rows of decisions nobody acted on.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

#: 2: no secondary indexes (version 1 had three; opening a journal for writing drops them).
SCHEMA_VERSION = 2

_DDL = """
CREATE TABLE IF NOT EXISTS journal_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    cycle INTEGER NOT NULL,
    time TEXT NOT NULL,
    subsystem TEXT NOT NULL,
    hook TEXT NOT NULL,
    subject TEXT NOT NULL,
    symbol TEXT,
    trace TEXT,
    proposal TEXT NOT NULL,
    mode TEXT NOT NULL,
    outcome TEXT NOT NULL,
    applied INTEGER NOT NULL,
    reason TEXT NOT NULL,
    policy_hash TEXT NOT NULL
);
"""
#: Indexes of schema version 1. Each row inserted into them landed at a scattered place
#: (ordered by trace, symbol, subsystem, not by time), so every flush rewrote about ten pages
#: per index: measured over a replay's rows, 24 us per row with them against 6.5 us without
#: (bench/README.md). Readers scan instead, about 20 ms per 70,000 rows, and the journal's
#: queries are an operator's (`aios journal`, `aios explain`), not the engine's.
_DROPPED_INDEXES = ("decisions_trace", "decisions_symbol_time", "decisions_subsystem")

#: What happened to a proposal. `applied`: it changed what the engine did. `advisory`: surfaced,
#: not applied (effective mode ADVISORY). `observed`: journaled only (OBSERVE). `error`: the
#: plugin raised. `engine`: a decision the engine itself made (an order, a block by the baseline).
OUTCOMES = ("applied", "advisory", "observed", "error", "engine")

#: The run id of an operator's rows (`aios venue resolve` / `settle`). They are decisions a
#: person made between runs, not the engine's, so stage evidence does not count them.
OPERATOR_RUN_ID = "operator"


class JournalError(Exception):
    """The journal cannot be opened or written (corrupt file, locked, unwritable)."""


class Decision(NamedTuple):
    """One journal row, as the engine queues it.

    A named tuple rather than a frozen dataclass: a replay makes about 37 of them per candle
    time, and a tuple is built in a fraction of the time a frozen record's per-field
    `object.__setattr__` takes. It is as immutable, and only the journal reads it."""

    run_id: str
    cycle: int
    time: datetime
    subsystem: str
    hook: str
    subject: str
    proposal: Any
    mode: str
    outcome: str
    applied: bool
    reason: str
    policy_hash: str
    symbol: str | None = None
    trace: str | None = None


def to_jsonable(value: Any) -> Any:
    """Records, enums, datetimes and mappings as plain JSON values (for the journal and --json).

    Every journal row goes through here, so the kind of conversion is decided once per type
    (`_converter`), not by a chain of isinstance checks per value."""
    cls = type(value)
    if cls in _PLAIN:
        return value
    convert = _CONVERTERS.get(cls)
    if convert is None:
        convert = _CONVERTERS[cls] = _converter(cls)
    return convert(value)


_PLAIN: frozenset[type] = frozenset({type(None), bool, int, float, str})
_CONVERTERS: dict[type, Callable[[Any], Any]] = {}


def _identity(value: Any) -> Any:
    return value


def _enum_value(value: Enum) -> Any:
    return value.value


def _isoformat(value: datetime) -> str:
    return value.isoformat()


def _mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    # str keys and plain values inline: the same as str(to_jsonable(k)) and to_jsonable(v)
    plain = _PLAIN
    return {
        (k if type(k) is str else str(to_jsonable(k))): (v if type(v) in plain else to_jsonable(v))
        for k, v in value.items()
    }


def _sequence(value: Any) -> list[Any]:
    return [to_jsonable(v) for v in value]


def _unordered(value: Any) -> list[Any]:
    return sorted((to_jsonable(v) for v in value), key=str)


def _converter(cls: type) -> Callable[[Any], Any]:
    """How values of `cls` become JSON values; the rules, in the order they apply."""
    if issubclass(cls, (bool, int, float, str)):
        return _identity
    if issubclass(cls, Enum):
        return _enum_value
    if issubclass(cls, datetime):
        return _isoformat
    if dataclasses.is_dataclass(cls) and not issubclass(cls, type):
        names = tuple(f.name for f in dataclasses.fields(cls))
        if not names:
            return lambda value: {}
        # one C call for every field; a single name gives the value itself, not a tuple
        read = operator.attrgetter(*names)
        single = len(names) == 1
        plain = _PLAIN

        def record(value: Any) -> dict[str, Any]:
            values = (read(value),) if single else read(value)
            return {
                name: (field if type(field) in plain else to_jsonable(field))
                for name, field in zip(names, values, strict=True)
            }

        return record
    if issubclass(cls, Mapping):
        return _mapping
    if issubclass(cls, (set, frozenset)):
        return _unordered
    if issubclass(cls, (list, tuple)):
        return _sequence
    return str


#: One encoder for every row (`json.dumps` with options builds a new one per call).
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _encoder() -> Callable[[Any], str]:
    """`_ENCODER.encode`, without what it redoes per call: `iterencode` builds a new C encoder
    (and a closure) for every value. This one is built once, with `_ENCODER`'s settings and
    no check for circular references (`to_jsonable` returns fresh trees, never a cycle)."""
    from json import encoder as json_encoder

    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator in this interpreter
        return _ENCODER.encode
    encode = make(
        None,
        _ENCODER.default,
        json_encoder.encode_basestring_ascii,
        None,
        _ENCODER.key_separator,
        _ENCODER.item_separator,
        True,
        False,
        True,
    )
    return lambda value: "".join(encode(value, 0))


#: The serialised form of a proposal, as `_ENCODER.encode` writes it.
encode_json = _encoder()


def _row(decision: Decision, times: dict[datetime, str] | None = None) -> tuple[Any, ...]:
    """One row's values; `times` remembers isoformat strings (a batch's rows share a few)."""
    (
        run_id,
        cycle,
        time,
        subsystem,
        hook,
        subject,
        proposal,
        mode,
        outcome,
        applied,
        reason,
        policy_hash,
        symbol,
        trace,
    ) = decision
    stamp = None if times is None else times.get(time)
    if stamp is None:
        stamp = time.isoformat()
        if times is not None:
            times[time] = stamp
    return (
        run_id,
        cycle,
        stamp,
        subsystem,
        hook,
        subject,
        symbol,
        trace,
        encode_json(to_jsonable(proposal)),
        mode,
        outcome,
        1 if applied else 0,
        reason,
        policy_hash,
    )


def connect(path: Path | str, *, create: bool) -> sqlite3.Connection:
    """Open a journal database, refusing a file that is not one (never overwriting it)."""
    target = Path(path) if str(path) != ":memory:" else None
    if target is not None and not create and not target.exists():
        raise JournalError(f"no journal at {target}: run `aios run` first, or pass --state-dir")
    try:
        connection = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=5.0
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        if create:
            connection.executescript(_DDL)
            for index in _DROPPED_INDEXES:
                connection.execute(f"DROP INDEX IF EXISTS {index}")
            connection.execute(
                "INSERT OR REPLACE INTO journal_meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        else:
            connection.execute("SELECT 1 FROM decisions LIMIT 1")
    except sqlite3.DatabaseError as exc:
        raise JournalError(
            f"cannot use {path} as a journal: {exc} (the file is left untouched)"
        ) from None
    return connection


#: Rows written between two background checkpoints: often enough that the WAL stays below
#: the 1,000 pages at which any other connection (the store, the stage store) would checkpoint
#: on its own commit, in the engine's thread (a replay writes about 100 pages per candle time).
CHECKPOINT_ROWS = 250
#: SQLite's own checkpoint on commit (it would stall the committing thread on fsync) only
#: once the WAL reaches this many pages: a safety net behind the background checkpoints.
AUTOCHECKPOINT_PAGES = 20000


class Journal:
    """Batched, durable-before-acting writer of decisions.

    Checkpoints (copying the WAL into the database file, the only moment SQLite calls fsync
    with `synchronous=NORMAL`) run on the writer thread, on a connection of its own, every
    `checkpoint_rows` rows: a flush before acting then costs a commit, never a checkpoint's
    fsync. The SQLite call releases the GIL, so the engine runs on meanwhile."""

    def __init__(
        self,
        path: Path | str = ":memory:",
        batch_size: int = 2000,
        checkpoint_rows: int = CHECKPOINT_ROWS,
    ) -> None:
        self.path = path
        self._connection = connect(path, create=True)
        self._on_disk = str(path) != ":memory:"
        if self._on_disk:
            self._connection.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
        self._checkpoint_rows = checkpoint_rows
        self._since_checkpoint = 0
        self._checkpoint_due = False
        #: Background checkpoints done (for tests and the curious).
        self.checkpoints = 0
        self._batch_size = batch_size
        self._pending: list[Decision] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._written = 0
        self._queued = 0
        self._closed = False
        self._failure: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="aios-journal", daemon=True)
        self._writer.start()

    # -- writing --------------------------------------------------------------------------------

    def record(self, decision: Decision) -> None:
        """Queue one row (cheap). Raises JournalError if the writer has failed."""
        if self._failure is not None:
            raise JournalError(f"the journal writer failed: {self._failure}")
        with self._lock:
            self._pending.append(decision)
            self._queued += 1
            if len(self._pending) >= self._batch_size:
                self._wake.notify_all()

    def flush(self) -> None:
        """Return once every row queued so far is committed (call before acting).

        The caller writes what is still pending itself instead of waiting for the writer
        thread to wake up: a flush happens before every action, and a thread hand-off costs
        more than the write. `_write_lock` keeps rows in order whoever writes them.
        """
        self._write_pending()
        if self._failure is not None:
            raise JournalError(f"the journal writer failed: {self._failure}")

    def _write_pending(self) -> int:
        """Write every queued row in one transaction (under the write lock, so in order)."""
        with self._write_lock:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch or self._failure is not None:
                return 0
            try:
                times: dict[datetime, str] = {}
                rows = [_row(decision, times) for decision in batch]
                with self._connection:
                    self._connection.execute("BEGIN")
                    self._connection.executemany(
                        "INSERT INTO decisions (run_id, cycle, time, subsystem, hook, subject, symbol, trace,"
                        " proposal, mode, outcome, applied, reason, policy_hash)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        rows,
                    )
            except BaseException as exc:  # surfaced to the engine on its next record/flush
                with self._lock:
                    self._failure = exc
                    self._wake.notify_all()
                return 0
            # Notify only for a checkpoint: only the writer thread waits on `_wake`, and waking
            # it on every flush would cost the caller a GIL hand-off each time.
            with self._lock:
                self._written += len(batch)
                self._since_checkpoint += len(batch)
                if self._on_disk and self._since_checkpoint >= self._checkpoint_rows:
                    self._since_checkpoint = 0
                    self._checkpoint_due = True
                    self._wake.notify_all()
            return len(batch)

    def _checkpoint(self, connection: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """A PASSIVE checkpoint (it waits for no reader or writer) on the writer thread's own
        connection. Failures are ignored: SQLite's autocheckpoint stays as the fallback."""
        try:
            if connection is None:
                connection = sqlite3.connect(str(self.path), isolation_level=None, timeout=5.0)
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error:
            pass
        return connection

    def _write_loop(self) -> None:
        """Background batches: writes whenever a batch is full (or at close); checkpoints."""
        checkpointer: sqlite3.Connection | None = None
        try:
            while True:
                with self._lock:
                    while not self._pending and not self._closed and not self._checkpoint_due:
                        self._wake.wait()
                    closing, due = self._closed, self._checkpoint_due
                    self._checkpoint_due = False
                if due and self._failure is None:
                    checkpointer = self._checkpoint(checkpointer)
                written = self._write_pending()
                if self._failure is not None or (closing and not written):
                    return
        finally:
            if checkpointer is not None:
                checkpointer.close()

    def close(self) -> None:
        """Flush and stop the writer (a clean stop loses nothing)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            with self._lock:
                self._closed = True
                self._wake.notify_all()
            self._writer.join(timeout=10)
            self._connection.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading (also used by a separate process through JournalReader) ------------------------

    def reader(self) -> JournalReader:
        self.flush()
        return JournalReader(self._connection)


@dataclass(frozen=True)
class JournalRow:
    id: int
    run_id: str
    cycle: int
    time: str
    subsystem: str
    hook: str
    subject: str
    symbol: str | None
    trace: str | None
    proposal: Any
    mode: str
    outcome: str
    applied: bool
    reason: str
    policy_hash: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class JournalReader:
    """Queries for `aios journal` and `aios explain`."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @classmethod
    def open(cls, path: Path | str) -> JournalReader:
        return cls(connect(path, create=False))

    def _rows(self, sql: str, params: Sequence[Any]) -> Iterator[JournalRow]:
        try:
            cursor = self._connection.execute(sql, params)
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"cannot read the journal: {exc}") from None
        for row in cursor:
            values = list(row)
            values[9] = json.loads(values[9])
            values[12] = bool(values[12])
            yield JournalRow(*values)

    _COLUMNS = "id, run_id, cycle, time, subsystem, hook, subject, symbol, trace, proposal, mode, outcome, applied, reason, policy_hash"

    def query(
        self,
        *,
        subsystem: str | None = None,
        symbol: str | None = None,
        since: str | None = None,
        until: str | None = None,
        outcomes: Sequence[str] = (),
        trace: str | None = None,
        subject: str | None = None,
        run_id: str | None = None,
        limit: int | None = None,
    ) -> list[JournalRow]:
        """Rows matching every given filter, oldest first."""
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("subsystem", subsystem),
            ("symbol", symbol),
            ("trace", trace),
            ("subject", subject),
            ("run_id", run_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if since is not None:
            clauses.append("time >= ?")
            params.append(since)
        if until is not None:
            clauses.append("time <= ?")
            params.append(until)
        if outcomes:
            clauses.append(f"outcome IN ({', '.join('?' for _ in outcomes)})")
            params.extend(outcomes)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        tail = f" LIMIT {int(limit)}" if limit is not None else ""
        return list(
            self._rows(f"SELECT {self._COLUMNS} FROM decisions{where} ORDER BY id{tail}", params)
        )

    def traces_for(self, subject: str) -> list[str]:
        """Trace ids connected to a subject: a trace itself, a symbol, an order or position id."""
        rows = self._connection.execute(
            "SELECT DISTINCT trace FROM decisions WHERE trace IS NOT NULL AND (trace = ? OR subject = ? OR subject LIKE ?)",
            (subject, subject, f"%:{subject}"),
        ).fetchall()
        return [row[0] for row in rows]

    def count(self) -> int:
        return int(self._connection.execute("SELECT COUNT(*) FROM decisions").fetchone()[0])
