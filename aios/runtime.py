"""The runtime: replays candles through the engine and a broker, for two books.

Per candle time (all symbols aligned on time):

1. the new candles act on both brokers (resting limits, stop-loss, take-profit, trailing stops);
   closed trades are reported to the plugins;
2. the market advances (the candle has closed and is now visible);
3. monitor cycles (one per book) and their orders;
4. the entry cycle and its orders: actual ones to the actual broker, shadow ones to the shadow
   broker;
5. fills and an equity sample of each book are written to the state store.

The **actual** book is what the system does (the baseline strategy, plus what ENFORCED
subsystems change); the **shadow** book is what it would do if every proposal were applied.
Plugins learn (RL rewards, supervisor outcomes, cooldowns) from the shadow book's trades: that
is the book their proposals shape.

Replay is deterministic: the same data, policy and seeds give the same journal and trades.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, cast

from aios.data import load_directory
from aios.engine import Engine
from aios.exchange.base import Broker, BrokerError, Fill, FillKind
from aios.journal import Journal, JournalError, to_jsonable
from aios.market import InMemoryMarket
from aios.model import (
    Candle,
    ClosedTrade,
    HealthReport,
    HealthStatus,
    OrderAction,
    OrderIntent,
    PortfolioView,
    Stage,
)
from aios.model_registry import ModelRegistry
from aios.policy import Policy
from aios.registry import PluginSet
from aios.reload import PolicyWatcher
from aios.stages import StageError, StageStore
from aios.state import database_path

_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    policy_hash TEXT NOT NULL,
    policy_sources TEXT NOT NULL,
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    report TEXT
);
CREATE TABLE IF NOT EXISTS fills (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    book TEXT NOT NULL,
    order_id TEXT NOT NULL,
    position_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    kind TEXT NOT NULL,
    time TEXT NOT NULL,
    price REAL NOT NULL,
    quantity REAL NOT NULL,
    fee REAL NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS equity (
    run_id TEXT NOT NULL,
    book TEXT NOT NULL,
    time TEXT NOT NULL,
    equity REAL NOT NULL,
    exposure REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_run ON fills (run_id, book);
CREATE INDEX IF NOT EXISTS equity_run ON equity (run_id, book);
CREATE TABLE IF NOT EXISTS run_progress (
    run_id TEXT PRIMARY KEY,
    steps INTEGER NOT NULL,
    last_time TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_policies (
    run_id TEXT NOT NULL,
    time TEXT NOT NULL,
    policy_hash TEXT NOT NULL,
    sources TEXT NOT NULL,
    document TEXT NOT NULL,
    PRIMARY KEY (run_id, time)
);
CREATE TABLE IF NOT EXISTS run_models (run_id TEXT PRIMARY KEY, versions TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run_resumes (
    run_id TEXT NOT NULL,
    at TEXT NOT NULL,
    pid INTEGER NOT NULL,
    redriven_steps INTEGER NOT NULL,
    discarded_decisions INTEGER NOT NULL,
    discarded_fills INTEGER NOT NULL
);
"""
#: Columns added to `runs` after its first release (added in place to an older store).
#: `decisions_from`: the journal's newest row id before the run wrote any, so every row of
#: the run lies above it (readers of one run's rows scan from there, not the whole journal:
#: the journal has no index on run_id, see aios.journal). NULL in a run from before it.
_RUN_COLUMNS = {"spec": "TEXT", "pid": "INTEGER", "decisions_from": "INTEGER"}
#: A run not finished can be resumed; `running` only when its process is gone.
_UNFINISHED = ("running", "killed", "stopped", "interrupted", "failed")
#: The start policy's row in `run_policies` (before any candle time).
_AT_START = ""

BOOKS = ("actual", "shadow")


@dataclass
class BookStats:
    """Performance of one book over a run."""

    start_equity: float
    end_equity: float = 0.0
    peak_equity: float = 0.0
    max_drawdown_pct: float = 0.0
    trades: int = 0
    wins: int = 0
    pnl_quote: float = 0.0
    fees: float = 0.0
    exposure_sum_pct: float = 0.0
    samples: int = 0
    exits: dict[str, int] = field(default_factory=dict)

    def sample(self, equity: float, exposure: float) -> None:
        self.end_equity = equity
        self.peak_equity = max(self.peak_equity, equity)
        if self.peak_equity > 0:
            self.max_drawdown_pct = max(
                self.max_drawdown_pct, (self.peak_equity - equity) / self.peak_equity * 100.0
            )
        self.exposure_sum_pct += 0.0 if equity <= 0 else exposure / equity * 100.0
        self.samples += 1

    def summary(self) -> dict[str, Any]:
        return {
            "start_equity": self.start_equity,
            "end_equity": self.end_equity,
            "pnl_quote": self.end_equity - self.start_equity,
            "pnl_pct": 0.0
            if self.start_equity <= 0
            else (self.end_equity - self.start_equity) / self.start_equity * 100.0,
            "max_drawdown_pct": self.max_drawdown_pct,
            "trades": self.trades,
            "win_rate": 0.0 if self.trades == 0 else self.wins / self.trades,
            "fees": self.fees,
            "average_exposure_pct": 0.0
            if self.samples == 0
            else self.exposure_sum_pct / self.samples,
            "exits_by_reason": dict(sorted(self.exits.items())),
        }


@dataclass(frozen=True)
class RunReport:
    run_id: str
    policy_hash: str
    policy_sources: tuple[str, ...]
    stage: str
    candles: int
    symbols: tuple[str, ...]
    first: str
    last: str
    books: Mapping[str, Mapping[str, Any]]
    proposals: Mapping[str, Mapping[str, int]]
    blocks: Mapping[str, Mapping[str, int]]
    directives: tuple[Mapping[str, str], ...]
    risk_modes: tuple[Mapping[str, str], ...]
    data_gaps: int
    equity_curve: Mapping[str, tuple[tuple[str, float], ...]]

    def to_dict(self, with_curve: bool = True) -> dict[str, Any]:
        data = asdict(self)
        if not with_curve:
            data.pop("equity_curve")
        return data


