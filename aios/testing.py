"""Exercising plugins: records and contexts for unit tests, and a harness for whole cycles.

Used by aios's own tests and made for third-party plugin authors (docs/plugins.md). The
`Harness` runs the real engine over the plugins under test; its pytest fixtures (`aios_harness`,
`aios_clock`, `aios_policy`) come with aios through the `pytest11` entry point
(aios.pytest_plugin), so a plugin's test suite needs no conftest.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any

from aios.engine import Block, EntryOutcome, MonitorOutcome
from aios.hookspecs import CONTRACT_VERSION, hookimpl
from aios.journal import JournalRow
from aios.market import InMemoryMarket
from aios.model import (
    Candle,
    ClosedTrade,
    CycleContext,
    DirectiveKind,
    HealthReport,
    HealthStatus,
    MarketView,
    Mode,
    OrderIntent,
    PolicySection,
    PortfolioView,
    Position,
    RiskMode,
    Side,
    Signal,
    Stage,
)
from aios.model_registry import ModelRegistry
from aios.policy import Policy, load_policy, load_policy_text

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2018, 1, 10, 5, 0, tzinfo=UTC)


def default_policy(
    overlay: str | None = None,
    *,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Policy:
    """The bundled default policy, optionally with an overlay (YAML text) merged on top."""
    from aios.policy.schema import bundled_path

    base = bundled_path("policies") / "default.yaml"
    if overlay is None:
        return load_policy([base], env={}, sections=sections, metrics=metrics)
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as handle:
        handle.write(overlay)
        name = handle.name
    try:
        return load_policy([base, name], env={}, sections=sections, metrics=metrics)
    finally:
        Path(name).unlink(missing_ok=True)


def policy_with_plugins(plugins: Iterable[Any], overlay: str | None = None) -> Policy:
    """The default policy validated with these plugins' sections and metrics (for plugin tests):
    the overlay can then configure a third-party plugin's own section."""
    from aios.app import declarations
    from aios.registry import plugin_set

    sections, metrics = declarations(plugin_set(plugins))
    return default_policy(overlay, sections=sections, metrics=metrics)


def policy_from_text(text: str) -> Policy:
    return load_policy_text(text, env={})


def candles_from_closes(
    closes: Sequence[float],
    start: datetime = T0,
    step: timedelta = timedelta(minutes=5),
    volume: float = 100.0,
) -> list[Candle]:
    """Candles whose open is the previous close and whose high/low bracket both."""
    candles: list[Candle] = []
    previous = closes[0]
    for index, close in enumerate(closes):
        high, low = max(previous, close), min(previous, close)
        candles.append(Candle(start + step * index, previous, high, low, close, volume))
        previous = close
    return candles


def market(
    series: Mapping[str, Sequence[Candle]],
    now: datetime | None = None,
    spreads_bps: Mapping[str, float] | None = None,
) -> InMemoryMarket:
    return InMemoryMarket(series, now, spreads_bps)


def position(
    symbol: str = "ETH/BTC",
    side: Side = Side.LONG,
    entry: float = 100.0,
    quantity: float = 1.0,
    stop_loss: float | None = 92.0,
    take_profit: float | None = 106.0,
    opened_at: datetime = T0,
    position_id: str = "p1",
    **extra: Any,
) -> Position:
    """A position with test defaults; `extra` sets any other Position field."""
    return Position(
        position_id, symbol, side, entry, quantity, opened_at, stop_loss, take_profit, **extra
    )


def closed_trade(
    pnl_pct: float,
    symbol: str = "ETH/BTC",
    closed_at: datetime = T0,
    confidence: float | None = 0.7,
    position_id: str = "p1",
    side: Side = Side.LONG,
) -> ClosedTrade:
    entry = 100.0
    exit_price = entry * (1 + side.sign * pnl_pct / 100.0)
    return ClosedTrade(
        position_id,
        symbol,
        side,
        entry,
        exit_price,
        1.0,
        closed_at - timedelta(hours=1),
        closed_at,
        pnl_pct,
        exit_price - entry if side is Side.LONG else entry - exit_price,
        "test",
        confidence,
    )


def context(
    policy: Policy | None = None,
    *,
    now: datetime = T0,
    market_view: MarketView | None = None,
    portfolio: PortfolioView | None = None,
    stage: Stage = Stage.AUTONOMY,
    risk_mode: RiskMode = RiskMode.NORMAL,
    directives: frozenset[DirectiveKind] = frozenset(),
    metrics: Mapping[str, float] | None = None,
    cycle: int = 1,
) -> CycleContext:
    """A cycle context with sensible defaults (the default policy, an empty market and book)."""
    return CycleContext(
        now=now,
        cycle=cycle,
        policy=policy or default_policy(),
        stage=stage,
        market=market_view or InMemoryMarket({}),
        portfolio=portfolio or PortfolioView(equity=1.0, cash=1.0),
        risk_mode=risk_mode,
        directives=directives,
        metrics=dict(metrics or {}),
    )


