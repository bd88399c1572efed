"""The plugin contract: every hook aios calls, in the order a cycle calls them.

This module is the one place a plugin author needs to read. Every hook is prefixed `aios_`.
A plugin is an object (or a class the engine instantiates) with a `name` attribute naming its
policy section `subsystems.<name>`, and methods decorated with `aios.hookimpl`.

How the engine calls hooks (unlike a plain pluggy call):

* **One implementation at a time.** pluggy aborts a whole hook call when one implementation
  raises; the engine calls each implementation on its own, so a failing plugin never stops the
  others. An exception is journaled, counted into that plugin's health, and handled by its
  `on_error`: `fail_open` (as if the plugin were OFF) or `fail_closed` (its answer counts as a
  block: an entry is refused, a directive is assumed). A plugin that keeps failing is tripped off
  until its cool-off has passed.
* **Only enabled plugins.** A plugin whose effective mode is OFF is not called at all.
* **Proposals, not actions.** A hook returns a value (a frozen record from `aios.model`) or
  None for "nothing to say". It never places an order or changes shared state. The engine
  journals every proposal and applies it only when the plugin's effective mode is ENFORCED (the
  lower of its own mode and the stage's cap), or when it belongs to the safety floor.
* **Collected or decisive.** "Collected" hooks: every implementation's answer is used (a block
  from any filter blocks). "Decisive" hooks: one answer is applied; when several plugins answer,
  the precedence is safety > self_healing > coordinator > the others, then registration order.
* **Arguments by name.** An implementation may declare only the arguments it uses.
* **No wrappers, no coroutines.** The engine dispatches each implementation itself, so a
  `wrapper=True` / `hookwrapper=True` or `async def` implementation is refused at load. Timing
  and tracing are built in: `AIOS_TRACE=1` logs every call, `aios run --profile-hooks` sums them.

**Versioning.** `CONTRACT_VERSION` is MAJOR.MINOR. A minor release only adds (a hook, an optional
argument a plugin may declare, a field with a default on a record); anything that could break an
existing plugin (a hook removed or renamed, an argument or a record field changed or removed, a
changed meaning) is a new major. A plugin declares the version it was written against,
`aios_contract = "1.0"`, as a literal: it is refused at load, with a message naming both
versions, when the major differs or its minor is newer than this aios's. docs/plugins.md has
the reference (generated from this module) and the history.

Plugins may keep private, learned state (an RL agent's values, a supervisor's window): that is
theirs. They must not keep references to the records they are given beyond what they learn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from aios.metrics import MetricSpec
    from aios.model import (
        ClosedTrade,
        CycleContext,
        DirectiveProposal,
        EntryIntent,
        EntryVerdict,
        ExecutionPlan,
        HealthReport,
        ModelProposal,
        PolicySection,
        Position,
        PositionAction,
        PositionAssessment,
        RiskAssessment,
        Signal,
        SizeProposal,
        Stage,
        TpSlProposal,
        UniverseProposal,
    )
    from aios.policy import Policy

PROJECT = "aios"
#: The version of this contract (see "Versioning" above). A plugin declares the version it was
#: written against, `aios_contract = "1.0"`; another major, or a newer minor, is refused at load.
CONTRACT_VERSION = "1.0"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- declarations (once, when plugins load, before the policy is validated) --------------------


@hookspec
def aios_policy_section() -> PolicySection | None:
    """Declare the plugin's own policy section (a JSON Schema object fragment).

    Called once at load. The fragment is composed into the policy schema under
    `subsystems.<name>`, together with the keys every subsystem has (`enabled`, `mode`,
    `on_error`), so the section is validated, located and documented like the core. Collected.
    The built-in subsystems' sections are part of the core `policy_schema.json` instead.
    """


@hookspec
def aios_metrics() -> Sequence[MetricSpec] | None:
    """Declare the metrics the plugin provides, so that trigger conditions naming them validate.

    Called once at load. Collected. Provide their values from `aios_collect_metrics`.
    """


# --- the entry cycle, in order -----------------------------------------------------------------


@hookspec
def aios_health(ctx: CycleContext) -> HealthReport | None:
    """Report this plugin's health (or a component it watches), each entry cycle.

    Called after `aios_collect_metrics`, so `ctx.metrics` holds every metric. Collected. Reports feed self-healing's directives and `aios status`. Reporting nothing is
    fine; failing is itself recorded as unhealthy.
    """


@hookspec
def aios_collect_metrics(ctx: CycleContext) -> Mapping[str, float] | None:
    """Provide values for declared metrics, read by trigger conditions this cycle.

    Called first in every entry cycle, with the core metrics already in `ctx.metrics`; the
    values are visible to every later hook of the cycle. Collected."""


@hookspec
def aios_directives(ctx: CycleContext, health: Sequence[HealthReport]) -> DirectiveProposal | None:
    """Propose which directives (NO_NEW_TRADES, DEFENSIVE_EXIT, EMERGENCY_SHUTDOWN) are active.

    Called after health and metrics (`ctx.metrics`) are known. Decisive (self_healing).
    EMERGENCY_SHUTDOWN is applied in every stage when `safety.emergency_shutdown.always_enforced`.
    """


@hookspec
def aios_coordinate(ctx: CycleContext) -> RiskAssessment | None:
    """Decide the global risk mode from portfolio metrics (`ctx.metrics`). Decisive (coordinator).

    The mode's multipliers scale the confidence threshold, TP, SL and size; never a signal's
    confidence.
    """


@hookspec
def aios_universe(ctx: CycleContext, candidates: Sequence[str]) -> UniverseProposal | None:
    """Say which candidate symbols may open new trades. Collected: a symbol excluded by any
    applied proposal is excluded."""


@hookspec
def aios_signals(ctx: CycleContext, symbol: str) -> Sequence[Signal] | None:
    """Produce trade signals for one symbol from `ctx.market`. Collected: every source's signals
    enter the pipeline (third parties add sources by implementing this)."""


@hookspec
def aios_observe_signal(
    ctx: CycleContext, signal: Signal, threshold: float, accepted: bool
) -> None:
    """Observe a signal and whether it passes the confidence threshold (model supervision).

    Called for every signal, before the gates (threshold, open position, directives, universe)
    decide its fate. Returns nothing; outcomes arrive through `aios_trade_closed`."""


@hookspec
def aios_adjust_signal(ctx: CycleContext, signal: Signal) -> TpSlProposal | None:
    """Propose TP and SL distances (percent) for a signal, already scaled by the risk mode.

    Called for a signal that passed the gates in at least one book. Decisive (dynamic TP/SL);
    applied only when `subsystems.dynamic_tpsl.override_baseline` is true."""


@hookspec
def aios_size(ctx: CycleContext, intent: EntryIntent) -> SizeProposal | None:
    """Propose a size: an absolute quote amount (risk-based sizing) and/or a multiplier (an RL
    agent). Called after TP/SL, with the baseline stake in `intent.quote_amount`. Collected: the
    amount is applied first, then every multiplier, then the risk mode's size multiplier."""


