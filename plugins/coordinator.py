"""AI-HFOS, the supreme coordinator: the global risk mode, with hysteresis.

The policy's `risk_mode_rules` are in priority order (CRITICAL first); each has an `enter` and
an `exit` condition over `ctx.metrics`. `default_risk_mode` is the fallback when no rule holds
and ranks below every rule. Each cycle:

1. **Preemption.** The first rule whose `enter` holds wins at once when it ranks above the mode
   held now (earlier in the list, or any rule while the fallback is held): neither the held
   mode's `exit` nor `min_mode_hold_s` delays a move up, so CRITICAL is never late.
2. **Keeping.** Otherwise the held mode stays until its own `exit` holds *and* it has been held
   for `min_mode_hold_s` (measured with `ctx.now`). Then the first rule whose `enter` holds
   takes over (the held rule itself if its `enter` still holds), or the fallback.

Missing metrics make a condition unknown, and unknown leans to safety: for a CRITICAL rule an
unknown `enter` counts as holding and an unknown `exit` as not holding; for the other modes an
unknown `enter` counts as not holding and an unknown `exit` as holding.

The held mode is this plugin's own state (what it proposes, applied or not); it survives a
policy reload. The policy's semantic checks allow one rule per mode, so the mode names its rule;
a mode whose rule a reload removed is left like one whose exit holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from aios.hookspecs import hookimpl
from aios.model import CycleContext, HealthReport, HealthStatus, RiskAssessment, RiskMode
from aios.plugin import Subsystem
from aios.policy.conditions import AllOf, AnyOf, Compare, Condition, Not, Truth, metrics_of


def format_value(value: float) -> str:
    """A metric value as reasons show it: short, without float noise."""
    return f"{value:.6g}"


def metric_values(names: Sequence[str] | frozenset[str], metrics: Mapping[str, float]) -> str:
    """`name=value` for each metric (sorted), `name missing` when the cycle has no value."""
    return ", ".join(
        f"{name}={format_value(metrics[name])}"
        if metrics.get(name) is not None
        else f"{name} missing"
        for name in sorted(names)
    )


def missing_metrics(condition: Condition, metrics: Mapping[str, float]) -> tuple[str, ...]:
    """The metrics a condition reads that have no value this cycle."""
    return tuple(sorted(name for name in metrics_of(condition) if metrics.get(name) is None))


def _decisive(condition: Condition, metrics: Mapping[str, float], outcome: Truth) -> list[Compare]:
    """The comparisons that gave `condition` its outcome (all of them, at worst)."""
    if isinstance(condition, Compare):
        return [condition]
    if isinstance(condition, Not):
        return _decisive(condition.part, metrics, None if outcome is None else not outcome)
    assert isinstance(condition, (AllOf, AnyOf))
    # For `and` that failed only the failing parts matter, for `or` that held only the holding
    # ones; for an unknown outcome, the unknown parts. Some part always matches the outcome.
    leaves: list[Compare] = []
    for part in condition.parts:
        if part.evaluate(metrics) is outcome:
            leaves.extend(_decisive(part, metrics, outcome))
    return leaves


def explain(condition: Condition, metrics: Mapping[str, float]) -> str:
    """The comparisons that decided a condition this cycle, each with the values it read.

    `drawdown_pct >= 8 or losing_streak >= 5` holding on the first part reads
    `drawdown_pct >= 8 (drawdown_pct=9.5)`: the journal says what decided, not everything read.
    """
    leaves = list(dict.fromkeys(_decisive(condition, metrics, condition.evaluate(metrics))))
    return "; ".join(f"{leaf} ({metric_values(metrics_of(leaf), metrics)})" for leaf in leaves)


@dataclass(frozen=True, slots=True)
class _Rule:
    index: int
    mode: RiskMode
    enter: Condition
    exit: Condition

    @property
    def label(self) -> str:
        return f"risk_mode_rules[{self.index}] ({self.mode.value})"

    @property
    def fails_safe_high(self) -> bool:
        """Unknown pushes toward safety: toward CRITICAL, away from the other modes."""
        return self.mode is RiskMode.CRITICAL

    def enter_holds(self, metrics: Mapping[str, float]) -> bool:
        truth = self.enter.evaluate(metrics)
        return self.fails_safe_high if truth is None else truth

    def exit_holds(self, metrics: Mapping[str, float]) -> bool:
        truth = self.exit.evaluate(metrics)
        return (not self.fails_safe_high) if truth is None else truth

    def unknown_note(self, condition: Condition, metrics: Mapping[str, float]) -> str:
        """Says how an unknown outcome was read, so a fail-safe decision is never a mystery."""
        if condition.evaluate(metrics) is not None:
            return ""
        holding = self.fails_safe_high if condition is self.enter else not self.fails_safe_high
        return f" (unknown, counted as {'holding' if holding else 'not holding'})"


class Coordinator(Subsystem):
    """Proposes the global risk mode and whether its row lets new trades open."""

    name = "coordinator"

    def __init__(self) -> None:
        # None: the fallback (default_risk_mode, read from the policy each cycle) is held.
        self._mode: RiskMode | None = None
        self._since: datetime | None = None  # last change; None: nothing to hold yet
        self._blind_on: tuple[str, ...] = ()  # missing metrics that forced CRITICAL last cycle

    # --- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def aios_coordinate(self, ctx: CycleContext) -> RiskAssessment:
        settings = self.settings(ctx)
        rules = self._rules(ctx)
        default = RiskMode(settings["default_risk_mode"])
        metrics = ctx.metrics
        held = self._held_rule(rules)
        held_mode = held.mode if held is not None else (self._mode or default)
        rank = held.index if held is not None else len(rules)  # the fallback ranks last
        entering = next((rule for rule in rules if rule.enter_holds(metrics)), None)
        self._blind_on = ()

        if entering is not None and entering.index < rank:
            reason = self._entered(entering, metrics)
            self._move_to(entering, held_mode, default, ctx.now)
        elif held is None and self._mode is None:
            names = frozenset().union(*(metrics_of(rule.enter) for rule in rules))
            reason = "default_risk_mode: no rule's enter holds" + (
                f" ({metric_values(names, metrics)})" if names else ""
            )
        else:
            reason = self._keep_or_leave(ctx, held, held_mode, entering, default)

        mode = self._mode or default
        allow = ctx.policy.get("risk_modes", mode.value, "allow_new_trades", default=True)
        return RiskAssessment(mode, bool(allow), reason)

    @hookimpl
    def aios_health(self, ctx: CycleContext) -> HealthReport:
        """DEGRADED while the last evaluation held CRITICAL only because metrics were missing:
        the coordinator is then deciding blind. Missing metrics that merely keep an optimistic
        mode from being entered are normal (no trades yet means no win rate) and stay OK."""
        mode = (self._mode or RiskMode(self.settings(ctx)["default_risk_mode"])).value
        since = f" since {self._since.isoformat()}" if self._since is not None else ""
        if self._blind_on:
            return HealthReport(
                self.name,
                HealthStatus.DEGRADED,
                f"risk mode {mode}{since} rests on missing metrics: {', '.join(self._blind_on)}",
            )
        return HealthReport(self.name, HealthStatus.OK, f"risk mode {mode}{since}")

    # --- decisions -----------------------------------------------------------------------------

    def _entered(self, rule: _Rule, metrics: Mapping[str, float]) -> str:
        if rule.enter.evaluate(metrics) is None and rule.fails_safe_high:
            self._blind_on = missing_metrics(rule.enter, metrics)
        note = rule.unknown_note(rule.enter, metrics)
        return f"{rule.label} enter holds{note}: {explain(rule.enter, metrics)}"

    def _keep_or_leave(
        self,
        ctx: CycleContext,
        held: _Rule | None,
        held_mode: RiskMode,
        entering: _Rule | None,
        default: RiskMode,
    ) -> str:
        """The held mode's exit and minimum hold decide; no higher-ranked rule enters here."""
        metrics = ctx.metrics
        hold_s = float(self.settings(ctx)["min_mode_hold_s"])
        if held is None:  # the policy no longer has a rule for the held mode: nothing keeps it
            exit_reason = f"{held_mode.value} has no rule in the policy any more"
        else:
            note = held.unknown_note(held.exit, metrics)
            if not held.exit_holds(metrics):
                if held.exit.evaluate(metrics) is None and held.fails_safe_high:
                    self._blind_on = missing_metrics(held.exit, metrics)
                return (
                    f"kept by {held.label}: exit does not hold{note}: {explain(held.exit, metrics)}"
                )
            exit_reason = f"{held.label} exit holds{note}: {explain(held.exit, metrics)}"
        held_s = None if self._since is None else (ctx.now - self._since).total_seconds()
        if held_s is not None and held_s < hold_s:
            return (
                f"kept for min_mode_hold_s (held {format_value(held_s)} s of "
                f"{format_value(hold_s)} s) though {exit_reason}"
            )
        if entering is not None and held is not None and entering.index == held.index:
            return f"kept by {held.label}: exit holds but enter still holds: {explain(held.enter, metrics)}"
        if entering is not None:
            self._move_to(entering, held_mode, default, ctx.now)
            return f"{exit_reason}; {self._entered(entering, metrics)}"
        self._move_to(None, held_mode, default, ctx.now)
        return f"{exit_reason}; no rule's enter holds, default_risk_mode"

    def _move_to(
        self, rule: _Rule | None, held_mode: RiskMode, default: RiskMode, now: datetime
    ) -> None:
        """Hold `rule`'s mode (None: the fallback); the hold clock restarts on a real change."""
        self._mode = rule.mode if rule is not None else None
        if (self._mode or default) is not held_mode:
            self._since = now

    # --- policy --------------------------------------------------------------------------------

    def _rules(self, ctx: CycleContext) -> list[_Rule]:
        specs = self.settings(ctx).get("risk_mode_rules") or []
        path = ("subsystems", self.name, "risk_mode_rules")
        return [
            _Rule(
                index,
                RiskMode(spec["mode"]),
                ctx.policy.condition(*path, index, "enter"),
                ctx.policy.condition(*path, index, "exit"),
            )
            for index, spec in enumerate(specs)
        ]

    def _held_rule(self, rules: Sequence[_Rule]) -> _Rule | None:
        """The rule of the held mode (None for the fallback, or when a reload removed it)."""
        return next((rule for rule in rules if rule.mode is self._mode), None)
