"""The engine: runs the cycles, calls the plugins, and disposes of their proposals.

Plugins propose, the engine disposes. Every hook result is journaled with the subsystem's
effective mode (the lower of its own mode and the stage's cap) and what became of it:

* ENFORCED: applied; ADVISORY: journaled and surfaced as an advisory; OBSERVE: journaled only.
* The safety floor (emergency close at the loss limit, emergency shutdown) applies in every
  stage when the policy says so.

Each entry cycle carries two decisions for every signal: the **actual** one (proposals applied
only where the effective mode is ENFORCED; the baseline strategy decides the rest) and the
**shadow** one (every proposal applied, as if everything were ENFORCED in AUTONOMY). The shadow
is the evidence that makes promotion decidable.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from time import perf_counter
from typing import Any, TypeVar

from aios.journal import Decision, Journal
from aios.model import (
    ActionKind,
    ClosedTrade,
    CycleContext,
    Directive,
    DirectiveKind,
    DirectiveProposal,
    EntryIntent,
    EntryVerdict,
    ExecutionPlan,
    HealthReport,
    HealthStatus,
    MarketView,
    Mode,
    ModelProposal,
    OrderAction,
    OrderIntent,
    OrderType,
    PortfolioView,
    Position,
    PositionAction,
    PositionAssessment,
    RiskAssessment,
    RiskMode,
    Side,
    Signal,
    SizeProposal,
    Stage,
    TpSlProposal,
    UniverseProposal,
    effective_mode,
)
from aios.model import own_mode as mode_in_policy
from aios.model_registry import ModelRegistry, ModelVersion
from aios.numeric import population_stdev
from aios.policy import Policy
from aios.registry import HookResult, PluginSet, notify_observers

SAFETY = "safety"
ENGINE = "engine"
#: Who wins when decisive proposals conflict (lower first); everyone else comes after.
PRECEDENCE = {SAFETY: 0, "self_healing": 1, "coordinator": 2}
ALL_DIRECTIVES = frozenset(DirectiveKind)
BLOCKING_DIRECTIVES = frozenset(DirectiveKind)  # each of them forbids new trades
RECENT_TRADES_WINDOW = 20
VOLATILITY_LOOKBACK = 20
_OUTCOMES = {Mode.ENFORCED: "applied", Mode.ADVISORY: "advisory"}

#: The order a monitor action becomes.
_ORDER_ACTIONS = {
    ActionKind.CLOSE: OrderAction.CLOSE,
    ActionKind.REDUCE: OrderAction.REDUCE,
    ActionKind.SCALE_IN: OrderAction.SCALE_IN,
    ActionKind.SET_STOPS: OrderAction.SET_STOPS,
    ActionKind.EXTEND_HOLD: OrderAction.SET_STOPS,
}
#: Monitor actions journaled under `aios_amplify` (unless exit_proposals proposed them).
_AMPLIFY_KINDS = (ActionKind.SCALE_IN, ActionKind.EXTEND_HOLD, ActionKind.REDUCE)
_first = operator.itemgetter(0)

_T = TypeVar("_T")
_INIT_FIELDS: dict[type, tuple[str, ...]] = {}


def replace(obj: _T, **changes: Any) -> _T:
    """`dataclasses.replace` for the engine's records, without its per-call introspection (the
    engine makes several new contexts and intents per signal): the same new object."""
    cls = type(obj)
    if cls is CycleContext:
        # Made several times per cycle; a plain (not slotted) frozen record without
        # __post_init__: its fields are its __dict__, copied and updated.
        assert changes.keys() <= obj.__dict__.keys(), changes.keys()
        copy = object.__new__(cls)
        copy.__dict__.update(obj.__dict__, **changes)
        return copy
    names = _INIT_FIELDS.get(cls)
    if names is None:
        names = _INIT_FIELDS[cls] = tuple(
            f.name
            for f in dataclasses.fields(obj)  # type: ignore[arg-type]
            if f.init
        )
    return cls(*[changes[name] if name in changes else getattr(obj, name) for name in names])


@dataclass
class PluginHealth:
    """The engine's view of one plugin: failures, trips, timings."""

    calls: int = 0
    errors: int = 0
    consecutive_failures: int = 0
    tripped_until: datetime | None = None
    last_error: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True)
class Block:
    """Why a signal did not become an order in one book."""

    signal_id: str
    symbol: str
    book: str
    by: str
    reason: str


@dataclass(frozen=True)
class EntryOutcome:
    cycle: int
    risk_mode: RiskMode
    shadow_risk_mode: RiskMode
    directives: frozenset[DirectiveKind]
    shadow_directives: frozenset[DirectiveKind]
    orders: tuple[OrderIntent, ...] = ()
    shadow_orders: tuple[OrderIntent, ...] = ()
    blocked: tuple[Block, ...] = ()
    advisories: tuple[str, ...] = ()
    signals: tuple[Signal, ...] = ()


@dataclass(frozen=True)
class MonitorOutcome:
    cycle: int
    book: str
    orders: tuple[OrderIntent, ...] = ()
    advisories: tuple[str, ...] = ()


@dataclass
class _Book:
    """Per-book state the engine keeps between cycles (actual and shadow)."""

    name: str
    directives: dict[DirectiveKind, Directive] = field(default_factory=dict)
    risk_mode: RiskMode = RiskMode.NORMAL
    allow_new_trades: bool = True
    universe: frozenset[str] | None = None
    peak_equity: float | None = None
    day: str | None = None
    day_start_equity: float | None = None


BASELINE_PLAN = ExecutionPlan(OrderType.MARKET, 1, "baseline market order")


class _Knobs:
    """The policy values the engine reads for every signal or hook failure, read once per
    policy: the same answers as asking the policy each time (`Policy.get` walks the merged
    document), which a reload changes by swapping the policy object."""

    __slots__ = (
        "_allows_new_trades",
        "_fails_closed",
        "_size_multipliers",
        "baseline_max",
        "baseline_sl",
        "baseline_tp",
        "emergency_loss_limit_pct",
        "min_order_quote",
        "policy",
        "stake_fraction",
        "tpsl_override",
    )

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.baseline_max = int(policy.get("baseline", "max_open_positions", default=5))
        self.baseline_tp = float(policy.get("baseline", "tp_pct", default=6.0))
        self.baseline_sl = float(policy.get("baseline", "sl_pct", default=8.0))
        self.stake_fraction = float(policy.get("baseline", "stake_pct", default=2.0)) / 100.0
        self.tpsl_override = bool(
            policy.get("subsystems", "dynamic_tpsl", "override_baseline", default=True)
        )
        self.min_order_quote = float(
            policy.get("subsystems", "portfolio_balancer", "min_order_quote", default=0.0)
        )
        #: The safety floor's loss limit for an emergency close (None: switched off).
        self.emergency_loss_limit_pct = (
            float(policy.get("safety", "emergency_close", "loss_limit_pct", default=10.0))
            if policy.get("safety", "emergency_close", "enabled", default=True)
            else None
        )
        self._allows_new_trades: dict[RiskMode, bool] = {}
        self._size_multipliers: dict[RiskMode, float] = {}
        self._fails_closed: dict[str, bool] = {}

    def allows_new_trades(self, mode: RiskMode) -> bool:
        allowed = self._allows_new_trades.get(mode)
        if allowed is None:
            allowed = self._allows_new_trades[mode] = bool(
                self.policy.get("risk_modes", mode.value, "allow_new_trades", default=True)
            )
        return allowed

    def size_multiplier(self, mode: RiskMode) -> float:
        multiplier = self._size_multipliers.get(mode)
        if multiplier is None:
            multiplier = self._size_multipliers[mode] = float(
                self.policy.get("risk_modes", mode.value, "size_multiplier", default=1.0)
            )
        return multiplier

    def fails_closed(self, subsystem: str) -> bool:
        closed = self._fails_closed.get(subsystem)
        if closed is None:
            section = self.policy.get("subsystems", subsystem, default={})
            closed = self._fails_closed[subsystem] = (
                isinstance(section, Mapping)
                and section.get("on_error", "fail_open") == "fail_closed"
            )
        return closed


