"""Profit Amplification: scale-in and extend rules at their boundaries, reduce, and the gates.

Default policy: min_r 1.0, max_adds 2, add_size_fraction 0.5, momentum_threshold_pct 0.5,
extend_hold_s 3600, reduce_fraction 0.5, allowed_risk_modes NORMAL, OPTIMISTIC, AGGRESSIVE.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from aios.model import (
    ActionKind,
    Category,
    DirectiveKind,
    Position,
    PositionAction,
    PositionAssessment,
    Recommendation,
    RiskMode,
)
from aios.policy import Policy
from aios.testing import T0, context, default_policy, position
from plugins.profit_amplification import ProfitAmplification


def _assessment(
    category: Category = Category.WINNER,
    r_multiple: float | None = 1.0,
    momentum_pct: float = 0.5,
    recommendation: Recommendation = Recommendation.HOLD,
) -> PositionAssessment:
    return PositionAssessment(
        "p1", category, 5.0, r_multiple, recommendation, "test", momentum_pct=momentum_pct
    )


def _amplify(
    assessment: PositionAssessment | None,
    held: Position | None = None,
    risk_mode: RiskMode = RiskMode.NORMAL,
    directives: frozenset[DirectiveKind] = frozenset(),
    policy: Policy | None = None,
) -> PositionAction | None:
    ctx = context(policy, risk_mode=risk_mode, directives=directives)
    return ProfitAmplification().aios_amplify(ctx, held or position(), assessment)


@pytest.mark.parametrize("category", [Category.WINNER, Category.POTENTIAL_WINNER])
def test_scale_in_exactly_at_min_r_and_momentum_threshold(category: Category) -> None:
    # R 1.0 >= min_r 1.0 and momentum 0.5 >= 0.5, adds 0 < 2 -> add 0.5 of the stake
    action = _amplify(_assessment(category, r_multiple=1.0, momentum_pct=0.5))
    assert action is not None
    assert action.kind is ActionKind.SCALE_IN
    assert action.fraction == 0.5
    assert "R 1.000 >= 1" in action.reason and "momentum +0.500% >= 0.5%" in action.reason
    assert "add 1 of 2" in action.reason


def test_just_below_min_r_does_nothing() -> None:
    assert _amplify(_assessment(r_multiple=0.999)) is None


def test_just_below_momentum_threshold_does_nothing() -> None:
    assert _amplify(_assessment(momentum_pct=0.499)) is None


def test_no_r_means_unknown_risk_and_no_amplification() -> None:
    assert _amplify(_assessment(r_multiple=None)) is None


def test_last_add_then_extend_hold_when_adds_are_exhausted() -> None:
    second = _amplify(_assessment(), position(adds=1))  # 1 < 2: the second add
    assert second is not None and second.kind is ActionKind.SCALE_IN
    assert "add 2 of 2" in second.reason
    # adds 2 = max_adds: extend to now + 3600 s
    extend = _amplify(_assessment(), position(adds=2))
    assert extend is not None
    assert extend.kind is ActionKind.EXTEND_HOLD
    assert extend.hold_until == T0 + timedelta(seconds=3600)
    assert extend.fraction is None


@pytest.mark.parametrize(
    ("hold_until", "extends"),
    [
        (None, True),
        (T0 + timedelta(seconds=3599), True),  # short of now + 3600: extended
        (T0 + timedelta(seconds=3600), False),  # already at it
        (T0 + timedelta(seconds=7200), False),  # already beyond it
    ],
)
def test_extend_hold_only_moves_the_hold_forward(
    hold_until: datetime | None, extends: bool
) -> None:
    action = _amplify(_assessment(), position(adds=2, hold_until=hold_until))
    assert (action is not None) is extends


def test_max_adds_zero_goes_straight_to_extend() -> None:
    policy = default_policy("subsystems:\n  profit_amplification:\n    max_adds: 0\n")
    action = _amplify(_assessment(), policy=policy)
    assert action is not None and action.kind is ActionKind.EXTEND_HOLD


def test_struggling_with_reduce_recommendation_reduces() -> None:
    action = _amplify(
        _assessment(Category.STRUGGLING, -0.4, -1.2, Recommendation.REDUCE),
    )
    assert action is not None
    assert action.kind is ActionKind.REDUCE
    assert action.fraction == 0.5
    assert "momentum -1.200%" in action.reason


def test_struggling_without_reduce_recommendation_does_nothing() -> None:
    assert _amplify(_assessment(Category.STRUGGLING, -0.4, 0.0, Recommendation.HOLD)) is None


def test_zero_reduce_fraction_switches_reducing_off() -> None:
    policy = default_policy("subsystems:\n  profit_amplification:\n    reduce_fraction: 0\n")
    struggling = _assessment(Category.STRUGGLING, -0.4, -1.2, Recommendation.REDUCE)
    assert _amplify(struggling, policy=policy) is None


@pytest.mark.parametrize("category", [Category.BREAKEVEN, Category.LOSER, Category.UNKNOWN])
def test_other_categories_are_left_alone(category: Category) -> None:
    # strong numbers, but not a winner: PAL does not touch it (a LOSER's exit is not PAL's job)
    assert _amplify(_assessment(category, 2.0, 3.0, Recommendation.EXIT)) is None


def test_no_assessment_gives_nothing() -> None:
    assert _amplify(None) is None


@pytest.mark.parametrize(
    ("mode", "acts"),
    [
        (RiskMode.NORMAL, True),
        (RiskMode.OPTIMISTIC, True),
        (RiskMode.AGGRESSIVE, True),
        (RiskMode.CRITICAL, False),  # not in allowed_risk_modes
    ],
)
def test_gated_by_risk_mode(mode: RiskMode, acts: bool) -> None:
    assert (_amplify(_assessment(), risk_mode=mode) is not None) is acts
    struggling = _assessment(Category.STRUGGLING, -0.4, -1.2, Recommendation.REDUCE)
    assert (_amplify(struggling, risk_mode=mode) is not None) is acts


def test_critical_allowed_when_the_policy_says_so() -> None:
    policy = default_policy(
        "subsystems:\n  profit_amplification:\n    allowed_risk_modes: [CRITICAL]\n"
    )
    assert _amplify(_assessment(), risk_mode=RiskMode.CRITICAL, policy=policy) is not None
    assert _amplify(_assessment(), risk_mode=RiskMode.NORMAL, policy=policy) is None


@pytest.mark.parametrize("directive", list(DirectiveKind))
def test_gated_by_any_active_directive(directive: DirectiveKind) -> None:
    active = frozenset({directive})
    assert _amplify(_assessment(), directives=active) is None
    struggling = _assessment(Category.STRUGGLING, -0.4, -1.2, Recommendation.REDUCE)
    assert _amplify(struggling, directives=active) is None
