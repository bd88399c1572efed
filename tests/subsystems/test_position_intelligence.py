"""Position Intelligence: bands (min, max], R, momentum over the lookback, age, and every row of
the recommendation table.

Default policy: WINNER (3, inf), POTENTIAL_WINNER (1, 3], BREAKEVEN (-1, 1],
STRUGGLING (-5, -1], LOSER (-inf, -5]; max_hold_s 86400; lookback 12 candles; strong 1.0 %.
Positions enter at 100 with a stop at 92 (initial risk 8 %) unless a test says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest

from aios.model import Category, PortfolioView, Position, PositionAssessment, Recommendation, Side
from aios.testing import T0, candles_from_closes, context, market, position
from plugins.position_intelligence import PositionIntelligence, classify_pnl

SYMBOL = "ETH/BTC"


def _closes(start: float, end: float, lookback: int = 12) -> list[float]:
    """lookback + 1 closes: `start` held, then `end` last; momentum is end vs start."""
    return [start] * lookback + [end]


def _assess(
    held: Position,
    price: float | None,
    closes: Sequence[float] | None = None,
    now: datetime = T0,
) -> PositionAssessment | None:
    prices = {} if price is None else {held.symbol: price}
    series = {} if closes is None else {held.symbol: candles_from_closes(closes)}
    ctx = context(
        now=now,
        market_view=market(series),
        portfolio=PortfolioView(equity=1.0, cash=1.0, positions=(held,), prices=prices),
    )
    return PositionIntelligence().aios_classify_position(ctx, held)


def _category(price: float) -> Category:
    assessment = _assess(position(), price, _closes(100, 100))
    assert assessment is not None
    return assessment.category


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        # pnl = (price - 100) / 100 x 100
        (103.0, Category.POTENTIAL_WINNER),  # exactly +3.0: (1, 3] holds it
        (103.0001, Category.WINNER),  # +3.0001
        (101.0, Category.BREAKEVEN),  # exactly +1.0: (-1, 1]
        (101.0001, Category.POTENTIAL_WINNER),
        (99.0, Category.STRUGGLING),  # exactly -1.0: (-5, -1]
        (99.0001, Category.BREAKEVEN),  # -0.9999
        (95.0, Category.LOSER),  # exactly -5.0: (-inf, -5]
        (95.0001, Category.STRUGGLING),  # -4.9999
    ],
)
def test_band_boundaries_are_min_exclusive_max_inclusive(price: float, expected: Category) -> None:
    assert _category(price) == expected


def test_short_pnl_is_signed_for_the_side() -> None:
    short = position(side=Side.SHORT, stop_loss=108.0)
    # pnl = (97 - 100) / 100 x 100 x -1 = +3.0 -> POTENTIAL_WINNER; exactly at its max
    at_max = _assess(short, 97.0, _closes(100, 100))
    assert at_max is not None and at_max.category is Category.POTENTIAL_WINNER
    assert at_max.pnl_pct == pytest.approx(3.0)
    # price 105: pnl -5.0 -> LOSER
    loser = _assess(short, 105.0, _closes(100, 100))
    assert loser is not None and loser.category is Category.LOSER


def test_r_multiple_arithmetic() -> None:
    # long, stop 92: risk 8 %; price 104: pnl +4 % -> R 4 / 8 = 0.5
    plain = _assess(position(), 104.0, _closes(100, 100))
    assert plain is not None and plain.r_multiple == pytest.approx(0.5)
    # stop moved to 100 but initial stop 96: risk 4 % -> R 4 / 4 = 1.0
    moved = _assess(position(stop_loss=100.0, initial_stop=96.0), 104.0, _closes(100, 100))
    assert moved is not None and moved.r_multiple == pytest.approx(1.0)
    # short, stop 108: risk 8 %; price 94: pnl +6 % -> R 0.75
    short = _assess(position(side=Side.SHORT, stop_loss=108.0), 94.0, _closes(100, 100))
    assert short is not None and short.r_multiple == pytest.approx(0.75)
    # no stop at all: R unknown
    naked = _assess(position(stop_loss=None), 104.0, _closes(100, 100))
    assert naked is not None and naked.r_multiple is None
    assert "R n/a" in naked.reason


def test_price_falls_back_to_the_last_close() -> None:
    # no portfolio price; last close 104 -> pnl +4 -> WINNER
    assessment = _assess(position(), None, _closes(100, 104))
    assert assessment is not None
    assert assessment.pnl_pct == pytest.approx(4.0)
    assert assessment.category is Category.WINNER


def test_no_price_anywhere_gives_no_assessment() -> None:
    assert _assess(position(), None, None) is None


def test_momentum_spans_exactly_the_lookback() -> None:
    # 20 closes; the last 13 are 100 x 12 then 101: momentum (101 - 100) / 100 = +1.0 %,
    # not measured from the older 50s
    closes = [50.0] * 7 + _closes(100, 101)
    assessment = _assess(position(), 101.0, closes)
    assert assessment is not None
    assert assessment.momentum_pct == pytest.approx(1.0)


def test_short_momentum_is_signed_for_the_side() -> None:
    # close falls 100 -> 98.5: -1.5 %, x -1 for a short = +1.5 % in its favour.
    # pnl +1.5 % -> POTENTIAL_WINNER; 1.5 >= 1.0 strong -> EXTEND_HOLD
    assessment = _assess(position(side=Side.SHORT, stop_loss=108.0), 98.5, _closes(100, 98.5))
    assert assessment is not None
    assert assessment.momentum_pct == pytest.approx(1.5)
    assert assessment.recommendation is Recommendation.EXTEND_HOLD


# --- the recommendation table, row by row ------------------------------------------------------


def test_loser_exits() -> None:
    # pnl -6 -> LOSER -> EXIT whatever the momentum
    assessment = _assess(position(), 94.0, _closes(90, 94))
    assert assessment is not None
    assert (assessment.category, assessment.recommendation) == (
        Category.LOSER,
        Recommendation.EXIT,
    )


@pytest.mark.parametrize(
    ("last_close", "expected"),
    [
        (99.0, Recommendation.REDUCE),  # momentum (99 - 100) / 100 = -1 %: against
        (100.0, Recommendation.HOLD),  # 0 %: not against
        (101.0, Recommendation.HOLD),  # +1 %: with the position
    ],
)
def test_struggling_reduces_only_against_momentum(
    last_close: float, expected: Recommendation
) -> None:
    assessment = _assess(position(), 97.0, _closes(100, last_close))  # pnl -3: STRUGGLING
    assert assessment is not None
    assert assessment.category is Category.STRUGGLING
    assert assessment.recommendation is expected


def test_struggling_short_with_rising_close_reduces() -> None:
    # short at 100, price 103: pnl -3 -> STRUGGLING; close 100 -> 101 is -1 % for a short
    assessment = _assess(position(side=Side.SHORT, stop_loss=108.0), 103.0, _closes(100, 101))
    assert assessment is not None
    assert assessment.momentum_pct == pytest.approx(-1.0)
    assert assessment.recommendation is Recommendation.REDUCE


@pytest.mark.parametrize(
    ("age_s", "expected"),
    [(86400, Recommendation.HOLD), (86401, Recommendation.EXIT)],  # exit only when age > max
)
def test_breakeven_exits_only_past_max_hold(age_s: int, expected: Recommendation) -> None:
    now = T0 + timedelta(seconds=age_s)
    assessment = _assess(position(), 100.5, _closes(100, 100), now=now)  # pnl +0.5
    assert assessment is not None
    assert assessment.category is Category.BREAKEVEN
    assert assessment.recommendation is expected
    assert f"age {age_s}s" in assessment.reason


@pytest.mark.parametrize(
    ("last_close", "expected"),
    [
        (101.0, Recommendation.EXTEND_HOLD),  # momentum +1.0 % = strong 1.0: strong (>=)
        (100.99, Recommendation.HOLD),  # +0.99 %
    ],
)
def test_potential_winner_extends_on_strong_momentum(
    last_close: float, expected: Recommendation
) -> None:
    assessment = _assess(position(), 102.0, _closes(100, last_close))  # pnl +2
    assert assessment is not None
    assert assessment.category is Category.POTENTIAL_WINNER
    assert assessment.recommendation is expected


@pytest.mark.parametrize(
    ("last_close", "expected"),
    [
        (101.0, Recommendation.SCALE_IN),  # +1.0 % >= 1.0
        (100.99, Recommendation.TIGHTEN_SL),  # +0.99 %
    ],
)
def test_winner_scales_in_on_strong_momentum_else_tightens(
    last_close: float, expected: Recommendation
) -> None:
    assessment = _assess(position(), 105.0, _closes(100, last_close))  # pnl +5
    assert assessment is not None
    assert assessment.category is Category.WINNER
    assert assessment.recommendation is expected


def test_unknown_momentum_is_neither_strong_nor_against() -> None:
    # 12 candles where 13 are needed: momentum unknown, reported as 0.0
    winner = _assess(position(), 105.0, [100.0] * 11 + [110.0])
    assert winner is not None
    assert winner.momentum_pct == 0.0
    assert winner.recommendation is Recommendation.TIGHTEN_SL
    assert "momentum unknown" in winner.reason
    struggling = _assess(position(), 97.0, [100.0] * 11 + [90.0])
    assert struggling is not None and struggling.recommendation is Recommendation.HOLD


def test_unknown_category_holds() -> None:
    # a NaN price lies in no band
    assessment = _assess(position(), math.nan, _closes(100, 100))
    assert assessment is not None
    assert (assessment.category, assessment.recommendation) == (
        Category.UNKNOWN,
        Recommendation.HOLD,
    )


def test_classify_pnl_leaves_a_gap_unknown() -> None:
    bands = [
        {"category": "WINNER", "min_pnl_pct": 1.0},
        {"category": "LOSER", "max_pnl_pct": -1.0},
    ]
    assert classify_pnl(bands, 0.0)[0] is Category.UNKNOWN
    assert classify_pnl(bands, -1.0)[0] is Category.LOSER
    assert classify_pnl(bands, 1.0)[0] is Category.UNKNOWN  # min is exclusive
