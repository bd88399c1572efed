"""Every hook of the contract, exercised through the real engine with aios.testing's harness.

One `test_hook_<name>` per hook in aios/hookspecs.py (tests/test_plugin_docs.py fails when one
is missing): each checks what docs/plugins.md promises about the hook: when it is called,
with what, and what the engine does with the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest

from aios.hookspecs import hookimpl
from aios.metrics import MetricSpec
from aios.model import (
    ActionKind,
    Category,
    ClosedTrade,
    CycleContext,
    DirectiveKind,
    DirectiveProposal,
    EntryIntent,
    EntryVerdict,
    ExecutionPlan,
    HealthReport,
    HealthStatus,
    ModelProposal,
    OrderAction,
    OrderType,
    PolicySection,
    Position,
    PositionAction,
    PositionAssessment,
    Recommendation,
    RiskAssessment,
    RiskMode,
    Side,
    Signal,
    SizeProposal,
    Stage,
    TpSlProposal,
    UniverseProposal,
)
from aios.policy import Policy, PolicyInvalid
from aios.testing import Harness, closed_trade, position, signal

Factory = Callable[..., Harness]


class Probe:
    """A plugin with an (empty) policy section, so a test can give it a mode."""

    name = "probe"
    aios_contract = "1.0"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def aios_policy_section(self) -> PolicySection:
        return PolicySection(self.name, {"properties": {}})


def enforced(aios_harness: Factory, plugin: Any, **options: Any) -> Harness:
    return aios_harness([plugin], modes={plugin.name: "ENFORCED"}, **options)


def eth(harness: Harness, closes: Sequence[float] = (100.0, 100.0)) -> Any:
    return harness.market({"ETH/BTC": list(closes)})


# --- declarations ------------------------------------------------------------------------------


def test_hook_aios_policy_section(aios_harness: Factory) -> None:
    class Limited(Probe):
        name = "limited"

        @hookimpl
        def aios_policy_section(self) -> PolicySection:
            return PolicySection(
                self.name,
                {"properties": {"limit": {"type": "number", "minimum": 0, "default": 3}}},
            )

    harness = aios_harness([Limited()], modes={"limited": "OBSERVE"})
    # the common keys are added, the schema default is filled in
    assert harness.policy.get("subsystems", "limited") == {
        "enabled": True,
        "mode": "OBSERVE",
        "on_error": "fail_open",
        "limit": 3,
    }
    with pytest.raises(PolicyInvalid) as caught:
        aios_harness([Limited()], {"subsystems": {"limited": {"mode": "OBSERVE", "limit": -1}}})
    assert [i.path for i in caught.value.errors] == [("subsystems", "limited", "limit")]


def test_hook_aios_metrics(aios_harness: Factory) -> None:
    class Heat(Probe):
        name = "heat"

        @hookimpl
        def aios_metrics(self) -> list[MetricSpec]:
            return [MetricSpec("heat_index", "0..1", "How hot the market runs.")]

    trigger = {
        "directives": {
            "NO_NEW_TRADES": {"trigger": "heat_index > 0.9", "clear_when": "heat_index < 0.5"}
        }
    }
    harness = aios_harness([Heat()], trigger)
    assert harness.metrics["heat_index"].provider == "heat"
    assert harness.policy.get("directives", "NO_NEW_TRADES", "trigger") == "heat_index > 0.9"

    class Silent(Probe):
        name = "silent"

    with pytest.raises(PolicyInvalid, match="heat_index"):  # nothing declares it
        aios_harness([Silent()], trigger)


# --- the entry cycle ---------------------------------------------------------------------------


def test_hook_aios_collect_metrics(aios_harness: Factory) -> None:
    class Heat(Probe):
        name = "heat"

        @hookimpl
        def aios_metrics(self) -> list[MetricSpec]:
            return [MetricSpec("heat_index", "0..1", "How hot the market runs.")]

        @hookimpl
        def aios_collect_metrics(self, ctx: CycleContext) -> dict[str, float]:
            self.seen.append(("collect", dict(ctx.metrics)))
            return {"heat_index": 0.95}

        @hookimpl
        def aios_coordinate(self, ctx: CycleContext) -> None:
            self.seen.append(("coordinate", ctx.metrics.get("heat_index")))

    heat = Heat()
    harness = enforced(aios_harness, heat)
    harness.entry_cycle(eth(harness))
    # called with the core metrics known, its values visible to every later hook of the cycle
    (_, core), later = heat.seen
    assert "drawdown_pct" in core and "heat_index" not in core
    assert later == ("coordinate", 0.95)


def test_hook_aios_health(aios_harness: Factory) -> None:
    class Sick(Probe):
        name = "sick"

        @hookimpl
        def aios_health(self, ctx: CycleContext) -> HealthReport:
            return HealthReport(self.name, HealthStatus.CRITICAL, "lost its feed")

        @hookimpl
        def aios_directives(self, ctx: CycleContext, health: Sequence[HealthReport]) -> None:
            self.seen.append(({r.component: r.status for r in health}, dict(ctx.metrics)))

    sick = Sick()
    harness = enforced(aios_harness, sick)
    result = harness.entry_cycle(eth(harness))
    [(statuses, metrics)] = sick.seen
    assert statuses["sick"] is HealthStatus.CRITICAL and statuses["exchange"] is HealthStatus.OK
    assert metrics["critical_subsystems"] == 1.0
    rows = [r for r in result.rows if r.subject == "component:sick"]
    assert [r.reason for r in rows] == ["sick is CRITICAL: lost its feed"]
    # edge-triggered: the same status is not journaled again
    harness.clock.advance(minutes=5)
    again = harness.entry_cycle(eth(harness))
    assert not [r for r in again.rows if r.subject == "component:sick"]


def test_hook_aios_directives(aios_harness: Factory) -> None:
    class Halt(Probe):
        name = "halt"

        @hookimpl
        def aios_directives(self, ctx: CycleContext) -> DirectiveProposal:
            return DirectiveProposal(
                frozenset({DirectiveKind.NO_NEW_TRADES}),
                raised={DirectiveKind.NO_NEW_TRADES: "probe says stop"},
            )

    harness = enforced(aios_harness, Halt())
    result = harness.entry_cycle(eth(harness), signals=[signal("ETH/BTC")])
    assert result.outcome is not None and result.outcome.directives == {DirectiveKind.NO_NEW_TRADES}
    assert {(b.book, b.by) for b in result.blocked} == {
        ("actual", "self_healing"),
        ("shadow", "self_healing"),
    }
    observed = aios_harness([Halt()], modes={"halt": "OBSERVE"})
    result = observed.entry_cycle(eth(observed), signals=[signal("ETH/BTC")])
    assert len(result.orders) == 1  # observed only: the actual book trades
    assert [b.book for b in result.blocked] == ["shadow"]


def test_hook_aios_coordinate(aios_harness: Factory) -> None:
    class Gloom(Probe):
        name = "gloom"

        @hookimpl
        def aios_coordinate(self, ctx: CycleContext) -> RiskAssessment:
            return RiskAssessment(RiskMode.CRITICAL, False, "probe is gloomy")

    harness = enforced(aios_harness, Gloom())
    # 0.99: above the confidence threshold even with CRITICAL's multiplier on it
    result = harness.entry_cycle(eth(harness), signals=[signal("ETH/BTC", 0.99)])
    assert result.outcome is not None and result.outcome.risk_mode is RiskMode.CRITICAL
    assert result.orders == ()
    assert result.blocked[0].by == "coordinator"
    assert result.blocked[0].reason == "risk mode CRITICAL forbids new trades"
    [row] = result.proposals("gloom")
    assert row.reason == "risk mode CRITICAL: probe is gloomy" and row.applied


def test_hook_aios_universe(aios_harness: Factory) -> None:
    class Narrow(Probe):
        name = "narrow"

        @hookimpl
        def aios_universe(self, candidates: Sequence[str]) -> UniverseProposal:
            self.seen.append(tuple(candidates))
            return UniverseProposal(("LTC/BTC",), {"ETH/BTC": "too quiet"})

    narrow = Narrow()
    harness = enforced(aios_harness, narrow)
    view = harness.market({"ETH/BTC": [100.0, 100.0], "LTC/BTC": [1.0, 1.0]})
    result = harness.entry_cycle(view, signals=[signal("ETH/BTC"), signal("LTC/BTC", price=1.0)])
    assert narrow.seen == [("ETH/BTC", "LTC/BTC")]
    assert [o.symbol for o in result.orders] == ["LTC/BTC"]
    assert {(b.symbol, b.by) for b in result.blocked} == {("ETH/BTC", "universe_os")}
    [row] = result.proposals("narrow")
    assert row.reason == "1 of 2 symbols allowed; excluded: ETH/BTC (too quiet)"


def test_hook_aios_signals(aios_harness: Factory) -> None:
    class Source(Probe):
        name = "source"

        @hookimpl
        def aios_signals(self, ctx: CycleContext, symbol: str) -> list[Signal]:
            self.seen.append(symbol)
            return [signal(symbol, 0.9, source=self.name, signal_id=f"src-{symbol}")]

    source = Source()
    harness = enforced(aios_harness, source)
    result = harness.entry_cycle(eth(harness))
    assert source.seen == ["ETH/BTC"]  # once per candidate symbol
    assert result.outcome is not None
    assert [s.id for s in result.outcome.signals] == ["src-ETH/BTC"]
    assert [o.trace for o in result.orders] == ["src-ETH/BTC"]
    journaled = [r for r in result.rows if r.hook == "aios_signals"]
    assert [(r.subsystem, r.trace) for r in journaled] == [("source", "src-ETH/BTC")]


def test_hook_aios_adjust_signal(aios_harness: Factory) -> None:
    class Tight(Probe):
        name = "tight"

        @hookimpl
        def aios_adjust_signal(self, signal: Signal) -> TpSlProposal:
            return TpSlProposal(3.0, 1.5, "probe")

    harness = enforced(aios_harness, Tight())
    [order] = harness.entry_cycle(eth(harness), signals=[signal("ETH/BTC")]).orders
    assert order.take_profit == pytest.approx(103.0) and order.stop_loss == pytest.approx(98.5)
    observed = aios_harness([Tight()], modes={"tight": "OBSERVE"})
    result = observed.entry_cycle(eth(observed), signals=[signal("ETH/BTC")])
    [baseline] = result.orders  # the baseline's 6 % / 8 %
    assert baseline.take_profit == pytest.approx(106.0)
    assert baseline.stop_loss == pytest.approx(92.0)
    [shadow] = result.shadow_orders
    assert shadow.take_profit == pytest.approx(103.0)


def test_hook_aios_observe_signal(aios_harness: Factory) -> None:
    class Watcher(Probe):
        name = "watcher"

        @hookimpl
        def aios_observe_signal(self, signal: Signal, threshold: float, accepted: bool) -> None:
            self.seen.append((signal.id, threshold, accepted))

    watcher = Watcher()
    harness = enforced(aios_harness, watcher)
    threshold = float(harness.policy.get("subsystems", "signal_model", "min_confidence"))
    harness.entry_cycle(
        harness.market({"ETH/BTC": [100.0, 100.0], "LTC/BTC": [1.0, 1.0]}),
        signals=[signal("ETH/BTC", 0.9), signal("LTC/BTC", threshold - 0.01, price=1.0)],
    )
    assert sorted(watcher.seen) == [
        ("ETH/BTC-LONG-0.9", threshold, True),
        (f"LTC/BTC-LONG-{threshold - 0.01:g}", threshold, False),
    ]


def test_hook_aios_filter_entry(aios_harness: Factory) -> None:
    class Gate(Probe):
        name = "gate"

        @hookimpl
        def aios_filter_entry(self, intent: EntryIntent) -> EntryVerdict:
            return EntryVerdict(intent.signal.confidence >= 0.9, "probe wants 0.9")

    harness = enforced(aios_harness, Gate())
    result = harness.entry_cycle(
        harness.market({"ETH/BTC": [100.0, 100.0], "LTC/BTC": [1.0, 1.0]}),
        signals=[signal("ETH/BTC", 0.95), signal("LTC/BTC", 0.8, price=1.0)],
    )
    assert [o.symbol for o in result.orders] == ["ETH/BTC"]
    assert {(b.symbol, b.by, b.reason) for b in result.blocked} == {
        ("LTC/BTC", "gate", "probe wants 0.9")
    }
    advisory = aios_harness([Gate()], modes={"gate": "ADVISORY"})
    result = advisory.entry_cycle(eth(advisory), signals=[signal("ETH/BTC", 0.8)])
    assert len(result.orders) == 1
    assert result.advisories == ("gate advises blocking ETH/BTC: probe wants 0.9",)
    assert [r.outcome for r in result.proposals("gate")] == ["advisory"]


def test_hook_aios_size(aios_harness: Factory) -> None:
    class Sizer(Probe):
        name = "sizer"

        @hookimpl
        def aios_size(self, intent: EntryIntent) -> SizeProposal:
            self.seen.append(intent.quote_amount)
            return SizeProposal("probe sizing", quote_amount=0.1, multiplier=0.5)

    sizer = Sizer()
    harness = enforced(aios_harness, sizer)
    [order] = harness.entry_cycle(eth(harness), signals=[signal("ETH/BTC")], equity=1.0).orders
    stake = float(harness.policy.get("baseline", "stake_pct")) / 100.0
    assert sizer.seen == [pytest.approx(stake)]  # it sees the baseline stake
    assert order.quote_amount == pytest.approx(0.1 * 0.5)  # the amount, then the multiplier


def test_hook_aios_execution_plan(aios_harness: Factory) -> None:
    class Planner(Probe):
        name = "planner"

        @hookimpl
        def aios_execution_plan(self, intent: EntryIntent) -> ExecutionPlan:
            if intent.signal.symbol == "LTC/BTC":
                return ExecutionPlan(OrderType.MARKET, 1, "thin", veto="slippage 90 bps > 20")
            return ExecutionPlan(OrderType.LIMIT, 3, "split", limit_offset_bps=5.0)

    harness = enforced(aios_harness, Planner())
    result = harness.entry_cycle(
        harness.market({"ETH/BTC": [100.0, 100.0], "LTC/BTC": [1.0, 1.0]}),
        signals=[signal("ETH/BTC"), signal("LTC/BTC", price=1.0)],
    )
    [order] = result.orders
    assert (order.symbol, order.order_type, order.slices, order.limit_offset_bps) == (
        "ETH/BTC",
        OrderType.LIMIT,
        3,
        5.0,
    )
    assert {(b.symbol, b.by, b.reason) for b in result.blocked if b.book == "actual"} == {
        ("LTC/BTC", "execution", "slippage 90 bps > 20")
    }


# --- the monitor cycle -------------------------------------------------------------------------


def assessment(held: Position, category: Category = Category.WINNER) -> PositionAssessment:
    return PositionAssessment(held.id, category, 4.0, 0.5, Recommendation.SCALE_IN, "probe")


def test_hook_aios_classify_position(aios_harness: Factory) -> None:
    class Judge(Probe):
        name = "judge"

        @hookimpl
        def aios_classify_position(self, position: Position) -> PositionAssessment:
            return assessment(position)

        @hookimpl
        def aios_amplify(self, position: Position, assessment: PositionAssessment | None) -> None:
            self.seen.append(assessment)

    judge = Judge()
    harness = enforced(aios_harness, judge)
    held = position()
    result = harness.monitor_cycle([held], eth(harness, (100.0, 104.0)))
    assert judge.seen == [assessment(held)]  # handed on to amplify
    [row] = result.proposals("judge", "aios_classify_position")
    assert row.reason.startswith("WINNER at R 0.5: recommends SCALE_IN")


def test_hook_aios_amplify(aios_harness: Factory) -> None:
    class Amplifier(Probe):
        name = "amplifier"

        @hookimpl
        def aios_amplify(
            self, position: Position, assessment: PositionAssessment | None
        ) -> PositionAction:
            self.seen.append(assessment)
            return PositionAction(position.id, ActionKind.SCALE_IN, "probe adds", fraction=0.5)

    amplifier = Amplifier()
    harness = enforced(aios_harness, amplifier)
    held = position()
    [order] = harness.monitor_cycle([held], eth(harness, (100.0, 104.0))).orders
    assert amplifier.seen == [None]  # no classifier: assessment is None
    assert order.action is OrderAction.SCALE_IN and order.quote_amount == pytest.approx(50.0)

    class Gloom(Probe):
        name = "gloom"

        @hookimpl
        def aios_coordinate(self) -> RiskAssessment:
            return RiskAssessment(RiskMode.CRITICAL, True, "gloomy")

    # never a scale-in in CRITICAL (the risk mode the last entry cycle's coordination set)
    gloomy = aios_harness(
        [Amplifier(), Gloom()], modes={"amplifier": "ENFORCED", "gloom": "ENFORCED"}
    )
    entry = gloomy.entry_cycle(eth(gloomy))
    assert entry.outcome is not None and entry.outcome.risk_mode is RiskMode.CRITICAL
    assert gloomy.monitor_cycle([held], eth(gloomy, (100.0, 104.0))).orders == ()


def test_hook_aios_protect(aios_harness: Factory) -> None:
    class Guard(Probe):
        name = "guard"
        close = False

        @hookimpl
        def aios_protect(self, position: Position) -> list[PositionAction]:
            actions = [
                PositionAction(position.id, ActionKind.SET_STOPS, "loose", stop_loss=95.0),
                PositionAction(position.id, ActionKind.SET_STOPS, "tight", stop_loss=99.0),
            ]
            if self.close:
                actions.append(PositionAction(position.id, ActionKind.CLOSE, "get out"))
            return actions

    guard = Guard()
    harness = enforced(aios_harness, guard)
    held = position()
    [order] = harness.monitor_cycle([held], eth(harness, (100.0, 104.0))).orders
    assert (order.action, order.stop_loss) == (OrderAction.SET_STOPS, 99.0)  # the tightest
    guard.close = True
    [order] = harness.monitor_cycle([held], eth(harness, (100.0, 104.0))).orders
    assert order.action is OrderAction.CLOSE  # a close beats stop changes


# --- lifecycle events --------------------------------------------------------------------------


def test_hook_aios_trade_opened(aios_harness: Factory) -> None:
    class Book(Probe):
        name = "book"

        @hookimpl
        def aios_trade_opened(self, ctx: CycleContext, position: Position) -> None:
            self.seen.append((ctx.now, position.id))

    book = Book()
    harness = enforced(aios_harness, book)
    harness.clock.advance(hours=1)
    harness.trade_opened(position(position_id="p7"))
    assert book.seen == [(harness.clock.now, "p7")]


def test_hook_aios_trade_closed(aios_harness: Factory) -> None:
    class Learner(Probe):
        name = "learner"

        @hookimpl
        def aios_trade_closed(self, trade: ClosedTrade) -> None:
            self.seen.append(trade.pnl_pct / 100.0)  # the reward

    learner = Learner()
    harness = enforced(aios_harness, learner)
    harness.trade_closed(closed_trade(-2.5))
    assert learner.seen == [-0.025]
    off = aios_harness([Learner()], modes={"learner": "OFF"})
    off.trade_closed(closed_trade(1.0))
    assert off.plugin("learner").seen == []  # OFF: not called at all


def test_hook_aios_tick(aios_harness: Factory) -> None:
    class Trainer(Probe):
        name = "trainer"

        @hookimpl
        def aios_tick(self, ctx: CycleContext) -> list[ModelProposal]:
            return [ModelProposal("register", f"m{ctx.cycle}", "scheduled", {"auc": 0.61})]

    harness = aios_harness([Trainer()], modes={"trainer": "ADVISORY"})
    result = harness.entry_cycle(eth(harness))
    [row] = result.proposals("trainer", "aios_tick")
    assert row.applied and row.reason == "register m1: scheduled"  # registering needs ADVISORY
    assert [v.version for v in harness.models.versions()] == ["m1"]


def test_hook_aios_policy_reloaded(aios_harness: Factory) -> None:
    class Listener(Probe):
        name = "listener"

        @hookimpl
        def aios_policy_reloaded(self, previous: Policy, current: Policy) -> None:
            self.seen.append(
                (previous.get("baseline", "tp_pct"), current.get("baseline", "tp_pct"))
            )

    listener = Listener()
    harness = enforced(aios_harness, listener)
    result = harness.reload({"baseline": {"tp_pct": 4.0}})
    assert listener.seen == [(6.0, 4.0)]
    [row] = [r for r in result.rows if r.hook == "aios_policy_reloaded"]
    assert row.subsystem == "engine" and row.policy_hash == harness.policy.hash


def test_hook_aios_stage_changed(aios_harness: Factory) -> None:
    class Gate(Probe):
        name = "gate"

        @hookimpl
        def aios_stage_changed(self, previous: Stage, current: Stage) -> None:
            self.seen.append((previous, current))

        @hookimpl
        def aios_filter_entry(self) -> EntryVerdict:
            return EntryVerdict(False, "never")

    gate = Gate()
    harness = enforced(aios_harness, gate)
    harness.set_stage(Stage.ADVISORY)
    assert gate.seen == [(Stage.AUTONOMY, Stage.ADVISORY)]
    # the stage caps the mode: an ENFORCED plugin in ADVISORY only advises
    result = harness.entry_cycle(eth(harness), signals=[signal("ETH/BTC")])
    assert len(result.orders) == 1
    assert [r.mode for r in result.proposals("gate")] == ["ADVISORY"]


# --- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("on_error", "orders"), [("fail_open", 1), ("fail_closed", 0)])
def test_a_raising_filter_is_isolated_and_handled_by_on_error(
    aios_harness: Factory, on_error: str, orders: int
) -> None:
    class Broken(Probe):
        name = "broken"

        @hookimpl
        def aios_filter_entry(self) -> EntryVerdict:
            raise RuntimeError("division by zero in my model")

    harness = aios_harness(
        [Broken()], {"subsystems": {"broken": {"mode": "ENFORCED", "on_error": on_error}}}
    )
    result = harness.entry_cycle(eth(harness), signals=[signal("ETH/BTC")])
    assert len(result.orders) == orders
    [error] = result.errors("broken")
    assert error.reason == f"raised RuntimeError: division by zero in my model; {on_error}"
    assert harness.engine.health["broken"].errors == 1


def test_signals_out_of_the_universe_are_refused_with_the_reason(aios_harness: Factory) -> None:
    from aios.testing import HarnessError

    harness = aios_harness([Probe()], modes={"probe": "ENFORCED"})
    with pytest.raises(HarnessError, match=r"DOGE/BTC is not a candidate this cycle"):
        harness.entry_cycle(eth(harness), signals=[replace(signal("ETH/BTC"), symbol="DOGE/BTC")])
    side = signal("ETH/BTC", side=Side.SHORT)
    assert side.side is Side.SHORT