@hookspec
def aios_filter_entry(ctx: CycleContext, intent: EntryIntent) -> EntryVerdict | None:
    """Pre-trade filter: allow or block an entry with a reason. Called after sizing, with the
    sized intent; later signals of a cycle see the entries decided before them in
    `ctx.portfolio`. Collected: any applied block blocks (portfolio caps, cooldowns, ...)."""


@hookspec
def aios_execution_plan(ctx: CycleContext, intent: EntryIntent) -> ExecutionPlan | None:
    """Choose order type and splitting, or veto on expected slippage. Decisive (execution)."""


# --- the monitor cycle, per open position ------------------------------------------------------


@hookspec
def aios_classify_position(ctx: CycleContext, position: Position) -> PositionAssessment | None:
    """Classify an open position (category, current R) and recommend an action. Decisive (PIL)."""


@hookspec
def aios_amplify(
    ctx: CycleContext, position: Position, assessment: PositionAssessment | None
) -> PositionAction | None:
    """Propose scaling in, extending the hold or reducing, from the assessment (None when
    Position Intelligence gave none). Collected."""


@hookspec
def aios_protect(
    ctx: CycleContext, position: Position, assessment: PositionAssessment | None
) -> Sequence[PositionAction] | None:
    """Propose stops, take-profits, trailing stops, profit locks or exits for a position.
    Collected; when actions conflict, a close wins over stop changes, and the tightest stop wins."""


# --- lifecycle events --------------------------------------------------------------------------


@hookspec
def aios_trade_opened(ctx: CycleContext, position: Position) -> None:
    """A position was opened (filled). For learning and bookkeeping; returns nothing.

    Called once per shadow-book position (the book proposals shape), at its first fill."""


@hookspec
def aios_trade_closed(ctx: CycleContext, trade: ClosedTrade) -> None:
    """A position was closed. Rewards (pnl_pct / 100), accuracy, cooldowns learn from this.

    Called for the shadow book's trades (the book proposals shape). Returns nothing."""


@hookspec
def aios_tick(ctx: CycleContext) -> Sequence[ModelProposal] | None:
    """Scheduled work such as retraining: called every entry cycle, after the universe and
    before signals; a plugin keeps its own schedule (the built-in retraining its `interval_s`).

    Collected. A model proposal `register` is applied from ADVISORY up, `deploy` and
    `rollback` only when ENFORCED."""


@hookspec
def aios_policy_reloaded(ctx: CycleContext, previous: Policy, current: Policy) -> None:
    """A new policy was validated and swapped in, between cycles. Learned state must survive
    this. Returns nothing."""


@hookspec
def aios_stage_changed(ctx: CycleContext, previous: Stage, current: Stage) -> None:
    """The stage machine moved the system. Informational: the engine already applies the cap."""
