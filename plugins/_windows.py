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
import math
from collections.abc import Sequence
from datetime import datetime

from aios.model import Candle

#: The cache keeps at most this many candles beyond the longest window asked for.
SLACK = 1024


class CandleSeries:
    """One symbol's recent candles with their quote volume and close-to-close return."""

    __slots__ = ("candles", "invalid_returns", "products", "returns", "squares", "sums", "times")

    def __init__(self) -> None:
        self.candles: list[Candle] = []
        self.times: list[datetime] = []
        #: volume x close of each candle
        self.products: list[float] = []
        #: (close - previous close) x 100 / previous close; None for the first candle kept and
        #: after a non-positive close (where the straightforward computation skips the pair)
        self.returns: list[float | None] = []
        self.invalid_returns = 0
        #: running sums, exact (integers: each return times 2**SCALE_BITS), of the returns and
        #: of their squares, up to and including each index: a window's sums are differences
        self.sums: list[int] = []
        self.squares: list[int] = []

    def _append(self, candle: Candle) -> None:
        previous = self.candles[-1] if self.candles else None
        value: float | None = None
        scaled = 0
        if previous is not None and previous.close > 0:
            value = (candle.close - previous.close) * 100.0 / previous.close
            exact = _scaled(value)
            if exact is None:  # not finite: the returns path is off for this cache
                self.invalid_returns += 1
            else:
                scaled = exact
        elif previous is not None:
            self.invalid_returns += 1
        self.candles.append(candle)
        self.times.append(candle.time)
        self.products.append(candle.volume * candle.close)
        self.returns.append(value)
        self.sums.append((self.sums[-1] if self.sums else 0) + scaled)
        self.squares.append((self.squares[-1] if self.squares else 0) + scaled * scaled)

    def _reset(self, window: list[Candle]) -> None:
        self.candles, self.times, self.products, self.returns = [], [], [], []
        self.sums, self.squares = [], []
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
        self.sums = self.sums[drop:]
        self.squares = self.squares[drop:]
        self.invalid_returns = sum(
            1
            for earlier, value in zip(self.candles[:-1], self.returns[1:], strict=True)
            if not earlier.close > 0 or (value is not None and _scaled(value) is None)
        )

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

    def volatility_bracket(self, start: int, count: int) -> tuple[float, float] | None:
        """Bounds that certainly contain `population_stdev` of the window's returns (as
        `returns_in` gives them), from the exact sums, without a pass over the window; None
        when there are fewer than two returns or the cache has an invalid one.

        `population_stdev` rounds: its mean m' is within 2.1u |m| of the exact mean m (u =
        2**-53), and each squared deviation, their correctly rounded sum, the division and the
        square root add at most about 5u relative; so its result lies within
        [s (1 - 6u), sqrt(s**2 + (2.1u m)**2) (1 + 6u)] for the exact population stdev s.
        The bounds below are wider still (1e-12 relative, 1e-15 |m|)."""
        returns = count - 1
        if self.invalid_returns or returns < 2:
            return None
        first, last = start, start + count - 1
        total = self.sums[last] - self.sums[first]
        squares = self.squares[last] - self.squares[first]
        scale = 1 << (2 * SCALE_BITS)
        # n^2 var = n * sum(x^2) - (sum x)^2, exactly; int / int division rounds correctly
        variance = (returns * squares - total * total) / (returns * returns * scale)
        mean = total / (returns << SCALE_BITS)
        if not 0.0 <= variance < 1e300 or not abs(mean) < 1e150:
            return None
        spread = math.sqrt(variance)
        lower = spread * (1.0 - 1e-12)
        upper = math.sqrt(variance + (1e-15 * mean) ** 2) * (1.0 + 1e-12)
        return lower, upper


#: Returns are held as exact integers: value x 2**SCALE_BITS (every finite double is an
#: integer multiple of 2**-1074).
SCALE_BITS = 1074


def _scaled(value: float) -> int | None:
    """`value` x 2**SCALE_BITS as an exact integer; None when it is not finite."""
    try:
        numerator, denominator = value.as_integer_ratio()
    except (OverflowError, ValueError):
        return None
    return numerator << (SCALE_BITS - denominator.bit_length() + 1)


class WindowCache:
    """CandleSeries by symbol."""

    def __init__(self) -> None:
        self._series: dict[str, CandleSeries] = {}

    def series(self, symbol: str) -> CandleSeries:
        found = self._series.get(symbol)
        if found is None:
            found = self._series[symbol] = CandleSeries()
        return found
