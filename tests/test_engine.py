"""The engine: isolation of failing plugins, modes and stages, the safety floor, the journal.

Stub plugins stand in for the subsystems so that each test controls exactly what is proposed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aios.engine import Engine
from aios.hookspecs import hookimpl
from aios.journal import Journal
from aios.model import (
    ActionKind,
    CycleContext,
    DirectiveKind,
    DirectiveProposal,
    EntryIntent,
    EntryVerdict,
    HealthReport,
    OrderAction,
    PortfolioView,
    Position,
    PositionAction,
    PositionAssessment,
    RiskAssessment,
    RiskMode,
    Side,
    Signal,
    Stage,
)
from aios.registry import PluginConflict, plugin_set
from aios.testing import T0, candles_from_closes, default_policy, market, position

SYMBOL = "ETH/BTC"
OPEN_BOOK = PortfolioView(equity=1.0, cash=1.0, prices={SYMBOL: 100.0})


class Source:
    """A signal source that emits one LONG signal per call at a fixed confidence."""

    name = "signal_model"

    def __init__(self, confidence: float = 0.7) -> None:
        self.confidence = confidence

    @hookimpl
    def aios_signals(self, ctx: CycleContext, symbol: str) -> list[Signal]:
        return [
            Signal(
                f"{symbol}@{ctx.cycle}",
                symbol,
                Side.LONG,
                self.confidence,
                self.name,
                ctx.now,
                100.0,
            )
        ]


class Blocker:
    """A pre-trade filter that blocks every entry (or raises, when told to)."""

    def __init__(self, name: str = "portfolio_balancer", raises: bool = False) -> None:
        self.name = name
        self.raises = raises
        self.calls = 0

    @hookimpl
    def aios_filter_entry(self, ctx: CycleContext, intent: EntryIntent) -> EntryVerdict:
        self.calls += 1
        if self.raises:
            raise RuntimeError("boom")
        return EntryVerdict(False, "cap reached")


class Coordinator:
    name = "coordinator"

    def __init__(self, mode: RiskMode) -> None:
        self.mode = mode

    @hookimpl
    def aios_coordinate(self, ctx: CycleContext) -> RiskAssessment:
        return RiskAssessment(self.mode, True, "test")


class Healer:
    name = "self_healing"

    def __init__(self, active: frozenset[DirectiveKind]) -> None:
        self.active = active

    @hookimpl
    def aios_directives(
        self, ctx: CycleContext, health: Sequence[HealthReport]
    ) -> DirectiveProposal:
        return DirectiveProposal(self.active)


def only_eth(extra: str = "") -> str:
    return "universe:\n  symbols: [ETH/BTC]\n" + extra


def engine(
    *plugins: Any, stage: Stage = Stage.AUTONOMY, overlay: str = "", journal: Journal | None = None
) -> Engine:
    return Engine(default_policy(only_eth(overlay)), plugin_set(plugins), journal, stage=stage)


def eth_market() -> Any:
    return market({SYMBOL: candles_from_closes([100.0] * 30)})


def run_entry(eng: Engine, portfolio: PortfolioView = OPEN_BOOK, now: Any = T0) -> Any:
    return eng.entry_cycle(now, eth_market(), portfolio)


# --- modes and stages --------------------------------------------------------------------------


@pytest.mark.parametrize("stage", [Stage.OBSERVATION, Stage.ADVISORY])
def test_observe_and_advisory_never_change_what_the_baseline_does(stage: Stage) -> None:
    governed = run_entry(engine(Source(), Blocker(), stage=stage))
    bare = run_entry(engine(Source(), stage=stage))
    assert [(o.symbol, o.quote_amount, o.take_profit, o.stop_loss) for o in governed.orders] == [
        (o.symbol, o.quote_amount, o.take_profit, o.stop_loss) for o in bare.orders
    ]
    assert len(governed.orders) == 1
    # the shadow book shows what enforcement would have done
    assert governed.shadow_orders == ()
    assert [b.by for b in governed.blocked if b.book == "shadow"] == ["portfolio_balancer"]


def test_advisory_stage_surfaces_the_proposal() -> None:
    outcome = run_entry(engine(Source(), Blocker(), stage=Stage.ADVISORY))
    assert outcome.advisories == ("portfolio_balancer advises blocking ETH/BTC: cap reached",)


def test_enforced_in_autonomy_changes_the_outcome() -> None:
    outcome = run_entry(engine(Source(), Blocker(), stage=Stage.AUTONOMY))
    assert outcome.orders == ()
    assert [(b.book, b.by, b.reason) for b in outcome.blocked] == [
        ("actual", "portfolio_balancer", "cap reached"),
        ("shadow", "portfolio_balancer", "cap reached"),
    ]


def test_subsystem_mode_below_enforced_is_not_applied_even_in_autonomy() -> None:
    overlay = "subsystems:\n  portfolio_balancer:\n    mode: ADVISORY\n"
    outcome = run_entry(engine(Source(), Blocker(), stage=Stage.AUTONOMY, overlay=overlay))
    assert len(outcome.orders) == 1


def test_disabled_subsystem_is_not_called() -> None:
    blocker = Blocker()
    run_entry(
        engine(
            Source(), blocker, overlay="subsystems:\n  portfolio_balancer:\n    enabled: false\n"
        )
    )
    assert blocker.calls == 0


def test_plugin_without_a_policy_section_is_off() -> None:
    blocker = Blocker(name="unconfigured_filter")
    outcome = run_entry(engine(Source(), blocker))
    assert blocker.calls == 0 and len(outcome.orders) == 1


# --- the risk mode multiplies the threshold, not the confidence --------------------------------


def test_critical_raises_the_threshold_and_keeps_the_confidence() -> None:
    # threshold = signal_model.min_confidence 0.65 x CRITICAL 1.25 = 0.8125 > 0.8
    outcome = run_entry(engine(Source(0.8), Coordinator(RiskMode.CRITICAL)))
    assert outcome.risk_mode is RiskMode.CRITICAL
    assert outcome.orders == ()
    [block] = [b for b in outcome.blocked if b.book == "actual"]
    assert block.reason == "confidence 0.800 below threshold 0.812"
    assert outcome.signals[0].confidence == 0.8


def test_aggressive_lowers_the_threshold() -> None:
    # 0.65 x 0.90 = 0.585 <= 0.6 < 0.65
    assert len(run_entry(engine(Source(0.6), Coordinator(RiskMode.AGGRESSIVE))).orders) == 1
    assert run_entry(engine(Source(0.6), Coordinator(RiskMode.NORMAL))).orders == ()


def test_the_threshold_follows_the_risk_mode_a_reload_and_the_stage_within_one_engine() -> None:
    """The engine remembers thresholds per policy and stage: each change is seen next cycle."""
    coordinator = Coordinator(RiskMode.NORMAL)
    eng = engine(Source(0.7), coordinator)

    def actual_block() -> str | None:
        outcome = run_entry(eng)
        return next((b.reason for b in outcome.blocked if b.book == "actual"), None)

    assert actual_block() is None  # 0.7 >= 0.65
    coordinator.mode = RiskMode.CRITICAL  # 0.65 x 1.25 = 0.8125
    assert actual_block() == "confidence 0.700 below threshold 0.812"
    coordinator.mode = RiskMode.NORMAL
    raised = default_policy(only_eth("subsystems:\n  signal_model:\n    min_confidence: 0.75\n"))
    eng.reload(T0, eth_market(), OPEN_BOOK, raised)
    assert actual_block() == "confidence 0.700 below threshold 0.750"
    # in OBSERVATION the signal model's own minimum is not applied: the baseline's 0.65 is
    eng.set_stage(T0, eth_market(), OPEN_BOOK, Stage.OBSERVATION)
    assert actual_block() is None


def test_risk_mode_is_not_applied_in_observation() -> None:
    outcome = run_entry(
        engine(Source(0.8), Coordinator(RiskMode.CRITICAL), stage=Stage.OBSERVATION)
    )
    assert outcome.risk_mode is RiskMode.NORMAL and outcome.shadow_risk_mode is RiskMode.CRITICAL
    assert len(outcome.orders) == 1 and outcome.shadow_orders == ()


# --- isolation ---------------------------------------------------------------------------------


def test_a_raising_plugin_stops_neither_the_cycle_nor_the_others() -> None:
    raiser = Blocker(name="exit_proposals", raises=True)
    other = Blocker(name="portfolio_balancer")
    journal = Journal()
    overlay = "subsystems:\n  exit_proposals:\n    on_error: fail_open\n"
    eng = engine(Source(), raiser, other, journal=journal, overlay=overlay)
    outcome = run_entry(eng)
    assert raiser.calls == 1 and other.calls == 1
    assert [b.by for b in outcome.blocked if b.book == "actual"] == ["portfolio_balancer"]
    errors = journal.reader().query(outcomes=["error"])
    assert [(r.subsystem, r.reason) for r in errors] == [
        ("exit_proposals", "raised RuntimeError: boom; fail_open")
    ]
    assert eng.health["exit_proposals"].errors == 1


def test_fail_open_acts_as_if_the_plugin_were_off() -> None:
    overlay = "subsystems:\n  portfolio_balancer:\n    on_error: fail_open\n"
    outcome = run_entry(engine(Source(), Blocker(raises=True), overlay=overlay))
    assert len(outcome.orders) == 1 and len(outcome.shadow_orders) == 1


def test_fail_closed_counts_as_a_block() -> None:
    overlay = "subsystems:\n  portfolio_balancer:\n    on_error: fail_closed\n"
    outcome = run_entry(engine(Source(), Blocker(raises=True), overlay=overlay))
    assert outcome.orders == () and outcome.shadow_orders == ()
    assert {b.reason for b in outcome.blocked} == {
        "portfolio_balancer failed (fail_closed): RuntimeError: boom"
    }


def test_a_plugin_that_keeps_failing_is_tripped_until_its_cooloff() -> None:
    # default policy: 3 consecutive failures trip it for 300 s
    raiser = Blocker(raises=True)
    eng = engine(
        Source(), raiser, overlay="subsystems:\n  portfolio_balancer:\n    on_error: fail_open\n"
    )
    for minute in range(3):
        run_entry(eng, now=T0 + timedelta(minutes=minute))
    assert raiser.calls == 3
    run_entry(eng, now=T0 + timedelta(minutes=3))
    assert raiser.calls == 3  # tripped: not called
    tripped_at = T0 + timedelta(minutes=2)
    run_entry(eng, now=tripped_at + timedelta(seconds=299))
    assert raiser.calls == 3
    run_entry(eng, now=tripped_at + timedelta(seconds=300))
    assert raiser.calls == 4  # half-open: tried again


# --- directives and the safety floor -----------------------------------------------------------


def test_no_new_trades_is_applied_only_when_enforced() -> None:
    healer = Healer(frozenset({DirectiveKind.NO_NEW_TRADES}))
    observed = run_entry(engine(Source(), healer, stage=Stage.OBSERVATION))
    assert len(observed.orders) == 1 and observed.shadow_orders == ()
    enforced = run_entry(engine(Source(), Healer(frozenset({DirectiveKind.NO_NEW_TRADES}))))
    assert enforced.orders == ()
    assert enforced.directives == {DirectiveKind.NO_NEW_TRADES}


def test_emergency_shutdown_is_always_enforced_and_closes_positions() -> None:
    eng = engine(
        Source(), Healer(frozenset({DirectiveKind.EMERGENCY_SHUTDOWN})), stage=Stage.OBSERVATION
    )
    book = PortfolioView(
        equity=1.0, cash=0.5, positions=(position(SYMBOL),), prices={SYMBOL: 100.0}
    )
    outcome = run_entry(eng, book)
    assert outcome.directives == {DirectiveKind.EMERGENCY_SHUTDOWN}
    assert outcome.orders == ()
    monitor = eng.monitor_cycle(T0, eth_market(), book)
    assert [(o.action, o.safety) for o in monitor.orders] == [(OrderAction.CLOSE, True)]


@pytest.mark.parametrize(("price", "closes"), [(90.0, False), (89.99, True)])
def test_emergency_close_is_strictly_beyond_the_loss_limit_in_every_stage(
    price: float, closes: bool
) -> None:
    # default loss limit 10 %: entry 100 -> 90 is exactly -10 % (kept), 89.99 is beyond (closed)
    eng = engine(stage=Stage.OBSERVATION)
    book = PortfolioView(
        equity=1.0,
        cash=0.0,
        positions=(position(SYMBOL, entry=100.0, stop_loss=80.0),),
        prices={SYMBOL: price},
    )
    outcome = eng.monitor_cycle(T0, eth_market(), book)
    assert [o.action for o in outcome.orders] == ([OrderAction.CLOSE] if closes else [])


def test_every_position_gets_a_tp_and_an_sl() -> None:
    eng = engine()
    naked = position(SYMBOL, entry=100.0, stop_loss=None, take_profit=None)
    book = PortfolioView(equity=1.0, cash=0.0, positions=(naked,), prices={SYMBOL: 100.0})
    [order] = eng.monitor_cycle(T0, eth_market(), book).orders
    # baseline distances: TP 6 %, SL 8 %
    assert order.action is OrderAction.SET_STOPS
    assert order.take_profit == pytest.approx(106.0) and order.stop_loss == pytest.approx(92.0)


class Protector:
    def __init__(self, name: str, actions: list[PositionAction]) -> None:
        self.name = name
        self.actions = actions

    @hookimpl
    def aios_protect(
        self, ctx: CycleContext, position: Position, assessment: PositionAssessment | None
    ) -> list[PositionAction]:
        return self.actions


def test_a_close_wins_over_stop_changes_and_the_tightest_stop_wins() -> None:
    held = position(SYMBOL, entry=100.0)
    book = PortfolioView(equity=1.0, cash=0.0, positions=(held,), prices={SYMBOL: 101.0})
    loose = PositionAction(held.id, ActionKind.SET_STOPS, "loose", stop_loss=95.0)
    tight = PositionAction(held.id, ActionKind.SET_STOPS, "tight", stop_loss=99.0)
    [order] = (
        engine(Protector("exit_proposals", [loose, tight]))
        .monitor_cycle(T0, eth_market(), book)
        .orders
    )
    assert order.stop_loss == 99.0
    close = PositionAction(held.id, ActionKind.CLOSE, "exit now")
    [order] = (
        engine(Protector("exit_proposals", [tight, close]))
        .monitor_cycle(T0, eth_market(), book)
        .orders
    )
    assert order.action is OrderAction.CLOSE


# --- the journal -------------------------------------------------------------------------------


def test_every_proposal_is_journaled_with_mode_and_outcome() -> None:
    journal = Journal()
    run_entry(engine(Source(), Blocker(), stage=Stage.ADVISORY, journal=journal))
    rows = journal.reader().query(subsystem="portfolio_balancer")
    assert [(r.hook, r.mode, r.outcome, r.applied, r.symbol, r.trace) for r in rows] == [
        ("aios_filter_entry", "ADVISORY", "advisory", False, SYMBOL, "ETH/BTC@1")
    ]
    assert rows[0].proposal == {"allow": False, "reason": "cap reached"}
    assert len(rows[0].policy_hash) == 64


# --- loading plugins ---------------------------------------------------------------------------


def test_two_plugins_with_one_name_are_refused_naming_both() -> None:
    with pytest.raises(PluginConflict, match="two plugins are named 'portfolio_balancer'"):
        plugin_set([Blocker(), Blocker()])


def test_a_misspelt_hook_name_is_caught() -> None:
    class Typo:
        name = "typo"

        @hookimpl
        def aios_filter_entyr(self, ctx: CycleContext) -> None:
            return None

    plugins = plugin_set([Typo()])
    assert plugins.plugins == {}
    assert "aios_filter_entyr" in plugins.problems[0].message


def test_an_incompatible_contract_version_is_refused() -> None:
    class Future:
        name = "future"
        aios_contract = "2.0"

    plugins = plugin_set([Future()])
    assert plugins.plugins == {}
    assert (
        plugins.problems[0].message
        == "declares hook contract 2.0, this aios provides 1.0 (major 1 required)"
    )


def test_a_third_party_plugin_that_fails_to_import_is_reported_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    from aios.registry import discover

    dist = tmp_path / "broken_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[aios.plugins]\nbroken = broken_plugin_module:Plugin\n")
    (tmp_path / "broken_plugin_module.py").write_text(
        "raise ImportError('missing dependency: talib')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    plugins = discover()
    assert "broken" not in plugins.plugins
    assert "coordinator" in plugins.plugins  # the others load
    [problem] = [p for p in plugins.problems if "broken" in p.source]
    assert problem.source == "broken-plugin (broken_plugin_module:Plugin)"
    assert problem.message == "failed to import: ImportError: missing dependency: talib"


def test_allow_and_deny_lists_filter_before_importing() -> None:
    from aios.registry import discover

    plugins = discover(deny=["coordinator"])
    assert "coordinator" not in plugins.plugins and "self_healing" in plugins.plugins
    only = discover(allow=["rl_sizing"])
    assert list(only.plugins) == ["rl_sizing"]
    assert only.plugins["rl_sizing"].builtin


# --- dispatch: what the engine remembers between calls -----------------------------------------


def test_a_plugin_registered_or_removed_after_the_first_cycle_is_seen_at_the_next() -> None:
    """The engine remembers each hook's implementations while pluggy's list is unchanged."""
    eng = engine(Source())
    assert len(run_entry(eng).orders) == 1
    blocker = Blocker()
    eng.plugins.manager.register(blocker, name=blocker.name)
    assert run_entry(eng, now=T0 + timedelta(minutes=5)).orders == ()
    assert blocker.calls == 1
    eng.plugins.manager.unregister(blocker)
    assert len(run_entry(eng, now=T0 + timedelta(minutes=10)).orders) == 1
    assert blocker.calls == 1


def test_a_reload_or_a_stage_change_is_seen_by_the_remembered_modes() -> None:
    eng = engine(Source(), Blocker(), stage=Stage.AUTONOMY)
    assert run_entry(eng).orders == ()  # the blocker is ENFORCED
    eng.policy = default_policy(
        only_eth("subsystems:\n  portfolio_balancer:\n    mode: ADVISORY\n")
    )
    assert len(run_entry(eng, now=T0 + timedelta(minutes=5)).orders) == 1
    eng.policy = default_policy(only_eth(""))
    eng.stage = Stage.ADVISORY  # below AUTONOMY: nothing is applied
    assert len(run_entry(eng, now=T0 + timedelta(minutes=10)).orders) == 1
    eng.stage = Stage.AUTONOMY
    assert run_entry(eng, now=T0 + timedelta(minutes=15)).orders == ()


class FailingSelfHealing:
    name = "self_healing"

    def __init__(self) -> None:
        self.raises = True

    @hookimpl
    def aios_directives(
        self, ctx: CycleContext, health: Sequence[HealthReport]
    ) -> DirectiveProposal:
        if self.raises:
            raise RuntimeError("no health data")
        return DirectiveProposal(frozenset())


def test_the_block_a_fail_closed_self_healing_error_assumes_is_journaled_for_the_guards(
    tmp_path: Path,
) -> None:
    """The NO_NEW_TRADES put in force when a fail-closed self-healing raises is journaled as a
    directive decision once, when it starts; the stage guards and `aios status` read it, and
    self-healing's next answer clears it the same way."""
    import sqlite3

    from aios.stages import directives_in_force

    healer = FailingSelfHealing()
    path = tmp_path / "journal.sqlite"
    overlay = "subsystems:\n  self_healing:\n    on_error: fail_closed\n"
    with Journal(path) as journal:
        eng = engine(Source(), healer, overlay=overlay, journal=journal)
        eng.run_id = "run-1"
        for minute in range(2):  # (a third failure in a row would trip it for its cool-off)
            outcome = run_entry(eng, now=T0 + timedelta(minutes=minute))
            assert outcome.orders == ()
        journal.flush()

        def in_force(proposed: bool) -> list[str]:
            with sqlite3.connect(path) as connection:
                return directives_in_force(connection, "run-1", 0, proposed=proposed)

        rows = [r for r in journal.reader().query() if r.hook == "aios_directives"]
        assert [(r.subsystem, r.outcome) for r in rows] == [
            ("self_healing", "error"),
            ("engine", "applied"),
            ("self_healing", "error"),
        ]
        assert in_force(proposed=True) == in_force(proposed=False) == ["NO_NEW_TRADES"]
        healer.raises = False
        assert run_entry(eng, now=T0 + timedelta(minutes=2)).orders != ()
        journal.flush()
        assert in_force(proposed=True) == in_force(proposed=False) == []