class ResumeError(Exception):
    """A run that cannot be resumed (none unfinished, still running, changed inputs), with why.
    Raised before anything in the store is changed."""


@dataclass(frozen=True)
class ResumePoint:
    """Where an unfinished run stopped: its committed prefix and what it was started with."""

    run_id: str
    status: str
    stage: Stage
    spec: Mapping[str, Any]
    #: Candle times committed (journal flushed, then fills, equity and this cursor in one
    #: transaction); everything recorded after `last_time` is discarded and redone.
    steps: int
    last_time: datetime | None
    #: (time or "" for the start, policy hash, sources, effective document as JSON), in order.
    policies: tuple[tuple[str, str, tuple[str, ...], str], ...]


class Store:
    """The runtime's tables in the state database (the journal has its own)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.executescript(_DDL)
        present = {row[1] for row in self.connection.execute("PRAGMA table_info(runs)")}
        for column, kind in _RUN_COLUMNS.items():
            if column not in present:
                self.connection.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")

    def next_run_id(self) -> str:
        count = self.connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return f"run-{count + 1}"

    def start(
        self,
        run_id: str,
        now: datetime,
        policy: Policy,
        stage: Stage,
        spec: Mapping[str, Any] | None = None,
        decisions_from: int = 0,
    ) -> None:
        """The run row, its start policy and the model registry as it was (for a re-drive).
        Earlier runs still marked running whose process is gone are marked killed.
        `decisions_from` is `journal_mark()` taken before the run journaled anything (0: its
        rows are looked for in the whole journal)."""
        with self.connection:
            self.connection.execute("BEGIN")
            for other, pid in self.connection.execute(
                "SELECT run_id, pid FROM runs WHERE status = 'running'"
            ).fetchall():
                if pid is None or (int(pid) != os.getpid() and not _process_alive(int(pid))):
                    self.connection.execute(
                        "UPDATE runs SET status = 'killed' WHERE run_id = ?", (other,)
                    )
            self.connection.execute(
                "INSERT INTO runs (run_id, started_at, policy_hash, policy_sources, stage, status, spec, pid, decisions_from)"
                " VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?)",
                (
                    run_id,
                    now.isoformat(),
                    policy.hash,
                    json.dumps(list(policy.sources)),
                    stage.value,
                    json.dumps(dict(spec or {}), sort_keys=True),
                    os.getpid(),
                    decisions_from,
                ),
            )
            self._record_policy(run_id, _AT_START, policy)
            self.connection.execute(
                "INSERT OR REPLACE INTO run_models (run_id, versions) VALUES (?, ?)",
                (run_id, json.dumps(self._model_rows())),
            )

    def journal_mark(self) -> int:
        """The journal's newest row id (0 when it has none yet)."""
        try:
            row = self.connection.execute(
                "SELECT COALESCE(MAX(rowid), 0) FROM decisions"
            ).fetchone()
        except sqlite3.OperationalError:  # no journal in this store yet
            return 0
        return int(row[0])

    def _model_rows(self) -> list[list[Any]]:
        try:
            rows = self.connection.execute("SELECT * FROM model_versions ORDER BY version")
        except sqlite3.OperationalError:  # no model registry in this store yet
            return []
        return [list(row) for row in rows]

    def _record_policy(self, run_id: str, time: str, policy: Policy) -> None:
        self.connection.execute(
            "INSERT OR IGNORE INTO run_policies (run_id, time, policy_hash, sources, document) VALUES (?, ?, ?, ?, ?)",
            (
                run_id,
                time,
                policy.hash,
                json.dumps(list(policy.sources)),
                json.dumps(to_jsonable(policy.document), sort_keys=True),
            ),
        )

    def record_policy(self, run_id: str, now: datetime, policy: Policy) -> None:
        """A policy swapped in at candle time `now` (a resumed run swaps it in at the same time)."""
        self._record_policy(run_id, now.isoformat(), policy)

    def record(
        self,
        run_id: str,
        fills: Sequence[tuple[str, Fill]],
        samples: Sequence[tuple[str, datetime, float, float]],
        progress: tuple[int, datetime] | None = None,
    ) -> None:
        """One candle's fills and equity samples, in one transaction; with `progress` (steps
        done, this candle time) the resume cursor moves in the same transaction."""
        if not fills and not samples and progress is None:
            return
        with self.connection:
            self.connection.execute("BEGIN")
            self.connection.executemany(
                "INSERT INTO fills (run_id, book, order_id, position_id, symbol, side, kind, time, price, quantity, fee, reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, book, *_fill_row(f)) for book, f in fills],
            )
            self.connection.executemany(
                "INSERT INTO equity (run_id, book, time, equity, exposure) VALUES (?, ?, ?, ?, ?)",
                [
                    (run_id, book, time.isoformat(), equity, exposure)
                    for book, time, equity, exposure in samples
                ],
            )
            if progress is not None:
                self.connection.execute(
                    "INSERT OR REPLACE INTO run_progress (run_id, steps, last_time) VALUES (?, ?, ?)",
                    (run_id, progress[0], progress[1].isoformat()),
                )

    def finish(self, run_id: str, now: datetime, status: str, report: RunReport | None) -> None:
        self.connection.execute(
            "UPDATE runs SET finished_at = ?, status = ?, report = ? WHERE run_id = ?",
            (
                now.isoformat(),
                status,
                None if report is None else json.dumps(report.to_dict(with_curve=False)),
                run_id,
            ),
        )

    # --- resuming ------------------------------------------------------------------------------

    def resume_point(self, run_id: str | None = None) -> ResumePoint:
        """The latest unfinished run (or `run_id`); refused while its process is alive."""
        query = "SELECT run_id, status, stage, spec, pid FROM runs"
        if run_id is None:
            row = self.connection.execute(f"{query} ORDER BY rowid DESC LIMIT 1").fetchone()
            if row is None:
                raise ResumeError("there is no run to resume in this state store")
        else:
            row = self.connection.execute(f"{query} WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise ResumeError(f"there is no run {run_id!r} in this state store")
        found, status, stage, spec_text, pid = row
        if status not in _UNFINISHED:
            raise ResumeError(f"{found} is {status}: only an unfinished run can be resumed")
        if status == "running" and pid is not None and _process_alive(int(pid)):
            raise ResumeError(
                f"{found} is still running in process {pid}; stop it first (SIGTERM), or wait"
            )
        spec = json.loads(spec_text or "{}")
        if spec.get("kind") != "replay":
            raise ResumeError(
                f"{found} is a {spec.get('kind') or 'legacy'} run: only replays can be resumed "
                "(a live run restarts as a new run, reconciling its positions with the venue)"
            )
        progress = self.connection.execute(
            "SELECT steps, last_time FROM run_progress WHERE run_id = ?", (found,)
        ).fetchone()
        policies = tuple(
            (time, policy_hash, tuple(json.loads(sources)), document)
            for time, policy_hash, sources, document in self.connection.execute(
                "SELECT time, policy_hash, sources, document FROM run_policies WHERE run_id = ? ORDER BY time",
                (found,),
            )
        )
        if not policies or policies[0][0] != _AT_START:
            raise ResumeError(f"{found} has no recorded start policy: it cannot be re-driven")
        return ResumePoint(
            found,
            status,
            Stage(stage),
            spec,
            0 if progress is None else int(progress[0]),
            None if progress is None else datetime.fromisoformat(progress[1]),
            policies,
        )

    def recorded_fills(
        self, run_id: str, until: datetime | None
    ) -> dict[str, list[tuple[Any, ...]]]:
        """The committed fills of a run by candle time, in order (what a re-drive must match)."""
        by_time: dict[str, list[tuple[Any, ...]]] = {}
        if until is None:
            return by_time
        for row in self.connection.execute(
            "SELECT book, order_id, position_id, symbol, side, kind, time, price, quantity, fee, reason"
            " FROM fills WHERE run_id = ? AND time <= ? ORDER BY id",
            (run_id, until.isoformat()),
        ):
            by_time.setdefault(row[6], []).append(tuple(row))
        return by_time

    def recorded_decisions(self, run_id: str, until: datetime | None) -> int:
        if until is None:
            return 0
        row = self.connection.execute(
            "SELECT COUNT(*) FROM decisions WHERE run_id = ? AND time <= ?",
            (run_id, until.isoformat()),
        ).fetchone()
        return int(row[0])

    def restore_models(self, run_id: str) -> None:
        """The model registry as it was when the run started (the re-drive rebuilds the rest)."""
        row = self.connection.execute(
            "SELECT versions FROM run_models WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return
        with self.connection:
            self.connection.execute("BEGIN")
            self.connection.execute("DELETE FROM model_versions")
            self.connection.executemany(
                "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?)", json.loads(row[0])
            )

    def discard_after(self, point: ResumePoint, redriven: int, now: datetime) -> tuple[int, int]:
        """Drop what was recorded after the committed prefix (it is redone), mark the run
        running in this process and log the resume; one transaction. Returns (decisions, fills)
        discarded."""
        after = "" if point.last_time is None else point.last_time.isoformat()
        with self.connection:
            self.connection.execute("BEGIN")
            decisions = self.connection.execute(
                "DELETE FROM decisions WHERE run_id = ? AND time > ?", (point.run_id, after)
            ).rowcount
            fills = self.connection.execute(
                "DELETE FROM fills WHERE run_id = ? AND time > ?", (point.run_id, after)
            ).rowcount
            self.connection.execute(
                "DELETE FROM equity WHERE run_id = ? AND time > ?", (point.run_id, after)
            )
            self.connection.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL, report = NULL, pid = ? WHERE run_id = ?",
                (os.getpid(), point.run_id),
            )
            self.connection.execute(
                "INSERT INTO run_resumes VALUES (?, ?, ?, ?, ?, ?)",
                (point.run_id, now.isoformat(), os.getpid(), redriven, decisions, fills),
            )
        return decisions, fills

    def close(self) -> None:
        self.connection.close()


def _fill_row(f: Fill) -> tuple[Any, ...]:
    return (
        f.order_id,
        f.position_id,
        f.symbol,
        f.side.value,
        f.kind.value,
        f.time.isoformat(),
        f.price,
        f.quantity,
        f.fee,
        f.reason,
    )


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


@dataclass
class _BookState:
    name: str
    broker: Broker
    stats: BookStats
    curve: list[tuple[str, float]] = field(default_factory=list)
    seen_trades: int = 0
    announced: set[str] = field(default_factory=set)
    #: The last portfolio view built (see `Runtime._portfolio`): the prices mapping it was
    #: built from, the broker's revision then, and the view.
    view: tuple[Mapping[str, float], int, PortfolioView] | None = None


def _aligned_times(series: Mapping[str, Sequence[Candle]]) -> list[datetime]:
    return sorted({c.time for candles in series.values() for c in candles})


class Runtime:
    """One replay run: engine, two brokers, the journal and the store."""

    def __init__(
        self,
        policy: Policy,
        plugins: PluginSet,
        series: Mapping[str, Sequence[Candle]],
        state_dir: Path,
        broker_factory: Callable[[Policy], Broker],
        *,
        stage: Stage | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        spec: Mapping[str, Any] | None = None,
        resume: ResumePoint | None = None,
        scheduled_policies: Mapping[str, Policy] | None = None,
        checkpoint_every: int = 256,
        actual_broker: Broker | None = None,
    ) -> None:
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        self.policy = policy
        self.plugins = plugins
        self.wall_clock = wall_clock
        self.series = {symbol: list(candles) for symbol, candles in series.items()}
        self.state_dir = state_dir
        database = database_path(state_dir)
        # The stage comes from the stage machine's store (created at `stages.initial` when
        # fresh); a `stage` argument is for tests that drive the engine directly.
        try:
            self.stages = StageStore(database, create=True, clock=wall_clock)
        except StageError as exc:  # one kind of error for an unusable state store
            raise JournalError(str(exc)) from None
        self.stage = stage or (resume.stage if resume else self.stages.ensure(policy))
        self.store = Store(database)
        self.run_id = resume.run_id if resume else self.store.next_run_id()
        #: What `aios run --resume` needs to rebuild this run (kind, data, limit, policy files).
        self.spec = dict(spec or {"kind": "replay"})
        self.journal = Journal(database)
        #: Where this run's journal rows start (recorded with the run, for the readers of one
        #: run's rows): taken before anything is journaled, reconciliation rows included.
        self._decisions_from = 0 if resume else self.store.journal_mark()
        # Crash-safe resume (see docs/architecture.md): the committed prefix is re-driven with
        # journal rows counted instead of written and fills compared instead of recorded.
        self._resume = resume
        self._scheduled = dict(scheduled_policies or {})
        self._sink: _Sink = self.journal
        self._redrive: _Redrive | None = None
        self._steps_done = 0
        self.checkpoint_every = checkpoint_every
        #: A replay (`run`) keeps each candle time's fills and equity samples here until the
        #: cursor moves (every `checkpoint_every` steps) or the run ends, and writes them in
        #: the cursor's transaction: what a crash loses of them lies after the cursor, which
        #: a resume discards and redoes anyway. A live run (`advance_to` from aios.live)
        #: writes every candle time, for `aios status`.
        self._batch_store = False
        self._unwritten: tuple[list[tuple[str, Fill]], list[tuple[str, datetime, float, float]]] = (
            [],
            [],
        )
        #: Set (by a SIGINT/SIGTERM handler) to end the run after the current candle time.
        self.stop = threading.Event()
        self.models = ModelRegistry(
            database,
            keep_versions=int(policy.get("subsystems", "retraining", "keep_versions", default=10)),
        )
        self.engine = Engine(
            policy, plugins, self.journal, stage=self.stage, run_id=self.run_id, models=self.models
        )
        self.market = InMemoryMarket(self.series)
        self._by_time = {
            symbol: {c.time: c for c in candles} for symbol, candles in self.series.items()
        }
        start = float(policy.get("exchange", "paper", "starting_balance", default=1.0))
        self.books = {
            name: _BookState(name, broker_factory(policy), BookStats(start, start, start))
            for name in BOOKS
            if name != "actual" or actual_broker is None
        }
        if actual_broker is not None:  # a venue: the book starts with what the account holds
            held = actual_broker.cash() + sum(
                p.quantity * p.entry_price for p in actual_broker.positions()
            )
            self.books = {
                "actual": _BookState("actual", actual_broker, BookStats(held, held, held)),
                **self.books,
            }
        #: Live orders: candle times before this one are history (the first poll's backlog);
        #: they warm the engine and the shadow book up, but the actual book neither sees them
        #: nor sends orders for them (stale prices; stops of restored positions).
        self.live_from: datetime | None = None
        self._last_seen: dict[str, datetime] = {}
        self.watcher: PolicyWatcher | None = None
        #: Metrics of the venue the market data comes from (a live venue's circuit breaker and
        #: error rate); None for the paper exchange, which cannot fail.
        self.exchange_health: Callable[[], Mapping[str, float]] | None = None
        self.data_gaps = 0
        self.timeframe_s = _timeframe_seconds(
            str(policy.get("universe", "timeframe", default="5m"))
        )

    # --- one candle time -----------------------------------------------------------------------

    def _prices(self) -> dict[str, float]:
        prices: dict[str, float] = {}
        for symbol in self.market.symbols:
            last = self.market.last(symbol)
            if last is not None:
                prices[symbol] = last.close
        return prices

    def _portfolio(self, book: _BookState, prices: Mapping[str, float]) -> PortfolioView:
        """The book as the engine sees it. Asked about six times per candle time for each book
        (monitor, entry, equity sample, opens and closes); a broker that counts its changes
        (`revision`, the paper exchange) gets the previous view again while neither it nor
        the prices (the same, unchanged mapping) moved: the values a fresh build gives."""
        broker = book.broker
        revision = getattr(broker, "revision", None)
        cached = book.view
        if (
            cached is not None
            and revision is not None
            and cached[0] is prices
            and cached[1] == revision
            and cached[2].prices == prices
        ):
            return cached[2]
        trades = tuple(broker.closed_trades()[-20:])
        view = PortfolioView(
            broker.equity(prices), broker.cash(), broker.positions(), dict(prices), trades
        )
        book.view = None if revision is None else (prices, revision, view)
        return view

    def _exchange_report(self) -> HealthReport:
        if self.exchange_health is None:
            return HealthReport(
                "exchange",
                HealthStatus.OK,
                "paper exchange",
                {"exchange_error_rate": 0.0, "circuit_breaker_open": 0.0},
            )
        metrics = dict(self.exchange_health())
        status = (
            HealthStatus.CRITICAL
            if metrics.get("circuit_breaker_open", 0.0) >= 1.0
            else HealthStatus.OK
        )
        return HealthReport(
            "exchange",
            status,
            f"venue error rate {metrics.get('exchange_error_rate', 0.0):.2f}",
            metrics,
        )

    def _feed_health(self, now: datetime, candidates: Sequence[str]) -> list[HealthReport]:
        staleness = 0.0
        gaps = 0
        for symbol in candidates:
            seen = self._last_seen.get(symbol)
            if seen is None:
                continue
            age = (now - seen).total_seconds()
            staleness = max(staleness, age)
            if age > 0:
                gaps += int(age // self.timeframe_s)
        status = HealthStatus.OK if gaps == 0 else HealthStatus.DEGRADED
        return [
            HealthReport(
                "data_feed",
                status,
                f"staleness {staleness:g} s, {gaps} missing candle(s)",
                {"data_feed_staleness_s": staleness, "data_feed_gap_candles": float(gaps)},
            ),
            self._exchange_report(),
            HealthReport("store", HealthStatus.OK, "sqlite", {"store_errors": 0.0}),
        ]

    def _apply(
        self,
        book: _BookState,
        orders: Sequence[OrderIntent],
        now: datetime,
        prices: Mapping[str, float],
        fills: list[tuple[str, Fill]],
    ) -> None:
        if book.name == "actual" and self.live_from is not None and now < self.live_from:
            for order in orders:
                self._order_not_sent(
                    order, now, f"not sent: {now.isoformat()} is history, before the live start"
                )
            return
        for order in orders:
            price = prices.get(order.symbol)
            if price is None:
                continue
            try:
                made = book.broker.submit(order, now, price)
            except BrokerError as exc:
                self._order_not_sent(
                    order,
                    now,
                    f"{book.name} broker refused {order.action.value} {order.symbol}: {exc}",
                )
                continue
            fills.extend((book.name, fill) for fill in made)
            self._announce_opens(book, made, now, prices)

    def _order_not_sent(self, order: OrderIntent, now: datetime, why: str) -> None:
        """Journal an order the runtime did not send, with why, under the order's trace."""
        self._sink.record(
            _engine_decision(
                self,
                now,
                "broker",
                f"order:{order.id}",
                to_jsonable(order),
                "ENGINE",
                "engine",
                why,
                order=order,
            )
        )

    def _announce_opens(
        self, book: _BookState, fills: Sequence[Fill], now: datetime, prices: Mapping[str, float]
    ) -> None:
        """Tell the plugins about shadow positions that opened, once each (sliced entries make
        several fills, limit entries fill on a later candle)."""
        if book.name != "shadow":
            return
        for fill in fills:
            if fill.kind is not FillKind.OPEN or fill.position_id in book.announced:
                continue
            book.announced.add(fill.position_id)
            opened = next((p for p in book.broker.positions() if p.id == fill.position_id), None)
            if opened is not None:
                self.engine.trade_opened(now, self.market, self._portfolio(book, prices), opened)

    def _closed_trades(self, book: _BookState, now: datetime, prices: Mapping[str, float]) -> None:
        trades = book.broker.closed_trades()
        fresh: list[ClosedTrade] = list(trades[book.seen_trades :])
        book.seen_trades = len(trades)
        for trade in fresh:
            book.stats.trades += 1
            book.stats.wins += 1 if trade.pnl_quote > 0 else 0
            book.stats.pnl_quote += trade.pnl_quote
            book.stats.exits[trade.reason] = book.stats.exits.get(trade.reason, 0) + 1
            if book.name == "shadow":
                self.engine.trade_closed(now, self.market, self._portfolio(book, prices), trade)

    def _automatic_demotion(self, now: datetime, entry: Any, prices: Mapping[str, float]) -> None:
        """EMERGENCY_SHUTDOWN demotes (default: to OBSERVATION); a CRITICAL risk mode, as the
        coordinator assessed it, caps the stage (default: ADVISORY). Journaled with the cause;
        the engine runs the next cycle at the new stage."""
        from aios.model import DirectiveKind, RiskMode
        from aios.stages import ORDER, StageError

        causes: list[tuple[Stage, str]] = []
        if DirectiveKind.EMERGENCY_SHUTDOWN in entry.directives:
            target = Stage(
                str(
                    self.policy.get(
                        "stages", "demotion", "on_emergency_shutdown", default="OBSERVATION"
                    )
                )
            )
            causes.append((target, "EMERGENCY_SHUTDOWN is active"))
        cap = self.policy.get("stages", "demotion", "on_critical_risk_mode", default="ADVISORY")
        if cap is not None and entry.shadow_risk_mode is RiskMode.CRITICAL:
            causes.append((Stage(str(cap)), "the coordinator assesses the risk mode as CRITICAL"))
        for target, cause in sorted(causes, key=lambda c: ORDER[c[0]]):
            if ORDER[target] >= ORDER[self.stage]:
                continue
            try:
                if self._redrive is not None or self._store_stage_at_most(target):
                    # Re-driving, or the killed process moved the store already: the stage
                    # machine has recorded this move; only the engine must follow it.
                    moved = {"moved": True}
                else:
                    # The stage's evidence starts at the store's rows as they are now: the
                    # candle times already stepped must be in them, as they were unbatched.
                    if self._batch_store:
                        self._write_unwritten(None)
                    moved = self.stages.demote(
                        self.policy,
                        target,
                        f"automatic: {cause} at {now.isoformat()}",
                        automatic=True,
                    )
            except StageError as exc:
                why = f"automatic demotion to {target.value} failed: {exc}"
                self._sink.record(self._stage_row(now, why, applied=False))
                continue
            if moved["moved"]:
                self.stage = target
                self.engine.set_stage(
                    now, self.market, self._portfolio(self.books["actual"], prices), target
                )
                why = f"automatic demotion to {target.value}: {cause}"
                self._sink.record(self._stage_row(now, why, applied=True))
            break

    def _store_stage_at_most(self, target: Stage) -> bool:
        from aios.stages import ORDER

        if self._resume is None:
            return False
        record = self.stages.current()
        return record is not None and ORDER[record.stage] <= ORDER[target]

    def _stage_row(self, now: datetime, reason: str, *, applied: bool) -> Any:
        proposal = {"stage": self.stage.value, "reason": reason}
        outcome = "applied" if applied else "error"
        return _engine_decision(
            self,
            now,
            "stage_demotion",
            "stage",
            proposal,
            "SAFETY",
            outcome,
            reason,
            applied=applied,
        )

    def _reload(self, now: datetime) -> None:
        """Between cycles: swap in a policy the watcher validated; journal every attempt.
        A resumed run swaps in the policies its first process swapped in, at the same times."""
        scheduled = self._scheduled.pop(now.isoformat(), None)
        if scheduled is not None:
            prices = self._prices()
            portfolio = self._portfolio(self.books["actual"], prices)
            self.engine.reload(now, self.market, portfolio, scheduled)
            self.policy = scheduled
        if self.watcher is None or self._redrive is not None:
            return
        policy, results = self.watcher.take()
        for result in results:
            if not result.ok:
                reason = result.summary()
                self._sink.record(
                    _engine_decision(
                        self,
                        now,
                        "aios_policy_reloaded",
                        "policy",
                        {"applied": False, "reason": reason},
                        "ENGINE",
                        "error",
                        reason,
                    )
                )
        if policy is None:
            return
        self.store.record_policy(self.run_id, now, policy)
        prices = self._prices()
        self.engine.reload(now, self.market, self._portfolio(self.books["actual"], prices), policy)
        self.policy = policy

    def step(self, now: datetime) -> None:
        self._reload(now)
        fills: list[tuple[str, Fill]] = []
        for symbol in self.series:
            candle = self._candle_at(symbol, now)
            if candle is None:
                continue
            self._last_seen[symbol] = now
            for book in self.books.values():
                if book.name == "actual" and self.live_from is not None and now < self.live_from:
                    continue  # history: see `live_from`
                fills.extend((book.name, fill) for fill in book.broker.on_candle(symbol, candle))
        self.market.advance(now)
        prices = self._prices()
        for book in self.books.values():
            self._announce_opens(book, [f for name, f in fills if name == book.name], now, prices)
            self._closed_trades(book, now, prices)

        # Both books' monitor cycles first, then one journal flush before acting on either
        # (neither cycle reads the other book, so this is the order of separate flushes).
        outcomes = [
            (
                book,
                self.engine.monitor_cycle(
                    now, self.market, self._portfolio(book, prices), book=book.name, flush=False
                ),
            )
            for book in self.books.values()
        ]
        if any(outcome.orders for _, outcome in outcomes):
            self.journal.flush()  # what is acted on is durable first
        for book, outcome in outcomes:
            self._apply(book, outcome.orders, now, prices, fills)

        candidates = [
            s
            for s in self.policy.get("universe", "symbols", default=list(self.series))
            if s in self.series
        ]
        health = self._feed_health(now, candidates)
        self.data_gaps += int(health[0].metrics["data_feed_gap_candles"] > 0)
        entry = self.engine.entry_cycle(
            now,
            self.market,
            self._portfolio(self.books["actual"], prices),
            component_health=health,
            shadow_portfolio=self._portfolio(self.books["shadow"], prices),
        )
        self._apply(self.books["actual"], entry.orders, now, prices, fills)
        self._apply(self.books["shadow"], entry.shadow_orders, now, prices, fills)
        self._automatic_demotion(now, entry, prices)
        for book in self.books.values():
            self._closed_trades(book, now, prices)
            fees = sum(f.fee for name, f in fills if name == book.name)
            book.stats.fees += fees

        samples = []
        for book in self.books.values():
            portfolio = self._portfolio(book, prices)
            exposure = portfolio.exposure_quote()
            book.stats.sample(portfolio.equity, exposure)
            book.curve.append((now.isoformat(), portfolio.equity))
            samples.append((book.name, now, portfolio.equity, exposure))
        self._commit(now, fills, samples)

    def _commit(
        self,
        now: datetime,
        fills: Sequence[tuple[str, Fill]],
        samples: Sequence[tuple[str, datetime, float, float]],
    ) -> None:
        """Record one candle time. Every `checkpoint_every` steps the journal is flushed and
        then the resume cursor moves with the fills, in one transaction: whatever the cursor
        covers has its whole journal. A re-drive compares instead of recording."""
        if self._redrive is not None:
            self._redrive.check(now, fills)
            return
        self._steps_done += 1
        progress = None
        if self._steps_done % self.checkpoint_every == 0:
            self.journal.flush()
            progress = (self._steps_done, now)
        if not self._batch_store:
            self.store.record(self.run_id, fills, samples, progress)
            return
        self._unwritten[0].extend(fills)
        self._unwritten[1].extend(samples)
        if progress is not None:
            self._write_unwritten(progress)

    def _write_unwritten(self, progress: tuple[int, datetime] | None) -> None:
        """The fills and samples a replay held back, with the cursor `progress`, at once."""
        fills, samples = self._unwritten
        self._unwritten = ([], [])
        self.store.record(self.run_id, fills, samples, progress)

    def _candle_at(self, symbol: str, now: datetime) -> Candle | None:
        return self._by_time[symbol].get(now)

    # --- the whole run -------------------------------------------------------------------------

    def begin(self, first: datetime) -> None:
        """Record the run as started (replay and live runs alike)."""
        del first  # the run's times are wall-clock times; the report has the market span
        self.store.start(
            self.run_id,
            self.wall_clock(),
            self.policy,
            self.stage,
            self.spec,
            decisions_from=self._decisions_from,
        )
        self._stepped: list[datetime] = []

    def advance_to(self, now: datetime) -> None:
        """One candle time, remembered for the report."""
        self.step(now)
        self._stepped.append(now)

    def end(self, status: str) -> RunReport | None:
        """Flush, report what was stepped (also after an interruption), close the stores."""
        report: RunReport | None = None
        try:
            if self._stepped:
                self.journal.flush()
                if self._redrive is None:  # the cursor covers every step: resumable from here
                    self._write_unwritten((self._steps_done, self._stepped[-1]))
                report = self.report(self._stepped)
        finally:
            self.journal.close()
            self.store.finish(self.run_id, self.wall_clock(), status, report)
            self._close()
        return report

    def _close(self) -> None:
        self.journal.close()
        self.stages.close()
        self.store.close()
        self.models.close()

    def add_candles(self, symbol: str, candles: Sequence[Candle]) -> list[Candle]:
        """Live feeds: append the candles newer than what is held; returns those added."""
        held = self.series.setdefault(symbol, [])
        last = held[-1].time if held else None
        fresh = [c for c in candles if last is None or c.time > last]
        for candle in fresh:
            held.append(candle)
            self._by_time.setdefault(symbol, {})[candle.time] = candle
            self.market.append(symbol, candle)
            last = candle.time
        return fresh

    def run(
        self, limit: int | None = None, progress: Callable[[int, int], None] | None = None
    ) -> RunReport:
        """Replay every candle time of the series (or the first `limit`)."""
        times = _aligned_times(self.series)
        if limit is not None:
            times = times[:limit]
        if not times:
            raise ValueError("no candles to replay")
        if self._resume is None:
            self.begin(times[0])
            first = 0
        else:
            try:
                first = self._redrive_prefix(self._resume, times, progress)
            except BaseException:
                self._close()  # the run stays as it was, to be resumed once fixed
                raise
        status = "failed"
        self._batch_store = True
        try:
            for index in range(first, len(times)):
                if self.stop.is_set():
                    status = "stopped"
                    break
                self.advance_to(times[index])
                if progress is not None:
                    progress(index + 1, len(times))
            else:
                status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            report = self.end(status)
        assert report is not None
        return report

    def journal_reconciliation(self, decisions: Sequence[Any], now: datetime) -> None:
        """Start-up decisions about a venue's orders and positions (`Reconciliation`s), one
        journal row each, written before anything trades."""
        for decision in decisions:
            self._sink.record(
                _engine_decision(
                    self,
                    now,
                    "reconcile",
                    decision.subject,
                    {"action": decision.action, "symbol": decision.symbol},
                    "ENGINE",
                    "engine",
                    f"{decision.action}: {decision.detail}",
                    applied=decision.action != "frozen",
                )
            )
        self.journal.flush()

    def _redrive_prefix(
        self,
        point: ResumePoint,
        times: Sequence[datetime],
        progress: Callable[[int, int], None] | None,
    ) -> int:
        """Rebuild every in-memory state of the run (both books, plugin learned state, engine
        health and directives, the stage, the report's figures) by running the engine again
        over the committed prefix; no row is written and no order leaves (paper books only).
        The re-drive must reproduce what was recorded, fill for fill and row count for row
        count, or the resume is refused with the store untouched. Returns the next index."""
        steps = point.steps
        if steps > len(times) or (steps and times[steps - 1] != point.last_time):
            raise ResumeError(
                f"{point.run_id}: its candle data changed (step {steps} was "
                f"{point.last_time.isoformat() if point.last_time else '-'}); resume needs the "
                "same files; nothing was changed"
            )
        saved_models = self.store._model_rows()
        self.store.restore_models(point.run_id)
        counter = _CountingSink()
        self._sink = counter
        self.engine.journal = cast(Journal, counter)
        self._redrive = _Redrive(
            point.run_id, self.store.recorded_fills(point.run_id, point.last_time)
        )
        self._stepped = []
        try:
            for index in range(steps):
                self.advance_to(times[index])
                if progress is not None:
                    progress(index + 1, len(times))
            self._redrive.finish()
            recorded = self.store.recorded_decisions(point.run_id, point.last_time)
            if counter.count != recorded:
                raise ResumeError(
                    f"{point.run_id}: the re-drive made {counter.count} journal rows where the "
                    f"run recorded {recorded}: the plugins or their versions changed since it "
                    "started; nothing was changed, start a new run"
                )
        except BaseException:
            with self.store.connection:
                self.store.connection.execute("BEGIN")
                self.store.connection.execute("DELETE FROM model_versions")
                self.store.connection.executemany(
                    "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?)", saved_models
                )
            raise
        finally:
            self._sink = self.journal
            self.engine.journal = self.journal
            self._redrive = None
        self.store.discard_after(point, steps, self.wall_clock())
        self._steps_done = steps
        return steps

    def report(self, times: Sequence[datetime]) -> RunReport:
        reader = self.journal.reader()
        connection = reader._connection
        proposals: dict[str, dict[str, int]] = {}
        for subsystem, outcome, count in connection.execute(
            "SELECT subsystem, outcome, COUNT(*) FROM decisions WHERE run_id = ? AND outcome IN ('applied', 'advisory', 'observed', 'error') GROUP BY subsystem, outcome ORDER BY subsystem",
            (self.run_id,),
        ):
            proposals.setdefault(subsystem, {})[outcome] = count
        blocks: dict[str, dict[str, int]] = {"actual": {}, "shadow": {}}
        for (proposal_json,) in connection.execute(
            "SELECT proposal FROM decisions WHERE run_id = ? AND subsystem = 'engine' AND hook = 'entry' AND subject LIKE 'signal:%'",
            (self.run_id,),
        ):
            proposal = json.loads(proposal_json)
            book, by = proposal.get("book"), proposal.get("blocked_by")
            if book in blocks and by:
                blocks[book][by] = blocks[book].get(by, 0) + 1
        directives = tuple(
            {"time": time, "subsystem": subsystem, "outcome": outcome, "reason": reason}
            for time, subsystem, outcome, reason in connection.execute(
                "SELECT time, subsystem, outcome, reason FROM decisions WHERE run_id = ? AND hook IN ('aios_directives', 'emergency_shutdown') ORDER BY id",
                (self.run_id,),
            )
        )
        risk_modes = tuple(
            {"time": time, "outcome": outcome, "reason": reason}
            for time, outcome, reason in connection.execute(
                "SELECT time, outcome, reason FROM decisions WHERE run_id = ? AND hook = 'aios_coordinate' ORDER BY id",
                (self.run_id,),
            )
        )
        return RunReport(
            run_id=self.run_id,
            policy_hash=self.policy.hash,
            policy_sources=tuple(self.policy.sources),
            stage=self.stage.value,
            candles=len(times),
            symbols=tuple(sorted(self.series)),
            first=times[0].isoformat(),
            last=times[-1].isoformat(),
            books={name: book.stats.summary() for name, book in self.books.items()},
            proposals={k: dict(sorted(v.items())) for k, v in sorted(proposals.items())},
            blocks={
                book: dict(sorted(v.items(), key=lambda kv: -kv[1])) for book, v in blocks.items()
            },
            directives=directives,
            risk_modes=risk_modes,
            data_gaps=self.data_gaps,
            equity_curve={name: tuple(book.curve) for name, book in self.books.items()},
        )


class _Sink(Protocol):
    """Where the runtime's own journal rows go: the journal, or a counter while re-driving."""

    def record(self, decision: Any) -> None: ...

    def flush(self) -> None: ...


class _CountingSink:
    def __init__(self) -> None:
        self.count = 0

    def record(self, decision: Any) -> None:
        self.count += 1

    def flush(self) -> None:
        return None


class _Redrive:
    """The recorded fills of the committed prefix, checked candle time by candle time."""

    def __init__(self, run_id: str, fills: dict[str, list[tuple[Any, ...]]]) -> None:
        self.run_id = run_id
        self.fills = fills

    def check(self, now: datetime, fills: Sequence[tuple[str, Fill]]) -> None:
        expected = self.fills.pop(now.isoformat(), [])
        made = [(book, *_fill_row(fill)) for book, fill in fills]
        if made != expected:
            raise ResumeError(
                f"{self.run_id}: the re-drive diverged at {now.isoformat()}: the run recorded "
                f"{len(expected)} fill(s), the re-drive made {len(made)} "
                f"({_first_difference(expected, made)}); the data, the plugins or their versions "
                "changed since it started; nothing was changed, start a new run"
            )

    def finish(self) -> None:
        if self.fills:
            first = min(self.fills)
            raise ResumeError(
                f"{self.run_id}: the run recorded fills at {first} that the re-drive never "
                "reached; nothing was changed, start a new run"
            )


def _first_difference(expected: Sequence[tuple[Any, ...]], made: Sequence[tuple[Any, ...]]) -> str:
    for before, now in zip(expected, made, strict=False):
        if before != now:
            return f"recorded {before[:3]} ..., re-driven {now[:3]} ..."
    return "one list is a prefix of the other"


def _engine_decision(
    runtime: Runtime,
    now: datetime,
    hook: str,
    subject: str,
    proposal: Any,
    mode: str,
    outcome: str,
    reason: str,
    *,
    applied: bool = False,
    order: OrderIntent | None = None,
) -> Any:
    """A journal row for something the runtime itself decided or met (a refused order, a
    rejected reload, an automatic demotion)."""
    from aios.journal import Decision

    return Decision(
        runtime.run_id,
        runtime.engine.cycle,
        now,
        "engine",
        hook,
        subject,
        proposal,
        mode,
        outcome,
        applied,
        reason,
        runtime.policy.hash,
        None if order is None else order.symbol,
        None if order is None else (order.trace or None),
    )


_TIMEFRAMES = {"1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "4h": 14400, "1d": 86400}


def _timeframe_seconds(timeframe: str) -> int:
    return _TIMEFRAMES.get(timeframe, 300)


def load_recorded(
    point: ResumePoint, extra_plugins: Sequence[Any] = ()
) -> tuple[Policy, PluginSet, dict[str, Policy]]:
    """The policies a run used, rebuilt from the effective documents recorded in the store
    (never from the files as they are now), the plugins they enable, and the reloads by
    candle time. Raises ResumeError when a rebuilt policy's hash is not the recorded one."""
    from dataclasses import replace

    from aios.app import declarations
    from aios.policy import PolicyInvalid
    from aios.policy.loader import build_policy
    from aios.policy.yaml_source import parse_text
    from aios.registry import discover

    documents = [json.loads(document) for _, _, _, document in point.policies]
    section = documents[0].get("plugins") if isinstance(documents[0], dict) else None
    allow = list((section or {}).get("allow") or [])
    deny = list((section or {}).get("deny") or [])
    plugins = discover([str(x) for x in allow], [str(x) for x in deny], list(extra_plugins))
    sections, metrics = declarations(plugins)
    rebuilt: list[tuple[str, Policy]] = []
    for (time, recorded_hash, sources, text), _ in zip(point.policies, documents, strict=True):
        where = f"<{point.run_id} policy {time or 'at start'}>"
        try:
            policy = build_policy(
                [parse_text(text, where)], env={}, sections=sections, metrics=metrics
            )
        except (PolicyInvalid, ValueError) as exc:
            raise ResumeError(
                f"{point.run_id}: its recorded policy {time or 'at start'} no longer validates "
                f"with the installed plugins: {exc}"
            ) from None
        if policy.hash != recorded_hash:
            raise ResumeError(
                f"{point.run_id}: its recorded policy {time or 'at start'} now means something "
                f"else (hash {policy.hash[:12]}, recorded {recorded_hash[:12]}): the schema or a "
                "plugin's defaults changed since the run started"
            )
        rebuilt.append((time, replace(policy, sources=sources)))
    start = rebuilt[0][1]
    return start, plugins, {time: policy for time, policy in rebuilt[1:]}


def load_series(data_dir: Path, symbols: Sequence[str] | None) -> dict[str, list[Candle]]:
    """The candle files of `data_dir` for the policy's universe (all files when it names none)."""
    return load_directory(data_dir, list(symbols) if symbols else None)


__all__ = [
    "OrderAction",
    "ResumeError",
    "ResumePoint",
    "RunReport",
    "Runtime",
    "Store",
    "load_recorded",
    "load_series",
]
