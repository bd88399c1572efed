"""Spike guard: no new entry into a symbol whose last candle spiked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aios.hookspecs import hookimpl
from aios.metrics import MetricSpec
from aios.model import CycleContext, EntryIntent, EntryVerdict, PolicySection
from aios.plugin import Subsystem

SECTION_SCHEMA: Mapping[str, Any] = {
    "properties": {
        "max_candle_range_pct": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 5.0,
            "description": "Largest high-low range of the last candle, in percent of its low, at which an entry is still allowed.",
        }
    }
}


def candle_range_pct(ctx: CycleContext, symbol: str) -> float | None:
    """The last candle's high-low range in percent of its low (None without data)."""
    history = ctx.market.history(symbol, 1)
    if not history or history[-1].low <= 0:
        return None
    last = history[-1]
    return (last.high - last.low) / last.low * 100.0


class SpikeGuard(Subsystem):
    name = "spike_guard"
    aios_contract = "1.0"  # the hook contract it is written against (a literal, not Subsystem's)

    @hookimpl
    def aios_policy_section(self) -> PolicySection:
        return PolicySection(self.name, SECTION_SCHEMA)

    @hookimpl
    def aios_metrics(self) -> list[MetricSpec]:
        return [
            MetricSpec(
                "max_candle_range_pct", "%", "Largest last-candle high-low range across the market."
            )
        ]

    @hookimpl
    def aios_collect_metrics(self, ctx: CycleContext) -> dict[str, float]:
        ranges = [
            r for r in (candle_range_pct(ctx, s) for s in ctx.market.symbols) if r is not None
        ]
        return {"max_candle_range_pct": max(ranges)} if ranges else {}

    @hookimpl
    def aios_filter_entry(self, ctx: CycleContext, intent: EntryIntent) -> EntryVerdict:
        limit = float(self.settings(ctx)["max_candle_range_pct"])
        spike = candle_range_pct(ctx, intent.signal.symbol)
        if spike is not None and spike > limit:
            return EntryVerdict(False, f"last candle range {spike:.3f}% > {limit:g}%")
        return EntryVerdict(
            True, f"last candle range {spike if spike is not None else 0:.3f}% within {limit:g}%"
        )
