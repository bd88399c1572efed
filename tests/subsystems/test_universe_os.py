"""Universe OS: each rule at its boundary, the order of the rules, and max_symbols ranking.

The default policy's universe_os: no whitelist or blacklist, max_symbols 20; dynamic on with
lookback 288, min_quote_volume 0, max_spread_bps 50, volatility within [0, 10] %,
min_data_quality 0.95; emergency brake on at 15 % over 12 candles; universe.timeframe 5m.
Every series below is shorter than 288 candles, so the lookback sees all of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import pytest

from aios.model import Candle, UniverseProposal
from aios.policy import Policy
from aios.testing import candles_from_closes, context, default_policy, market
from plugins.universe_os import UniverseOS

POLICY = default_policy()
#: Ten flat 5m candles at close 2.0, volume 100: quote volume 10 x 100 x 2 = 2000,
#: volatility 0, data quality 10 / 10 = 1, no drop.
STEADY = candles_from_closes([2.0] * 10)


def universe(
    series: Mapping[str, Sequence[Candle]],
    policy: Policy = POLICY,
    spreads: Mapping[str, float] | None = None,
    candidates: Sequence[str] | None = None,
) -> UniverseProposal:
    ctx = context(policy, market_view=market(series, spreads_bps=spreads))
    return UniverseOS().aios_universe(ctx, list(candidates or series))


def overlay(section: str) -> Policy:
    """The default policy with `section` (YAML under subsystems.universe_os) merged in."""
    indented = "\n".join("    " + line for line in section.strip().splitlines())
    return default_policy(f"subsystems:\n  universe_os:\n{indented}\n")


def test_everything_passes_on_steady_data() -> None:
    result = universe({"ETH/BTC": STEADY, "LTC/BTC": STEADY})
    assert result == UniverseProposal(("ETH/BTC", "LTC/BTC"), {})


# --- whitelist and blacklist ---------------------------------------------------------------


def test_whitelist_then_blacklist() -> None:
    policy = overlay("whitelist: [ETH/BTC, LTC/BTC]\nblacklist: [XMR/BTC]")
    result = universe({s: STEADY for s in ("ETH/BTC", "LTC/BTC", "XMR/BTC", "ZEC/BTC")}, policy)
    assert result.allowed == ("ETH/BTC", "LTC/BTC")
    # XMR/BTC is on the blacklist too, but the whitelist comes first.
    assert result.excluded == {
        "XMR/BTC": "not on the whitelist",
        "ZEC/BTC": "not on the whitelist",
    }


def test_blacklist_with_an_empty_whitelist() -> None:
    result = universe({"ETH/BTC": STEADY, "XMR/BTC": STEADY}, overlay("blacklist: [XMR/BTC]"))
    assert result.allowed == ("ETH/BTC",)
    assert result.excluded == {"XMR/BTC": "on the blacklist"}


# --- dynamic filter ------------------------------------------------------------------------


@pytest.mark.parametrize(("minimum", "allowed"), [(2000.0, True), (2000.5, False)])
def test_quote_volume_boundary(minimum: float, allowed: bool) -> None:
    # STEADY's quote volume: 10 candles x volume 100 x close 2 = 2000.
    result = universe({"ETH/BTC": STEADY}, overlay(f"dynamic: {{min_quote_volume: {minimum}}}"))
    assert (result.allowed == ("ETH/BTC",)) is allowed
    if not allowed:
        assert result.excluded["ETH/BTC"] == (
            "quote volume 2000 over 10 candles < min_quote_volume 2000.5"
        )


def test_spread_boundary_and_a_venue_without_spreads() -> None:
    # max_spread_bps 50: 50 passes, 50.5 does not; no spread reported: the check is skipped.
    series = {"ETH/BTC": STEADY, "LTC/BTC": STEADY, "XMR/BTC": STEADY}
    result = universe(series, spreads={"ETH/BTC": 50.0, "LTC/BTC": 50.5})
    assert result.allowed == ("ETH/BTC", "XMR/BTC")
    assert result.excluded == {"LTC/BTC": "spread 50.5 bps > max_spread_bps 50"}


#: Closes 64, 65, 65, 66.015625, 66.015625: returns 1.5625 %, 0, 1.5625 %, 0 (65 / 64 and
#: 66.015625 / 65 are both 1.015625); mean 0.78125, every deviation 0.78125, so the population
#: stdev is 0.78125 %.
SWINGING = candles_from_closes([64.0, 65.0, 65.0, 66.015625, 66.015625])


@pytest.mark.parametrize(
    ("bounds", "allowed"),
    [
        ("{min_volatility_pct: 0.78125, max_volatility_pct: 0.78125}", True),
        ("{max_volatility_pct: 0.78}", False),
        ("{min_volatility_pct: 0.79}", False),
    ],
)
def test_volatility_boundaries(bounds: str, allowed: bool) -> None:
    result = universe({"ETH/BTC": SWINGING}, overlay(f"dynamic: {bounds}"))
    assert (result.allowed == ("ETH/BTC",)) is allowed


def test_volatility_reason_and_flat_market_against_a_minimum() -> None:
    policy = overlay("dynamic: {min_volatility_pct: 0.1, max_volatility_pct: 0.5}")
    result = universe({"ETH/BTC": SWINGING, "LTC/BTC": STEADY}, policy)
    assert result.excluded == {
        "ETH/BTC": "volatility 0.78125 % outside [0.1, 0.5] %",
        "LTC/BTC": "volatility 0 % outside [0.1, 0.5] %",
    }


def test_a_single_candle_has_no_volatility_and_fails_closed() -> None:
    result = universe({"ETH/BTC": STEADY[:1]})
    assert result.excluded == {"ETH/BTC": "volatility unknown: 1 candle(s), at least 2 needed"}
    # A candidate the market has no data for at all.
    empty = universe({"ETH/BTC": STEADY}, candidates=["ETH/BTC", "NXT/BTC"])
    assert empty.excluded == {"NXT/BTC": "volatility unknown: 0 candle(s), at least 2 needed"}


def twenty_slots_without(*missing: int) -> list[Candle]:
    """20 flat 5m candles (slots 0..19) with the given slots left out."""
    return [c for i, c in enumerate(candles_from_closes([2.0] * 20)) if i not in missing]


def test_data_quality_boundary() -> None:
    # First and last candle 19 x 5 min apart: 20 expected. One missing: 19 / 20 = 0.95 (passes
    # min 0.95); two missing: 18 / 20 = 0.9 (fails).
    result = universe({"ETH/BTC": twenty_slots_without(7), "LTC/BTC": twenty_slots_without(7, 8)})
    assert result.allowed == ("ETH/BTC",)
    assert result.excluded == {
        "LTC/BTC": "data quality 0.9 (18 of 20 candles) < min_data_quality 0.95"
    }
    stricter = universe(
        {"ETH/BTC": twenty_slots_without(7)}, overlay("dynamic: {min_data_quality: 0.9501}")
    )
    assert stricter.allowed == ()


def test_data_quality_counts_candles_of_the_policy_timeframe() -> None:
    hourly = candles_from_closes([2.0] * 3, step=timedelta(hours=1))
    # Under 5m, 3 candles over 2 h: 2 x 12 + 1 = 25 expected, 3 / 25 = 0.12.
    assert universe({"ETH/BTC": hourly}).excluded == {
        "ETH/BTC": "data quality 0.12 (3 of 25 candles) < min_data_quality 0.95"
    }
    # Under 1h: 2 + 1 = 3 expected, quality 1.
    one_hour = default_policy("universe:\n  timeframe: 1h\n")
    assert universe({"ETH/BTC": hourly}, one_hour).allowed == ("ETH/BTC",)


# --- emergency brake -----------------------------------------------------------------------


@pytest.mark.parametrize(("last", "braked"), [(85.0, True), (85.01, False)])
def test_emergency_brake_boundary(last: float, braked: bool) -> None:
    # Highest close 100; (100 - 85) x 100 / 100 = 15 % >= 15: braked; 85.01 is 14.99 %.
    series = candles_from_closes([100.0, 98.0, 95.0, 90.0, last])
    result = universe({"ETH/BTC": series})
    if braked:
        assert result.excluded == {
            "ETH/BTC": "emergency brake: last close 85 is 15 % below the 5-candle high 100 "
            "(max_symbol_drop_pct 15)"
        }
    else:
        assert result.allowed == ("ETH/BTC",)


def test_emergency_brake_only_looks_at_its_window() -> None:
    # A crash from 200 to 100 happened 5 candles ago; the last 4 closes peak at 100 and end at
    # 90: a 10 % drop, under 15 %. The dynamic filter is off (the crash is far beyond 10 %
    # volatility), so only the brake judges.
    policy = overlay("dynamic: {enabled: false}\nemergency_brake: {window_candles: 4}")
    series = candles_from_closes([200.0, 100.0, 100.0, 100.0, 95.0, 90.0])
    assert universe({"ETH/BTC": series}, policy).allowed == ("ETH/BTC",)
    # With 6 candles in the window the 200 counts: (200 - 90) x 100 / 200 = 55 %.
    wide = overlay("dynamic: {enabled: false}\nemergency_brake: {window_candles: 6}")
    assert (
        universe({"ETH/BTC": series}, wide)
        .excluded["ETH/BTC"]
        .startswith("emergency brake: last close 90 is 55 % below the 6-candle high 200")
    )


def test_disabled_filters_let_everything_through() -> None:
    policy = overlay("dynamic: {enabled: false}\nemergency_brake: {enabled: false}")
    crash = candles_from_closes([100.0, 50.0])
    result = universe(
        {"ETH/BTC": crash}, policy, spreads={"ETH/BTC": 500.0}, candidates=["ETH/BTC", "NXT/BTC"]
    )
    assert result == UniverseProposal(("ETH/BTC", "NXT/BTC"), {})


def test_the_first_failing_rule_is_the_reason() -> None:
    # Fails spread (60 > 50), volatility (a 50 % crash), and the brake: spread comes first.
    crash = candles_from_closes([100.0, 100.0, 50.0])
    result = universe({"ETH/BTC": crash}, spreads={"ETH/BTC": 60.0})
    assert result.excluded == {"ETH/BTC": "spread 60 bps > max_spread_bps 50"}


# --- max_symbols ---------------------------------------------------------------------------


def test_max_symbols_keeps_the_highest_quote_volume_ties_by_name() -> None:
    def steady(volume: float) -> list[Candle]:
        return candles_from_closes([2.0] * 10, volume=volume)

    series = {
        "XLM/BTC": steady(100.0),  # 10 x 100 x 2 = 2000
        "LTC/BTC": steady(300.0),  # 6000
        "ZEC/BTC": steady(200.0),  # 4000
        "ETC/BTC": steady(200.0),  # 4000, ties with ZEC/BTC and wins by name
        "ADA/BTC": steady(900.0),  # the largest, but blacklisted: takes no place
    }
    policy = overlay("max_symbols: 2\nblacklist: [ADA/BTC]")
    result = universe(series, policy)
    assert result.allowed == ("LTC/BTC", "ETC/BTC")  # in candidate order
    assert result.excluded == {
        "XLM/BTC": "ranked 4 by quote volume (2000), beyond max_symbols 2",
        "ZEC/BTC": "ranked 3 by quote volume (4000), beyond max_symbols 2",
        "ADA/BTC": "on the blacklist",
    }
    # Deterministic whatever the candidates' order.
    reordered = universe(series, policy, candidates=sorted(series, reverse=True))
    assert set(reordered.allowed) == {"LTC/BTC", "ETC/BTC"}
    assert reordered.excluded == result.excluded
