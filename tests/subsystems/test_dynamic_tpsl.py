"""Dynamic TP/SL: confidence scaling, risk-mode multipliers, SL clamp, R:R bounds, TP clamp.

Default policy: TP = 6 x (0.5 + c), SL = 8 x (1.5 - c), R:R in [1.5, 3.0], TP in [0.5, 25],
SL in [0.5, 9.5]; risk modes multiply (TP, SL) by NORMAL (1, 1), AGGRESSIVE (1.3, 0.85),
CRITICAL (0.7, 1.3).
"""

from __future__ import annotations

import pytest

from aios.model import RiskMode, Side, Signal, TpSlProposal
from aios.policy import Policy
from aios.testing import T0, context, default_policy
from plugins.dynamic_tpsl import DynamicTpSl


def _signal(confidence: float) -> Signal:
    return Signal("s1", "ETH/BTC", Side.LONG, confidence, "test", T0, 0.05)


def _propose(
    confidence: float, mode: RiskMode = RiskMode.NORMAL, policy: Policy | None = None
) -> TpSlProposal:
    ctx = context(policy, risk_mode=mode)
    return DynamicTpSl().aios_adjust_signal(ctx, _signal(confidence))


def _overlay(**settings: float) -> Policy:
    lines = "".join(f"    {key}: {value}\n" for key, value in settings.items())
    return default_policy(f"subsystems:\n  dynamic_tpsl:\n{lines}")


def test_high_confidence_normal_widens_tp_to_reward_risk_min() -> None:
    # TP = 6 x (0.5 + 0.8) = 7.8, SL = 8 x (1.5 - 0.8) = 5.6; R:R 7.8 / 5.6 = 1.393 < 1.5
    # -> TP = 5.6 x 1.5 = 8.4
    proposal = _propose(0.8)
    assert proposal.sl_pct == pytest.approx(5.6)
    assert proposal.tp_pct == pytest.approx(8.4)
    assert "R:R 1.393 below 1.5" in proposal.reason
    assert "raw TP 7.800%" in proposal.reason


def test_critical_scales_tp_and_sl_not_the_confidence() -> None:
    # c = 0.65 stays 0.65: TP = 6 x 1.15 x 0.7 = 4.83, SL = 8 x 0.85 x 1.3 = 8.84 (inside
    # [0.5, 9.5]); R:R 4.83 / 8.84 = 0.546 < 1.5 -> TP = 8.84 x 1.5 = 13.26.
    # (Multiplying the confidence by 1.25 instead would give c = 0.8125, SL 5.5.)
    proposal = _propose(0.65, RiskMode.CRITICAL)
    assert proposal.sl_pct == pytest.approx(8.84)
    assert proposal.tp_pct == pytest.approx(13.26)
    assert "confidence 0.650 in CRITICAL" in proposal.reason


def test_ratio_above_max_narrows_tp() -> None:
    # c = 1.0 AGGRESSIVE: TP = 6 x 1.5 x 1.3 = 11.7, SL = 8 x 0.5 x 0.85 = 3.4;
    # R:R 11.7 / 3.4 = 3.441 > 3.0 -> TP = 3.4 x 3 = 10.2
    proposal = _propose(1.0, RiskMode.AGGRESSIVE)
    assert proposal.sl_pct == pytest.approx(3.4)
    assert proposal.tp_pct == pytest.approx(10.2)
    assert "R:R 3.441 above 3, TP narrowed" in proposal.reason


def test_ratio_inside_bounds_is_left_alone() -> None:
    # c = 1.0 NORMAL: TP = 9, SL = 4, R:R 2.25 in [1.5, 3]
    proposal = _propose(1.0)
    assert proposal.tp_pct == pytest.approx(9.0)
    assert proposal.sl_pct == pytest.approx(4.0)
    assert "widened" not in proposal.reason and "narrowed" not in proposal.reason


def test_sl_clamped_to_max_before_the_ratio_moves_tp() -> None:
    # c = 0: SL = 8 x 1.5 = 12 -> clamped to 9.5; TP = 6 x 0.5 = 3, R:R 3 / 9.5 = 0.316
    # -> TP = 9.5 x 1.5 = 14.25 (computed from the clamped SL, not from 12)
    proposal = _propose(0.0)
    assert proposal.sl_pct == 9.5
    assert proposal.tp_pct == pytest.approx(14.25)
    assert "SL 12.000% clamped to sl_pct_max 9.5%" in proposal.reason


