"""The metrics that trigger conditions may name.

A condition naming a metric that nothing provides would never fire (or, failing closed, would
always fire); either way the policy would be silently wrong, so validation refuses unknown names.
The core provides the metrics below; plugins declare their own through a declaration hook.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricSpec:
    """A metric that conditions can read: its name, unit and who provides it."""

    name: str
    unit: str
    description: str
    provider: str = "core"


CORE_METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "drawdown_pct", "%", "Equity drawdown from its running peak (not from the start)."
        ),
        MetricSpec("losing_streak", "trades", "Consecutive losing trades up to now."),
        MetricSpec(
            "win_rate", "fraction", "Share of winning trades over the recent window (0..1)."
        ),
        MetricSpec("volatility_pct", "%", "Realised volatility of the traded universe per candle."),
        MetricSpec("exposure_pct", "%", "Open notional as a share of equity."),
        MetricSpec("open_positions", "positions", "Number of open positions."),
        MetricSpec(
            "daily_pnl_pct", "%", "PnL since the start of the UTC day, as a share of equity."
        ),
        MetricSpec("data_feed_staleness_s", "s", "Age of the newest candle received."),
        MetricSpec("data_feed_gap_candles", "candles", "Candles missing in the recent feed."),
        MetricSpec(
            "exchange_error_rate", "fraction", "Share of failed exchange calls recently (0..1)."
        ),
        MetricSpec("circuit_breaker_open", "0/1", "1 while the exchange circuit breaker is open."),
        MetricSpec("store_errors", "errors", "Failed writes to the state store recently."),
        MetricSpec(
            "unhealthy_subsystems", "subsystems", "Subsystems currently degraded or tripped."
        ),
        MetricSpec("critical_subsystems", "subsystems", "Subsystems in critical health."),
        # Reported by the bus where one is used (the risk gate): absent in a single process.
        MetricSpec("bus_connected", "0/1", "1 while the event bus (Redis) is reachable."),
        MetricSpec("bus_reconnects", "reconnects", "Reconnects to the event bus so far."),
        MetricSpec(
            "bus_dead_letters",
            "entries",
            "Malformed events moved to the dead-letter stream so far.",
        ),
    )
}