def healthy_components() -> list[HealthReport]:
    """What a runtime reports when the data feed, the exchange and the store are fine."""
    return [
        HealthReport(
            "data_feed",
            HealthStatus.OK,
            "fresh",
            {"data_feed_staleness_s": 0.0, "data_feed_gap_candles": 0.0},
        ),
        HealthReport(
            "exchange",
            HealthStatus.OK,
            "reachable",
            {"exchange_error_rate": 0.0, "circuit_breaker_open": 0.0},
        ),
        HealthReport("store", HealthStatus.OK, "writable", {"store_errors": 0.0}),
    ]


# --- the harness: one cycle through the real engine, with the journal to inspect ---------------

HARNESS_SIGNALS = "harness_signals"


class HarnessError(Exception):
    """A harness set up in a way that would test nothing (the message says what to change)."""


class Clock:
    """The harness's clock: it moves only when a test moves it (no sleeps, no wall time)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def advance(self, delta: timedelta | None = None, **units: float) -> datetime:
        """Move forward by `delta` or by keyword units (`minutes=5`, `hours=1`); return now."""
        step = delta if delta is not None else timedelta(**units)
        if step < timedelta(0):
            raise HarnessError(f"the clock only moves forward, not by {step}")
        self.now += step
        return self.now

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise HarnessError(f"give the clock an aware UTC time, not {when!r}")
        self.now = when
        return self.now


class ScriptedSignals:
    """The harness's signal source: emits exactly the signals a test hands to `entry_cycle`, so
    that a plugin further down the pipeline (filters, sizing, TP/SL, execution) gets called."""

    name = HARNESS_SIGNALS
    aios_contract = CONTRACT_VERSION

    def __init__(self) -> None:
        self.pending: dict[str, list[Signal]] = {}

    @hookimpl
    def aios_policy_section(self) -> PolicySection:
        return PolicySection(self.name, {"properties": {}, "description": "aios.testing only."})

    @hookimpl
    def aios_signals(self, symbol: str) -> list[Signal]:
        return self.pending.get(symbol, [])


def signal(
    symbol: str = "ETH/BTC",
    confidence: float = 0.8,
    side: Side = Side.LONG,
    price: float = 100.0,
    *,
    signal_id: str | None = None,
    time: datetime = T0,
    source: str = HARNESS_SIGNALS,
) -> Signal:
    """A signal for `Harness.entry_cycle(signals=...)`."""
    return Signal(
        signal_id or f"{symbol}-{side.value}-{confidence:g}",
        symbol,
        side,
        confidence,
        source,
        time,
        price,
    )


@dataclass(frozen=True)
class CycleResult:
    """What one harness call did: the engine's outcome and every journal row it wrote."""

    outcome: EntryOutcome | MonitorOutcome | None
    rows: tuple[JournalRow, ...]

    @property
    def orders(self) -> tuple[OrderIntent, ...]:
        """The orders of the actual book (what the system would do at its stage)."""
        return self.outcome.orders if self.outcome is not None else ()

    @property
    def shadow_orders(self) -> tuple[OrderIntent, ...]:
        """Entry cycles: the shadow book's orders (every proposal applied)."""
        return self.outcome.shadow_orders if isinstance(self.outcome, EntryOutcome) else ()

    @property
    def blocked(self) -> tuple[Block, ...]:
        return self.outcome.blocked if isinstance(self.outcome, EntryOutcome) else ()

    @property
    def advisories(self) -> tuple[str, ...]:
        return self.outcome.advisories if self.outcome is not None else ()

    def proposals(self, subsystem: str | None = None, hook: str | None = None) -> list[JournalRow]:
        """Journal rows of plugins' proposals (not the engine's own rows), optionally filtered."""
        return [
            row
            for row in self.rows
            if row.outcome in ("applied", "advisory", "observed")
            and (subsystem is None or row.subsystem == subsystem)
            and (hook is None or row.hook == hook)
        ]

    def errors(self, subsystem: str | None = None) -> list[JournalRow]:
        """Rows journaling a plugin's exception (with how `on_error` handled it)."""
        return [
            r
            for r in self.rows
            if r.outcome == "error" and (subsystem is None or r.subsystem == subsystem)
        ]


def _yaml(overlay: str | Mapping[str, Any]) -> str:
    if isinstance(overlay, str):
        return overlay
    import yaml

    return yaml.safe_dump(_plain(overlay), sort_keys=False)


