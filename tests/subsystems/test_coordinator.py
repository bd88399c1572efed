"""AI-HFOS coordinator: risk mode from the default policy's rules, hysteresis, missing metrics.

The default policy's rules (priority order) and min_mode_hold_s = 300:
  [0] CRITICAL   enter: drawdown_pct >= 8 or losing_streak >= 5 or volatility_pct >= 6
                 exit:  drawdown_pct < 5 and losing_streak < 3 and volatility_pct < 4
  [1] AGGRESSIVE enter: win_rate >= 0.65 and drawdown_pct < 2 and losing_streak == 0
                 exit:  win_rate < 0.55 or drawdown_pct >= 4
  [2] OPTIMISTIC enter: win_rate >= 0.55 and drawdown_pct < 4
                 exit:  win_rate < 0.5 or drawdown_pct >= 6
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from aios.model import HealthStatus, RiskAssessment, RiskMode
from aios.policy import Policy
from aios.testing import T0, context, default_policy
from plugins.coordinator import Coordinator

POLICY = default_policy()
# Calm: no rule enters (win_rate 0.5 < 0.55; drawdown 1 < 8, streak 1 < 5, vol 1 < 6).
CALM = {"drawdown_pct": 1.0, "losing_streak": 1.0, "volatility_pct": 1.0, "win_rate": 0.5}


def at(
    coordinator: Coordinator, seconds: float, policy: Policy = POLICY, **metrics: float
) -> RiskAssessment:
    """One cycle `seconds` after T0 with CALM overridden by `metrics`."""
    values = {**CALM, **metrics}
    ctx = context(policy, now=T0 + timedelta(seconds=seconds), metrics=values)
    return coordinator.aios_coordinate(ctx)


def test_calm_metrics_hold_the_default_mode() -> None:
    result = at(Coordinator(), 0)
    assert result.mode is RiskMode.NORMAL
    assert result.allow_new_trades is True
    assert result.reason.startswith("default_risk_mode: no rule's enter holds")
    assert "win_rate=0.5" in result.reason


def test_normal_to_optimistic_to_aggressive() -> None:
    coordinator = Coordinator()
    assert at(coordinator, 0).mode is RiskMode.NORMAL
    # win_rate 0.55 >= 0.55 and drawdown 1 < 4: OPTIMISTIC; AGGRESSIVE not (0.55 < 0.65).
    optimistic = at(coordinator, 60, win_rate=0.55)
    assert optimistic.mode is RiskMode.OPTIMISTIC
    assert optimistic.reason.startswith("risk_mode_rules[2] (OPTIMISTIC) enter holds")
    assert "win_rate >= 0.55 (win_rate=0.55)" in optimistic.reason
    # win_rate 0.65 >= 0.65, drawdown 1 < 2, losing_streak 0 == 0: AGGRESSIVE ranks above
    # OPTIMISTIC (rule 1 < rule 2), so it takes over at once, 60 s into the 300 s hold.
    aggressive = at(coordinator, 120, win_rate=0.65, losing_streak=0.0)
    assert aggressive.mode is RiskMode.AGGRESSIVE
    assert aggressive.allow_new_trades is True
    assert "risk_mode_rules[1] (AGGRESSIVE) enter holds" in aggressive.reason


def test_aggressive_needs_a_zero_losing_streak() -> None:
    # win_rate 0.7 and drawdown 1 would do, but losing_streak 1 != 0: only OPTIMISTIC enters.
    assert at(Coordinator(), 0, win_rate=0.7).mode is RiskMode.OPTIMISTIC


@pytest.mark.parametrize(
    ("drawdown", "expected"), [(8.0, RiskMode.CRITICAL), (7.99, RiskMode.NORMAL)]
)
def test_critical_is_entered_at_drawdown_8_exactly(drawdown: float, expected: RiskMode) -> None:
    result = at(Coordinator(), 0, drawdown_pct=drawdown)
    assert result.mode is expected
    if expected is RiskMode.CRITICAL:
        # Only the holding part is named, with its value.
        assert result.reason == (
            "risk_mode_rules[0] (CRITICAL) enter holds: drawdown_pct >= 8 (drawdown_pct=8)"
        )
        # The default policy's CRITICAL row still allows entries (NO_NEW_TRADES forbids them).
        assert result.allow_new_trades is True


@pytest.mark.parametrize(
    ("metric", "at_threshold", "below"),
    [("losing_streak", 5.0, 4.0), ("volatility_pct", 6.0, 5.99)],
)
def test_critical_other_enter_thresholds(metric: str, at_threshold: float, below: float) -> None:
    assert at(Coordinator(), 0, POLICY, **{metric: at_threshold}).mode is RiskMode.CRITICAL
    assert at(Coordinator(), 0, POLICY, **{metric: below}).mode is RiskMode.NORMAL


def test_critical_is_kept_until_its_exit_holds() -> None:
    coordinator = Coordinator()
    assert at(coordinator, 0, drawdown_pct=8.0).mode is RiskMode.CRITICAL
    # Well past the 300 s hold; exit needs drawdown < 5: 5.0 is not < 5.
    kept = at(coordinator, 1000, drawdown_pct=5.0)
    assert kept.mode is RiskMode.CRITICAL
    assert kept.reason == (
        "kept by risk_mode_rules[0] (CRITICAL): exit does not hold: drawdown_pct < 5 (drawdown_pct=5)"
    )
    # drawdown 4.99 < 5 but losing_streak 3 is not < 3: still kept, and the reason says why.
    streak = at(coordinator, 1100, drawdown_pct=4.99, losing_streak=3.0)
    assert streak.mode is RiskMode.CRITICAL
    assert "losing_streak < 3 (losing_streak=3)" in streak.reason
    assert "drawdown_pct" not in streak.reason  # that part held; it did not decide
    # 4.99 < 5, 1 < 3, 1 < 4: exit holds, nothing else enters (win_rate 0.5): back to NORMAL.
    left = at(coordinator, 1200, drawdown_pct=4.99)
    assert left.mode is RiskMode.NORMAL
    assert left.reason.startswith("risk_mode_rules[0] (CRITICAL) exit holds")
    assert left.reason.endswith("no rule's enter holds, default_risk_mode")


def test_no_flapping_around_the_critical_threshold() -> None:
    coordinator = Coordinator()
    modes = [
        at(coordinator, 30 * step, drawdown_pct=drawdown).mode
        for step, drawdown in enumerate([8.1, 7.9, 8.1, 7.9, 6.0, 7.9])
    ]
    # Entered at 8.1; 7.9 and 6.0 are below enter (8) but not below exit (5): no change.
    assert modes == [RiskMode.CRITICAL] * 6


def test_min_mode_hold_keeps_a_mode_whose_exit_holds() -> None:
    coordinator = Coordinator()
    assert at(coordinator, 0, win_rate=0.55).mode is RiskMode.OPTIMISTIC
    # win_rate 0.49 < 0.5: OPTIMISTIC's exit holds, but only 60 s of 300 s have passed.
    held = at(coordinator, 60, win_rate=0.49)
    assert held.mode is RiskMode.OPTIMISTIC
    assert held.reason.startswith("kept for min_mode_hold_s (held 60 s of 300 s) though")
    assert "win_rate < 0.5 (win_rate=0.49)" in held.reason
    assert at(coordinator, 120, win_rate=0.56).mode is RiskMode.OPTIMISTIC  # back: no change
    assert at(coordinator, 299, win_rate=0.49).mode is RiskMode.OPTIMISTIC  # 299 s < 300 s
    assert at(coordinator, 300, win_rate=0.49).mode is RiskMode.NORMAL  # 300 s: may leave


def test_a_move_down_waits_for_the_hold() -> None:
    coordinator = Coordinator()
    # win_rate 0.7 >= 0.65, drawdown 1 < 2, losing_streak 0 == 0: AGGRESSIVE.
    assert at(coordinator, 0, win_rate=0.7, losing_streak=0.0).mode is RiskMode.AGGRESSIVE
    # win_rate 0.54 < 0.55: AGGRESSIVE's exit holds, but only 100 s of 300 s have passed.
    assert at(coordinator, 100, win_rate=0.54).mode is RiskMode.AGGRESSIVE
    # At 300 s it may leave; OPTIMISTIC needs win_rate >= 0.55, so the fallback takes over.
    left = at(coordinator, 300, win_rate=0.54)
    assert left.mode is RiskMode.NORMAL
    assert "win_rate < 0.55 (win_rate=0.54)" in left.reason


def test_critical_preempts_at_once_within_the_hold() -> None:
    coordinator = Coordinator()
    assert at(coordinator, 0, win_rate=0.55).mode is RiskMode.OPTIMISTIC
    # 10 s into OPTIMISTIC's 300 s hold, drawdown reaches 8: CRITICAL ranks first, no wait.
    result = at(coordinator, 10, win_rate=0.55, drawdown_pct=8.0)
    assert result.mode is RiskMode.CRITICAL
    # And the new hold runs from 10 s: at 309 s an exit that holds is not yet enough...
    assert at(coordinator, 309, drawdown_pct=1.0).mode is RiskMode.CRITICAL
    # ...at 310 s it is.
    assert at(coordinator, 310, drawdown_pct=1.0).mode is RiskMode.NORMAL


def test_critical_entered_right_after_a_move_down() -> None:
    coordinator = Coordinator()
    at(coordinator, 0, win_rate=0.55)
    assert at(coordinator, 300, win_rate=0.49).mode is RiskMode.NORMAL  # a change at 300 s
    # 5 s later: NORMAL, the fallback, ranks below every rule, so CRITICAL enters at once.
    assert at(coordinator, 305, losing_streak=5.0).mode is RiskMode.CRITICAL


def test_aggressive_does_not_preempt_critical() -> None:
    coordinator = Coordinator()
    assert at(coordinator, 0, drawdown_pct=8.0).mode is RiskMode.CRITICAL
    # Within the hold, AGGRESSIVE's enter holds (0.7, drawdown 1 < 2, streak 0) and CRITICAL's
    # exit holds too, but AGGRESSIVE ranks below CRITICAL: it waits for the hold.
    assert at(coordinator, 100, win_rate=0.7, losing_streak=0.0).mode is RiskMode.CRITICAL
    after = at(coordinator, 300, win_rate=0.7, losing_streak=0.0)
    assert after.mode is RiskMode.AGGRESSIVE
    assert "risk_mode_rules[1] (AGGRESSIVE) enter holds" in after.reason


def test_all_metrics_missing_fails_safe_to_critical() -> None:
    coordinator = Coordinator()
    result = coordinator.aios_coordinate(context(POLICY, now=T0, metrics={}))
    # CRITICAL's enter is unknown, which counts as holding for CRITICAL.
    assert result.mode is RiskMode.CRITICAL
    assert "enter holds (unknown, counted as holding)" in result.reason
    assert "drawdown_pct missing" in result.reason
    report = coordinator.aios_health(context(POLICY, now=T0))
    assert report.status is HealthStatus.DEGRADED
    assert "drawdown_pct, losing_streak, volatility_pct" in report.detail


def test_one_missing_metric_in_criticals_enter_is_enough() -> None:
    # drawdown 1 >= 8 no, streak 1 >= 5 no, volatility unknown: the `or` is unknown -> CRITICAL.
    metrics = {"drawdown_pct": 1.0, "losing_streak": 1.0, "win_rate": 0.7}
    result = Coordinator().aios_coordinate(context(POLICY, now=T0, metrics=metrics))
    assert result.mode is RiskMode.CRITICAL
    assert result.reason.endswith("volatility_pct >= 6 (volatility_pct missing)")


def test_missing_win_rate_keeps_optimistic_modes_out() -> None:
    # No trades yet: no win_rate. AGGRESSIVE's and OPTIMISTIC's enters are unknown -> not holding.
    metrics = {"drawdown_pct": 0.0, "losing_streak": 0.0, "volatility_pct": 1.0}
    coordinator = Coordinator()
    assert coordinator.aios_coordinate(context(POLICY, metrics=metrics)).mode is RiskMode.NORMAL
    assert coordinator.aios_health(context(POLICY)).status is HealthStatus.OK


def test_missing_metric_in_criticals_exit_keeps_critical() -> None:
    coordinator = Coordinator()
    assert at(coordinator, 0, drawdown_pct=9.0).mode is RiskMode.CRITICAL
    # drawdown 1 < 5 and streak 1 < 3 hold, volatility unknown: the `and` is unknown, which
    # counts as not holding for CRITICAL.
    metrics = {"drawdown_pct": 1.0, "losing_streak": 1.0, "win_rate": 0.5}
    kept = coordinator.aios_coordinate(
        context(POLICY, now=T0 + timedelta(seconds=900), metrics=metrics)
    )
    assert kept.mode is RiskMode.CRITICAL
    assert "exit does not hold (unknown, counted as not holding)" in kept.reason
    assert "volatility_pct < 4 (volatility_pct missing)" in kept.reason


def test_missing_metric_in_optimistic_exit_leaves_it() -> None:
    coordinator = Coordinator()
    assert at(coordinator, 0, win_rate=0.6).mode is RiskMode.OPTIMISTIC
    # win_rate gone: exit `win_rate < 0.5 or drawdown_pct >= 6` is unknown -> holding.
    metrics = {"drawdown_pct": 1.0, "losing_streak": 1.0, "volatility_pct": 1.0}
    left = coordinator.aios_coordinate(
        context(POLICY, now=T0 + timedelta(seconds=300), metrics=metrics)
    )
    assert left.mode is RiskMode.NORMAL
    assert "exit holds (unknown, counted as holding)" in left.reason


def test_allow_new_trades_and_hold_come_from_the_policy() -> None:
    policy = default_policy(
        "risk_modes:\n  CRITICAL:\n    allow_new_trades: false\n"
        "subsystems:\n  coordinator:\n    min_mode_hold_s: 0\n"
    )
    coordinator = Coordinator()
    critical = at(coordinator, 0, policy, drawdown_pct=8.0)
    assert (critical.mode, critical.allow_new_trades) == (RiskMode.CRITICAL, False)
    # No hold: the exit (4 < 5, 1 < 3, 1 < 4) takes effect on the very next cycle.
    normal = at(coordinator, 1, policy, drawdown_pct=4.0)
    assert (normal.mode, normal.allow_new_trades) == (RiskMode.NORMAL, True)


def test_state_survives_a_policy_reload() -> None:
    coordinator = Coordinator()
    assert at(coordinator, 0, drawdown_pct=8.0).mode is RiskMode.CRITICAL
    reloaded = default_policy("subsystems:\n  coordinator:\n    min_mode_hold_s: 600\n")
    # The new policy's hold (600 s) applies to the mode held since 0 s.
    assert at(coordinator, 500, reloaded, drawdown_pct=1.0).mode is RiskMode.CRITICAL
    assert at(coordinator, 600, reloaded, drawdown_pct=1.0).mode is RiskMode.NORMAL


def test_a_mode_whose_rule_a_reload_removed_is_left_after_the_hold() -> None:
    coordinator = Coordinator()
    assert at(coordinator, 0, win_rate=0.6).mode is RiskMode.OPTIMISTIC
    only_critical = default_policy(
        "subsystems:\n  coordinator:\n    risk_mode_rules:\n"
        "      - {mode: CRITICAL, enter: 'drawdown_pct >= 8', exit: 'drawdown_pct < 5'}\n"
    )
    kept = at(coordinator, 100, only_critical, win_rate=0.6)
    assert kept.mode is RiskMode.OPTIMISTIC  # 100 s of the 300 s hold
    assert kept.reason.endswith("though OPTIMISTIC has no rule in the policy any more")
    assert at(coordinator, 300, only_critical, win_rate=0.6).mode is RiskMode.NORMAL
