"""Self-Healing: directives from the policy's triggers, recovery actions from health reports.

Directives (`directives.<KIND>` in the policy; a kind that is not configured is never raised):

* **Raised** when `trigger` holds over `ctx.metrics`. A trigger left unknown by a missing
  metric fires when `on_missing_metric` is `fire` (fail closed) and not when it is `ignore`.
* **Sticky.** An active directive clears only once `clear_when` has held on every cycle for
  `clear_after_s` (measured with `ctx.now` from the first cycle it was seen holding). An unknown
  `clear_when` does not hold, and a cycle on which the trigger fires again (or `clear_when`
  does not hold) restarts that clock.
* **Edge-triggered reasons.** `raised` names a directive only on the cycle it becomes active,
  `cleared` only on the cycle it clears; `active` is always the whole current set.

Recovery (proposals; the engine performs them when self-healing is ENFORCED):

* a subsystem (a component named in the policy's `subsystems`) reported CRITICAL, as the engine
  reports a tripped plugin, gets `restart_subsystem` when `recovery.restart_failed_subsystems`;
* the component `policy` reported CRITICAL gets `reload_policy` when
  `recovery.reload_policy_on_error`;
* each target gets at most `recovery.max_restarts_per_hour` actions in any rolling hour (a
  window of 3600 s: an action at t no longer counts from t + 3600 s on). The budget bounds the
  reload too, so a policy file that stays broken is not re-read every cycle. What is counted is
  what was proposed: the plugin cannot see whether the engine applied it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aios.hookspecs import hookimpl
from aios.model import (
    CycleContext,
    DirectiveKind,
    DirectiveProposal,
    HealthReport,
    HealthStatus,
    RecoveryAction,
)
from aios.plugin import Subsystem
from plugins.coordinator import explain, format_value

#: The component whose CRITICAL report asks for a policy reload.
POLICY_COMPONENT = "policy"
#: The component self-healing's own health report is about. Not its plugin name: a stale feed is
#: not a failing subsystem, and must not count into the `unhealthy_subsystems` metric.
WATCHED_COMPONENT = "infrastructure"
RESTART_SUBSYSTEM = "restart_subsystem"
RELOAD_POLICY = "reload_policy"
#: The rolling window of `max_restarts_per_hour`, in seconds (a unit, not a tuning knob).
HOUR_S = 3600.0


@dataclass
class _ActiveDirective:
    """One raised directive; `clear_since` is when clear_when started holding, unbroken."""

    raised_at: datetime
    clear_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Threshold:
    metric: str
    limit_key: str
    label: str
    unit: str


#: What `aios_health` checks: each metric against its `health` threshold (past it: DEGRADED).
HEALTH_CHECKS = (
    _Threshold("data_feed_staleness_s", "data_feed_max_staleness_s", "data feed staleness", " s"),
    _Threshold("data_feed_gap_candles", "data_feed_max_gap_candles", "data feed gap", " candles"),
    _Threshold("exchange_error_rate", "exchange_max_error_rate", "exchange error rate", ""),
)


class SelfHealing(Subsystem):
    """Proposes the active directives and recovery actions; reports feed and exchange health."""

    name = "self_healing"

    def __init__(self) -> None:
        self._active: dict[DirectiveKind, _ActiveDirective] = {}
        self._recoveries: dict[str, deque[datetime]] = {}

    # --- hooks ---------------------------------------------------------------------------------

    @hookimpl
    def aios_directives(
        self, ctx: CycleContext, health: Sequence[HealthReport]
    ) -> DirectiveProposal:
        raised: dict[DirectiveKind, str] = {}
        cleared: dict[DirectiveKind, str] = {}
        for kind in DirectiveKind:
            spec = ctx.policy.get("directives", kind.value)
            if not isinstance(spec, Mapping):
                if self._active.pop(kind, None) is not None:
                    cleared[kind] = "no longer configured in the policy"
                continue
            if kind in self._active:
                why_cleared = self._maybe_clear(ctx, kind, spec)
                if why_cleared is not None:
                    del self._active[kind]
                    cleared[kind] = why_cleared
            else:
                why_raised = self._fired(ctx, kind, spec)
                if why_raised is not None:
                    self._active[kind] = _ActiveDirective(ctx.now)
                    raised[kind] = why_raised
        return DirectiveProposal(
            frozenset(self._active), raised, cleared, self._recovery(ctx, health)
        )

    @hookimpl
    def aios_health(self, ctx: CycleContext) -> HealthReport:
        """OK, or DEGRADED when a watched metric is past its `health` threshold (at the
        threshold is still OK). A metric not reported is named but not held against the
        components: the directives already fail closed on missing metrics."""
        limits = self.settings(ctx)["health"]
        problems: list[str] = []
        fine: list[str] = []
        unreported: list[str] = []
        for check in HEALTH_CHECKS:
            value = ctx.metrics.get(check.metric)
            limit = float(limits[check.limit_key])
            if value is None:
                unreported.append(check.metric)
                continue
            shown = f"{check.label} {format_value(value)}{check.unit}"
            if value > limit:
                problems.append(f"{shown} > {check.limit_key} {format_value(limit)}")
            else:
                fine.append(f"{shown} <= {format_value(limit)}")
        parts = problems or fine
        if unreported:
            parts = [*parts, f"not reported: {', '.join(unreported)}"]
        status = HealthStatus.DEGRADED if problems else HealthStatus.OK
        return HealthReport(WATCHED_COMPONENT, status, "; ".join(parts))

    # --- directives ----------------------------------------------------------------------------

    def _fired(self, ctx: CycleContext, kind: DirectiveKind, spec: Mapping[str, Any]) -> str | None:
        """Why the trigger fires this cycle, or None when it does not."""
        trigger = ctx.policy.condition("directives", kind.value, "trigger")
        truth = trigger.evaluate(ctx.metrics)
        if truth is True:
            return f"trigger holds: {explain(trigger, ctx.metrics)}"
        if truth is None and spec["on_missing_metric"] == "fire":
            return (
                f"trigger unknown, fired (on_missing_metric: fire): {explain(trigger, ctx.metrics)}"
            )
        return None

    def _maybe_clear(
        self, ctx: CycleContext, kind: DirectiveKind, spec: Mapping[str, Any]
    ) -> str | None:
        """Advance an active directive's clear clock; why it clears now, or None."""
        state = self._active[kind]
        clear_when = ctx.policy.condition("directives", kind.value, "clear_when")
        if self._fired(ctx, kind, spec) is not None or clear_when.evaluate(ctx.metrics) is not True:
            state.clear_since = None
            return None
        if state.clear_since is None:
            state.clear_since = ctx.now
        held_s = (ctx.now - state.clear_since).total_seconds()
        needed_s = float(spec["clear_after_s"])
        if held_s < needed_s:
            return None
        return (
            f"clear_when held for {format_value(held_s)} s (clear_after_s "
            f"{format_value(needed_s)}): {explain(clear_when, ctx.metrics)}"
        )

    # --- recovery ------------------------------------------------------------------------------

    def _recovery(
        self, ctx: CycleContext, health: Sequence[HealthReport]
    ) -> tuple[RecoveryAction, ...]:
        recovery = self.settings(ctx)["recovery"]
        subsystems = ctx.policy.get("subsystems", default={})
        budget = int(recovery["max_restarts_per_hour"])
        actions: list[RecoveryAction] = []
        seen: set[str] = set()
        for report in health:
            target = report.component
            if report.status is not HealthStatus.CRITICAL or target in seen:
                continue
            seen.add(target)
            if target == POLICY_COMPONENT:
                if not recovery["reload_policy_on_error"]:
                    continue
                action = RELOAD_POLICY
            elif isinstance(subsystems, Mapping) and target in subsystems:
                if not recovery["restart_failed_subsystems"]:
                    continue
                action = RESTART_SUBSYSTEM
            else:
                continue  # the feed, the exchange, the store: nothing self-healing can restart
            recent = self._within_hour(target, ctx.now)
            if len(recent) >= budget:
                continue
            recent.append(ctx.now)
            actions.append(
                RecoveryAction(
                    action,
                    target,
                    f"{target} is CRITICAL ({report.detail or 'no detail'}); "
                    f"action {len(recent)} of {budget} allowed per hour",
                )
            )
        return tuple(actions)

    def _within_hour(self, target: str, now: datetime) -> deque[datetime]:
        """The target's recovery times of the last hour (older ones are forgotten)."""
        recent = self._recoveries.setdefault(target, deque())
        while recent and (now - recent[0]).total_seconds() >= HOUR_S:
            recent.popleft()
        return recent
