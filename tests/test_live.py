"""Live dry runs: candles polled from a venue drive the same runtime as a replay.

The venue is a fake candle source over the bundled data that reveals one more closed candle per
poll, so the test controls time completely (no network, no sleeping).
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from typer.testing import CliRunner

from aios import app as application
from aios.cli import app
from aios.data import bundled_data_dir
from aios.exchange.paper import PaperBroker
from aios.live import LiveRunner
from aios.model import Candle
from aios.runtime import Runtime, load_series
from aios.state import database_path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "policies" / "default.yaml"
SYMBOLS = ["ETH/BTC", "LTC/BTC", "XMR/BTC"]
WARMUP = 300
POLLS = 40


class RevealingVenue:
    """Serves each symbol's candles up to a cursor that moves one candle time per poll."""

    def __init__(self, series: dict[str, list[Candle]], start: int) -> None:
        self.series = series
        self.times = sorted({c.time for candles in series.values() for c in candles})
        self.cursor = start
        self.failing: set[str] = set()
        self.calls = 0

    def fetch_candles(
        self,
        symbol: str,
        timeframe: str,
        since: datetime | None = None,
        limit: int = 500,
        *,
        closed_only: bool = False,
    ) -> list[Candle]:
        self.calls += 1
        if symbol in self.failing:
            raise TimeoutError(f"{symbol} timed out")
        horizon = self.times[self.cursor - 1]
        visible = [c for c in self.series[symbol] if c.time <= horizon]
        return visible[-limit:]

    def tick(self) -> None:
        self.cursor += 1


def make_runtime(state: Path) -> tuple[Runtime, dict[str, list[Candle]]]:
    policy, plugins = application.load([DEFAULT], env={})
    series = load_series(bundled_data_dir(), SYMBOLS)
    return Runtime(
        policy, plugins, {s: [] for s in SYMBOLS}, state, PaperBroker.from_policy
    ), series


def fills(state: Path) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(database_path(state))
    try:
        return connection.execute(
            "SELECT book, order_id, symbol, kind, time, price, quantity, fee FROM fills ORDER BY id"
        ).fetchall()
    finally:
        connection.close()


def test_a_live_dry_run_trades_exactly_like_a_replay_of_the_same_candles(tmp_path: Path) -> None:
    runtime, series = make_runtime(tmp_path / "live")
    venue = RevealingVenue(series, WARMUP)
    runner = LiveRunner(
        runtime,
        venue,
        SYMBOLS,
        "5m",
        poll_s=30,
        warmup_candles=WARMUP,
        sleep=lambda _: venue.tick(),
    )
    report = runner.run(max_polls=POLLS)
    assert report is not None
    assert report.candles == WARMUP + POLLS - 1
    policy, plugins = application.load([DEFAULT], env={})
    replay = Runtime(policy, plugins, series, tmp_path / "replay", PaperBroker.from_policy)
    replay.run(limit=WARMUP + POLLS - 1)
    assert fills(tmp_path / "live") == fills(tmp_path / "replay")
    assert fills(tmp_path / "live"), "something traded"


def test_a_symbol_that_fails_to_report_holds_the_clock_back(tmp_path: Path) -> None:
    runtime, series = make_runtime(tmp_path / "s")
    venue = RevealingVenue(series, WARMUP)
    runner = LiveRunner(runtime, venue, SYMBOLS, "5m", poll_s=30, warmup_candles=WARMUP)
    first = runner.poll()
    assert len(first) == WARMUP
    venue.tick()
    venue.failing = {"LTC/BTC"}
    venue.tick()
    assert runner.poll() == []  # LTC/BTC has not reported the newer times
    assert runner.errors == ["LTC/BTC: LTC/BTC timed out"]
    venue.failing = set()
    assert len(runner.poll()) == 2  # both missed times, in order
    runtime.end("stopped")


def test_an_unknown_exchange_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", "--exchange", "kraken", "--state-dir", str(tmp_path)], env={}
    )
    assert result.exit_code == 2 and "unknown exchange 'kraken'" in result.output


def test_an_exchange_id_ccxt_does_not_know_is_a_usage_error_before_anything_is_recorded(
    tmp_path: Path,
) -> None:
    result = CliRunner().invoke(
        app,
        ["run", "--exchange", "ccxt:nosuchvenue", "--dry-run", "--state-dir", str(tmp_path)],
        env={},
    )
    assert result.exit_code == 2, result.output
    assert "ccxt has no exchange 'nosuchvenue'" in result.output
    assert not database_path(tmp_path).exists()
