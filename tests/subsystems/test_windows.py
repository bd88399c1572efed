"""The per-candle caches of the hot path give exactly what the straightforward computation gives.

Universe OS reads quote volume and returns from `plugins._windows`; the feature rows of the
signal model and retraining come from a memo in `plugins._logistic`. Both are checked here on
real candles (the bundled files), bit for bit, for windows as a replay asks for them (one more
candle each cycle) and for arbitrary windows in arbitrary order (hypothesis).
"""

from __future__ import annotations

from functools import cache

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

import plugins._logistic as logistic
from aios.data import bundled_data_dir, load_csv_candles
from aios.market import InMemoryMarket
from aios.model import Candle
from aios.numeric import population_stdev
from plugins._windows import SLACK, CandleSeries
from plugins.universe_os import quote_volume, volatility_pct

LOOKBACK = 288


@cache
def real(name: str = "ETH_BTC") -> list[Candle]:
    return load_csv_candles(bundled_data_dir() / f"{name}-5m.csv")


def cached_figures(series: CandleSeries, window: list[Candle]) -> tuple[float, float | None]:
    start = series.locate(window)
    returns = series.returns_in(start, len(window))
    assert returns is not None
    volatility = population_stdev(returns) if returns else None
    return series.quote_volume(start, len(window)), volatility


def test_a_replay_sees_the_same_figures_as_the_plain_computation() -> None:
    candles = real()
    market = InMemoryMarket({"ETH/BTC": candles})
    series = CandleSeries()
    # long enough to trim the cache (LOOKBACK + SLACK candles) at least once
    assert len(candles) > LOOKBACK + SLACK + 100
    for candle in candles[: LOOKBACK + SLACK + 100]:
        market.advance(candle.time)
        window = list(market.history("ETH/BTC", LOOKBACK))
        assert cached_figures(series, window) == (quote_volume(window), volatility_pct(window))
    assert len(series.candles) <= LOOKBACK + SLACK


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ETH_BTC", "LTC_BTC", "XMR_BTC"]),
            st.integers(min_value=0, max_value=1500),
            st.integers(min_value=0, max_value=400),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_window_in_any_order_matches(requests: list[tuple[str, int, int]]) -> None:
    """Windows of several symbols, backwards, overlapping, empty: one cache, exact results
    (a window of another symbol has other candles, so the cache is rebuilt, never misused)."""
    series = CandleSeries()
    for name, start, length in requests:
        window = real(name)[start : start + length]
        assert cached_figures(series, window) == (quote_volume(window), volatility_pct(window))


@given(st.integers(min_value=0, max_value=1400), st.integers(min_value=1, max_value=80))
def test_feature_rows_from_the_memo_equal_fresh_ones(start: int, length: int) -> None:
    features = tuple(logistic.FEATURES)
    candles = real()[start : start + length]
    logistic._ROW_CACHE.clear()
    fresh = logistic.extract_features(candles, features)
    again = logistic.extract_features(candles, features)  # from the memo
    assert fresh == again
    closes = [c.close for c in candles[-logistic.FEATURE_WINDOW :]]
    volumes = [c.volume for c in candles[-logistic.FEATURE_WINDOW :]]
    if fresh is None:
        assert len(closes) < logistic.required_candles(features)
    else:
        assert list(fresh.values()) == [logistic.FEATURES[n][1](closes, volumes) for n in features]


def test_training_rows_reuse_inference_rows_exactly() -> None:
    """A dataset built after inference saw the same candles (memo hits) equals one built from
    an empty memo."""
    features = tuple(logistic.FEATURES)
    candles = real()[:400]
    logistic._ROW_CACHE.clear()
    cold = logistic.build_dataset(candles, features)
    for end in range(60, 400):
        logistic.extract_features(candles[:end], features)
    warm = logistic.build_dataset(candles, features)
    assert (cold.x == warm.x).all() and (cold.y == warm.y).all() and cold.times == warm.times


@given(
    st.sampled_from(["ETH_BTC", "LTC_BTC", "XMR_BTC"]),
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=0, max_value=400),
)
def test_the_volatility_bracket_contains_the_two_pass_value(
    name: str, start: int, length: int
) -> None:
    window = real(name)[start : start + length]
    series = CandleSeries()
    first = series.locate(window)
    bracket = series.volatility_bracket(first, len(window))
    volatility = volatility_pct(window)
    if len(window) < 3:
        assert bracket is None
        return
    assert bracket is not None and volatility is not None
    lower, upper = bracket
    assert lower <= volatility <= upper
    assert upper - lower <= 1e-9 * max(volatility, 1e-300) + 1e-12  # tight, so rarely inconclusive


@given(
    st.sampled_from(["ETH_BTC", "XMR_BTC"]),
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=3, max_value=288),
    st.sampled_from(["at", "below", "above"]),
)
@example("XMR_BTC", 977, 3, "at")  # a flat window: volatility 0, no valid limit at or below it
@example("XMR_BTC", 977, 3, "above")
def test_universe_decides_volatility_as_the_plain_computation_at_its_limits(
    name: str, start: int, length: int, where: str
) -> None:
    """Limits set exactly at the window's volatility, or one float either side: where the
    bracket cannot decide, the exact value does, so the verdict is the plain one."""
    import math

    from aios.testing import context, default_policy, market
    from plugins.universe_os import UniverseOS

    window = real(name)[start : start + length]
    volatility = volatility_pct(window)
    assert volatility is not None
    limit = {
        "at": volatility,
        "below": math.nextafter(volatility, 0.0),
        "above": math.nextafter(volatility, math.inf),
    }[where]
    assume(limit > 0)  # the policy requires max_volatility_pct > 0 (a flat window's is 0)
    overlay = (
        "subsystems:\n  universe_os:\n    dynamic:\n"
        f"      lookback_candles: {length}\n      max_volatility_pct: {limit!r}\n"
        "      min_data_quality: 0\n    emergency_brake: {enabled: false}\n"
    )
    ctx = context(default_policy(overlay), market_view=market({"ETH/BTC": window}))
    proposal = UniverseOS().aios_universe(ctx, ["ETH/BTC"])
    passes = volatility <= limit
    assert (proposal.allowed == ("ETH/BTC",)) is passes
    if not passes:
        assert proposal.excluded["ETH/BTC"].startswith("volatility ")


def test_the_feature_memo_is_bounded_and_drops_the_oldest_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logistic, "ROW_CACHE_SIZE", 5)
    logistic._ROW_CACHE.clear()
    features = tuple(logistic.FEATURES)
    candles = real()
    rows = [logistic.extract_features(candles[: 60 + i], features) for i in range(8)]
    assert len(logistic._ROW_CACHE) == 5

    def key(end: int) -> tuple[tuple[float, ...], tuple[float, ...], tuple[str, ...]]:
        window = candles[end - logistic.FEATURE_WINDOW : end]
        return (tuple(c.close for c in window), tuple(c.volume for c in window), features)

    assert list(logistic._ROW_CACHE) == [key(60 + i) for i in range(3, 8)]
    # evicted or not, every row is what a fresh computation gives
    logistic._ROW_CACHE.clear()
    assert rows == [logistic.extract_features(candles[: 60 + i], features) for i in range(8)]
