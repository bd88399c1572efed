"""Market data as the engine sees it: candles up to the cycle's time, never after."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from datetime import datetime

from aios.model import Candle


class InMemoryMarket:
    """A `MarketView` over candle lists, moved forward with `advance(now)`.

    Each symbol's candles must be sorted by time; a candle is visible once its open time is at or
    before `now` (replay steps `now` to each candle's time as it closes).
    """

    def __init__(
        self,
        candles: Mapping[str, Sequence[Candle]],
        now: datetime | None = None,
        spreads_bps: Mapping[str, float] | None = None,
    ) -> None:
        self._candles = {symbol: list(series) for symbol, series in candles.items()}
        self._times = {symbol: [c.time for c in series] for symbol, series in self._candles.items()}
        self._spreads = dict(spreads_bps or {})
        self._now = now
        self._visible: dict[str, int] = {}
        self.advance(now)

    def advance(self, now: datetime | None) -> None:
        """Make the market show everything up to `now` (None: everything)."""
        self._now = now
        for symbol, times in self._times.items():
            self._visible[symbol] = len(times) if now is None else bisect.bisect_right(times, now)

    def append(self, symbol: str, candle: Candle) -> None:
        """A new candle from a live feed (must be newer than the symbol's last)."""
        series = self._candles.setdefault(symbol, [])
        times = self._times.setdefault(symbol, [])
        if times and candle.time <= times[-1]:
            raise ValueError(
                f"{symbol}: candle at {candle.time.isoformat()} is not after {times[-1].isoformat()}"
            )
        series.append(candle)
        times.append(candle.time)
        if self._now is None or candle.time <= self._now:
            self._visible[symbol] = (
                len(times) if self._now is None else bisect.bisect_right(times, self._now)
            )

    @property
    def now(self) -> datetime | None:
        return self._now

    @property
    def symbols(self) -> Sequence[str]:
        return [symbol for symbol, visible in self._visible.items() if visible > 0]

    def history(self, symbol: str, count: int) -> Sequence[Candle]:
        visible = self._visible.get(symbol, 0)
        if visible == 0 or count <= 0:
            return []
        return self._candles[symbol][max(0, visible - count) : visible]

    def last(self, symbol: str) -> Candle | None:
        visible = self._visible.get(symbol, 0)
        return self._candles[symbol][visible - 1] if visible else None

    def spread_bps(self, symbol: str) -> float | None:
        return self._spreads.get(symbol)
