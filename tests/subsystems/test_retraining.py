"""Retraining Orchestrator: the schedule and drift triggers, min_samples, the champion comparison
and its margin at the boundary, deterministic versions.

The market: ETH/BTC and LTC/BTC (both in the default universe.symbols) rise by 0.5 every candle,
200 candles each (signal_model.lookback_candles is 200), plus FOO/BTC, which is not in the
universe and must be ignored. Every label is "up". With the default features (50 candles of
warm-up) and horizon 6, each symbol has 200 - 49 - 6 = 145 labelled rows: 290 pooled. The
holdout is ceil(290 x 0.2) = 58 rows, the last 29 candle times (t = 165 .. 193); training keeps
t = 49 .. 164 minus the rows whose label candle t + 6 reaches t >= 165, so t = 49 .. 158:
2 x 110 = 220 rows. A model trained on labels that are all "up" predicts up, so the challenger
scores 1.0; a stub champion with a negative bias always says down and scores 0.0.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from functools import cache

from aios.model import CycleContext, HealthStatus, ModelProposal
from aios.model_registry import ModelRegistry, ModelVersion
from aios.policy import Policy
from aios.testing import T0, candles_from_closes, context, default_policy, market
from plugins._logistic import DEFAULT_HORIZON, LogisticModel
from plugins.retraining import Retraining, beats_champion, version_name

HOUR = timedelta(hours=1)
SERIES = {
    symbol: candles_from_closes([base + 0.5 * i for i in range(200)])
    for symbol, base in (("ETH/BTC", 100.0), ("LTC/BTC", 50.0), ("FOO/BTC", 10.0))
}
MARKET = market(SERIES)


@cache
def policy(min_samples: int = 290, margin: float = 0.02, extra: str = "") -> Policy:
    return default_policy(
        "subsystems:\n  retraining:\n"
        f"    interval_s: 3600\n    min_samples: {min_samples}\n"
        f"    promotion_margin: {margin}\n{extra}"
    )


def ctx(
    now: timedelta = timedelta(0),
    drift: float | None = None,
    models: ModelRegistry | None = None,
    min_samples: int = 290,
    margin: float = 0.02,
    extra: str = "",
) -> CycleContext:
    metrics = {} if drift is None else {"model_drift_detected": drift}
    base = context(
        policy(min_samples, margin, extra), now=T0 + now, market_view=MARKET, metrics=metrics
    )
    return replace(base, models=models)


def stub_champion(bias: float) -> ModelRegistry:
    """A champion that ignores its feature: p(up) = sigmoid(bias) on every row."""
    model = LogisticModel(("returns_1",), (0.0,), bias, (0.0,), (1.0,), DEFAULT_HORIZON)
    registry = ModelRegistry(":memory:")
    registry.register(ModelVersion("m-old", T0, model.to_params()))
    registry.deploy("m-old", T0)
    return registry


def actions(proposals: list[ModelProposal] | object) -> list[str]:
    assert isinstance(proposals, list)
    return [p.action for p in proposals]


# --- when ----------------------------------------------------------------------------------------


def test_first_tick_starts_the_clock_and_the_interval_is_inclusive() -> None:
    plugin = Retraining()
    assert plugin.aios_tick(ctx()) == []  # schedules only
    assert plugin.aios_tick(ctx(HOUR - timedelta(seconds=1))) == []  # 3599 s < 3600 s
    proposals = plugin.aios_tick(ctx(HOUR))  # 3600 s: due
    assert actions(proposals) == ["register", "deploy"]
    assert proposals[0].reason.startswith("scheduled (3600s since the last run, interval 3600s)")
    # the clock restarts at the run
    assert plugin.aios_tick(ctx(2 * HOUR - timedelta(seconds=1))) == []
    assert actions(plugin.aios_tick(ctx(2 * HOUR))) == ["register", "deploy"]


def test_drift_triggers_at_once_and_once_per_episode() -> None:
    plugin = Retraining()
    first = plugin.aios_tick(ctx(drift=1.0))  # the very first tick, but drift: runs now
    assert actions(first) == ["register", "deploy"]
    assert first[0].reason.startswith("model drift detected")
    assert plugin.aios_tick(ctx(timedelta(minutes=1), drift=1.0)) == []  # same episode
    assert plugin.aios_tick(ctx(timedelta(minutes=2), drift=0.0)) == []  # cleared
    assert actions(plugin.aios_tick(ctx(timedelta(minutes=3), drift=1.0))) == [
        "register",
        "deploy",
    ]  # a new episode


def test_drift_is_ignored_when_retrain_on_drift_is_off() -> None:
    plugin = Retraining()
    off = "    retrain_on_drift: false\n"
    assert plugin.aios_tick(ctx(drift=1.0, extra=off)) == []


def test_min_samples_counts_labelled_rows_in_the_universe() -> None:
    # 290 rows from ETH/BTC and LTC/BTC; FOO/BTC's 145 would make 435 if it were counted
    enough = Retraining()
    proposals = enough.aios_tick(ctx(drift=1.0, min_samples=290))
    assert proposals[0].metrics["samples"] == 290.0
    short = Retraining()
    assert short.aios_tick(ctx(drift=1.0, min_samples=291)) == []
    assert short.aios_health(ctx()).detail == (
        "model drift detected: skipped, 290 labelled rows < min_samples 291"
    )


# --- what ----------------------------------------------------------------------------------------


def test_no_champion_registers_and_deploys() -> None:
    register, deploy = Retraining().aios_tick(ctx(drift=1.0))
    assert (register.action, deploy.action) == ("register", "deploy")
    assert register.version == deploy.version == "m-20180110T050000"
    assert register.metrics == {
        "challenger_accuracy": 1.0,
        "samples": 290.0,
        "train_samples": 220.0,
        "holdout_samples": 58.0,
    }
    assert register.params["model"] == "logistic" and register.params["horizon"] == 6
    assert LogisticModel.from_params(register.params).features == (
        "returns_1",
        "returns_5",
        "returns_20",
        "volatility_20",
        "trend_50",
        "rsi_14",
        "volume_z_20",
    )
    assert "no champion to beat" in deploy.reason


def test_deploys_when_the_gain_is_exactly_the_margin() -> None:
    # challenger 1.0, champion always down 0.0: gain 1.0 = margin 1.0 -> deploy
    proposals = Retraining().aios_tick(ctx(drift=1.0, models=stub_champion(-1.0), margin=1.0))
    assert actions(proposals) == ["register", "deploy"]
    register, deploy = proposals
    assert register.metrics["challenger_accuracy"] == 1.0
    assert register.metrics["champion_accuracy"] == 0.0
    assert "vs champion m-old 0.000" in register.reason
    assert deploy.reason == "gain +1.000 over m-old meets the margin 1"


def test_registers_only_when_the_gain_misses_the_margin() -> None:
    # gain 1.0 < margin 1.01 -> register, no deploy
    proposals = Retraining().aios_tick(ctx(drift=1.0, models=stub_champion(-1.0), margin=1.01))
    assert actions(proposals) == ["register"]
    # an equally good champion (always up: 1.0) with margin 0.02: gain 0 < 0.02
    equal = Retraining().aios_tick(ctx(drift=1.0, models=stub_champion(1.0)))
    assert actions(equal) == ["register"]
    assert equal[0].metrics["champion_accuracy"] == 1.0


def test_zero_margin_promotes_an_equal_challenger() -> None:
    proposals = Retraining().aios_tick(ctx(drift=1.0, models=stub_champion(1.0), margin=0.0))
    assert actions(proposals) == ["register", "deploy"]  # gain 0 >= margin 0


def test_promotion_rule_at_the_boundary() -> None:
    assert beats_champion(0.62, 0.60, 0.02)  # 0.0200000000000000178 >= 0.02
    assert beats_champion(0.57, 0.55, 0.02)  # 0.0199999999999999067: the margin in exact terms
    assert not beats_champion(0.569, 0.55, 0.02)  # 0.019 < 0.02
    assert not beats_champion(0.55, 0.55, 0.01)


def test_an_unusable_champion_counts_as_none() -> None:
    registry = ModelRegistry(":memory:")
    registry.register(ModelVersion("m-bad", T0, {"model": "forest"}))
    registry.deploy("m-bad", T0)
    register, deploy = Retraining().aios_tick(ctx(drift=1.0, models=registry))
    assert "champion_accuracy" not in register.metrics
    assert "champion m-bad unusable" in deploy.reason


def test_versions_and_proposals_are_deterministic() -> None:
    assert version_name(T0 + HOUR) == "m-20180110T060000"
    first = Retraining()
    second = Retraining()
    for plugin in (first, second):
        plugin.aios_tick(ctx())
    assert first.aios_tick(ctx(HOUR)) == second.aios_tick(ctx(HOUR))
    assert first.aios_tick(ctx(2 * HOUR))[0].version == "m-20180110T070000"


def test_health_reports_the_last_run() -> None:
    plugin = Retraining()
    assert plugin.aios_health(ctx()).detail == "not run yet"
    plugin.aios_tick(ctx(drift=1.0))
    health = plugin.aios_health(ctx())
    assert health.status is HealthStatus.OK
    assert health.detail.endswith("no champion to beat; deploy proposed")
