"""Model Supervisor: directional bias, calibration error and accuracy drift on hand-built windows,
the boundaries (exactly at the maximum is healthy), min_samples and the drift flag.

Default policy: window_size 200, min_samples 30, max_directional_bias 0.75,
max_calibration_error 0.15, max_accuracy_drift 0.10, request_retraining_on_drift true.
Most tests use a small window: window_size 10 (the schema's minimum) or 20, min_samples 4.
"""

from __future__ import annotations

from functools import cache

import pytest

from aios.model import CycleContext, HealthStatus, Side, Signal
from aios.policy import Policy
from aios.testing import T0, closed_trade, context, default_policy
from plugins.model_supervisor import ModelSupervisor


@cache
def policy(overlay: str) -> Policy:
    return default_policy(overlay)


def ctx(window_size: int = 10, min_samples: int = 4, extra: str = "") -> CycleContext:
    overlay = (
        "subsystems:\n  model_supervisor:\n"
        f"    window_size: {window_size}\n    min_samples: {min_samples}\n{extra}"
    )
    return context(policy(overlay))


def observe(supervisor: ModelSupervisor, context_: CycleContext, sides: str) -> None:
    """Observe one signal per letter: L for LONG, S for SHORT."""
    for index, letter in enumerate(sides):
        side = Side.LONG if letter == "L" else Side.SHORT
        signal = Signal(f"s{index}", "ETH/BTC", side, 0.7, "signal_model", T0, 1.0)
        supervisor.aios_observe_signal(context_, signal)


def close(
    supervisor: ModelSupervisor,
    context_: CycleContext,
    outcomes: str,
    confidence: float | None = 0.7,
) -> None:
    """Close one trade per letter, oldest first: W wins (+1 %), L loses (-1 %)."""
    for letter in outcomes:
        trade = closed_trade(1.0 if letter == "W" else -1.0, confidence=confidence)
        supervisor.aios_trade_closed(context_, trade)


def test_declares_its_metrics() -> None:
    specs = ModelSupervisor().aios_metrics()
    assert {s.name for s in specs} == {
        "model_directional_bias",
        "model_calibration_error",
        "model_accuracy_drift",
        "model_drift_detected",
    }
    assert {s.provider for s in specs} == {"model_supervisor"}


# --- directional bias --------------------------------------------------------------------------


def test_bias_exactly_at_the_maximum_is_healthy() -> None:
    supervisor, c = ModelSupervisor(), ctx()
    observe(supervisor, c, "LLLS")  # 3 of 4 LONG -> bias 0.75 = max 0.75
    assert supervisor.aios_collect_metrics(c)["model_directional_bias"] == 0.75
    assert supervisor.aios_health(c).status is HealthStatus.OK


def test_bias_above_the_maximum_is_degraded() -> None:
    supervisor, c = ModelSupervisor(), ctx()
    observe(supervisor, c, "LLLSL")  # 4 of 5 LONG -> bias 0.8 > 0.75
    health = supervisor.aios_health(c)
    assert health.status is HealthStatus.DEGRADED
    assert "directional bias 0.800 (LONG in 5 signals) above 0.75" in health.detail
    # bias alone is not drift: no retraining is requested
    assert supervisor.aios_collect_metrics(c)["model_drift_detected"] == 0.0


def test_short_majority_counts_the_same() -> None:
    supervisor, c = ModelSupervisor(), ctx()
    observe(supervisor, c, "SSSSL")  # 4 of 5 SHORT -> 0.8
    health = supervisor.aios_health(c)
    assert health.status is HealthStatus.DEGRADED and "SHORT in 5 signals" in health.detail


def test_bias_needs_min_samples_signals() -> None:
    supervisor, c = ModelSupervisor(), ctx(min_samples=4)
    observe(supervisor, c, "LLL")  # bias 1.0, but only 3 < 4 signals
    assert supervisor.aios_health(c).status is HealthStatus.OK
    assert "model_directional_bias" not in supervisor.aios_collect_metrics(c)
    observe(supervisor, c, "L")  # 4 signals, all LONG -> 1.0 > 0.75
    assert supervisor.aios_health(c).status is HealthStatus.DEGRADED


def test_bias_only_over_the_last_window_size_signals() -> None:
    supervisor, c = ModelSupervisor(), ctx(window_size=10)
    observe(supervisor, c, "L" * 10 + "LSLSLSLSLS")  # the window keeps the last 10: 5 L, 5 S
    assert supervisor.aios_collect_metrics(c)["model_directional_bias"] == 0.5
    assert supervisor.aios_health(c).status is HealthStatus.OK