def test_sl_clamped_to_min() -> None:
    # c = 1.0: SL = 4 -> sl_pct_min 4.5; TP 9, R:R 9 / 4.5 = 2.0 unchanged
    proposal = _propose(1.0, policy=_overlay(sl_pct_min=4.5))
    assert proposal.sl_pct == 4.5
    assert proposal.tp_pct == pytest.approx(9.0)
    assert "clamped to sl_pct_min 4.5%" in proposal.reason


def test_sl_exactly_at_max_is_not_clamped_and_just_past_is() -> None:
    # c = 0.5: SL = 8 x 1.0 = 8.0 = sl_pct_max 8 -> untouched
    at_bound = _propose(0.5, policy=_overlay(sl_pct_max=8))
    assert at_bound.sl_pct == 8.0
    assert "clamped" not in at_bound.reason
    # c = 0.49: SL = 8 x 1.01 = 8.08 -> 8
    past = _propose(0.49, policy=_overlay(sl_pct_max=8))
    assert past.sl_pct == 8.0
    assert "SL 8.080% clamped to sl_pct_max 8%" in past.reason


def test_ratio_exactly_at_min_is_kept_and_just_below_is_widened() -> None:
    # base_tp 12, c = 0.5: TP = 12 x 1.0 = 12, SL = 8 -> R:R exactly 1.5: unchanged
    at_bound = _propose(0.5, policy=_overlay(base_tp_pct=12))
    assert at_bound.tp_pct == 12.0
    assert "widened" not in at_bound.reason
    # base_tp 11.9: TP 11.9, R:R 1.4875 < 1.5 -> TP = 8 x 1.5 = 12
    below = _propose(0.5, policy=_overlay(base_tp_pct=11.9))
    assert below.tp_pct == 12.0
    assert "R:R 1.488 below 1.5" in below.reason


def test_ratio_exactly_at_max_is_kept_and_just_above_is_narrowed() -> None:
    # base_tp 24, c = 0.5: TP 24, SL 8 -> R:R exactly 3.0: unchanged
    at_bound = _propose(0.5, policy=_overlay(base_tp_pct=24))
    assert at_bound.tp_pct == 24.0
    assert "narrowed" not in at_bound.reason
    # base_tp 24.1: R:R 3.0125 > 3 -> TP = 8 x 3 = 24
    above = _propose(0.5, policy=_overlay(base_tp_pct=24.1))
    assert above.tp_pct == 24.0
    assert "narrowed to 24.000%" in above.reason


def test_tp_clamp_to_max_wins_over_the_ratio_and_says_so() -> None:
    # c = 0.65 CRITICAL: TP 13.26 after the ratio (see above) -> tp_pct_max 10;
    # final R:R 10 / 8.84 = 1.131, below 1.5: reported, not hidden
    proposal = _propose(0.65, RiskMode.CRITICAL, _overlay(tp_pct_max=10))
    assert proposal.tp_pct == 10.0
    assert proposal.sl_pct == pytest.approx(8.84)
    assert "TP 13.260% clamped to tp_pct_max 10%" in proposal.reason
    assert "R:R 1.131 is left outside [1.5, 3]" in proposal.reason


def test_tp_clamp_to_min_at_and_past_the_ratio_max() -> None:
    # c = 1.0: TP 9, SL 4. tp_pct_min 12 -> TP 12, R:R 12 / 4 = 3.0 exactly: still inside
    inside = _propose(1.0, policy=_overlay(tp_pct_min=12))
    assert inside.tp_pct == 12.0
    assert "clamped to tp_pct_min 12%" in inside.reason
    assert "left outside" not in inside.reason
    # tp_pct_min 13 -> TP 13, R:R 3.25 > 3: reported
    outside = _propose(1.0, policy=_overlay(tp_pct_min=13))
    assert outside.tp_pct == 13.0
    assert "R:R 3.250 is left outside [1.5, 3]" in outside.reason


def test_tp_exactly_at_max_is_not_clamped() -> None:
    # base_tp 12, c = 0.5: TP 12 = tp_pct_max 12
    proposal = _propose(0.5, policy=_overlay(base_tp_pct=12, tp_pct_max=12))
    assert proposal.tp_pct == 12.0
    assert "clamped" not in proposal.reason


def test_settings_are_read_on_every_call() -> None:
    plugin = DynamicTpSl()
    signal = _signal(1.0)
    first = plugin.aios_adjust_signal(context(), signal)
    reloaded = plugin.aios_adjust_signal(context(_overlay(sl_pct_min=4.5)), signal)
    assert first.sl_pct == pytest.approx(4.0)
    assert reloaded.sl_pct == 4.5
