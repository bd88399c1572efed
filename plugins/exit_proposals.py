"""Exit proposals: regime-weighted stops, progressive profit locking, defensive tightening, and
a re-entry cooldown after an exit.

Volatility regime. ATR is the mean true range of the last `ATR_PERIOD` candles, each true range
taken against the previous candle's close (so `ATR_PERIOD + 1` candles are needed); ATR% is ATR
over the last close x 100. The regime is `low_volatility` when ATR% <= its max_volatility_pct,
`normal` when ATR% <= normal's, else `high_volatility`.

Candidate stops for a position at price P (long; a short mirrors every sign):

* regime stop: P - sl_atr x ATR. Under DEFENSIVE_EXIT that distance from the price is multiplied
  by `defensive_tighten_factor` (and so is the trailing distance). A long's regime stop at or
  below 0 (ATR beyond a third of the price) is meaningless and dropped;
* profit lock: at the highest tier whose at_r <= the current R, the stop is at least
  entry + lock_r x initial risk (the initial risk in price, |entry - initial stop|).

The proposed stop is the tightest candidate. It goes out as SET_STOPS only when it is strictly
tighter than the position's stop (higher for a long, lower for a short) or the position has
none: stops only ever tighten. The same action carries the regime take-profit,
entry + tp_atr x ATR (kept at the position's own when the regime target is already behind the
price, which would close the trade at once), and the trailing distance % = trailing_atr x ATR%
(kept at the position's own when that is already tighter), once the position's R has reached
`trailing_activation_r` (a trailing stop armed at entry stops a fresh position out on noise). When Position Intelligence
recommends EXIT, a CLOSE is proposed too.

The emergency close at the loss limit is not here: it is the engine's safety floor.

Re-entry cooldown: every closed trade's symbol and close time are remembered (the latest per
symbol); an entry on that symbol is blocked while `ctx.now - closed_at < reentry_cooldown_s`,
so a still-live signal does not re-open what was just exited.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import pairwise
from typing import Any

from aios.hookspecs import hookimpl
from aios.model import (
    ActionKind,
    Candle,
    ClosedTrade,
    CycleContext,
    DirectiveKind,
    EntryIntent,
    EntryVerdict,
    Position,
    PositionAction,
    PositionAssessment,
    Recommendation,
    Side,
)
from aios.plugin import Subsystem

#: ATR window, in candles. A modelling choice, not a policy knob (the schema has none): Wilder's
#: customary 14, averaged plainly rather than with Wilder's smoothing.
ATR_PERIOD = 14


def average_true_range(candles: Sequence[Candle]) -> float | None:
    """Mean true range of the last `ATR_PERIOD` candles, each against its previous close.

    None when fewer than `ATR_PERIOD + 1` candles are given.
    """
    if len(candles) < ATR_PERIOD + 1:
        return None
    window = candles[-(ATR_PERIOD + 1) :]
    ranges = [
        max(
            current.high - current.low,
            abs(current.high - previous.close),
            abs(current.low - previous.close),
        )
        for previous, current in pairwise(window)
    ]
    return sum(ranges) / len(ranges)


@dataclass(frozen=True, slots=True)
class Regime:
    """The volatility regime in force and the ATR it was chosen from."""

    name: str
    atr: float
    atr_pct: float
    settings: Mapping[str, Any]


def volatility_regime(regimes: Mapping[str, Any], candles: Sequence[Candle]) -> Regime | None:
    """The regime for these candles (None when ATR is unknown or the last close is not > 0)."""
    atr = average_true_range(candles)
    if atr is None or candles[-1].close <= 0:
        return None
    atr_pct = atr / candles[-1].close * 100.0
    for name in ("low_volatility", "normal"):
        if atr_pct <= float(regimes[name]["max_volatility_pct"]):
            return Regime(name, atr, atr_pct, regimes[name])
    return Regime("high_volatility", atr, atr_pct, regimes["high_volatility"])


def _tighter(side: Side, stop: float, than: float) -> bool:
    """Whether `stop` protects strictly more than `than` (higher for a long, lower for a short)."""
    return stop > than if side is Side.LONG else stop < than


def _price(ctx: CycleContext, symbol: str) -> float | None:
    price = ctx.portfolio.price(symbol)
    if price is not None:
        return price
    last = ctx.market.history(symbol, 1)
    return last[-1].close if last else None


class ExitProposals(Subsystem):
    """Tightens stops by volatility regime and profit tiers; cools down re-entries."""

    name = "exit_proposals"

    def __init__(self) -> None:
        # Learned state: the latest close time per symbol, for the re-entry cooldown.
        self._last_exit: dict[str, datetime] = {}
        #: Per symbol, the last (regimes, candles, regime) computed: both books' positions on
        #: a symbol are checked on the same candles. Candles are immutable, so the same
        #: candle objects with the same regimes give the same regime.
        self._regimes: dict[str, tuple[Mapping[str, Any], Sequence[Candle], Regime | None]] = {}

    @hookimpl
    def aios_protect(
        self, ctx: CycleContext, position: Position, assessment: PositionAssessment | None
    ) -> list[PositionAction]:
        actions: list[PositionAction] = []
        price = _price(ctx, position.symbol)
        if price is not None:
            stops = self._stops(ctx, position, price)
            if stops is not None:
                actions.append(stops)
        if assessment is not None and assessment.recommendation is Recommendation.EXIT:
            actions.append(
                PositionAction(
                    position.id,
                    ActionKind.CLOSE,
                    f"Position Intelligence recommends EXIT: {assessment.reason}",
                )
            )
        return actions

    def _stops(self, ctx: CycleContext, position: Position, price: float) -> PositionAction | None:
        settings = self.settings(ctx)
        side, sign = position.side, position.side.sign
        defensive = DirectiveKind.DEFENSIVE_EXIT in ctx.directives
        factor = float(settings["defensive_tighten_factor"]) if defensive else 1.0
        # The texts are written only for an action that goes out (most checks propose
        # nothing): each is a function of the values it reads, called at the end.
        candidates: list[tuple[float, Callable[[], str]]] = []
        notes: list[Callable[[], str]] = []

        take_profit = position.take_profit
        trailing_pct = position.trailing_stop_pct
        regimes = settings.get("regimes")
        candles = ctx.market.history(position.symbol, ATR_PERIOD + 1)
        regime = None if regimes is None else self._regime(position.symbol, regimes, candles)
        if regimes is None:
            notes.append(lambda: "no volatility regimes in the policy")
        elif regime is None:
            notes.append(lambda: f"ATR unknown (fewer than {ATR_PERIOD + 1} candles)")
        else:
            sl_atr = float(regime.settings["sl_atr"])
            distance = sl_atr * regime.atr * factor
            regime_stop = price - sign * distance
            notes.append(
                lambda: f"{regime.name} regime (ATR {regime.atr:.6g} = {regime.atr_pct:.3f}%)"
            )
            if regime_stop > 0:
                candidates.append(
                    (
                        regime_stop,
                        lambda: (
                            f"regime: price {price:g} {'-' if sign > 0 else '+'} {sl_atr:g} x ATR"
                            + (f" x DEFENSIVE_EXIT {factor:g}" if defensive else "")
                        ),
                    )
                )
            regime_tp = position.entry_price + sign * float(regime.settings["tp_atr"]) * regime.atr
            if (regime_tp - price) * sign > 0:
                take_profit = regime_tp
                notes.append(
                    lambda: (
                        f"TP {regime_tp:.6g} = entry {'+' if sign > 0 else '-'} "
                        f"{float(regime.settings['tp_atr']):g} x ATR"
                    )
                )
            else:
                notes.append(lambda: f"regime TP {regime_tp:.6g} is behind the price, TP kept")
            regime_trailing = float(regime.settings["trailing_atr"]) * regime.atr_pct * factor
            activation = float(settings.get("trailing_activation_r", 0.0))
            r_now = position.r_multiple(price)
            armed = activation <= 0 or (r_now is not None and r_now >= activation)
            if not armed:
                notes.append(
                    lambda: (
                        f"trailing not armed (R {'unknown' if r_now is None else f'{r_now:.3f}'} < {activation:g})"
                    )
                )
            elif trailing_pct is None or regime_trailing < trailing_pct:
                trailing_pct = regime_trailing
                notes.append(lambda: f"trailing {regime_trailing:.3f}%")

        lock = self._profit_lock(settings.get("profit_lock_tiers", ()), position, price)
        if lock is not None:
            lock_text = lock[1]
            candidates.append((lock[0], lambda: lock_text))

        if not candidates:
            return None
        chosen, (stop, _) = (max if side is Side.LONG else min)(
            enumerate(candidates), key=lambda c: c[1][0]
        )
        current = position.stop_loss
        if current is not None and not _tighter(side, stop, current):
            return None
        written = [(value, text()) for value, text in candidates]
        why = written[chosen][1]
        against = "no stop" if current is None else f"the stop {current:.6g}"
        others = [f"other stop {value:.6g} ({text})" for value, text in written if text != why]
        return PositionAction(
            position.id,
            ActionKind.SET_STOPS,
            f"stop {stop:.6g} ({why}) is tighter than {against}; "
            + "; ".join(others + [note() for note in notes]),
            stop_loss=stop,
            take_profit=take_profit,
            trailing_stop_pct=trailing_pct,
        )

    def _regime(
        self, symbol: str, regimes: Mapping[str, Any], candles: Sequence[Candle]
    ) -> Regime | None:
        """`volatility_regime(regimes, candles)`, remembered for the symbol's latest candles."""
        memo = self._regimes.get(symbol)
        if (
            memo is not None
            and memo[0] is regimes
            and len(memo[1]) == len(candles)
            and all(map(operator.is_, memo[1], candles))
        ):
            return memo[2]
        regime = volatility_regime(regimes, candles)
        self._regimes[symbol] = (regimes, candles, regime)
        return regime

    @staticmethod
    def _profit_lock(
        tiers: Sequence[Mapping[str, Any]], position: Position, price: float
    ) -> tuple[float, str] | None:
        """The stop the highest reached tier guarantees, or None below every tier."""
        r_multiple = position.r_multiple(price)
        risk_pct = position.initial_risk_pct()
        if r_multiple is None or risk_pct is None:
            return None
        reached = [tier for tier in tiers if float(tier["at_r"]) <= r_multiple]
        if not reached:
            return None
        tier = max(reached, key=lambda t: float(t["at_r"]))
        lock_r = float(tier["lock_r"])
        risk = position.entry_price * risk_pct / 100.0
        stop = position.entry_price + position.side.sign * lock_r * risk
        return (
            stop,
            f"profit lock: entry {position.entry_price:g} "
            f"{'+' if position.side is Side.LONG else '-'} {lock_r:g}R x {risk:.6g} "
            f"at R {r_multiple:.3f} >= tier {float(tier['at_r']):g}R",
        )

    @hookimpl
    def aios_filter_entry(self, ctx: CycleContext, intent: EntryIntent) -> EntryVerdict:
        symbol = intent.signal.symbol
        cooldown_s = float(self.settings(ctx)["reentry_cooldown_s"])
        closed_at = self._last_exit.get(symbol)
        if closed_at is None:
            return EntryVerdict(True, f"no recent exit on {symbol}")
        elapsed_s = (ctx.now - closed_at).total_seconds()
        if elapsed_s < cooldown_s:
            return EntryVerdict(
                False,
                f"{symbol} was exited {elapsed_s:g}s ago, within the re-entry cooldown "
                f"of {cooldown_s:g}s",
            )
        return EntryVerdict(
            True, f"{symbol} was exited {elapsed_s:g}s ago, cooldown {cooldown_s:g}s has passed"
        )

    @hookimpl
    def aios_trade_closed(self, ctx: CycleContext, trade: ClosedTrade) -> None:
        previous = self._last_exit.get(trade.symbol)
        if previous is None or trade.closed_at > previous:
            self._last_exit[trade.symbol] = trade.closed_at
