"""Per-candle values computed once per candle, read back for any trailing window.

A filter that looks at the last N candles of a symbol on every cycle would otherwise redo N
multiplications or divisions per symbol per candle; here each candle's derived values (quote
volume, the return from the previous close) are computed when the candle is first seen and the
window's values are list slices of them. The sums over a slice are then done with the same
builtins, in the same order, on the same floats as the straightforward computation, so the
results are identical to the last bit (tests/subsystems/test_windows.py checks it on real
candles).

The cache trusts nothing: a window is served from it only when the cached candles equal the
window's candles (a list comparison, which is an identity check per candle for the market's own
objects); anything else (another market, a gap, a shorter history) rebuilds it from the window.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import datetime

from aios.model import Candle

#: The cache keeps at most this many candles beyond the longest window asked for.
SLACK = 1024


class CandleSeries:
    """One symbol's recent candles with their quote volume and close-to-close return."""

    __slots__ = ("candles", "invalid_returns", "products", "returns", "times")

    def __init__(self) -> None:
        self.candles: list[Candle] = []
        self.times: list[datetime] = []
        #: volume x close of each candle
        self.products: list[float] = []
        #: (close - previous close) x 100 / previous close; None for the first candle kept and
        #: after a non-positive close (where the straightforward computation skips the pair)
        self.returns: list[float | None] = []
        self.invalid_returns = 0

    def _append(self, candle: Candle) -> None:
        previous = self.candles[-1] if self.candles else None
        value: float | None = None
        if previous is not None and previous.close > 0:
            value = (candle.close - previous.close) * 100.0 / previous.close
        elif previous is not None:
            self.invalid_returns += 1
        self.candles.append(candle)
        self.times.append(candle.time)
        self.products.append(candle.volume * candle.close)
        self.returns.append(value)

    def _reset(self, window: list[Candle]) -> None:
        self.candles, self.times, self.products, self.returns = [], [], [], []
        self.invalid_returns = 0
        for candle in window:
            self._append(candle)

    def _trim(self, keep: int) -> None:
        if len(self.candles) <= keep + SLACK:
            return
        drop = len(self.candles) - keep
        # Dropping the front: the new first candle has no previous one in the cache, and its
        # return is never read (a window's first return is the pair inside the window).
        self.candles = self.candles[drop:]
        self.times = self.times[drop:]
        self.products = self.products[drop:]
        self.returns = self.returns[drop:]
        self.invalid_returns = sum(1 for earlier in self.candles[:-1] if not earlier.close > 0)

    def locate(self, window: Sequence[Candle]) -> int:
        """The cache index of `window[0]` once the cache holds exactly `window` from there."""
        candles = window if isinstance(window, list) else list(window)
        count = len(candles)
        if count == 0:
            return 0
        start = bisect.bisect_left(self.times, candles[0].time)
        have = len(self.candles) - start
        if start < len(self.candles) and self.times[start] == candles[0].time:
            if have >= count:
                if self.candles[start : start + count] == candles:
                    return start
            elif self.candles[start:] == candles[:have]:
                for candle in candles[have:]:
                    self._append(candle)
                self._trim(count)
                return len(self.candles) - count
        self._reset(candles)
        return 0

    def quote_volume(self, start: int, count: int) -> float:
        """sum(volume x close) over the window, summed left to right like the plain loop."""
        return sum(self.products[start : start + count])

    def returns_in(self, start: int, count: int) -> list[float] | None:
        """The window's close-to-close returns in order; None when some pair in the cache has a
        non-positive earlier close (the caller then computes them itself)."""
        if self.invalid_returns:
            return None
        values = self.returns[start + 1 : start + count]
        return values  # type: ignore[return-value]


class WindowCache:
    """CandleSeries by symbol."""

    def __init__(self) -> None:
        self._series: dict[str, CandleSeries] = {}

    def series(self, symbol: str) -> CandleSeries:
        found = self._series.get(symbol)
        if found is None:
            found = self._series[symbol] = CandleSeries()
        return found
