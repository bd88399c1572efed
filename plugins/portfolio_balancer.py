"""Portfolio Balancer (PBA): the pre-trade filter that enforces exposure caps, and the sizer.

Filter (`aios_filter_entry`). The intent's `quote_amount` (already sized and multiplied by the
engine) is added as new exposure on the signal's side, and the caps are checked in this order;
the first one that fails blocks the entry and names the cap and the numbers:

1. open positions already >= `max_open_positions`;
2. total exposure after entry > `max_total_exposure_pct` of equity;
3. the symbol's exposure (both sides) after entry > `max_symbol_exposure_pct`;
4. the signal side's exposure after entry > `max_side_exposure_pct`;
5. any correlated group containing the symbol (in policy order) > its `max_exposure_pct`.

Exposure is open notional at current prices (`PortfolioView.exposure_quote`). Exactly at a cap
is allowed. Equity that is not positive blocks every entry: no percentage of it can be met.

Sizing (`aios_size`): risk per trade. The amount whose loss at the stop equals
`risk_per_trade_pct` of equity is equity x risk_per_trade_pct / sl_pct (the two percents
cancel: 1 % risk at a 5 % stop is 20 % of equity). It is then capped at the symbol's headroom
(cap minus what is already open in the symbol), and never below 0. An intent without a stop
distance (sl_pct <= 0) cannot be sized by risk and gets 0, which the engine drops. The engine
applies the RL multiplier and the risk mode's size multiplier afterwards, so the filter may
still block a multiplied amount.

Modelling choice: comparisons against a cap treat a relative difference below `REL_TOLERANCE`
(1e-9) as equal, so a sum of floats that lands one rounding step above a cap (0.1 + 0.2 against
0.3) counts as "at the cap", as its exact value does. That is far below any amount that matters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from aios.hookspecs import hookimpl
from aios.model import CycleContext, EntryIntent, EntryVerdict, SizeProposal
from aios.plugin import Subsystem

#: Relative tolerance under which an exposure counts as exactly at its cap (float rounding only).
REL_TOLERANCE = 1e-9


def exceeds(value: float, cap: float) -> bool:
    """Whether `value` is above `cap` by more than float rounding."""
    return value > cap and not math.isclose(value, cap, rel_tol=REL_TOLERANCE, abs_tol=0.0)


def _pct(amount: float, equity: float) -> float:
    return 100.0 * amount / equity


class PortfolioBalancer(Subsystem):
    """Blocks entries that would breach an exposure cap; sizes entries by risk per trade."""

    name = "portfolio_balancer"

    @hookimpl
    def aios_filter_entry(self, ctx: CycleContext, intent: EntryIntent) -> EntryVerdict:
        settings = self.settings(ctx)
        portfolio = ctx.portfolio
        signal = intent.signal
        amount = intent.quote_amount
        equity = portfolio.equity

        open_count = len(portfolio.positions)
        max_positions = int(settings["max_open_positions"])
        if open_count >= max_positions:
            return EntryVerdict(
                False,
                f"{open_count} positions open, max_open_positions is {max_positions}",
            )
        if equity <= 0:
            return EntryVerdict(False, f"equity is {equity:.8g}: no exposure cap can be met")

        def breach(label: str, key: str, cap_pct: float, current: float) -> str | None:
            """The block reason when `current + amount` exceeds `cap_pct` of equity."""
            after = current + amount
            cap = equity * cap_pct / 100.0
            if not exceeds(after, cap):
                return None
            return (
                f"{label} after entry {after:.8g} ({_pct(after, equity):.8g}% of equity "
                f"{equity:.8g}) = {current:.8g} open + {amount:.8g} new, above {key} "
                f"{cap_pct:g}% ({cap:.8g})"
            )

        total = portfolio.exposure_quote()
        symbol = portfolio.exposure_quote(symbol=signal.symbol)
        side = portfolio.exposure_quote(side=signal.side)
        checks: list[tuple[str, str, float, float]] = [
            (
                "total exposure",
                "max_total_exposure_pct",
                float(settings["max_total_exposure_pct"]),
                total,
            ),
            (
                f"{signal.symbol} exposure",
                "max_symbol_exposure_pct",
                float(settings["max_symbol_exposure_pct"]),
                symbol,
            ),
            (
                f"{signal.side.value} exposure",
                "max_side_exposure_pct",
                float(settings["max_side_exposure_pct"]),
                side,
            ),
        ]
        for group in _groups_of(settings, signal.symbol):
            members = [str(member) for member in group["symbols"]]
            checks.append(
                (
                    f"group {group['name']} ({', '.join(members)}) exposure",
                    f"{group['name']}.max_exposure_pct",
                    float(group["max_exposure_pct"]),
                    sum(portfolio.exposure_quote(symbol=member) for member in members),
                )
            )
        for label, key, cap_pct, current in checks:
            reason = breach(label, key, cap_pct, current)
            if reason is not None:
                return EntryVerdict(False, reason)

        return EntryVerdict(
            True,
            f"within caps with {amount:.8g} new on {signal.side.value} {signal.symbol}: "
            f"{open_count}/{max_positions} positions, total "
            f"{_pct(total + amount, equity):.8g}%, symbol {_pct(symbol + amount, equity):.8g}%, "
            f"side {_pct(side + amount, equity):.8g}% of equity {equity:.8g}",
        )

    @hookimpl
    def aios_size(self, ctx: CycleContext, intent: EntryIntent) -> SizeProposal:
        settings = self.settings(ctx)
        portfolio = ctx.portfolio
        equity = portfolio.equity
        risk_pct = float(settings["risk_per_trade_pct"])
        sl_pct = intent.sl_pct
        symbol = intent.signal.symbol

        if equity <= 0:
            return SizeProposal(f"equity is {equity:.8g}: nothing to size", quote_amount=0.0)
        if sl_pct <= 0:
            return SizeProposal(
                f"SL distance {sl_pct:g}%: risk per trade cannot size an entry without a stop",
                quote_amount=0.0,
            )

        risk_amount = equity * risk_pct / sl_pct
        reason = (
            f"risk {risk_pct:g}% of equity {equity:.8g} at SL {sl_pct:.3f}%: "
            f"{equity:.8g} x {risk_pct:g} / {sl_pct:.3f} = {risk_amount:.8g}"
        )
        cap_pct = float(settings["max_symbol_exposure_pct"])
        cap = equity * cap_pct / 100.0
        open_in_symbol = portfolio.exposure_quote(symbol=symbol)
        headroom = max(0.0, cap - open_in_symbol)
        if risk_amount > headroom:
            reason += (
                f"; capped to {symbol} headroom {headroom:.8g} (max_symbol_exposure_pct "
                f"{cap_pct:g}% = {cap:.8g}, {open_in_symbol:.8g} open)"
            )
            return SizeProposal(reason, quote_amount=headroom)
        return SizeProposal(reason, quote_amount=risk_amount)


def _groups_of(settings: Mapping[str, Any], symbol: str) -> list[Mapping[str, Any]]:
    """The correlated groups that contain `symbol`, in policy order."""
    groups = settings.get("correlated_groups") or []
    return [group for group in groups if symbol in group["symbols"]]