def _plain(value: Any) -> Any:
    """Enums (Mode.ENFORCED, Stage...) as their names, so a mapping overlay can use them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Enum):
        return value.name
    return value


class Harness:
    """Runs one entry or monitor cycle (or a lifecycle event) of the real engine over the given
    plugins, with a market snapshot, positions, a policy, a stage and a controllable clock, and
    lets a test inspect the proposals, the orders and the decision journal.

    `policy` is a validated `Policy`, or an overlay (YAML text or a mapping) merged over the
    bundled default policy and validated with the plugins' own sections, like a user's file.
    `modes` sets subsystems' modes (a plugin without one is OFF, as in production). Only the
    given plugins run (no installed plugin is discovered), plus the harness's signal source.
    """

    def __init__(
        self,
        plugins: Iterable[Any],
        policy: Policy | str | Mapping[str, Any] | None = None,
        *,
        modes: Mapping[str, str | Mode] | None = None,
        stage: Stage = Stage.AUTONOMY,
        clock: Clock | None = None,
        run_id: str = "harness",
    ) -> None:
        from aios.app import declarations
        from aios.engine import Engine
        from aios.journal import Journal
        from aios.registry import plugin_set

        self.clock = clock or Clock()
        self.scripted = ScriptedSignals()
        self.plugin_set = plugin_set([*plugins, self.scripted])
        if self.plugin_set.problems:
            raise HarnessError(
                "plugins refused at load: "
                + "; ".join(f"{p.source}: {p.message}" for p in self.plugin_set.problems)
            )
        self.sections, self.metrics = declarations(self.plugin_set)
        if self.plugin_set.problems:  # a declaration hook raised, or declared a foreign section
            raise HarnessError(
                "; ".join(f"{p.source}: {p.message}" for p in self.plugin_set.problems)
            )
        self.modes = dict(modes or {})
        self.policy = self._policy(policy)
        self.journal = Journal(":memory:")
        self.models = ModelRegistry(":memory:")
        self.engine = Engine(
            self.policy,
            self.plugin_set,
            self.journal,
            stage=stage,
            run_id=run_id,
            models=self.models,
        )
        self._last_row = 0

    # --- set-up --------------------------------------------------------------------------------

    def _policy(self, policy: Policy | str | Mapping[str, Any] | None) -> Policy:
        if isinstance(policy, Policy):
            return policy
        from aios.policy.schema import bundled_path

        # named so that an error's location says which argument it came from
        overlays: list[tuple[str, str]] = []
        if self.modes:
            modes = {"subsystems": {n: {"mode": m} for n, m in self.modes.items()}}
            overlays.append(("modes.yaml", _yaml(modes)))
        if policy is not None:
            overlays.append(("policy.yaml", _yaml(policy)))
        overlays.append(
            ("harness.yaml", f"subsystems:\n  {HARNESS_SIGNALS}:\n    mode: ENFORCED\n")
        )
        with tempfile.TemporaryDirectory(prefix="aios-harness-") as directory:
            paths: list[Path] = [bundled_path("policies") / "default.yaml"]
            for filename, text in overlays:
                path = Path(directory) / filename
                path.write_text(text, encoding="utf-8")
                paths.append(path)
            return load_policy(paths, env={}, sections=self.sections, metrics=self.metrics)

    def plugin(self, name: str) -> Any:
        """The plugin object registered under `name` (a class given is instantiated once)."""
        return self.plugin_set.plugins[name].plugin

    def market(
        self,
        closes: Mapping[str, Sequence[float]],
        *,
        spreads_bps: Mapping[str, float] | None = None,
        step: timedelta = timedelta(minutes=5),
        volume: float = 100.0,
    ) -> InMemoryMarket:
        """A market snapshot whose last candle of each symbol closes at the clock's time."""
        series = {
            symbol: candles_from_closes(
                values, self.clock.now - step * (len(values) - 1), step, volume
            )
            for symbol, values in closes.items()
        }
        return InMemoryMarket(series, self.clock.now, spreads_bps)

    def _market_view(
        self, market_view: MarketView | Mapping[str, Sequence[Candle]] | None
    ) -> MarketView:
        if market_view is None:
            return InMemoryMarket({}, self.clock.now)
        if isinstance(market_view, Mapping):
            for symbol, candles in market_view.items():
                late = [c.time for c in candles if c.time > self.clock.now]
                if late:
                    raise HarnessError(
                        f"market snapshot: {symbol} has candles after the cycle time {self.clock.now.isoformat()} (up to {max(late).isoformat()}); set the clock to the snapshot's end or use Harness.market(...)"
                    )
            return InMemoryMarket(market_view, self.clock.now)
        return market_view

    def _portfolio(
        self,
        market_view: MarketView,
        positions: Sequence[Position],
        equity: float,
        cash: float | None,
        prices: Mapping[str, float] | None,
        recent_trades: Sequence[ClosedTrade],
    ) -> PortfolioView:
        known = dict(prices or {})
        for symbol in market_view.symbols:
            history = market_view.history(symbol, 1)
            if history and symbol not in known:
                known[symbol] = history[-1].close
        for held in positions:
            if held.symbol not in known:
                raise HarnessError(
                    f"position {held.id} in {held.symbol} has no price: give the market a candle for {held.symbol} or pass prices={{{held.symbol!r}: ...}}"
                )
        committed = sum(p.entry_price * p.quantity for p in positions)
        return PortfolioView(
            equity,
            equity - committed if cash is None else cash,
            tuple(positions),
            known,
            tuple(recent_trades),
        )

    def _rows(self) -> tuple[JournalRow, ...]:
        rows = [r for r in self.journal.reader().query() if r.id > self._last_row]
        if rows:
            self._last_row = rows[-1].id
        return tuple(rows)

    # --- cycles --------------------------------------------------------------------------------

    def entry_cycle(
        self,
        market: MarketView | Mapping[str, Sequence[Candle]] | None = None,
        *,
        signals: Sequence[Signal] = (),
        positions: Sequence[Position] = (),
        equity: float = 1.0,
        cash: float | None = None,
        prices: Mapping[str, float] | None = None,
        recent_trades: Sequence[ClosedTrade] = (),
        component_health: Iterable[HealthReport] | None = None,
    ) -> CycleResult:
        """One entry cycle at the clock's time. `signals` enter the pipeline as if a signal
        source had produced them (their symbols must be in the policy's universe and market)."""
        view = self._market_view(market)
        if signals and self.engine.own_mode(HARNESS_SIGNALS) is Mode.OFF:
            raise HarnessError(
                "signals= needs the harness's signal source, which this policy does not enable: pass the policy as an overlay (YAML text or a mapping) instead of a Policy"
            )
        candidates = set(self.engine._candidates(view))
        for item in signals:
            if item.symbol not in candidates:
                raise HarnessError(
                    f"signal {item.id}: {item.symbol} is not a candidate this cycle (it needs candles in the market snapshot and a place in universe.symbols: {self.policy.get('universe', 'symbols')})"
                )
        self.scripted.pending = {}
        for item in signals:
            self.scripted.pending.setdefault(item.symbol, []).append(item)
        portfolio = self._portfolio(view, positions, equity, cash, prices, recent_trades)
        try:
            outcome = self.engine.entry_cycle(
                self.clock.now,
                view,
                portfolio,
                component_health=healthy_components()
                if component_health is None
                else component_health,
            )
        finally:
            self.scripted.pending = {}
        return CycleResult(outcome, self._rows())

    def monitor_cycle(
        self,
        positions: Sequence[Position],
        market: MarketView | Mapping[str, Sequence[Candle]] | None = None,
        *,
        equity: float = 1.0,
        cash: float | None = None,
        prices: Mapping[str, float] | None = None,
        book: str = "actual",
    ) -> CycleResult:
        """One monitor cycle over `positions` at the clock's time (prices from the market's last
        closes unless given)."""
        view = self._market_view(market)
        portfolio = self._portfolio(view, positions, equity, cash, prices, ())
        outcome = self.engine.monitor_cycle(self.clock.now, view, portfolio, book=book)
        return CycleResult(outcome, self._rows())

    # --- lifecycle events ----------------------------------------------------------------------

    def _event_portfolio(self) -> tuple[MarketView, PortfolioView]:
        view = InMemoryMarket({}, self.clock.now)
        return view, PortfolioView(equity=1.0, cash=1.0)

    def trade_opened(self, opened: Position) -> CycleResult:
        view, book = self._event_portfolio()
        self.engine.trade_opened(self.clock.now, view, book, opened)
        return CycleResult(None, self._rows())

    def trade_closed(self, trade: ClosedTrade) -> CycleResult:
        view, book = self._event_portfolio()
        self.engine.trade_closed(self.clock.now, view, book, trade)
        return CycleResult(None, self._rows())

    def reload(self, policy: Policy | str | Mapping[str, Any]) -> CycleResult:
        """Swap in a new policy (validated like the first), as a hot reload does."""
        view, book = self._event_portfolio()
        self.policy = self._policy(policy)
        self.engine.reload(self.clock.now, view, book, self.policy)
        return CycleResult(None, self._rows())

    def set_stage(self, stage: Stage) -> CycleResult:
        """Move the engine's stage (in production only the stage machine does this)."""
        view, book = self._event_portfolio()
        self.engine.set_stage(self.clock.now, view, book, stage)
        return CycleResult(None, self._rows())

    def close(self) -> None:
        self.journal.close()
        self.models.close()

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