def _provisional_position(order: OrderIntent, now: datetime) -> Position:
    """The position an entry order will open, for filtering later entries of the same cycle."""
    price = order.entry_price or 1.0
    return Position(
        f"pending:{order.id}",
        order.symbol,
        order.side,
        price,
        (order.quote_amount or 0.0) / price,
        now,
        order.stop_loss,
        order.take_profit,
        trace=order.trace,
    )


class Engine:
    """Runs entry and monitor cycles over a policy, a stage and a set of plugins."""

    def __init__(
        self,
        policy: Policy,
        plugins: PluginSet,
        journal: Journal | None = None,
        *,
        stage: Stage = Stage.OBSERVATION,
        run_id: str = "run",
        models: ModelRegistry | None = None,
    ) -> None:
        self.policy = policy
        self.plugins = plugins
        self.journal = journal
        self.stage = stage
        self.run_id = run_id
        self.models = models
        self._modes: dict[str, Mode] = {}
        self._modes_of: Policy | None = None
        self._effective: dict[str, Mode] = {}
        self._effective_of: tuple[Policy, Stage] | None = None
        self._thresholds: dict[tuple[RiskMode, bool], float] = {}
        self._thresholds_of: tuple[Policy, Stage] | None = None
        self._knobs_memo: _Knobs | None = None
        self._impls: dict[
            str,
            tuple[list[Any], Policy, tuple[tuple[str, Callable[..., Any], tuple[str, ...]], ...]],
        ] = {}
        self.cycle = 0
        self.health: dict[str, PluginHealth] = {name: PluginHealth() for name in plugins.plugins}
        self.actual = _Book("actual")
        self.shadow = _Book("shadow")
        self._sequence = 0
        self._last_health: dict[str, HealthStatus] = {}
        self._now: datetime | None = None

    # --- governance ----------------------------------------------------------------------------

    def own_mode(self, subsystem: str) -> Mode:
        """A subsystem's mode from the policy (OFF when disabled or not configured).

        Asked several times per hook call: memoised per policy object (a reload swaps it)."""
        if self._modes_of is not self.policy:
            self._modes, self._modes_of = {}, self.policy
        mode = self._modes.get(subsystem)
        if mode is None:
            mode = self._modes[subsystem] = mode_in_policy(self.policy, subsystem)
        return mode

    def effective_mode(self, subsystem: str) -> Mode:
        """The lower of the subsystem's own mode and the stage's cap (memoised per policy and
        stage, like `own_mode`)."""
        memo_of = self._effective_of
        if memo_of is None or memo_of[0] is not self.policy or memo_of[1] is not self.stage:
            self._effective, self._effective_of = {}, (self.policy, self.stage)
        mode = self._effective.get(subsystem)
        if mode is None:
            mode = self._effective[subsystem] = effective_mode(self.own_mode(subsystem), self.stage)
        return mode

    def _fails_closed(self, subsystem: str) -> bool:
        return self._knobs().fails_closed(subsystem)

    @staticmethod
    def _outcome(mode: Mode) -> str:
        return _OUTCOMES.get(mode, "observed")

    def applied(self, subsystem: str) -> bool:
        return self.effective_mode(subsystem) is Mode.ENFORCED

    # --- hook calls ----------------------------------------------------------------------------

    def _record_failure(self, subsystem: str, exc: BaseException) -> None:
        state = self.health.setdefault(subsystem, PluginHealth())
        state.errors += 1
        state.consecutive_failures += 1
        state.last_error = f"{type(exc).__name__}: {exc}"
        limit = int(
            self.policy.get(
                "subsystems",
                "self_healing",
                "health",
                "subsystem_max_consecutive_failures",
                default=3,
            )
        )
        cooldown = float(
            self.policy.get("subsystems", "self_healing", "health", "trip_cooldown_s", default=300)
        )
        if state.consecutive_failures >= limit and self._now is not None:
            state.tripped_until = self._now + timedelta(seconds=cooldown)

    def _implementations(
        self, hook: str
    ) -> tuple[tuple[str, Callable[..., Any], tuple[str, ...]], ...]:
        """(plugin name, function, argument names) of a hook's implementations that the policy
        does not switch OFF, in registration order. Remembered per hook while the manager's
        implementations stay the same objects and the policy the same one (pluggy's `get_name`
        is a scan over every plugin, and a plugin's mode is asked of every call otherwise)."""
        impls = getattr(self.plugins.manager.hook, hook).get_hookimpls()
        cached = self._impls.get(hook)
        if cached is None or cached[1] is not self.policy or cached[0] != impls:
            manager = self.plugins.manager
            entries = tuple(
                (name, impl.function, tuple(impl.argnames))
                for impl in impls
                if self.own_mode(name := manager.get_name(impl.plugin) or "?") is not Mode.OFF
            )
            cached = self._impls[hook] = (impls, self.policy, entries)
        return cached[2]

    def _call(self, ctx: CycleContext, hook: str, subject: str, **kwargs: Any) -> list[HookResult]:
        """Call a hook's implementations one by one, so that one raising stops no other (what
        `aios.registry.call_each` does, inlined: this is the engine's innermost loop); journal
        failures; keep health counts. Only the arguments an implementation declares are passed.
        A plugin switched OFF is not called, nor one tripped until after now (half-open past
        its cool-off: called again, and one success resets it)."""
        results: list[HookResult] = []
        implementations = self._implementations(hook)
        if not implementations:
            return results
        kwargs["ctx"] = ctx
        health = self.health
        now = self._now
        for name, function, argnames in implementations:
            state = health.get(name)
            if state is None:
                state = health[name] = PluginHealth()
            elif state.tripped_until is not None and now is not None and now < state.tripped_until:
                continue
            started = perf_counter()
            try:
                value = function(*[kwargs[arg] for arg in argnames])
            except Exception as exc:  # isolation: the engine decides what a failure means
                self._record_failure(name, exc)
                result = HookResult(
                    name, None, f"{type(exc).__name__}: {exc}", perf_counter() - started
                )
            else:
                result = HookResult(name, value, None, perf_counter() - started)
            results.append(result)
            state.calls += 1
            state.seconds += result.seconds
            if result.error is None:
                state.consecutive_failures = 0
                state.tripped_until = None
            else:
                handling = "fail_closed" if self._fails_closed(result.plugin) else "fail_open"
                self._journal(
                    ctx,
                    result.plugin,
                    hook,
                    subject,
                    {"error": result.error},
                    "error",
                    False,
                    f"raised {result.error}; {handling}",
                )
        notify_observers(hook, kwargs, results)
        return results

    def _journal(
        self,
        ctx: CycleContext,
        subsystem: str,
        hook: str,
        subject: str,
        proposal: Any,
        outcome: str,
        applied: bool,
        reason: str,
        *,
        symbol: str | None = None,
        trace: str | None = None,
        mode: str | None = None,
    ) -> None:
        if self.journal is None:
            return
        if mode is None:
            mode = (
                SAFETY.upper()
                if subsystem == SAFETY
                else ENGINE.upper()
                if subsystem == ENGINE
                else self.effective_mode(subsystem).name
            )
        self.journal.record(
            Decision(
                self.run_id,
                ctx.cycle,
                ctx.now,
                subsystem,
                hook,
                subject,
                proposal,
                mode,
                outcome,
                applied,
                reason,
                self.policy.hash,
                symbol,
                trace,
            )
        )

    def _dispose(
        self,
        ctx: CycleContext,
        result: HookResult,
        hook: str,
        subject: str,
        reason: str,
        **where: Any,
    ) -> bool:
        """Journal one proposal with its outcome; return whether it is applied to the actual book."""
        mode = self.effective_mode(result.plugin)
        applied = mode is Mode.ENFORCED
        if self.journal is None:
            return applied
        self._journal(
            ctx,
            result.plugin,
            hook,
            subject,
            result.value,
            self._outcome(mode),
            applied,
            reason,
            **where,
        )
        return applied

    def _decisive(self, results: Sequence[HookResult], kind: type) -> HookResult | None:
        """The winning answer of a decisive hook: by precedence, then registration order."""
        best: HookResult | None = None
        best_rank = 0
        for result in results:
            if result.error is None and isinstance(result.value, kind):
                rank = PRECEDENCE.get(result.plugin, len(PRECEDENCE))
                if best is None or rank < best_rank:  # the first of equal rank wins, as min()
                    best, best_rank = result, rank
        return best

    def _order_id(self, ctx: CycleContext) -> str:
        self._sequence += 1
        return f"{self.run_id}-{ctx.cycle}-{self._sequence}"

    # --- metrics -------------------------------------------------------------------------------

    def core_metrics(
        self,
        market: MarketView,
        portfolio: PortfolioView,
        reports: Sequence[HealthReport],
        book: _Book,
        now: datetime,
        candidates: Sequence[str] | None = None,
    ) -> dict[str, float]:
        """The core metrics conditions can name (see aios.metrics). `candidates`: the
        universe candidates when the caller already has them."""
        metrics: dict[str, float] = {}
        equity = portfolio.equity
        book.peak_equity = equity if book.peak_equity is None else max(book.peak_equity, equity)
        metrics["drawdown_pct"] = (
            0.0
            if book.peak_equity <= 0
            else max(0.0, (book.peak_equity - equity) / book.peak_equity * 100.0)
        )
        day = now.date().isoformat()
        if book.day != day:
            book.day, book.day_start_equity = day, equity
        start = book.day_start_equity or equity
        metrics["daily_pnl_pct"] = 0.0 if start <= 0 else (equity - start) / start * 100.0
        trades = portfolio.recent_trades[-RECENT_TRADES_WINDOW:]
        streak = 0
        for trade in reversed(trades):
            if trade.pnl_quote >= 0:
                break
            streak += 1
        metrics["losing_streak"] = float(streak)
        if trades:
            metrics["win_rate"] = sum(1 for t in trades if t.pnl_quote > 0) / len(trades)
        exposure = portfolio.exposure_quote()
        metrics["exposure_pct"] = 0.0 if equity <= 0 else exposure / equity * 100.0
        metrics["open_positions"] = float(len(portfolio.positions))
        volatilities = []
        for symbol in self._candidates(market) if candidates is None else candidates:
            closes = [c.close for c in market.history(symbol, VOLATILITY_LOOKBACK + 1)]
            returns = [(b - a) / a * 100.0 for a, b in itertools.pairwise(closes) if a > 0]
            if len(returns) >= 2:
                volatilities.append(population_stdev(returns))
        if volatilities:
            metrics["volatility_pct"] = sum(volatilities) / len(volatilities)
        for report in reports:
            for name, value in report.metrics.items():
                if isinstance(value, (int, float)) and math.isfinite(value):
                    metrics[name] = float(value)
        return metrics

    def _candidates(self, market: MarketView) -> list[str]:
        configured = self.policy.get("universe", "symbols", default=None)
        available = list(market.symbols)
        if isinstance(configured, list):
            return [s for s in configured if s in available]
        return sorted(available)

    # --- the entry cycle -----------------------------------------------------------------------

    def entry_cycle(
        self,
        now: datetime,
        market: MarketView,
        portfolio: PortfolioView,
        *,
        component_health: Iterable[HealthReport] = (),
        shadow_portfolio: PortfolioView | None = None,
    ) -> EntryOutcome:
        """Health -> directives -> risk mode -> universe -> signals -> per signal: TP/SL,
        threshold, supervision, filters, sizing, execution plan -> orders (actual and shadow).

        `component_health` carries what the runtime knows: the data feed, the exchange, the store.
        `shadow_portfolio` is the shadow book (default: the actual one); the shadow decisions
        are gated and filtered against it. Metrics and the risk mode read the actual book.
        """
        shadow_book = shadow_portfolio or portfolio
        self._now = now
        self.cycle += 1
        ctx = CycleContext(
            now,
            self.cycle,
            self.policy,
            self.stage,
            market,
            portfolio,
            self.actual.risk_mode,
            frozenset(self.actual.directives),
            models=self.models,
        )
        advisories: list[str] = []

        # Metrics first (portfolio, market, what the runtime reports about feed and exchange),
        # so that health checks can read them; then the health counts join the metrics.
        components = list(component_health)
        candidates = self._candidates(market)
        metrics = self.core_metrics(market, portfolio, components, self.actual, now, candidates)
        for result in self._call(
            replace(ctx, metrics=dict(metrics)), "aios_collect_metrics", "portfolio"
        ):
            if result.error is None and isinstance(result.value, Mapping):
                metrics.update(
                    {k: float(v) for k, v in result.value.items() if isinstance(v, (int, float))}
                )
        reports = self._health(replace(ctx, metrics=dict(metrics)), components)
        plugin_reports = [r for r in reports if r.component in self.plugins.plugins]
        metrics["unhealthy_subsystems"] = float(
            sum(1 for r in plugin_reports if r.status >= HealthStatus.DEGRADED)
        )
        metrics["critical_subsystems"] = float(
            sum(1 for r in plugin_reports if r.status >= HealthStatus.CRITICAL)
        )
        ctx = replace(ctx, metrics=metrics)

        self._directives(ctx, reports, advisories)
        self._coordinate(ctx, advisories)
        ctx = replace(
            ctx, risk_mode=self.actual.risk_mode, directives=frozenset(self.actual.directives)
        )
        shadow_ctx = replace(
            ctx,
            risk_mode=self.shadow.risk_mode,
            directives=frozenset(self.shadow.directives),
            portfolio=shadow_book,
        )

        self._universe(ctx, candidates, advisories)
        self._tick(ctx)

        signals: list[Signal] = []
        for symbol in candidates:
            for result in self._call(ctx, "aios_signals", f"symbol:{symbol}", symbol=symbol):
                if result.error is None and result.value:
                    signals.extend(s for s in result.value if isinstance(s, Signal))
        signals.sort(key=lambda s: (s.symbol, -s.confidence, s.id))

        orders: list[OrderIntent] = []
        shadow_orders: list[OrderIntent] = []
        blocked: list[Block] = []
        open_symbols = {
            "actual": {p.symbol for p in portfolio.positions},
            "shadow": {p.symbol for p in shadow_book.positions},
        }
        counts = {"actual": len(portfolio.positions), "shadow": len(shadow_book.positions)}
        for signal in signals:
            actual, shadow = self._entry_pipeline(
                ctx, shadow_ctx, signal, open_symbols, counts, advisories
            )
            for book, decision, sink in (
                ("actual", actual, orders),
                ("shadow", shadow, shadow_orders),
            ):
                if isinstance(decision, OrderIntent):
                    sink.append(decision)
                    counts[book] += 1
                    open_symbols[book].add(signal.symbol)
                    if book == "shadow":
                        # Later signals of this cycle are filtered against the book including
                        # what was just decided (three correlated entries must not each pass).
                        pending = _provisional_position(decision, now)
                        shadow_ctx = replace(
                            shadow_ctx,
                            portfolio=replace(
                                shadow_ctx.portfolio,
                                positions=(*shadow_ctx.portfolio.positions, pending),
                                cash=shadow_ctx.portfolio.cash - (decision.quote_amount or 0.0),
                            ),
                        )
                else:
                    by, reason = decision
                    blocked.append(Block(signal.id, signal.symbol, book, by, reason))
        if orders and self.journal is not None:
            self.journal.flush()  # what the engine acts on is durable before the action
        return EntryOutcome(
            self.cycle,
            self.actual.risk_mode,
            self.shadow.risk_mode,
            frozenset(self.actual.directives),
            frozenset(self.shadow.directives),
            tuple(orders),
            tuple(shadow_orders),
            tuple(blocked),
            tuple(advisories),
            tuple(signals),
        )

    def _tick(self, ctx: CycleContext) -> None:
        """Scheduled work. Model proposals: registering a challenger is evidence (applied from
        ADVISORY up); deploying or rolling back changes what trades (ENFORCED only)."""
        for result in self._call(ctx, "aios_tick", "schedule"):
            if result.error is not None or not result.value:
                continue
            for proposal in result.value:
                if not isinstance(proposal, ModelProposal):
                    continue
                mode = self.effective_mode(result.plugin)
                needed = Mode.ADVISORY if proposal.action == "register" else Mode.ENFORCED
                applied = mode >= needed and self.models is not None
                outcome = "applied" if applied else self._outcome(mode)
                self._journal(
                    ctx,
                    result.plugin,
                    "aios_tick",
                    f"model:{proposal.version}",
                    proposal,
                    outcome,
                    applied,
                    f"{proposal.action} {proposal.version}: {proposal.reason}",
                )
                if not applied or self.models is None:
                    continue
                if proposal.action == "register":
                    self.models.register(
                        ModelVersion(
                            proposal.version, ctx.now, dict(proposal.params), dict(proposal.metrics)
                        )
                    )
                elif proposal.action == "deploy":
                    self.models.deploy(proposal.version, ctx.now)
                elif proposal.action == "rollback":
                    self.models.rollback(ctx.now)

    def _health(self, ctx: CycleContext, reports: list[HealthReport]) -> list[HealthReport]:
        for result in self._call(ctx, "aios_health", "health"):
            if result.error is None and isinstance(result.value, HealthReport):
                reports.append(result.value)
            elif result.error is not None:
                reports.append(
                    HealthReport(
                        result.plugin, HealthStatus.DEGRADED, f"health check raised {result.error}"
                    )
                )
        for name, state in self.health.items():
            if (
                state.tripped_until is not None
                and self._now is not None
                and self._now < state.tripped_until
            ):
                reports.append(
                    HealthReport(
                        name,
                        HealthStatus.CRITICAL,
                        f"tripped until {state.tripped_until.isoformat()}: {state.last_error}",
                    )
                )
            elif state.consecutive_failures:
                reports.append(
                    HealthReport(
                        name,
                        HealthStatus.DEGRADED,
                        f"{state.consecutive_failures} consecutive failures: {state.last_error}",
                    )
                )
        worst: dict[str, HealthReport] = {}
        for report in reports:
            if report.component not in worst or report.status > worst[report.component].status:
                worst[report.component] = report
        for name, report in worst.items():
            if self._last_health.get(name) != report.status:  # edge-triggered: journal changes only
                self._journal(
                    ctx,
                    ENGINE,
                    "aios_health",
                    f"component:{name}",
                    report,
                    "engine",
                    False,
                    f"{name} is {report.status.name}: {report.detail}",
                    mode="ENGINE",
                )
                self._last_health[name] = report.status
        return list(worst.values())

    def _directives(
        self, ctx: CycleContext, reports: Sequence[HealthReport], advisories: list[str]
    ) -> None:
        results = self._call(ctx, "aios_directives", "directives", health=reports)
        winner = self._decisive(results, DirectiveProposal)
        failed_closed = any(r.error is not None and self._fails_closed(r.plugin) for r in results)
        if winner is None:
            if failed_closed:  # no answer from a fail-closed self-healing: assume the block
                proposed = frozenset({DirectiveKind.NO_NEW_TRADES}) | frozenset(
                    self.shadow.directives
                )
                if DirectiveKind.NO_NEW_TRADES not in self.actual.directives:
                    # journaled like an applied directive decision (when it starts), so that
                    # the stage guards and `aios status` see the block put in force
                    in_force = frozenset(self.actual.directives) | {DirectiveKind.NO_NEW_TRADES}
                    self._journal(
                        ctx,
                        ENGINE,
                        "aios_directives",
                        "directives",
                        {"active": sorted(d.value for d in in_force)},
                        "applied",
                        True,
                        "self-healing failed (fail_closed): NO_NEW_TRADES assumed",
                        mode="ENGINE",
                    )
                self._set_directives(
                    ctx,
                    self.shadow,
                    proposed,
                    {DirectiveKind.NO_NEW_TRADES: "self-healing failed (fail_closed)"},
                )
                self._set_directives(
                    ctx,
                    self.actual,
                    frozenset(self.actual.directives) | {DirectiveKind.NO_NEW_TRADES},
                    {DirectiveKind.NO_NEW_TRADES: "self-healing failed (fail_closed)"},
                )
            return
        proposal: DirectiveProposal = winner.value
        changed = proposal.active != frozenset(self.shadow.directives)
        reasons = {
            **{k: v for k, v in proposal.raised.items()},
            **{k: v for k, v in proposal.cleared.items()},
        }
        self._set_directives(ctx, self.shadow, proposal.active, reasons)
        mode = self.effective_mode(winner.plugin)
        applied = mode is Mode.ENFORCED
        always = bool(
            self.policy.get("safety", "emergency_shutdown", "always_enforced", default=True)
        )
        if applied:
            actual = proposal.active
        else:
            actual = frozenset(self.actual.directives) - {DirectiveKind.EMERGENCY_SHUTDOWN}
            if always and DirectiveKind.EMERGENCY_SHUTDOWN in proposal.active:
                actual = actual | {DirectiveKind.EMERGENCY_SHUTDOWN}
            actual = frozenset(k for k in actual if k is DirectiveKind.EMERGENCY_SHUTDOWN)
        if changed or actual != frozenset(self.actual.directives):
            detail = (
                ", ".join(f"{k.value}: {v}" for k, v in reasons.items()) or "no change in reasons"
            )
            self._dispose(
                ctx,
                winner,
                "aios_directives",
                "directives",
                f"active: {sorted(d.value for d in proposal.active) or 'none'} ({detail})",
            )
            if mode is Mode.ADVISORY and changed:
                advisories.append(
                    f"self-healing advises directives {sorted(d.value for d in proposal.active)}"
                )
        self._set_directives(ctx, self.actual, actual, reasons)
        for action in proposal.recovery:
            self._dispose(
                ctx,
                winner,
                "aios_directives",
                f"recovery:{action.target}",
                f"{action.action} {action.target}: {action.reason}",
            )
            if applied and action.action == "restart_subsystem" and action.target in self.health:
                state = self.health[action.target]
                state.tripped_until, state.consecutive_failures = None, 0

    def _set_directives(
        self,
        ctx: CycleContext,
        book: _Book,
        active: frozenset[DirectiveKind],
        reasons: Mapping[DirectiveKind, str],
    ) -> None:
        for kind in list(book.directives):
            if kind not in active:
                del book.directives[kind]
        for kind in active:
            if kind not in book.directives:
                book.directives[kind] = Directive(kind, ctx.now, reasons.get(kind, ""))

    def _coordinate(self, ctx: CycleContext, advisories: list[str]) -> None:
        results = self._call(ctx, "aios_coordinate", "portfolio")
        winner = self._decisive(results, RiskAssessment)
        if winner is None:
            if any(r.error is not None and self._fails_closed(r.plugin) for r in results):
                self.shadow.allow_new_trades = False
                if self.applied("coordinator"):
                    self.actual.allow_new_trades = False
            return
        assessment: RiskAssessment = winner.value
        previous = (self.shadow.risk_mode, self.shadow.allow_new_trades)
        self.shadow.risk_mode, self.shadow.allow_new_trades = (
            assessment.mode,
            assessment.allow_new_trades,
        )
        applied = self.applied(winner.plugin)
        new_actual = (
            (assessment.mode, assessment.allow_new_trades) if applied else (RiskMode.NORMAL, True)
        )
        if previous != (assessment.mode, assessment.allow_new_trades) or new_actual != (
            self.actual.risk_mode,
            self.actual.allow_new_trades,
        ):
            self._dispose(
                ctx,
                winner,
                "aios_coordinate",
                "portfolio",
                f"risk mode {assessment.mode.value}: {assessment.reason}",
            )
            if self.effective_mode(winner.plugin) is Mode.ADVISORY:
                advisories.append(
                    f"coordinator advises risk mode {assessment.mode.value}: {assessment.reason}"
                )
        self.actual.risk_mode, self.actual.allow_new_trades = new_actual

    def _universe(
        self, ctx: CycleContext, candidates: Sequence[str], advisories: list[str]
    ) -> None:
        actual = set(candidates)
        shadow = set(candidates)
        for result in self._call(ctx, "aios_universe", "universe", candidates=tuple(candidates)):
            if result.error is not None:
                if self._fails_closed(result.plugin):
                    shadow.clear()
                    if self.applied(result.plugin):
                        actual.clear()
                continue
            if not isinstance(result.value, UniverseProposal):
                continue
            proposal: UniverseProposal = result.value
            allowed = set(proposal.allowed)
            shadow &= allowed
            new = frozenset(allowed & set(candidates))
            if new != self.shadow.universe:
                excluded = (
                    ", ".join(f"{s} ({why})" for s, why in sorted(proposal.excluded.items()))
                    or "none"
                )
                applied = self._dispose(
                    ctx,
                    result,
                    "aios_universe",
                    "universe",
                    f"{len(new)} of {len(candidates)} symbols allowed; excluded: {excluded}",
                )
                if self.effective_mode(result.plugin) is Mode.ADVISORY:
                    advisories.append(f"universe advises excluding {excluded}")
            else:
                applied = self.applied(result.plugin)
            if applied:
                actual &= allowed
        self.shadow.universe = frozenset(shadow)
        self.actual.universe = frozenset(actual)

    # --- per signal ----------------------------------------------------------------------------

    def _threshold(self, book: _Book, apply_all: bool) -> float:
        """The confidence a signal needs in `book`: asked twice per signal, and a function of
        the policy, the stage (which subsystems are applied), the book's risk mode and
        `apply_all` only, so remembered per policy and stage like the modes."""
        memo_of = self._thresholds_of
        if memo_of is None or memo_of[0] is not self.policy or memo_of[1] is not self.stage:
            self._thresholds, self._thresholds_of = {}, (self.policy, self.stage)
        key = (book.risk_mode, apply_all)
        threshold = self._thresholds.get(key)
        if threshold is None:
            threshold = self._thresholds[key] = self._compute_threshold(book.risk_mode, apply_all)
        return threshold

    def _compute_threshold(self, risk_mode: RiskMode, apply_all: bool) -> float:
        base = float(self.policy.get("baseline", "min_confidence", default=0.65))
        if apply_all or self.applied("signal_model"):
            base = float(
                self.policy.get("subsystems", "signal_model", "min_confidence", default=base)
            )
        multiplier = 1.0
        if apply_all or self.applied("coordinator"):
            multiplier = float(
                self.policy.get(
                    "risk_modes",
                    risk_mode.value,
                    "confidence_threshold_multiplier",
                    default=1.0,
                )
            )
        return base * multiplier

    def _knobs(self) -> _Knobs:
        """The policy values read for every signal, read once per policy (a reload swaps it)."""
        knobs = self._knobs_memo
        if knobs is None or knobs.policy is not self.policy:
            knobs = self._knobs_memo = _Knobs(self.policy)
        return knobs

    def _gate(
        self,
        book: _Book,
        signal: Signal,
        threshold: float,
        open_symbols: set[str],
        count: int,
        knobs: _Knobs,
    ) -> tuple[str, str] | None:
        """What stops `signal` in `book` before any subsystem is asked, if anything does."""
        if signal.confidence < threshold:
            return (
                "threshold",
                f"confidence {signal.confidence:.3f} below threshold {threshold:.3f}",
            )
        if signal.symbol in open_symbols:
            return ("baseline", f"a position in {signal.symbol} is already open")
        if book.directives:
            return (
                "self_healing",
                f"directive {sorted(d.value for d in book.directives)[0]} forbids new trades",
            )
        if not book.allow_new_trades or not knobs.allows_new_trades(book.risk_mode):
            return ("coordinator", f"risk mode {book.risk_mode.value} forbids new trades")
        if book.universe is not None and signal.symbol not in book.universe:
            return ("universe_os", f"{signal.symbol} is outside the universe")
        if (
            count >= knobs.baseline_max
            and book is self.actual
            and not self.applied("portfolio_balancer")
        ):
            return ("baseline", f"baseline allows {knobs.baseline_max} open positions")
        return None

    def _entry_pipeline(
        self,
        ctx: CycleContext,
        shadow_ctx: CycleContext,
        signal: Signal,
        open_symbols: Mapping[str, set[str]],
        counts: dict[str, int],
        advisories: list[str],
    ) -> tuple[OrderIntent | tuple[str, str], OrderIntent | tuple[str, str]]:
        """One signal through the pipeline; returns (actual, shadow): an order or (by, reason).

        Both books are decided in one pass: the hooks are asked once, about the shadow book
        (every proposal applied), and the actual book takes what its modes let through."""
        where = {"symbol": signal.symbol, "trace": signal.id}
        subject = f"signal:{signal.id}"
        knobs = self._knobs()
        # Texts that only the journal reads are formatted only when there is a journal.
        journaled = self.journal is not None
        if journaled:
            self._journal(
                ctx,
                signal.source,
                "aios_signals",
                subject,
                signal,
                "engine",
                False,
                f"{signal.side.value} {signal.symbol} at confidence {signal.confidence:.3f}",
                mode="ENGINE",
                **where,
            )
        actual_threshold = self._threshold(self.actual, False)
        shadow_threshold = self._threshold(self.shadow, True)
        self._call(
            shadow_ctx,
            "aios_observe_signal",
            subject,
            signal=signal,
            threshold=shadow_threshold,
            accepted=signal.confidence >= shadow_threshold,
        )

        actual: OrderIntent | tuple[str, str] | None = self._gate(
            self.actual, signal, actual_threshold, open_symbols["actual"], counts["actual"], knobs
        )
        shadow: OrderIntent | tuple[str, str] | None = self._gate(
            self.shadow, signal, shadow_threshold, open_symbols["shadow"], counts["shadow"], knobs
        )
        if actual is not None and shadow is not None:
            self._journal_blocks(ctx, signal, actual, shadow)
            return actual, shadow

        # The actual book's terms are kept as values; the shadow's as the intent the hooks see.
        actual_tp = shadow_tp = knobs.baseline_tp
        actual_sl = shadow_sl = knobs.baseline_sl
        actual_quote = ctx.portfolio.equity * knobs.stake_fraction
        shadow_quote = shadow_ctx.portfolio.equity * knobs.stake_fraction

        tpsl = self._decisive(
            self._call(shadow_ctx, "aios_adjust_signal", subject, signal=signal), TpSlProposal
        )
        if tpsl is not None:
            proposal: TpSlProposal = tpsl.value
            applied = self._dispose(
                ctx,
                tpsl,
                "aios_adjust_signal",
                subject,
                f"TP {proposal.tp_pct:.3f}%, SL {proposal.sl_pct:.3f}%: {proposal.reason}"
                if journaled
                else "",
                **where,
            )
            if knobs.tpsl_override:
                shadow_tp, shadow_sl = proposal.tp_pct, proposal.sl_pct
                if applied:
                    actual_tp, actual_sl = proposal.tp_pct, proposal.sl_pct

        # sizing: an absolute amount first, then every multiplier, then the risk mode
        actual_multiplier = shadow_multiplier = 1.0
        sizing = EntryIntent(signal, shadow_tp, shadow_sl, shadow_quote, shadow_threshold)
        for result in self._call(shadow_ctx, "aios_size", subject, intent=sizing):
            if result.error is not None or not isinstance(result.value, SizeProposal):
                continue
            size: SizeProposal = result.value
            applied = self._dispose(ctx, result, "aios_size", subject, size.reason, **where)
            if size.quote_amount is not None:
                shadow_quote = size.quote_amount
                if applied:
                    actual_quote = size.quote_amount
            if size.multiplier is not None:
                shadow_multiplier *= size.multiplier
                if applied:
                    actual_multiplier *= size.multiplier
        if self.applied("coordinator"):
            actual_multiplier *= knobs.size_multiplier(self.actual.risk_mode)
        shadow_multiplier *= knobs.size_multiplier(self.shadow.risk_mode)
        actual_quote *= actual_multiplier
        shadow_quote *= shadow_multiplier
        intent = EntryIntent(signal, shadow_tp, shadow_sl, shadow_quote, shadow_threshold)

        for result in self._call(shadow_ctx, "aios_filter_entry", subject, intent=intent):
            if result.error is not None:
                if self._fails_closed(result.plugin):
                    verdict_reason = f"{result.plugin} failed (fail_closed): {result.error}"
                    if shadow is None:
                        shadow = (result.plugin, verdict_reason)
                    if actual is None and self.applied(result.plugin):
                        actual = (result.plugin, verdict_reason)
                continue
            if not isinstance(result.value, EntryVerdict):
                continue
            verdict: EntryVerdict = result.value
            if verdict.allow:
                self._dispose(
                    ctx,
                    result,
                    "aios_filter_entry",
                    subject,
                    f"allows: {verdict.reason}" if journaled else "",
                    **where,
                )
                continue
            applied = self._dispose(
                ctx,
                result,
                "aios_filter_entry",
                subject,
                f"blocks: {verdict.reason}" if journaled else "",
                **where,
            )
            if shadow is None:
                shadow = (result.plugin, verdict.reason)
            if applied and actual is None:
                actual = (result.plugin, verdict.reason)
            if self.effective_mode(result.plugin) is Mode.ADVISORY:
                advisories.append(
                    f"{result.plugin} advises blocking {signal.symbol}: {verdict.reason}"
                )

        actual_plan = shadow_plan = BASELINE_PLAN
        plan_result = self._decisive(
            self._call(shadow_ctx, "aios_execution_plan", subject, intent=intent),
            ExecutionPlan,
        )
        if plan_result is not None:
            plan: ExecutionPlan = plan_result.value
            text = (
                ""
                if not journaled
                else f"veto: {plan.veto}"
                if plan.veto
                else f"{plan.order_type.value} in {plan.slices} slice(s): {plan.reason}"
            )
            applied = self._dispose(ctx, plan_result, "aios_execution_plan", subject, text, **where)
            shadow_plan = plan
            if applied:
                actual_plan = plan
        if actual is None:
            actual = self._order(
                ctx,
                "actual",
                signal,
                actual_plan,
                actual_quote,
                actual_tp,
                actual_sl,
                actual_multiplier,
                ctx.portfolio.cash,
                knobs,
            )
        if shadow is None:
            shadow = self._order(
                ctx,
                "shadow",
                signal,
                shadow_plan,
                shadow_quote,
                shadow_tp,
                shadow_sl,
                shadow_multiplier,
                shadow_ctx.portfolio.cash,
                knobs,
            )
        self._journal_blocks(ctx, signal, actual, shadow)
        return actual, shadow

    def _order(
        self,
        ctx: CycleContext,
        book_name: str,
        signal: Signal,
        plan: ExecutionPlan,
        quote_amount: float,
        tp_pct: float,
        sl_pct: float,
        multiplier: float,
        cash: float,
        knobs: _Knobs,
    ) -> OrderIntent | tuple[str, str]:
        """The order a signal that passed every check becomes in one book, unless the plan
        vetoes it or it is below the minimum or the cash available."""
        if plan.veto:
            return ("execution", plan.veto)
        amount = min(quote_amount, cash)
        if amount <= 0 or amount < knobs.min_order_quote:
            return (
                "engine",
                f"order of {amount:.8g} is below the minimum or the cash available",
            )
        price = signal.price
        sign = signal.side.sign
        return OrderIntent(
            id=self._order_id(ctx),
            symbol=signal.symbol,
            side=signal.side,
            action=OrderAction.OPEN,
            reason=f"{book_name} entry on signal {signal.id}",
            trace=signal.id,
            quote_amount=amount,
            order_type=plan.order_type,
            slices=plan.slices,
            limit_offset_bps=plan.limit_offset_bps,
            take_profit=price * (1 + sign * tp_pct / 100.0),
            stop_loss=price * (1 - sign * sl_pct / 100.0),
            confidence=signal.confidence,
            size_multiplier=multiplier,
            entry_price=price,
        )

    def _journal_blocks(
        self,
        ctx: CycleContext,
        signal: Signal,
        actual: OrderIntent | tuple[str, str] | None,
        shadow: OrderIntent | tuple[str, str] | None,
    ) -> None:
        if self.journal is None:  # nothing to write, so no text to format
            return
        where = {"symbol": signal.symbol, "trace": signal.id}
        for book_name, decision in (("actual", actual), ("shadow", shadow)):
            if isinstance(decision, OrderIntent):
                text = f"{book_name} order {decision.id}: {decision.side.value} {decision.quote_amount:.8g} {decision.symbol}, TP {decision.take_profit:.8g}, SL {decision.stop_loss:.8g}"
                self._journal(
                    ctx,
                    ENGINE,
                    "entry",
                    f"order:{decision.id}",
                    decision,
                    "engine",
                    book_name == "actual",
                    text,
                    mode="ENGINE",
                    **where,
                )
            elif decision is not None:
                by, reason = decision
                self._journal(
                    ctx,
                    ENGINE,
                    "entry",
                    f"signal:{signal.id}",
                    {"book": book_name, "blocked_by": by, "reason": reason},
                    "engine",
                    False,
                    f"{book_name}: blocked by {by}: {reason}",
                    mode="ENGINE",
                    **where,
                )

    # --- the monitor cycle ---------------------------------------------------------------------

    def monitor_cycle(
        self,
        now: datetime,
        market: MarketView,
        portfolio: PortfolioView,
        *,
        book: str = "actual",
        flush: bool = True,
    ) -> MonitorOutcome:
        """Per open position: safety floor, classify (PIL), amplify (PAL), protect (exit
        proposals), then make sure every position has a TP and an SL.

        With `book="shadow"` every proposal is applied (the shadow book's positions). With
        `flush=False` the caller flushes the journal before acting on the orders (the runtime
        runs both books' monitor cycles, then flushes once)."""
        self._now = now
        state = self.actual if book == "actual" else self.shadow
        ctx = CycleContext(
            now,
            self.cycle,
            self.policy,
            self.stage,
            market,
            portfolio,
            state.risk_mode,
            frozenset(state.directives),
            models=self.models,
        )
        orders: list[OrderIntent] = []
        advisories: list[str] = []
        for position in portfolio.positions:
            price = portfolio.price(position.symbol)
            if price is None:
                continue
            order = self._monitor_position(ctx, position, price, book, advisories)
            if order is not None:
                orders.append(order)
        if orders and flush and self.journal is not None:
            self.journal.flush()
        return MonitorOutcome(self.cycle, book, tuple(orders), tuple(advisories))

    def _monitor_position(
        self, ctx: CycleContext, position: Position, price: float, book: str, advisories: list[str]
    ) -> OrderIntent | None:
        subject = f"position:{position.id}"
        where = {"symbol": position.symbol, "trace": position.trace or None}
        shadow = book == "shadow"

        def order(action: PositionAction, reason: str) -> OrderIntent:
            kinds = _ORDER_ACTIONS
            quote = None
            if action.kind is ActionKind.SCALE_IN and action.fraction is not None:
                quote = position.entry_price * position.quantity * action.fraction
            result = OrderIntent(
                id=self._order_id(ctx),
                symbol=position.symbol,
                side=position.side,
                action=kinds[action.kind],
                reason=reason,
                trace=position.trace,
                position_id=position.id,
                quote_amount=quote,
                fraction=action.fraction if action.kind is ActionKind.REDUCE else None,
                stop_loss=action.stop_loss,
                take_profit=action.take_profit,
                trailing_stop_pct=action.trailing_stop_pct,
                hold_until=action.hold_until,
                safety=action.safety,
            )
            self._journal(
                ctx,
                ENGINE,
                "monitor",
                f"order:{result.id}",
                result,
                "engine",
                not shadow,
                f"{book} {result.action.value} {position.symbol}: {reason}",
                mode="ENGINE",
                **where,
            )
            return result

        # safety floor: emergency close strictly beyond the loss limit, in every stage
        limit = self._knobs().emergency_loss_limit_pct
        if limit is not None:
            pnl = position.pnl_pct(price)
            if pnl < -limit:
                action = PositionAction(
                    position.id,
                    ActionKind.CLOSE,
                    f"loss {pnl:.3f}% is beyond the emergency loss limit -{limit:g}%",
                    safety=True,
                )
                self._journal(
                    ctx,
                    SAFETY,
                    "emergency_close",
                    subject,
                    action,
                    "applied",
                    True,
                    action.reason,
                    **where,
                )
                return order(action, action.reason)
        directives = ctx.directives
        if DirectiveKind.EMERGENCY_SHUTDOWN in directives:
            action = PositionAction(
                position.id, ActionKind.CLOSE, "EMERGENCY_SHUTDOWN is active", safety=True
            )
            self._journal(
                ctx,
                "self_healing",
                "emergency_shutdown",
                subject,
                action,
                "applied",
                True,
                action.reason,
                mode="SAFETY",
                **where,
            )
            return order(action, action.reason)

        assessment: PositionAssessment | None = None
        pil = self._decisive(
            self._call(ctx, "aios_classify_position", subject, position=position),
            PositionAssessment,
        )
        if pil is not None:
            assessment = pil.value
            self._dispose(
                ctx,
                pil,
                "aios_classify_position",
                subject,
                f"{assessment.category.value} at R {assessment.r_multiple if assessment.r_multiple is None else round(assessment.r_multiple, 3)}: recommends {assessment.recommendation.value} ({assessment.reason})",
                **where,
            )

        candidates: list[tuple[int, HookResult, PositionAction]] = []
        for result in self._call(
            ctx, "aios_amplify", subject, position=position, assessment=assessment
        ):
            if result.error is None and isinstance(result.value, PositionAction):
                candidates.append(
                    (PRECEDENCE.get(result.plugin, len(PRECEDENCE)), result, result.value)
                )
        for result in self._call(
            ctx, "aios_protect", subject, position=position, assessment=assessment
        ):
            if result.error is None and result.value:
                for action in result.value:
                    if isinstance(action, PositionAction):
                        candidates.append(
                            (PRECEDENCE.get(result.plugin, len(PRECEDENCE)), result, action)
                        )

        chosen: list[tuple[HookResult, PositionAction]] = []
        for _, result, action in sorted(candidates, key=_first):
            applied = self._dispose(
                ctx,
                result,
                "aios_amplify"
                if action.kind in _AMPLIFY_KINDS and result.plugin != "exit_proposals"
                else "aios_protect",
                subject,
                f"{action.kind.value}: {action.reason}",
                **where,
            )
            if shadow or applied:
                chosen.append((result, action))
            elif self.effective_mode(result.plugin) is Mode.ADVISORY:
                advisories.append(
                    f"{result.plugin} advises {action.kind.value} on {position.symbol}: {action.reason}"
                )
        for kind in (ActionKind.CLOSE, ActionKind.REDUCE):
            for result, action in chosen:
                if action.kind is kind:
                    return order(action, f"{result.plugin}: {action.reason}")
        stops = [a for _, a in chosen if a.kind is ActionKind.SET_STOPS]
        if stops:
            tightest = self._tightest(position, stops)
            return order(tightest, tightest.reason)
        for result, action in chosen:
            if action.kind is ActionKind.SCALE_IN and RiskMode.CRITICAL is not ctx.risk_mode:
                return order(action, f"{result.plugin}: {action.reason}")
            if action.kind is ActionKind.EXTEND_HOLD:
                return order(action, f"{result.plugin}: {action.reason}")
        if position.stop_loss is None or position.take_profit is None:
            knobs = self._knobs()
            tp, sl = knobs.baseline_tp, knobs.baseline_sl
            sign = position.side.sign
            action = PositionAction(
                position.id,
                ActionKind.SET_STOPS,
                "every position has a TP and an SL (baseline distances)",
                stop_loss=position.stop_loss
                if position.stop_loss is not None
                else position.entry_price * (1 - sign * sl / 100.0),
                take_profit=position.take_profit
                if position.take_profit is not None
                else position.entry_price * (1 + sign * tp / 100.0),
            )
            return order(action, action.reason)
        return None

    @staticmethod
    def _tightest(position: Position, actions: Sequence[PositionAction]) -> PositionAction:
        """Of several stop proposals, the one that protects most (highest stop for a long)."""
        with_stop = [a for a in actions if a.stop_loss is not None]
        if not with_stop:
            return actions[0]
        if position.side is Side.LONG:
            return max(with_stop, key=lambda a: a.stop_loss or 0.0)
        return min(with_stop, key=lambda a: a.stop_loss or math.inf)

    # --- lifecycle -----------------------------------------------------------------------------

    def _lifecycle_ctx(
        self, now: datetime, market: MarketView, portfolio: PortfolioView
    ) -> CycleContext:
        self._now = now
        return CycleContext(
            now,
            self.cycle,
            self.policy,
            self.stage,
            market,
            portfolio,
            self.actual.risk_mode,
            frozenset(self.actual.directives),
            models=self.models,
        )

    def trade_opened(
        self, now: datetime, market: MarketView, portfolio: PortfolioView, position: Position
    ) -> None:
        self._call(
            self._lifecycle_ctx(now, market, portfolio),
            "aios_trade_opened",
            f"position:{position.id}",
            position=position,
        )

    def trade_closed(
        self, now: datetime, market: MarketView, portfolio: PortfolioView, trade: ClosedTrade
    ) -> None:
        self._call(
            self._lifecycle_ctx(now, market, portfolio),
            "aios_trade_closed",
            f"position:{trade.position_id}",
            trade=trade,
        )

    def reload(
        self, now: datetime, market: MarketView, portfolio: PortfolioView, policy: Policy
    ) -> None:
        """Swap in a validated policy between cycles; learned state stays in the plugins."""
        previous = self.policy
        self.policy = policy
        ctx = self._lifecycle_ctx(now, market, portfolio)
        self._journal(
            ctx,
            ENGINE,
            "aios_policy_reloaded",
            "policy",
            {"previous": previous.hash, "current": policy.hash},
            "engine",
            True,
            f"policy {previous.hash[:12]} -> {policy.hash[:12]}",
            mode="ENGINE",
        )
        self._call(ctx, "aios_policy_reloaded", "policy", previous=previous, current=policy)

    def set_stage(
        self, now: datetime, market: MarketView, portfolio: PortfolioView, stage: Stage
    ) -> None:
        """Only the stage machine calls this."""
        previous, self.stage = self.stage, stage
        ctx = self._lifecycle_ctx(now, market, portfolio)
        self._journal(
            ctx,
            ENGINE,
            "aios_stage_changed",
            "stage",
            {"previous": previous.value, "current": stage.value},
            "engine",
            True,
            f"stage {previous.value} -> {stage.value}",
            mode="ENGINE",
        )
        self._call(ctx, "aios_stage_changed", "stage", previous=previous, current=stage)
