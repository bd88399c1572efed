"""Position Intelligence (PIL): classify each open position and recommend what to do with it.

Inputs for one position:

* price: the portfolio's price for the symbol, else the last close in the market;
* PnL: `position.pnl_pct(price)`, signed for the side;
* category: the first policy band holding the PnL p, a band holding p when min < p <= max
  (a missing min is -infinity, a missing max +infinity); UNKNOWN when no band holds it;
* R: `position.r_multiple(price)` (None when the position never had a stop);
* momentum: the % change of the close over `momentum_lookback_candles` candles (from the close
  that many candles before the last one to the last one), signed for the side, so a positive
  momentum always runs in the position's favour; unknown when the market has too few candles;
* age: `ctx.now - position.opened_at`.

Recommendation table:

=================  ==============================================  ============
category           condition                                       recommends
=================  ==============================================  ============
LOSER              always                                          EXIT
STRUGGLING         momentum < 0 (against the position)             REDUCE
STRUGGLING         otherwise (momentum >= 0 or unknown)            HOLD
BREAKEVEN          age > max_hold_s                                EXIT
BREAKEVEN          otherwise                                       HOLD
POTENTIAL_WINNER   momentum >= strong_momentum_pct                 EXTEND_HOLD
POTENTIAL_WINNER   otherwise (weaker or unknown)                   HOLD
WINNER             momentum >= strong_momentum_pct                 SCALE_IN
WINNER             otherwise (weaker or unknown)                   TIGHTEN_SL
UNKNOWN            always                                          HOLD
=================  ==============================================  ============

Unknown momentum is neither strong nor against the position. The assessment record has no
"unknown" for momentum, so it carries 0.0 and the reason says momentum is unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from aios.hookspecs import hookimpl
from aios.model import Category, CycleContext, Position, PositionAssessment, Recommendation
from aios.plugin import Subsystem

#: What Position Intelligence reads from its section: the bands as (low, high, category,
#: written out), the momentum lookback, strong momentum %, max_hold_s.
_Knobs = tuple[tuple[tuple[float, float, Category, str], ...], int, float, float]


def _bound(band: Mapping[str, Any], key: str, missing: float) -> float:
    value = band.get(key)
    return missing if value is None else float(value)


def classify_pnl(bands: Sequence[Mapping[str, Any]], pnl_pct: float) -> tuple[Category, str]:
    """The category of the first band with min < pnl <= max, and that band written out."""
    for band in bands:
        low = _bound(band, "min_pnl_pct", -math.inf)
        high = _bound(band, "max_pnl_pct", math.inf)
        if low < pnl_pct <= high:
            return Category(band["category"]), f"({low:g}, {high:g}]"
    return Category.UNKNOWN, "no band"


def _price(ctx: CycleContext, symbol: str) -> float | None:
    price = ctx.portfolio.price(symbol)
    if price is not None:
        return price
    last = ctx.market.history(symbol, 1)
    return last[-1].close if last else None


def _momentum_pct(ctx: CycleContext, position: Position, lookback: int) -> float | None:
    """% change of the close over `lookback` candles, signed for the side.

    None when the market has fewer than `lookback + 1` candles (or a zero close to divide by).
    """
    candles = ctx.market.history(position.symbol, lookback + 1)
    if len(candles) < lookback + 1 or candles[0].close == 0:
        return None
    first, last = candles[0].close, candles[-1].close
    return (last - first) / first * 100.0 * position.side.sign


class PositionIntelligence(Subsystem):
    """Classifies open positions by PnL band and recommends an action from momentum and age."""

    name = "position_intelligence"

    def __init__(self) -> None:
        #: (settings, what `_knobs` read from them): the section is the same object for as
        #: long as the policy is (aios.model.CycleContext.settings), and policies are immutable.
        self._knobs_memo: tuple[Mapping[str, Any], _Knobs | None] | None = None

    def _knobs(self, settings: Mapping[str, Any]) -> _Knobs | None:
        """The bands as (low, high, category, written out) and the three numbers, read once
        per section; None when reading them fails, for the plain path to fail as it did."""
        memo = self._knobs_memo
        if memo is not None and memo[0] is settings:
            return memo[1]
        knobs: _Knobs | None
        try:
            bands = []
            for band in settings.get("bands", ()):
                low = _bound(band, "min_pnl_pct", -math.inf)
                high = _bound(band, "max_pnl_pct", math.inf)
                bands.append((low, high, Category(band["category"]), f"({low:g}, {high:g}]"))
            knobs = (
                tuple(bands),
                int(settings["momentum_lookback_candles"]),
                float(settings["strong_momentum_pct"]),
                float(settings["max_hold_s"]),
            )
        except Exception:
            knobs = None
        self._knobs_memo = (settings, knobs)
        return knobs

    @hookimpl
    def aios_classify_position(
        self, ctx: CycleContext, position: Position
    ) -> PositionAssessment | None:
        settings = self.settings(ctx)
        price = _price(ctx, position.symbol)
        if price is None:
            return None  # no price at all: nothing can be said about this position

        pnl = position.pnl_pct(price)
        knobs = self._knobs(settings)
        if knobs is None:
            category, band = classify_pnl(settings.get("bands", ()), pnl)
            r_multiple = position.r_multiple(price)
            lookback = int(settings["momentum_lookback_candles"])
            momentum = _momentum_pct(ctx, position, lookback)
            age_s = (ctx.now - position.opened_at).total_seconds()
            strong = float(settings["strong_momentum_pct"])
            max_hold_s = float(settings["max_hold_s"])
        else:
            bands, lookback, strong, max_hold_s = knobs
            category, band = Category.UNKNOWN, "no band"
            for low, high, banded, written in bands:  # classify_pnl, precomputed
                if low < pnl <= high:
                    category, band = banded, written
                    break
            r_multiple = position.r_multiple(price)
            momentum = _momentum_pct(ctx, position, lookback)
            age_s = (ctx.now - position.opened_at).total_seconds()

        momentum_text = (
            f"momentum unknown (fewer than {lookback + 1} candles)"
            if momentum is None
            else f"momentum {momentum:+.3f}% over {lookback} candles"
        )
        is_strong = momentum is not None and momentum >= strong
        recommendation, why = self._recommend(
            category, momentum, is_strong, strong, age_s, max_hold_s
        )
        r_text = "R n/a (no initial stop)" if r_multiple is None else f"R {r_multiple:+.3f}"
        reason = (
            f"PnL {pnl:+.3f}% at {price:g} is {category.value} {band}, {r_text}, "
            f"{momentum_text}, age {age_s:g}s: {why}"
        )
        return PositionAssessment(
            position_id=position.id,
            category=category,
            pnl_pct=pnl,
            r_multiple=r_multiple,
            recommendation=recommendation,
            reason=reason,
            momentum_pct=0.0 if momentum is None else momentum,
        )

    @staticmethod
    def _recommend(
        category: Category,
        momentum: float | None,
        is_strong: bool,
        strong: float,
        age_s: float,
        max_hold_s: float,
    ) -> tuple[Recommendation, str]:
        """The module docstring's table, with the comparison that decided."""
        if category is Category.LOSER:
            return Recommendation.EXIT, "a loser is exited"
        if category is Category.STRUGGLING:
            if momentum is not None and momentum < 0:
                return Recommendation.REDUCE, "momentum is against a struggling position"
            return Recommendation.HOLD, "struggling but momentum is not against it"
        if category is Category.BREAKEVEN:
            if age_s > max_hold_s:
                return Recommendation.EXIT, f"age {age_s:g}s > max_hold_s {max_hold_s:g}s"
            return Recommendation.HOLD, f"age {age_s:g}s <= max_hold_s {max_hold_s:g}s"
        if category is Category.POTENTIAL_WINNER:
            if is_strong:
                return Recommendation.EXTEND_HOLD, f"momentum >= strong {strong:g}%"
            return Recommendation.HOLD, f"momentum not strong (< {strong:g}% or unknown)"
        if category is Category.WINNER:
            if is_strong:
                return Recommendation.SCALE_IN, f"momentum >= strong {strong:g}%"
            return Recommendation.TIGHTEN_SL, f"momentum not strong (< {strong:g}% or unknown)"
        return Recommendation.HOLD, "no band holds this PnL"
