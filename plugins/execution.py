"""Execution layer (AELM): order type, order splitting, and a veto on expected slippage.

For each entry (the intent's `quote_amount` is the final, multiplied size):

1. Spread: the venue's `spread_bps` when it reports one. Otherwise a proxy from the last closed
   candle: `SPREAD_RANGE_FRACTION` (0.1) x its high-low range in bps of its close. That is an
   estimate, not a quote: a candle's range is mostly price movement, of which the spread is a
   small part; a tenth keeps it in the range of spreads seen on liquid pairs while still
   widening on erratic ones. The reason says which source was used.
2. Order type: MARKET when spread <= `market_max_spread_bps`, or when the entry is urgent;
   otherwise LIMIT at `limit_offset_bps` from the touch. Urgent means a signal confidence of at
   least `URGENT_CONFIDENCE` (0.9): a signal that strong is worth the spread rather than the risk
   of not being filled. Exits are urgent too, but do not pass through this hook (the engine sends
   them as market orders).
3. Volume: the average quote volume per candle over the last `VOLUME_WINDOW_CANDLES` (20)
   candles (fewer when the history is shorter), a candle's quote volume being volume x close.
4. Splitting: when amount > `split_volume_fraction` x that average, the order is split into
   min(`max_child_orders`, ceil(amount / (split_volume_fraction x average))) equal slices.
5. Expected slippage (bps) = half the spread for a MARKET order (0 for a LIMIT order, which does
   not cross it) + market impact per slice, impact = the policy's `impact_coefficient`
   (default `IMPACT_COEFFICIENT`, 0.1) x 10 000 x
   slice / average: a slice of 1 % of a candle's volume is expected to move the price 10 bps.
   A linear impact is a deliberately simple, conservative model. The order is vetoed when the
   expected slippage is above `max_slippage_bps`; exactly at it is accepted.

Missing data fails closed: without any candle or with no quote volume over the window the
impact cannot be bounded, and without a spread (no venue figure and no usable candle) the cost
of crossing it is unknown, so the order is vetoed with that reason.

Comparisons against a cap treat a relative difference below `REL_TOLERANCE` (1e-9) as equal,
so float rounding never turns "exactly at the cap" into "past it" (nor 3 slices into 4).
"""

from __future__ import annotations

import math

from aios.hookspecs import hookimpl
from aios.model import Candle, CycleContext, EntryIntent, ExecutionPlan, OrderType
from aios.plugin import Subsystem

#: Fraction of the last candle's high-low range taken as the spread when the venue gives none.
SPREAD_RANGE_FRACTION = 0.1
#: A signal at least this confident is urgent: sent at market whatever the spread.
URGENT_CONFIDENCE = 0.9
#: Candles the average quote volume per candle is measured over.
VOLUME_WINDOW_CANDLES = 20
#: Price impact per unit of (slice / average candle quote volume), as a fraction of the price.
IMPACT_COEFFICIENT = 0.1
#: Relative tolerance under which a value counts as exactly at its cap (float rounding only).
REL_TOLERANCE = 1e-9
BPS = 10_000.0


def exceeds(value: float, cap: float) -> bool:
    """Whether `value` is above `cap` by more than float rounding."""
    return value > cap and not math.isclose(value, cap, rel_tol=REL_TOLERANCE, abs_tol=0.0)


def ceil_tolerant(ratio: float) -> int:
    """ceil(ratio), except that a ratio within float rounding of an integer is that integer."""
    nearest = round(ratio)
    if math.isclose(ratio, nearest, rel_tol=REL_TOLERANCE, abs_tol=0.0):
        return int(nearest)
    return math.ceil(ratio)


def estimated_spread_bps(candle: Candle) -> float | None:
    """The spread proxy from one candle's range (None when its close is not a usable price)."""
    if candle.close <= 0:
        return None
    return SPREAD_RANGE_FRACTION * max(0.0, candle.high - candle.low) / candle.close * BPS


def average_quote_volume(candles: list[Candle]) -> float:
    """Mean of volume x close per candle (0 without candles)."""
    if not candles:
        return 0.0
    return sum(candle.volume * candle.close for candle in candles) / len(candles)