# --- calibration and drift ---------------------------------------------------------------------


def test_calibration_and_drift_exactly_at_their_maximum_are_healthy() -> None:
    supervisor, c = ModelSupervisor(), ctx(window_size=20)
    # 20 trades at confidence 0.7; older half 6 wins, newer half 5 wins -> 11 / 20 = 0.55.
    # calibration |0.7 - 0.55| = 0.15 = max; drift 0.6 - 0.5 = 0.10 = max
    close(supervisor, c, "WWWWWWLLLL" + "WWWWWLLLLL")
    metrics = supervisor.aios_collect_metrics(c)
    assert metrics["model_calibration_error"] == pytest.approx(0.15)
    assert metrics["model_accuracy_drift"] == pytest.approx(0.10)
    assert metrics["model_drift_detected"] == 0.0
    assert supervisor.aios_health(c).status is HealthStatus.OK


def test_calibration_error_above_the_maximum() -> None:
    supervisor, c = ModelSupervisor(), ctx(window_size=20)
    # 10 / 20 wins at confidence 0.7 -> |0.7 - 0.5| = 0.2 > 0.15; 5 and 5 per half -> drift 0
    close(supervisor, c, "WWWWWLLLLL" + "WWWWWLLLLL")
    health = supervisor.aios_health(c)
    assert health.status is HealthStatus.DEGRADED
    assert (
        "calibration error 0.200 (mean confidence 0.700 vs win rate 0.500 over 20 trades) above 0.15"
        in health.detail
    )
    assert "accuracy drift" not in health.detail
    assert "retraining requested" in health.detail
    assert supervisor.aios_collect_metrics(c)["model_drift_detected"] == 1.0


def test_accuracy_drift_above_the_maximum() -> None:
    supervisor, c = ModelSupervisor(), ctx(window_size=20)
    # no confidences, so calibration is not judged; older 8 / 10 = 0.8, newer 6 / 10 = 0.6
    # -> drift 0.2 > 0.10
    close(supervisor, c, "WWWWWWWWLL" + "WWWWWWLLLL", confidence=None)
    health = supervisor.aios_health(c)
    assert health.status is HealthStatus.DEGRADED
    assert (
        "accuracy drift 0.200 (older half 0.800, newer half 0.600 over 20 trades)" in health.detail
    )
    metrics = supervisor.aios_collect_metrics(c)
    assert "model_calibration_error" not in metrics
    assert metrics["model_drift_detected"] == 1.0


def test_improving_accuracy_is_not_drift() -> None:
    supervisor, c = ModelSupervisor(), ctx(window_size=20)
    close(supervisor, c, "LLLLLLLLLL" + "WWWWWWWWWW", confidence=None)  # 0.0 - 1.0 = -1.0
    assert supervisor.aios_collect_metrics(c)["model_accuracy_drift"] == -1.0
    assert supervisor.aios_health(c).status is HealthStatus.OK


def test_odd_count_leaves_the_middle_trade_out_of_both_halves() -> None:
    supervisor, c = ModelSupervisor(), ctx(window_size=21)
    # 10 wins, the middle loss, 10 wins: halves 10 / 10 and 10 / 10 -> drift 0.0
    # (counting the middle in the newer half would give 1 - 10/11 = 0.0909)
    close(supervisor, c, "W" * 10 + "L" + "W" * 10, confidence=None)
    assert supervisor.aios_collect_metrics(c)["model_accuracy_drift"] == 0.0


def test_breakeven_is_not_a_win() -> None:
    supervisor, c = ModelSupervisor(), ctx(window_size=10)
    for _ in range(4):
        supervisor.aios_trade_closed(c, closed_trade(0.0, confidence=0.6))
    # win rate 0 / 4 -> |0.6 - 0| = 0.6
    assert supervisor.aios_collect_metrics(c)["model_calibration_error"] == pytest.approx(0.6)


def test_outcome_statistics_need_min_samples_trades() -> None:
    supervisor, c = ModelSupervisor(), ctx(window_size=10, min_samples=6)
    close(supervisor, c, "LLLLL")  # 5 < 6 trades: calibration 0.7, not judged yet
    metrics = supervisor.aios_collect_metrics(c)
    assert metrics == {"model_drift_detected": 0.0}
    health = supervisor.aios_health(c)
    assert health.status is HealthStatus.OK
    assert health.detail == "collecting: 0 signals and 5 trades of 6 needed"
    close(supervisor, c, "L")  # 6 trades, all lost at 0.7 -> 0.7 > 0.15
    assert supervisor.aios_health(c).status is HealthStatus.DEGRADED


