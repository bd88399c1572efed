"""Self-Healing: edge-triggered, sticky directives; fail-closed triggers; bounded recovery.

The default policy's NO_NEW_TRADES:
  trigger:    data_feed_staleness_s > 300 or exchange_error_rate > 0.2
              or drawdown_pct >= 10 or unhealthy_subsystems >= 2
  clear_when: data_feed_staleness_s <= 60 and exchange_error_rate <= 0.05
              and drawdown_pct < 8 and unhealthy_subsystems == 0
  clear_after_s: 300, on_missing_metric: fire
DEFENSIVE_EXIT fires at drawdown_pct >= 15 or critical_subsystems >= 1; EMERGENCY_SHUTDOWN at
drawdown_pct >= 25 or (circuit_breaker_open == 1 and exchange_error_rate >= 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from aios.model import DirectiveKind, DirectiveProposal, HealthReport, HealthStatus
from aios.policy import Policy
from aios.testing import T0, context, default_policy
from plugins.self_healing import SelfHealing

POLICY = default_policy()
NNT = DirectiveKind.NO_NEW_TRADES
HEALTHY = {
    "data_feed_staleness_s": 10.0,
    "data_feed_gap_candles": 0.0,
    "exchange_error_rate": 0.0,
    "drawdown_pct": 0.0,
    "unhealthy_subsystems": 0.0,
    "critical_subsystems": 0.0,
    "circuit_breaker_open": 0.0,
}


def cycle(
    healing: SelfHealing,
    seconds: float,
    policy: Policy = POLICY,
    health: Sequence[HealthReport] = (),
    without: Sequence[str] = (),
    **metrics: float,
) -> DirectiveProposal:
    """One cycle `seconds` after T0 on HEALTHY metrics, overridden by `metrics`, minus `without`."""
    values = {k: v for k, v in {**HEALTHY, **metrics}.items() if k not in without}
    ctx = context(policy, now=T0 + timedelta(seconds=seconds), metrics=values)
    return healing.aios_directives(ctx, health)


# --- directives ----------------------------------------------------------------------------


def test_healthy_metrics_raise_nothing() -> None:
    proposal = cycle(SelfHealing(), 0)
    assert proposal == DirectiveProposal(frozenset())


def test_raised_only_on_the_cycle_it_becomes_active() -> None:
    healing = SelfHealing()
    first = cycle(healing, 0, drawdown_pct=10.0)  # 10 >= 10
    assert first.active == {NNT}
    assert first.raised == {NNT: "trigger holds: drawdown_pct >= 10 (drawdown_pct=10)"}
    for seconds in (30, 60, 90):
        later = cycle(healing, seconds, drawdown_pct=12.0)
        assert later.active == {NNT}
        assert later.raised == {}
        assert later.cleared == {}


def test_just_below_the_trigger_raises_nothing() -> None:
    assert cycle(SelfHealing(), 0, drawdown_pct=9.99).active == frozenset()
    assert cycle(SelfHealing(), 0, data_feed_staleness_s=300.0).active == frozenset()  # not > 300
    assert cycle(SelfHealing(), 0, data_feed_staleness_s=300.5).active == {NNT}


def test_several_directives_each_with_its_own_reason() -> None:
    # drawdown 25: NO_NEW_TRADES (>= 10), DEFENSIVE_EXIT (>= 15), EMERGENCY_SHUTDOWN (>= 25).
    proposal = cycle(SelfHealing(), 0, drawdown_pct=25.0)
    assert proposal.active == set(DirectiveKind)
    assert proposal.raised[DirectiveKind.DEFENSIVE_EXIT] == (
        "trigger holds: drawdown_pct >= 15 (drawdown_pct=25)"
    )
    assert proposal.raised[DirectiveKind.EMERGENCY_SHUTDOWN] == (
        "trigger holds: drawdown_pct >= 25 (drawdown_pct=25)"
    )


def test_clears_exactly_when_clear_when_has_held_clear_after_s() -> None:
    healing = SelfHealing()
    cycle(healing, 0, drawdown_pct=10.0)
    # 30 s: drawdown 7 < 8 and the rest clear: clear_when holds, the clock starts at 30 s.
    assert cycle(healing, 30, drawdown_pct=7.0).active == {NNT}
    # 329 s: held 299 s < 300 s: still active.
    one_second_early = cycle(healing, 329, drawdown_pct=7.0)
    assert one_second_early.active == {NNT}
    assert one_second_early.cleared == {}
    # 330 s: held 300 s = clear_after_s: cleared, once, with the values.
    cleared = cycle(healing, 330, drawdown_pct=7.0)
    assert cleared.active == frozenset()
    assert cleared.cleared[NNT].startswith("clear_when held for 300 s (clear_after_s 300): ")
    assert "drawdown_pct < 8 (drawdown_pct=7)" in cleared.cleared[NNT]
    assert cycle(healing, 360, drawdown_pct=7.0).cleared == {}


def test_between_trigger_and_clear_the_directive_stays_and_the_clock_restarts() -> None:
    healing = SelfHealing()
    cycle(healing, 0, drawdown_pct=10.0)
    cycle(healing, 30, drawdown_pct=7.0)  # clock starts at 30 s
    # 200 s: drawdown 9 fires nothing (9 < 10) but clear_when fails (9 >= 8): clock reset.
    assert cycle(healing, 200, drawdown_pct=9.0).active == {NNT}
    cycle(healing, 250, drawdown_pct=7.0)  # clock restarts at 250 s
    # 330 s would have cleared without the reset (30 + 300); now 80 s < 300 s.
    assert cycle(healing, 330, drawdown_pct=7.0).active == {NNT}
    assert cycle(healing, 549, drawdown_pct=7.0).active == {NNT}  # 299 s
    assert cycle(healing, 550, drawdown_pct=7.0).cleared.keys() == {NNT}  # 300 s


def test_the_trigger_firing_again_restarts_the_clear_clock() -> None:
    healing = SelfHealing()
    cycle(healing, 0, drawdown_pct=10.0)
    cycle(healing, 30, drawdown_pct=7.0)  # clock starts at 30 s
    again = cycle(healing, 100, exchange_error_rate=0.25)  # 0.25 > 0.2 fires again
    assert again.active == {NNT}
    assert again.raised == {}  # not raised a second time
    cycle(healing, 130, drawdown_pct=7.0)  # clock restarts at 130 s
    assert cycle(healing, 330, drawdown_pct=7.0).active == {NNT}  # 200 s
    assert cycle(healing, 430, drawdown_pct=7.0).active == frozenset()  # 300 s


def test_an_unknown_clear_when_does_not_hold() -> None:
    policy = default_policy("directives:\n  NO_NEW_TRADES:\n    on_missing_metric: ignore\n")
    healing = SelfHealing()
    cycle(healing, 0, policy, drawdown_pct=10.0)
    # unhealthy_subsystems missing: the trigger is unknown (ignored: not fired), clear_when is
    # unknown (not holding): no clock, however long it lasts.
    assert cycle(healing, 30, policy, without=["unhealthy_subsystems"]).active == {NNT}
    assert cycle(healing, 3600, policy, without=["unhealthy_subsystems"]).active == {NNT}
    cycle(healing, 3630, policy)  # all known again: clock starts at 3630 s
    assert cycle(healing, 3929, policy).active == {NNT}
    assert cycle(healing, 3930, policy).active == frozenset()


def test_clear_after_zero_clears_on_the_first_clear_cycle() -> None:
    policy = default_policy("directives:\n  NO_NEW_TRADES:\n    clear_after_s: 0\n")
    healing = SelfHealing()
    cycle(healing, 0, policy, drawdown_pct=10.0)
    assert cycle(healing, 1, policy, drawdown_pct=8.0).active == {NNT}  # 8 is not < 8
    assert cycle(healing, 2, policy, drawdown_pct=7.0).cleared.keys() == {NNT}


def test_a_missing_metric_fires_a_fail_closed_trigger() -> None:
    proposal = cycle(SelfHealing(), 0, without=["exchange_error_rate"])
    # NO_NEW_TRADES: `... or exchange_error_rate > 0.2 or ...` with the rest false: unknown,
    # and on_missing_metric is fire.
    assert NNT in proposal.active
    assert proposal.raised[NNT] == (
        "trigger unknown, fired (on_missing_metric: fire): "
        "exchange_error_rate > 0.2 (exchange_error_rate missing)"
    )
    # EMERGENCY_SHUTDOWN reads it too, but `circuit_breaker_open == 1` is false, so the `and`
    # is false whatever the error rate: known, not fired.
    assert DirectiveKind.EMERGENCY_SHUTDOWN not in proposal.active


def test_a_missing_metric_is_ignored_when_the_policy_says_so() -> None:
    policy = default_policy("directives:\n  NO_NEW_TRADES:\n    on_missing_metric: ignore\n")
    proposal = cycle(SelfHealing(), 0, policy, without=["exchange_error_rate"])
    assert proposal.active == frozenset()
    # A known true part still fires, whatever is missing.
    fired = cycle(SelfHealing(), 0, policy, without=["exchange_error_rate"], drawdown_pct=10.0)
    assert fired.active == {NNT}


def test_state_survives_a_policy_reload() -> None:
    healing = SelfHealing()
    cycle(healing, 0, drawdown_pct=10.0)
    cycle(healing, 30, drawdown_pct=7.0)  # clock starts at 30 s
    longer = default_policy("directives:\n  NO_NEW_TRADES:\n    clear_after_s: 600\n")
    assert cycle(healing, 330, longer, drawdown_pct=7.0).active == {NNT}  # 300 s < 600 s
    assert cycle(healing, 630, longer, drawdown_pct=7.0).active == frozenset()  # 600 s


# --- recovery ------------------------------------------------------------------------------

TRIPPED = HealthReport("signal_model", HealthStatus.CRITICAL, "tripped until 05:05")


def test_a_tripped_subsystem_is_restarted_at_most_three_times_in_any_hour() -> None:
    healing = SelfHealing()
    restarts = {
        seconds: cycle(healing, seconds, health=[TRIPPED]).recovery
        for seconds in (0, 60, 120, 180, 3599, 3600, 3659, 3660)
    }
    granted = [seconds for seconds, actions in restarts.items() if actions]
    # max_restarts_per_hour 3: 0, 60, 120 granted; 180 and 3599 refused (three in the last
    # hour); at 3600 the one at 0 is an hour old and no longer counts; at 3660 the one at 60.
    assert granted == [0, 60, 120, 3600, 3660]
    (action,) = restarts[0]
    assert (action.action, action.target) == ("restart_subsystem", "signal_model")
    assert action.reason == (
        "signal_model is CRITICAL (tripped until 05:05); action 1 of 3 allowed per hour"
    )


def test_the_restart_budget_is_per_target() -> None:
    healing = SelfHealing()
    other = HealthReport("rl_sizing", HealthStatus.CRITICAL, "tripped")
    for seconds in (0, 60, 120):
        cycle(healing, seconds, health=[TRIPPED])
    actions = cycle(healing, 180, health=[TRIPPED, other]).recovery
    assert [(a.action, a.target) for a in actions] == [("restart_subsystem", "rl_sizing")]


def test_only_critical_subsystems_are_restarted_and_only_when_enabled() -> None:
    degraded = HealthReport("signal_model", HealthStatus.DEGRADED, "2 consecutive failures")
    feed = HealthReport("data_feed", HealthStatus.CRITICAL, "no candles for 900 s")
    assert cycle(SelfHealing(), 0, health=[degraded, feed]).recovery == ()
    off = default_policy(
        "subsystems:\n  self_healing:\n    recovery:\n      restart_failed_subsystems: false\n"
    )
    assert cycle(SelfHealing(), 0, off, health=[TRIPPED]).recovery == ()


def test_a_zero_budget_allows_no_restart() -> None:
    none = default_policy(
        "subsystems:\n  self_healing:\n    recovery:\n      max_restarts_per_hour: 0\n"
    )
    assert cycle(SelfHealing(), 0, none, health=[TRIPPED]).recovery == ()


def test_a_critical_policy_is_reloaded_only_when_enabled() -> None:
    broken = HealthReport("policy", HealthStatus.CRITICAL, "last reload failed")
    assert cycle(SelfHealing(), 0, health=[broken]).recovery == ()  # default: false
    policy = default_policy(
        "subsystems:\n  self_healing:\n    recovery:\n      reload_policy_on_error: true\n"
    )
    (action,) = cycle(SelfHealing(), 0, policy, health=[broken]).recovery
    assert (action.action, action.target) == ("reload_policy", "policy")


# --- health --------------------------------------------------------------------------------


def health_of(**metrics: float) -> HealthReport:
    return SelfHealing().aios_health(context(POLICY, metrics=metrics))


def test_health_ok_at_every_threshold() -> None:
    # Thresholds: staleness 300 s, gap 3 candles, error rate 0.2; at each: still OK.
    report = health_of(
        data_feed_staleness_s=300.0, data_feed_gap_candles=3.0, exchange_error_rate=0.2
    )
    assert report.status is HealthStatus.OK
    assert report.component == "infrastructure"
    assert report.detail == (
        "data feed staleness 300 s <= 300; data feed gap 3 candles <= 3; "
        "exchange error rate 0.2 <= 0.2"
    )


def test_health_degraded_just_past_a_threshold() -> None:
    stale = health_of(
        data_feed_staleness_s=300.5, data_feed_gap_candles=0.0, exchange_error_rate=0.0
    )
    assert stale.status is HealthStatus.DEGRADED
    assert stale.detail == "data feed staleness 300.5 s > data_feed_max_staleness_s 300"
    gaps = health_of(data_feed_staleness_s=1.0, data_feed_gap_candles=4.0, exchange_error_rate=0.0)
    assert gaps.status is HealthStatus.DEGRADED
    assert gaps.detail == "data feed gap 4 candles > data_feed_max_gap_candles 3"
    errors = health_of(
        data_feed_staleness_s=1.0, data_feed_gap_candles=0.0, exchange_error_rate=0.21
    )
    assert errors.detail == "exchange error rate 0.21 > exchange_max_error_rate 0.2"


def test_health_names_what_was_not_reported() -> None:
    report = health_of(data_feed_staleness_s=10.0)
    assert report.status is HealthStatus.OK
    assert report.detail.endswith("not reported: data_feed_gap_candles, exchange_error_rate")
