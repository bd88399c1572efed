"""Profit Amplification (PAL): press winners, trim strugglers, from Position Intelligence's view.

Gates, checked first: PAL proposes nothing unless the risk mode is in `allowed_risk_modes`,
nothing while any directive is active (a directive means the system is unwell; adding risk or
reshaping positions is then left to the protective subsystems), and nothing without an
assessment.

Rules, first match wins:

1. WINNER or POTENTIAL_WINNER with R >= min_r and momentum >= momentum_threshold_pct:
   SCALE_IN by `add_size_fraction` of the original stake while `position.adds < max_adds`;
   once the adds are used up, EXTEND_HOLD to `ctx.now + extend_hold_s`, unless the position's
   `hold_until` is already at or beyond that time. A position without an R (no initial stop)
   is never amplified: its risk is unknown.
2. STRUGGLING that Position Intelligence recommends to REDUCE: REDUCE by `reduce_fraction` of
   the current quantity (a `reduce_fraction` of 0 switches reducing off).
"""

from __future__ import annotations

from datetime import timedelta

from aios.hookspecs import hookimpl
from aios.model import (
    ActionKind,
    Category,
    CycleContext,
    Position,
    PositionAction,
    PositionAssessment,
    Recommendation,
)
from aios.plugin import Subsystem

_AMPLIFIED = (Category.WINNER, Category.POTENTIAL_WINNER)


class ProfitAmplification(Subsystem):
    """Scales into strong winners, extends their holds, and reduces strugglers."""

    name = "profit_amplification"

    @hookimpl
    def aios_amplify(
        self, ctx: CycleContext, position: Position, assessment: PositionAssessment | None
    ) -> PositionAction | None:
        settings = self.settings(ctx)
        if ctx.risk_mode.value not in settings["allowed_risk_modes"]:
            return None
        if ctx.directives or assessment is None:
            return None

        if assessment.category in _AMPLIFIED:
            return self._amplify(ctx, position, assessment)
        if (
            assessment.category is Category.STRUGGLING
            and assessment.recommendation is Recommendation.REDUCE
        ):
            fraction = float(settings["reduce_fraction"])
            if fraction <= 0:
                return None
            return PositionAction(
                position.id,
                ActionKind.REDUCE,
                f"STRUGGLING at PnL {assessment.pnl_pct:+.3f}% with momentum "
                f"{assessment.momentum_pct:+.3f}% against it: reduce by {fraction:g}",
                fraction=fraction,
            )
        return None

    def _amplify(
        self, ctx: CycleContext, position: Position, assessment: PositionAssessment
    ) -> PositionAction | None:
        settings = self.settings(ctx)
        min_r = float(settings["min_r"])
        threshold = float(settings["momentum_threshold_pct"])
        r_multiple, momentum = assessment.r_multiple, assessment.momentum_pct
        if r_multiple is None or r_multiple < min_r or momentum < threshold:
            return None

        strength = (
            f"{assessment.category.value} at R {r_multiple:.3f} >= {min_r:g} "
            f"with momentum {momentum:+.3f}% >= {threshold:g}%"
        )
        max_adds = int(settings["max_adds"])
        if position.adds < max_adds:
            fraction = float(settings["add_size_fraction"])
            return PositionAction(
                position.id,
                ActionKind.SCALE_IN,
                f"{strength}: add {fraction:g} of the stake (add {position.adds + 1} of {max_adds})",
                fraction=fraction,
            )

        extend_s = float(settings["extend_hold_s"])
        hold_until = ctx.now + timedelta(seconds=extend_s)
        if position.hold_until is not None and position.hold_until >= hold_until:
            return None
        return PositionAction(
            position.id,
            ActionKind.EXTEND_HOLD,
            f"{strength}, all {max_adds} adds used: hold {extend_s:g}s more, "
            f"until {hold_until.isoformat()}",
            hold_until=hold_until,
        )