class ExecutionLayer(Subsystem):
    """Chooses MARKET or LIMIT and the number of slices, and vetoes orders that would slip."""

    name = "execution"

    @hookimpl
    def aios_execution_plan(self, ctx: CycleContext, intent: EntryIntent) -> ExecutionPlan:
        settings = self.settings(ctx)
        signal = intent.signal
        symbol = signal.symbol
        amount = intent.quote_amount
        offset = float(settings["limit_offset_bps"])
        candles = list(ctx.market.history(symbol, VOLUME_WINDOW_CANDLES))

        venue_spread = ctx.market.spread_bps(symbol)
        spread: float | None
        if venue_spread is not None:
            spread, spread_source = float(venue_spread), "venue"
        elif candles:
            spread = estimated_spread_bps(candles[-1])
            spread_source = f"estimated as {SPREAD_RANGE_FRACTION:g} x last candle's range"
        else:
            spread, spread_source = None, ""
        if spread is None:
            return _veto(f"no spread for {symbol}: the venue gives none and no candle is usable")

        average = average_quote_volume(candles)
        if average <= 0:
            return _veto(
                f"no quote volume for {symbol} over the last {len(candles)} candle(s): "
                "market impact cannot be estimated"
            )

        market_cap = float(settings["market_max_spread_bps"])
        urgent = signal.confidence >= URGENT_CONFIDENCE
        if not exceeds(spread, market_cap):
            order_type = OrderType.MARKET
            why_type = (
                f"spread {spread:.8g} bps ({spread_source}) <= market_max_spread_bps {market_cap:g}"
            )
        elif urgent:
            order_type = OrderType.MARKET
            why_type = (
                f"urgent (confidence {signal.confidence:.3f} >= {URGENT_CONFIDENCE:g}) despite "
                f"spread {spread:.8g} bps ({spread_source}) > market_max_spread_bps {market_cap:g}"
            )
        else:
            order_type = OrderType.LIMIT
            why_type = (
                f"spread {spread:.8g} bps ({spread_source}) > market_max_spread_bps "
                f"{market_cap:g}, limit at {offset:g} bps from the touch"
            )

        fraction = float(settings["split_volume_fraction"])
        max_children = int(settings["max_child_orders"])
        split_size = fraction * average
        if exceeds(amount, split_size):
            slices = min(max_children, ceil_tolerant(amount / split_size))
            why_slices = (
                f"{slices} slices of {amount / slices:.8g} (amount {amount:.8g} > "
                f"{fraction:g} x average candle quote volume {average:.8g} = {split_size:.8g}; "
                f"max_child_orders {max_children})"
            )
        else:
            slices = 1
            why_slices = (
                f"1 slice (amount {amount:.8g} <= {fraction:g} x average candle quote volume "
                f"{average:.8g} = {split_size:.8g})"
            )

        slice_amount = amount / slices
        coefficient = float(settings.get("impact_coefficient", IMPACT_COEFFICIENT))
        impact = coefficient * BPS * slice_amount / average
        crossing = spread / 2.0 if order_type is OrderType.MARKET else 0.0
        expected = crossing + impact
        max_slippage = float(settings["max_slippage_bps"])
        why_slippage = (
            f"expected slippage {expected:.8g} bps = {crossing:.8g} (half spread) + "
            f"{impact:.8g} (impact {coefficient:g} x 10000 x {slice_amount:.8g} / "
            f"{average:.8g})"
        )
        reason = f"{order_type.value}: {why_type}; {why_slices}; {why_slippage}"
        veto: str | None = None
        if exceeds(expected, max_slippage):
            veto = f"{why_slippage} > max_slippage_bps {max_slippage:g} ({order_type.value}, {slices} slice(s))"
        else:
            reason += f" <= max_slippage_bps {max_slippage:g}"
        return ExecutionPlan(
            order_type=order_type,
            slices=slices,
            reason=reason,
            limit_offset_bps=offset if order_type is OrderType.LIMIT else 0.0,
            veto=veto,
        )


def _veto(reason: str) -> ExecutionPlan:
    """A refusal for missing data; LIMIT in one slice is what the plan would be at its safest."""
    return ExecutionPlan(OrderType.LIMIT, 1, reason, veto=reason)
