"""Universe OS: which candidate symbols may open new trades.

Each candidate goes through the rules below in order; the first that fails excludes it, and is
the one reason given:

1. whitelist: when non-empty, only the symbols on it;
2. blacklist: never the symbols on it;
3. the dynamic filter (when `dynamic.enabled`), over the last `dynamic.lookback_candles`
   candles of the symbol:
   a. quote volume, the sum of volume x close, >= `min_quote_volume`;
   b. spread (`ctx.market.spread_bps`) <= `max_spread_bps`; skipped when the venue gives none;
   c. volatility, the population standard deviation of the per-candle close-to-close returns
      in percent, within [`min_volatility_pct`, `max_volatility_pct`]; fewer than two candles
      give no return, and an unknown volatility fails (the filter fails closed);
   d. data quality, the candles present over the candles expected between the first and the
      last candle of the lookback (one per `universe.timeframe`), >= `min_data_quality`;
4. the emergency brake (when `emergency_brake.enabled`): a symbol whose last close is
   `max_symbol_drop_pct` or more below the highest close of its last `window_candles` candles.

Then at most `max_symbols` survive: the highest quote volume over the lookback first, ties by
symbol name (the quote volume ranks even when the dynamic filter is off). Thresholds are
inclusive: a value exactly at a limit passes, except the brake, which acts at its limit.
Percentages are computed as `difference x 100 / base` so that round inputs give exact results.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aios.hookspecs import hookimpl
from aios.model import Candle, CycleContext, UniverseProposal
from aios.numeric import population_stdev
from aios.plugin import Subsystem
from plugins._windows import WindowCache

#: Candle length of each `universe.timeframe` the schema allows, in seconds.
TIMEFRAME_SECONDS: Mapping[str, int] = {
    "1m": 60,
    "5m": 300,
    "15m": 900,
    "30m": 1800,
    "1h": 3600,
    "4h": 14400,
    "1d": 86400,
}


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def quote_volume(candles: Sequence[Candle]) -> float:
    """Traded value in the quote currency: the sum of volume x close."""
    return sum(candle.volume * candle.close for candle in candles)


def volatility_pct(candles: Sequence[Candle]) -> float | None:
    """Population stdev of close-to-close returns in percent; None without any return."""
    returns = [
        (later.close - earlier.close) * 100.0 / earlier.close
        for earlier, later in itertools.pairwise(candles)
        if earlier.close > 0
    ]
    return population_stdev(returns) if returns else None


def data_quality(candles: Sequence[Candle], timeframe_s: int) -> tuple[float, int]:
    """Candles present over candles expected between the first and the last one (at most 1),
    and the number expected."""
    if not candles:
        return 0.0, 0
    span_s = (candles[-1].time - candles[0].time).total_seconds()
    expected = int(span_s // timeframe_s) + 1
    return min(1.0, len(candles) / expected), expected


class UniverseOS(Subsystem):
    """Proposes the tradable subset of the candidates, with one reason per excluded symbol."""

    name = "universe_os"

    def __init__(self) -> None:
        # Per-candle quote volumes and returns, computed once per candle (see plugins._windows);
        # the results are those of `quote_volume` and `volatility_pct`, bit for bit.
        self._windows = WindowCache()

    @hookimpl
    def aios_universe(self, ctx: CycleContext, candidates: Sequence[str]) -> UniverseProposal:
        settings = self.settings(ctx)
        lookback = int(settings["dynamic"]["lookback_candles"])
        symbols = list(dict.fromkeys(candidates))
        excluded: dict[str, str] = {}
        eligible: list[tuple[str, float]] = []
        for symbol in symbols:
            reason = self._listed_out(symbol, settings)
            if reason is None:
                history = ctx.market.history(symbol, lookback)
                series = self._windows.series(symbol)
                start = series.locate(history)
                volume = series.quote_volume(start, len(history))
                bracket = series.volatility_bracket(start, len(history))
                # the returns are sliced only when the bracket does not decide (rarely)
                returns = functools.partial(series.returns_in, start, len(history))
                reason = self._filtered_out(
                    ctx, symbol, history, settings, volume, returns, bracket
                )
            if reason is None:
                eligible.append((symbol, volume))
            else:
                excluded[symbol] = reason

        max_symbols = int(settings["max_symbols"])
        ranked = sorted(eligible, key=lambda entry: (-entry[1], entry[0]))
        for rank, (symbol, volume) in enumerate(ranked[max_symbols:], start=max_symbols + 1):
            excluded[symbol] = (
                f"ranked {rank} by quote volume ({_fmt(volume)}), beyond max_symbols {max_symbols}"
            )
        kept = {symbol for symbol, _ in ranked[:max_symbols]}
        return UniverseProposal(
            allowed=tuple(s for s in symbols if s in kept),
            excluded={s: excluded[s] for s in symbols if s in excluded},
        )

    # --- the rules, in order -------------------------------------------------------------------

    @staticmethod
    def _listed_out(symbol: str, settings: Mapping[str, Any]) -> str | None:
        whitelist = settings["whitelist"]
        if whitelist and symbol not in whitelist:
            return "not on the whitelist"
        if symbol in settings["blacklist"]:
            return "on the blacklist"
        return None

    def _filtered_out(
        self,
        ctx: CycleContext,
        symbol: str,
        history: Sequence[Candle],
        settings: Mapping[str, Any],
        volume: float,
        returns: Callable[[], Sequence[float] | None],
        bracket: tuple[float, float] | None,
    ) -> str | None:
        dynamic = settings["dynamic"]
        if dynamic["enabled"]:
            reason = self._dynamic(ctx, symbol, history, dynamic, volume, returns, bracket)
            if reason is not None:
                return reason
        brake = settings["emergency_brake"]
        if brake["enabled"]:
            return self._brake(ctx, symbol, brake)
        return None

    @staticmethod
    def _dynamic(
        ctx: CycleContext,
        symbol: str,
        history: Sequence[Candle],
        dynamic: Mapping[str, Any],
        volume: float,
        returns: Callable[[], Sequence[float] | None],
        bracket: tuple[float, float] | None,
    ) -> str | None:
        """`volume` is `quote_volume(history)`; `returns()` the returns `volatility_pct` would
        compute (None: compute them here), asked for only when `bracket` does not decide; `bracket` bounds that certainly contain the
        volatility (plugins._windows): when they lie within the limits the volatility passes
        without being computed, otherwise it is computed exactly."""
        count = len(history)
        min_volume = float(dynamic["min_quote_volume"])
        if volume < min_volume:
            return (
                f"quote volume {_fmt(volume)} over {count} candles "
                f"< min_quote_volume {_fmt(min_volume)}"
            )
        spread, max_spread = ctx.market.spread_bps(symbol), float(dynamic["max_spread_bps"])
        if spread is not None and spread > max_spread:
            return f"spread {_fmt(spread)} bps > max_spread_bps {_fmt(max_spread)}"
        low, high = float(dynamic["min_volatility_pct"]), float(dynamic["max_volatility_pct"])
        if bracket is None or not low <= bracket[0] <= bracket[1] <= high:
            values = returns()
            if values is None:
                volatility = volatility_pct(history)
            else:
                volatility = population_stdev(values) if values else None
            if volatility is None:
                return f"volatility unknown: {count} candle(s), at least 2 needed"
            if not low <= volatility <= high:
                return f"volatility {_fmt(volatility)} % outside [{_fmt(low)}, {_fmt(high)}] %"
        quality, expected = data_quality(history, _timeframe_seconds(ctx))
        min_quality = float(dynamic["min_data_quality"])
        if quality < min_quality:
            return (
                f"data quality {_fmt(quality)} ({count} of {expected} candles) "
                f"< min_data_quality {_fmt(min_quality)}"
            )
        return None

    @staticmethod
    def _brake(ctx: CycleContext, symbol: str, brake: Mapping[str, Any]) -> str | None:
        window = int(brake["window_candles"])
        closes = [candle.close for candle in ctx.market.history(symbol, window)]
        if not closes or max(closes) <= 0:
            return None  # nothing to measure a drop from
        peak, last = max(closes), closes[-1]
        drop, limit = (peak - last) * 100.0 / peak, float(brake["max_symbol_drop_pct"])
        if drop < limit:
            return None
        return (
            f"emergency brake: last close {_fmt(last)} is {_fmt(drop)} % below the "
            f"{len(closes)}-candle high {_fmt(peak)} (max_symbol_drop_pct {_fmt(limit)})"
        )


def _timeframe_seconds(ctx: CycleContext) -> int:
    timeframe = ctx.policy.get("universe", "timeframe")
    try:
        return TIMEFRAME_SECONDS[str(timeframe)]
    except KeyError:
        raise ValueError(
            f"universe.timeframe {timeframe!r} is not one of {', '.join(TIMEFRAME_SECONDS)}"
        ) from None
