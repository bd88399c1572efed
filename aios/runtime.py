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
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aios.data import load_directory
from aios.engine import Engine
from aios.exchange.base import Broker, BrokerError, Fill, FillKind
from aios.journal import Journal, to_jsonable
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
from aios.stages import StageStore
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
"""

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


class Store:
    """The runtime's tables in the state database (the journal has its own)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = sqlite3.connect(str(path), isolation_level=None, timeout=10.0)
        self.connection.execute("PRAGMA journal_mode=WAL")
        self.connection.execute("PRAGMA synchronous=NORMAL")
        self.connection.executescript(_DDL)

    def next_run_id(self) -> str:
        count = self.connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return f"run-{count + 1}"

    def start(self, run_id: str, now: datetime, policy: Policy, stage: Stage) -> None:
        self.connection.execute(
            "INSERT INTO runs (run_id, started_at, policy_hash, policy_sources, stage, status) VALUES (?, ?, ?, ?, ?, 'running')",
            (run_id, now.isoformat(), policy.hash, json.dumps(list(policy.sources)), stage.value),
        )

    def record(
        self,
        run_id: str,
        fills: Sequence[tuple[str, Fill]],
        samples: Sequence[tuple[str, datetime, float, float]],
    ) -> None:
        """One candle's fills and equity samples, in one transaction."""
        if not fills and not samples:
            return
        with self.connection:
            self.connection.execute("BEGIN")
            self.connection.executemany(
                "INSERT INTO fills (run_id, book, order_id, position_id, symbol, side, kind, time, price, quantity, fee, reason)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        book,
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
                    for book, f in fills
                ],
            )
            self.connection.executemany(
                "INSERT INTO equity (run_id, book, time, equity, exposure) VALUES (?, ?, ?, ?, ?)",
                [
                    (run_id, book, time.isoformat(), equity, exposure)
                    for book, time, equity, exposure in samples
                ],
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

    def close(self) -> None:
        self.connection.close()


@dataclass
class _BookState:
    name: str
    broker: Broker
    stats: BookStats
    curve: list[tuple[str, float]] = field(default_factory=list)
    seen_trades: int = 0
    announced: set[str] = field(default_factory=set)


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
    ) -> None:
        self.policy = policy
        self.plugins = plugins
        self.wall_clock = wall_clock
        self.series = {symbol: list(candles) for symbol, candles in series.items()}
        self.state_dir = state_dir
        database = database_path(state_dir)
        # The stage comes from the stage machine's store (created at `stages.initial` when
        # fresh); a `stage` argument is for tests that drive the engine directly.
        self.stages = StageStore(database, create=True, clock=wall_clock)
        self.stage = stage or self.stages.ensure(policy)
        self.store = Store(database)
        self.run_id = self.store.next_run_id()
        self.journal = Journal(database)
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
        }
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
        broker = book.broker
        trades = tuple(broker.closed_trades()[-20:])
        return PortfolioView(
            broker.equity(prices), broker.cash(), broker.positions(), dict(prices), trades
        )

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
        for order in orders:
            price = prices.get(order.symbol)
            if price is None:
                continue
            try:
                made = book.broker.submit(order, now, price)
            except BrokerError as exc:
                why = f"{book.name} broker refused {order.action.value} {order.symbol}: {exc}"
                self.journal.record(
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
                continue
            fills.extend((book.name, fill) for fill in made)
            self._announce_opens(book, made, now, prices)

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
                moved = self.stages.demote(
                    self.policy, target, f"automatic: {cause} at {now.isoformat()}", automatic=True
                )
            except StageError as exc:
                why = f"automatic demotion to {target.value} failed: {exc}"
                self.journal.record(self._stage_row(now, why, applied=False))
                continue
            if moved["moved"]:
                self.stage = target
                self.engine.set_stage(
                    now, self.market, self._portfolio(self.books["actual"], prices), target
                )
                why = f"automatic demotion to {target.value}: {cause}"
                self.journal.record(self._stage_row(now, why, applied=True))
            break

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
        """Between cycles: swap in a policy the watcher validated; journal every attempt."""
        if self.watcher is None:
            return
        policy, results = self.watcher.take()
        for result in results:
            if not result.ok:
                reason = result.summary()
                self.journal.record(
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
        self.store.record(self.run_id, fills, samples)

    def _candle_at(self, symbol: str, now: datetime) -> Candle | None:
        return self._by_time[symbol].get(now)

    # --- the whole run -------------------------------------------------------------------------

    def begin(self, first: datetime) -> None:
        """Record the run as started (replay and live runs alike)."""
        del first  # the run's times are wall-clock times; the report has the market span
        self.store.start(self.run_id, self.wall_clock(), self.policy, self.stage)
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
                report = self.report(self._stepped)
        finally:
            self.journal.close()
            self.store.finish(self.run_id, self.wall_clock(), status, report)
            self.stages.close()
            self.store.close()
            self.models.close()
        return report

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
        self.begin(times[0])
        status = "failed"
        try:
            for index, now in enumerate(times, start=1):
                self.advance_to(now)
                if progress is not None:
                    progress(index, len(times))
            status = "finished"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            report = self.end(status)
        assert report is not None
        return report

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


def load_series(data_dir: Path, symbols: Sequence[str] | None) -> dict[str, list[Candle]]:
    """The candle files of `data_dir` for the policy's universe (all files when it names none)."""
    return load_directory(data_dir, list(symbols) if symbols else None)


__all__ = ["OrderAction", "RunReport", "Runtime", "Store", "load_series"]
