"""Reading candle files (freqtrade's CSV layout) with located errors."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path

from aios.model import Candle

HEADER = ["timestamp_ms", "open", "high", "low", "close", "volume"]


class DataError(Exception):
    """A candle file that cannot be used; the message names the file and line."""


def bundled_data_dir() -> Path:
    from aios.policy.schema import bundled_path

    return bundled_path("data") / "candles"


def symbol_from_filename(path: Path) -> str:
    """`ETH_BTC-5m.csv` -> `ETH/BTC`."""
    pair = path.name.split("-", 1)[0]
    base, _, quote = pair.partition("_")
    return f"{base}/{quote}"


def load_csv_candles(path: Path) -> list[Candle]:
    """Candles of one file, sorted and checked (no duplicates, positive prices, high >= low)."""
    candles: list[Candle] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != HEADER:
                raise DataError(
                    f"{path}:1: expected the header {','.join(HEADER)}, found {','.join(header or [])!r}"
                )
            previous: datetime | None = None
            for line, row in enumerate(reader, start=2):
                try:
                    stamp, *values = row
                    open_, high, low, close, volume = (float(v) for v in values)
                    time = datetime.fromtimestamp(int(stamp) / 1000, tz=UTC)
                except ValueError:
                    raise DataError(
                        f"{path}:{line}: expected 6 numeric columns, found {row!r}"
                    ) from None
                if (
                    not all(math.isfinite(v) for v in (open_, high, low, close, volume))
                    or min(open_, high, low, close) <= 0
                    or volume < 0
                ):
                    raise DataError(
                        f"{path}:{line}: prices must be positive and finite, volume non-negative"
                    )
                if high < max(open_, close, low) or low > min(open_, close):
                    raise DataError(f"{path}:{line}: high/low do not bracket open and close")
                if previous is not None and time <= previous:
                    raise DataError(
                        f"{path}:{line}: candle at {time.isoformat()} is not after the previous one"
                    )
                previous = time
                candles.append(Candle(time, open_, high, low, close, volume))
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return candles


def load_directory(directory: Path, symbols: list[str] | None = None) -> dict[str, list[Candle]]:
    """Every `*.csv` in a directory, keyed by symbol (optionally only `symbols`)."""
    series: dict[str, list[Candle]] = {}
    for path in sorted(directory.glob("*.csv")):
        symbol = symbol_from_filename(path)
        if symbols is None or symbol in symbols:
            series[symbol] = load_csv_candles(path)
    return series