def test_trades_only_over_the_last_window_size() -> None:
    supervisor, c = ModelSupervisor(), ctx(window_size=10)
    # 10 old losses at 0.9 roll out of the window; the 10 kept: WLWLW (3/5) then LWLWW (3/5)
    close(supervisor, c, "L" * 10, confidence=0.9)
    close(supervisor, c, "WLWLW" + "LWLWW", confidence=0.6)
    metrics = supervisor.aios_collect_metrics(c)
    assert metrics["model_calibration_error"] == pytest.approx(0.0)  # |0.6 - 6/10|
    assert metrics["model_accuracy_drift"] == 0.0  # 3/5 - 3/5


def test_a_smaller_window_after_a_reload_keeps_the_newest() -> None:
    supervisor = ModelSupervisor()
    close(supervisor, ctx(window_size=20), "L" * 10 + "W" * 10, confidence=None)
    # window 20: drift 0.0 - 1.0 = -1.0; reloaded with window 10 only the 10 wins remain: 0.0
    assert supervisor.aios_collect_metrics(ctx(window_size=10))["model_accuracy_drift"] == 0.0


def test_no_retraining_request_when_the_policy_says_so() -> None:
    extra = "    request_retraining_on_drift: false\n"
    supervisor, c = ModelSupervisor(), ctx(window_size=20, extra=extra)
    close(supervisor, c, "WWWWWWWWWW" + "LLLLLLLLLL", confidence=None)  # drift 1.0
    assert supervisor.aios_health(c).status is HealthStatus.DEGRADED
    assert "retraining requested" not in supervisor.aios_health(c).detail
    assert supervisor.aios_collect_metrics(c)["model_drift_detected"] == 0.0


def test_remembered_statistics_follow_every_change_of_the_windows() -> None:
    """The statistics are remembered between two asks with nothing new in between, and are
    recomputed after a signal, a trade, or a smaller window in the policy."""
    supervisor = ModelSupervisor()
    small = ctx(window_size=10, min_samples=4)
    observe(supervisor, small, "LLLS")
    first = supervisor.statistics(small)
    assert supervisor.statistics(small) is first
    assert first.directional_bias == 0.75
    observe(supervisor, small, "S")
    assert supervisor.statistics(small).signals == 5
    supervisor.aios_trade_closed(small, closed_trade(pnl_pct=1.0))
    assert supervisor.statistics(small).trades == 1
    observe(supervisor, small, "LLLLLL")
    assert supervisor.statistics(small).signals == 10
    smaller = ctx(window_size=10, min_samples=5)
    assert supervisor.statistics(smaller).signals == 10  # min_samples changed: recomputed


def test_kept_counts_agree_with_a_recount_of_the_windows() -> None:
    """The LONG count is kept as signals come and go and the trade figures are remembered
    between closes; a seeded mix of signals, closes and window-size changes (which trim the
    windows) recounted from the windows after every step gives the same statistics."""
    import random

    rng = random.Random(7)
    supervisor = ModelSupervisor()
    sizes = [10, 20, 12, 10, 30]
    for step in range(600):
        size = sizes[(step // 97) % len(sizes)]
        here = ctx(window_size=size, min_samples=4)
        action = rng.random()
        if action < 0.6:
            observe(supervisor, here, rng.choice("LS") * rng.randint(1, 3))
        elif action < 0.9:
            close(supervisor, here, rng.choice("WL"), rng.choice([0.6, 0.8, None]))
        stats = supervisor.statistics(here)
        sides, outcomes = list(supervisor._sides), list(supervisor._outcomes)
        assert len(sides) <= size and len(outcomes) <= size
        longs = sum(1 for side in sides if side is Side.LONG)
        expected_bias = max(longs, len(sides) - longs) / len(sides) if len(sides) >= 4 else None
        calibrated = [o for o in outcomes if o.confidence is not None]
        expected_error = None
        if len(calibrated) >= 4:
            mean = sum(o.confidence or 0.0 for o in calibrated) / len(calibrated)
            expected_error = abs(mean - sum(o.win for o in calibrated) / len(calibrated))
        assert (stats.signals, stats.trades, stats.calibrated_trades) == (
            len(sides),
            len(outcomes),
            len(calibrated),
        )
        assert (stats.directional_bias, stats.calibration_error) == (
            expected_bias,
            expected_error,
        ), step
