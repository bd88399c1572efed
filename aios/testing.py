"""Helpers to exercise plugins without a runtime: contexts, markets, portfolios, candles.

Used by aios's own tests and available to third-party plugin authors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aios.market import InMemoryMarket
from aios.model import (
    Candle,
    ClosedTrade,
    CycleContext,
    DirectiveKind,
    HealthReport,
    HealthStatus,
    MarketView,
    PortfolioView,
    Position,
    RiskMode,
    Side,
    Stage,
)
from aios.policy import Policy, load_policy, load_policy_text

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2018, 1, 10, 5, 0, tzinfo=UTC)


def default_policy(
    overlay: str | None = None,
    *,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Policy:
    """The bundled default policy, optionally with an overlay (YAML text) merged on top."""
    from aios.policy.schema import bundled_path

    base = bundled_path("policies") / "default.yaml"
    if overlay is None:
        return load_policy([base], env={}, sections=sections, metrics=metrics)
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as handle:
        handle.write(overlay)
        name = handle.name
    try:
        return load_policy([base, name], env={}, sections=sections, metrics=metrics)
    finally:
        Path(name).unlink(missing_ok=True)


def policy_with_plugins(plugins: Iterable[Any], overlay: str | None = None) -> Policy:
    """The default policy validated with these plugins' sections and metrics (for plugin tests):
    the overlay can then configure a third-party plugin's own section."""
    from aios.app import declarations
    from aios.registry import plugin_set

    sections, metrics = declarations(plugin_set(plugins))
    return default_policy(overlay, sections=sections, metrics=metrics)


def policy_from_text(text: str) -> Policy:
    return load_policy_text(text, env={})


def candles_from_closes(
    closes: Sequence[float],
    start: datetime = T0,
    step: timedelta = timedelta(minutes=5),
    volume: float = 100.0,
) -> list[Candle]:
    """Candles whose open is the previous close and whose high/low bracket both."""
    candles: list[Candle] = []
    previous = closes[0]
    for index, close in enumerate(closes):
        high, low = max(previous, close), min(previous, close)
        candles.append(Candle(start + step * index, previous, high, low, close, volume))
        previous = close
    return candles


def market(
    series: Mapping[str, Sequence[Candle]],
    now: datetime | None = None,
    spreads_bps: Mapping[str, float] | None = None,
) -> InMemoryMarket:
    return InMemoryMarket(series, now, spreads_bps)


def position(
    symbol: str = "ETH/BTC",
    side: Side = Side.LONG,
    entry: float = 100.0,
    quantity: float = 1.0,
    stop_loss: float | None = 92.0,
    take_profit: float | None = 106.0,
    opened_at: datetime = T0,
    position_id: str = "p1",
    **extra: Any,
) -> Position:
    """A position with test defaults; `extra` sets any other Position field."""
    return Position(
        position_id, symbol, side, entry, quantity, opened_at, stop_loss, take_profit, **extra
    )


def closed_trade(
    pnl_pct: float,
    symbol: str = "ETH/BTC",
    closed_at: datetime = T0,
    confidence: float | None = 0.7,
    position_id: str = "p1",
    side: Side = Side.LONG,
) -> ClosedTrade:
    entry = 100.0
    exit_price = entry * (1 + side.sign * pnl_pct / 100.0)
    return ClosedTrade(
        position_id,
        symbol,
        side,
        entry,
        exit_price,
        1.0,
        closed_at - timedelta(hours=1),
        closed_at,
        pnl_pct,
        exit_price - entry if side is Side.LONG else entry - exit_price,
        "test",
        confidence,
    )


def context(
    policy: Policy | None = None,
    *,
    now: datetime = T0,
    market_view: MarketView | None = None,
    portfolio: PortfolioView | None = None,
    stage: Stage = Stage.AUTONOMY,
    risk_mode: RiskMode = RiskMode.NORMAL,
    directives: frozenset[DirectiveKind] = frozenset(),
    metrics: Mapping[str, float] | None = None,
    cycle: int = 1,
) -> CycleContext:
    """A cycle context with sensible defaults (the default policy, an empty market and book)."""
    return CycleContext(
        now=now,
        cycle=cycle,
        policy=policy or default_policy(),
        stage=stage,
        market=market_view or InMemoryMarket({}),
        portfolio=portfolio or PortfolioView(equity=1.0, cash=1.0),
        risk_mode=risk_mode,
        directives=directives,
        metrics=dict(metrics or {}),
    )


def healthy_components() -> list[HealthReport]:
    """What a runtime reports when the data feed, the exchange and the store are fine."""
    return [
        HealthReport(
            "data_feed",
            HealthStatus.OK,
            "fresh",
            {"data_feed_staleness_s": 0.0, "data_feed_gap_candles": 0.0},
        ),
        HealthReport(
            "exchange",
            HealthStatus.OK,
            "reachable",
            {"exchange_error_rate": 0.0, "circuit_breaker_open": 0.0},
        ),
        HealthReport("store", HealthStatus.OK, "writable", {"store_errors": 0.0}),
    ]
