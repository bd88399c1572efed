"""Signal model and the shared logistic model: features by hand, labels without look-ahead,
training that learns, serialisation, and the plugin's signals from a champion or a bootstrap.

Candles come from `candles_from_closes` (5-minute steps from T0, volume 100). The label horizon
is `DEFAULT_HORIZON` = 6 candles; the default features need 50 candles (trend_50).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import replace
from datetime import timedelta, timezone
from functools import cache
from typing import Any

import numpy as np
import pytest

import plugins._logistic as logistic_module
from aios.model import Candle, CycleContext, HealthStatus, Side, Signal
from aios.model_registry import ModelRegistry, ModelVersion
from aios.policy import Policy
from aios.testing import T0, candles_from_closes, context, default_policy, market
from plugins._logistic import (
    DEFAULT_HORIZON,
    Dataset,
    LogisticModel,
    build_dataset,
    extract_features,
    market_dataset,
    required_candles,
    time_split,
    train,
)
from plugins.signal_model import SignalModel, _Window

ALL_FEATURES = (
    "returns_1",
    "returns_5",
    "returns_20",
    "volatility_20",
    "trend_50",
    "rsi_14",
    "volume_z_20",
)
RETURNS_ONLY = "subsystems:\n  signal_model:\n    features: [returns_1]\n"


@cache
def policy(overlay: str | None = None) -> Policy:
    return default_policy(overlay)


def noisy_trend(count: int, drift: float, seed: int = 3) -> list[float]:
    """Closes of a geometric random walk with a per-candle drift (log-return), seeded."""
    rng = np.random.default_rng(seed)
    steps = drift + rng.normal(0.0, 0.004, count)
    return [float(v) for v in 100.0 * np.exp(np.cumsum(steps))]


def with_volumes(candles: list[Candle], volumes: list[float]) -> list[Candle]:
    return [replace(c, volume=v) for c, v in zip(candles, volumes, strict=True)]


def returns_champion(weight: float = 1.0, bias: float = 0.0) -> LogisticModel:
    """p(up) = sigmoid(weight x returns_1 + bias): means 0 and stds 1, so no rescaling."""
    return LogisticModel(("returns_1",), (weight,), bias, (0.0,), (1.0,), DEFAULT_HORIZON)


def registry_with(model: LogisticModel, version: str = "m-test") -> ModelRegistry:
    registry = ModelRegistry(":memory:")
    registry.register(ModelVersion(version, T0, model.to_params()))
    registry.deploy(version, T0)
    return registry


def ctx_for(
    series: dict[str, list[Candle]],
    overlay: str | None = None,
    models: ModelRegistry | None = None,
) -> CycleContext:
    last = max(c.time for candles in series.values() for c in candles)
    return replace(
        context(policy(overlay), now=last, market_view=market(series, now=last)), models=models
    )


# --- features, by hand -------------------------------------------------------------------------


def test_returns_over_1_and_5_candles() -> None:
    candles = candles_from_closes([100, 101, 102, 103, 104, 110])
    values = extract_features(candles, ["returns_1", "returns_5"])
    assert values is not None
    assert values["returns_1"] == pytest.approx(5.769230769)  # (110 / 104 - 1) x 100
    assert values["returns_5"] == pytest.approx(10.0)  # (110 / 100 - 1) x 100


def test_rsi_seed_then_one_wilder_step() -> None:
    # 14 changes: ten +1 and four -1 -> avg gain 10/14, avg loss 4/14, RS 2.5,
    # RSI = 100 - 100 / 3.5 = 71.4285714
    changes = [1, 1, -1, 1, 1, -1, 1, 1, -1, 1, 1, -1, 1, 1]
    closes = [100.0]
    for change in changes:
        closes.append(closes[-1] + change)
    seeded = extract_features(candles_from_closes(closes), ["rsi_14"])
    assert seeded is not None and seeded["rsi_14"] == pytest.approx(71.4285714)
    # One more change of +2: gain = (10/14 x 13 + 2) / 14 = 158/196, loss = (4/14 x 13) / 14 =
    # 52/196, RS = 79/26, RSI = 100 - 100 x 26/105 = 75.2380952
    smoothed = extract_features(candles_from_closes([*closes, closes[-1] + 2]), ["rsi_14"])
    assert smoothed is not None and smoothed["rsi_14"] == pytest.approx(75.2380952)


def test_rsi_without_losses_is_100_and_flat_is_50() -> None:
    rising = extract_features(candles_from_closes([100.0 + i for i in range(15)]), ["rsi_14"])
    flat = extract_features(candles_from_closes([100.0] * 15), ["rsi_14"])
    assert rising == {"rsi_14": 100.0}
    assert flat == {"rsi_14": 50.0}


def test_trend_50_against_the_simple_moving_average() -> None:
    # 25 closes at 90 then 25 at 110: SMA50 = 100, last close 110 -> (110 / 100 - 1) x 100 = 10
    values = extract_features(candles_from_closes([90.0] * 25 + [110.0] * 25), ["trend_50"])
    assert values is not None and values["trend_50"] == pytest.approx(10.0)


def test_volatility_20_is_the_sample_stdev_of_returns() -> None:
    # 20 returns alternating +1 % and -1 %: mean 0, sum of squares 20, sample variance 20/19,
    # stdev sqrt(20/19) = 1.0259784
    closes = [100.0]
    for index in range(20):
        closes.append(closes[-1] * (1.01 if index % 2 == 0 else 0.99))
    values = extract_features(candles_from_closes(closes), ["volatility_20"])
    assert values is not None and values["volatility_20"] == pytest.approx(math.sqrt(20 / 19))


def test_volume_z_20_against_the_20_volumes_before() -> None:
    # reference volumes alternate 90 / 110: mean 100, sample stdev sqrt(20 x 100 / 19) = 10.2598;
    # current 130 -> z = 30 / 10.2598 = 2.9240
    volumes = [90.0 if i % 2 == 0 else 110.0 for i in range(20)] + [130.0]
    candles = with_volumes(candles_from_closes([100.0] * 21), volumes)
    values = extract_features(candles, ["volume_z_20"])
    assert values is not None
    assert values["volume_z_20"] == pytest.approx(30.0 / math.sqrt(2000 / 19))


def _plain_rsi_14(closes: list[float]) -> float:
    """Wilder's RSI as first written (integer divisors, generators): the reference the
    shipped one must equal bit for bit."""
    changes = [b - a for a, b in itertools.pairwise(closes)]
    avg_gain = sum(c for c in changes[:14] if c > 0.0) / 14
    avg_loss = -sum(c for c in changes[:14] if c < 0.0) / 14
    for change in changes[14:]:
        if change > 0.0:
            avg_gain, avg_loss = (avg_gain * 13 + change) / 14, avg_loss * 13 / 14
        else:
            avg_gain, avg_loss = avg_gain * 13 / 14, (avg_loss * 13 - change) / 14
    if avg_loss == 0.0:
        return 100.0 if avg_gain > 0.0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def _plain_stdev(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def test_features_equal_the_plain_formulas_on_every_bundled_candle() -> None:
    # The features use float constants and lists (faster in the interpreter); every value on
    # every window of the bundled real candles must be the plain formula's, to the last bit
    # (the shared data set's 617,632 values were checked the same way, with the old code).
    from aios.data import bundled_data_dir, load_csv_candles

    compared = 0
    for path in sorted(bundled_data_dir().glob("*.csv")):
        candles = load_csv_candles(path)
        closes = [float(c.close) for c in candles]
        volumes = [float(c.volume) for c in candles]
        for t in range(59, len(candles)):
            window, vols = closes[t - 59 : t + 1], volumes[t - 59 : t + 1]
            returns = [(b / a - 1.0) * 100.0 for a, b in itertools.pairwise(window[-21:])]
            reference = vols[-21:-1]
            spread = _plain_stdev(reference)
            expected = {
                "rsi_14": _plain_rsi_14(window),
                "volatility_20": _plain_stdev(returns),
                "trend_50": (window[-1] / (sum(window[-50:]) / 50) - 1.0) * 100.0,
                "volume_z_20": 0.0 if spread == 0.0 else (vols[-1] - sum(reference) / 20) / spread,
            }
            for name, value in expected.items():
                got = logistic_module.FEATURES[name][1](window, vols)
                assert math.copysign(1.0, got) == math.copysign(1.0, value)
                assert got == value, (path.name, t, name)
                compared += 1
    assert compared > 60_000


def test_too_short_history_has_no_features() -> None:
    assert required_candles(["returns_20"]) == 21
    assert required_candles(ALL_FEATURES) == 50
    assert extract_features(candles_from_closes([100.0] * 20), ["returns_20"]) is None
    assert extract_features(candles_from_closes([100.0] * 21), ["returns_20"]) is not None
    assert extract_features(candles_from_closes([100.0] * 49), ALL_FEATURES) is None


# --- labels: no look-ahead ---------------------------------------------------------------------


def test_dataset_rows_labels_and_no_look_ahead() -> None:
    candles = candles_from_closes(noisy_trend(120, 0.0))
    dataset = build_dataset(candles, ALL_FEATURES)
    # rows for t = 49 .. 113: the first needs 50 candles, the last needs t + 6 <= 119
    assert len(dataset) == 120 - 49 - DEFAULT_HORIZON
    for row, t in enumerate(range(49, 114)):
        # the features at t are exactly what a live model sees with candles up to t only
        live = extract_features(candles[: t + 1], ALL_FEATURES)
        assert live is not None
        assert dataset.x[row].tolist() == [live[name] for name in ALL_FEATURES]
        assert dataset.y[row] == (1.0 if candles[t + 6].close > candles[t].close else 0.0)
        assert dataset.times[row] == candles[t].time
        assert dataset.label_times[row] == candles[t + 6].time


def test_changing_the_future_does_not_change_past_features() -> None:
    candles = candles_from_closes(noisy_trend(120, 0.0))
    future_changed = candles[:80] + [replace(c, close=c.close * 3) for c in candles[80:]]
    before = build_dataset(candles, ALL_FEATURES)
    after = build_dataset(future_changed, ALL_FEATURES)
    rows_up_to_79 = 80 - 49  # rows t = 49 .. 79 read no candle after 79
    assert np.array_equal(before.x[:rows_up_to_79], after.x[:rows_up_to_79])
    # labels of rows t <= 73 read candle t + 6 <= 79: unchanged too
    assert np.array_equal(before.y[: 74 - 49], after.y[: 74 - 49])


def test_time_split_holds_out_the_newest_and_purges_overlapping_labels() -> None:
    candles = candles_from_closes(noisy_trend(105, 0.0))
    dataset = build_dataset(candles, ["returns_1"])
    # rows t = 1 .. 98 (98 rows); holdout ceil(98 x 0.2) = 20 rows, t = 79 .. 98.
    # Training rows t = 1 .. 78, minus those whose label candle t + 6 >= 79: t = 1 .. 72.
    training, holdout = time_split(dataset, 0.2)
    assert len(dataset) == 98 and len(holdout) == 20
    assert holdout.times[0] == candles[79].time and holdout.times[-1] == candles[98].time
    assert len(training) == 72
    assert max(training.label_times) < holdout.times[0]


# --- the model ---------------------------------------------------------------------------------


def test_accuracy_counts_correct_directions() -> None:
    # p(up) = sigmoid(returns_1): up for x = 1, 2; down for x = -1, -3.
    # labels 1, 1, 1, 0: right, wrong, right, right -> 3 / 4
    rows = np.array([[1.0], [-1.0], [2.0], [-3.0]])
    dataset = Dataset(("returns_1",), 6, rows, np.array([1.0, 1.0, 1.0, 0.0]), (T0,) * 4, (T0,) * 4)
    assert returns_champion().accuracy(dataset) == 0.75


def test_training_learns_a_separable_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, (200, 2))
    y = (x[:, 0] > 0).astype(np.float64)  # up exactly when the first feature is positive
    dataset = Dataset(("returns_1", "returns_5"), 6, x, y, (T0,) * 200, (T0,) * 200)
    model = train(dataset, seed=1)
    assert model.weights[0] > 0 and abs(model.weights[1]) < model.weights[0] / 10
    assert model.accuracy(dataset) >= 0.97


def test_training_is_deterministic_for_a_seed() -> None:
    dataset = build_dataset(candles_from_closes(noisy_trend(300, 0.001)), ALL_FEATURES)
    assert train(dataset, seed=42) == train(dataset, seed=42)


def test_trending_series_predicts_up() -> None:
    candles = candles_from_closes(noisy_trend(400, 0.002))
    model = train(build_dataset(candles, ALL_FEATURES), seed=42)
    values = extract_features(candles, ALL_FEATURES)
    assert values is not None
    assert model.probability_up(values) > 0.5


def test_params_round_trip_through_json() -> None:
    model = train(build_dataset(candles_from_closes(noisy_trend(200, 0.001)), ALL_FEATURES), 7)
    params = json.loads(json.dumps(model.to_params()))
    assert set(params) == {"model", "features", "weights", "bias", "means", "stds", "horizon"}
    assert LogisticModel.from_params(params) == model
    with pytest.raises(ValueError):
        LogisticModel.from_params({**params, "weights": [1.0]})
    with pytest.raises(ValueError):
        LogisticModel.from_params({**params, "features": ["moon_phase"] * 7})
    with pytest.raises(ValueError):
        LogisticModel.from_params({"model": "logistic"})


# --- the plugin --------------------------------------------------------------------------------


def test_signal_from_the_champion() -> None:
    candles = candles_from_closes([100.0, 101.0])
    ctx = ctx_for({"ETH/BTC": candles}, RETURNS_ONLY, registry_with(returns_champion()))
    signals = SignalModel().aios_signals(ctx, "ETH/BTC")
    # returns_1 = 1 % -> p(up) = sigmoid(1) = 0.7310586 -> LONG at 0.731
    assert len(signals) == 1
    signal = signals[0]
    assert signal.id == f"ETH/BTC@{candles[-1].time.isoformat()}"
    assert signal.id == "ETH/BTC@2018-01-10T05:05:00+00:00"
    assert signal.side is Side.LONG
    assert signal.confidence == pytest.approx(1 / (1 + math.exp(-1)))
    assert (signal.symbol, signal.source, signal.time) == (
        "ETH/BTC",
        "signal_model",
        T0 + timedelta(minutes=5),
    )
    assert signal.price == 101.0
    assert signal.features == {"returns_1": pytest.approx(1.0)}


def test_down_move_gives_a_short_with_the_probability_of_down() -> None:
    ctx = ctx_for(
        {"ETH/BTC": candles_from_closes([100.0, 99.0])},
        RETURNS_ONLY,
        registry_with(returns_champion()),
    )
    (signal,) = SignalModel().aios_signals(ctx, "ETH/BTC")
    # returns_1 = -1 % -> p(up) = sigmoid(-1) = 0.2689 -> SHORT at 1 - 0.2689 = 0.7311
    assert signal.side is Side.SHORT
    assert signal.confidence == pytest.approx(1 - 1 / (1 + math.exp(1)))


def test_even_odds_are_long_at_confidence_one_half() -> None:
    ctx = ctx_for(
        {"ETH/BTC": candles_from_closes([100.0, 100.0])},
        RETURNS_ONLY,
        registry_with(returns_champion()),
    )
    (signal,) = SignalModel().aios_signals(ctx, "ETH/BTC")
    assert signal.side is Side.LONG and signal.confidence == 0.5  # p = sigmoid(0) = 0.5


def test_low_confidence_is_not_filtered_by_the_plugin() -> None:
    # confidence 0.731 is far below a 0.99 threshold: the engine filters, not the source
    overlay = RETURNS_ONLY + "    min_confidence: 0.99\n"
    ctx = ctx_for(
        {"ETH/BTC": candles_from_closes([100.0, 101.0])}, overlay, registry_with(returns_champion())
    )
    assert len(SignalModel().aios_signals(ctx, "ETH/BTC")) == 1


def test_too_short_history_gives_no_signal() -> None:
    registry = registry_with(returns_champion())
    one_candle = ctx_for({"ETH/BTC": candles_from_closes([100.0])}, RETURNS_ONLY, registry)
    assert SignalModel().aios_signals(one_candle, "ETH/BTC") == []
    unknown_symbol = ctx_for(
        {"ETH/BTC": candles_from_closes([100.0, 101.0])}, RETURNS_ONLY, registry
    )
    assert SignalModel().aios_signals(unknown_symbol, "LTC/BTC") == []


def test_champion_with_other_features_is_not_used() -> None:
    # the policy asks for all seven features; the champion knows only returns_1
    ctx = ctx_for(
        {"ETH/BTC": candles_from_closes([100.0, 101.0])}, None, registry_with(returns_champion())
    )
    plugin = SignalModel()
    assert plugin.aios_signals(ctx, "ETH/BTC") == []
    health = plugin.aios_health(ctx)
    assert health.status is HealthStatus.DEGRADED
    assert "m-test unusable" in health.detail and "returns_1" in health.detail


UPTREND_SYMBOLS = ("ETH/BTC", "LTC/BTC")


def uptrend_market() -> dict[str, list[Candle]]:
    """200 candles per symbol: with the default features 200 - 49 - 6 = 145 labelled rows each."""
    return {
        symbol: candles_from_closes(noisy_trend(200, 0.002, seed=index))
        for index, symbol in enumerate(UPTREND_SYMBOLS)
    }


def test_bootstrap_model_once_enough_rows() -> None:
    series = uptrend_market()
    # pooled over ETH/BTC and LTC/BTC (both in universe.symbols): 2 x 145 = 290 rows
    enough = ctx_for(series, "subsystems:\n  retraining:\n    min_samples: 290\n")
    short = ctx_for(series, "subsystems:\n  retraining:\n    min_samples: 291\n")

    starved = SignalModel()
    assert starved.aios_signals(short, "ETH/BTC") == []
    assert "290 labelled rows seen, 291 needed" in starved.aios_health(short).detail

    plugin = SignalModel()
    (signal,) = plugin.aios_signals(enough, "ETH/BTC")
    assert signal.side is Side.LONG and signal.confidence > 0.5
    assert set(signal.features) == set(ALL_FEATURES)
    health = plugin.aios_health(enough)
    assert (
        health.status is HealthStatus.OK and "bootstrap model trained on 290 rows" in health.detail
    )
    # deterministic: a fresh plugin on the same data says exactly the same
    assert SignalModel().aios_signals(enough, "ETH/BTC") == [signal]


def test_bootstrap_is_trained_once_and_kept() -> None:
    series = uptrend_market()
    overlay = "subsystems:\n  retraining:\n    min_samples: 290\n"
    plugin = SignalModel()
    plugin.aios_signals(ctx_for(series, overlay), "ETH/BTC")
    model = plugin._bootstrap
    assert model is not None
    plugin.aios_signals(ctx_for(series, overlay), "LTC/BTC")
    assert plugin._bootstrap is model
    # a new seed invalidates it (the policy changed what the model is)
    plugin.aios_signals(ctx_for(series, overlay + "  signal_model:\n    seed: 7\n"), "ETH/BTC")
    assert plugin._bootstrap is not model


def test_champion_wins_over_the_bootstrap() -> None:
    series = {"ETH/BTC": candles_from_closes([100.0, 99.0])}
    ctx = ctx_for(series, RETURNS_ONLY, registry_with(returns_champion(), "m-1"))
    plugin = SignalModel()
    (signal,) = plugin.aios_signals(ctx, "ETH/BTC")
    assert signal.side is Side.SHORT  # the champion's rule, whatever a bootstrap would say
    health = plugin.aios_health(ctx)
    assert health.status is HealthStatus.OK and health.detail == "champion m-1 in use"


def test_bootstrap_builds_features_only_when_the_rows_can_suffice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builds: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> Dataset:
        builds.append(1)
        return market_dataset(*args, **kwargs)

    monkeypatch.setattr(logistic_module, "market_dataset", counting)
    series = uptrend_market()
    # 290 rows possible < 291: counted from history lengths, no feature is computed
    short = ctx_for(series, "subsystems:\n  retraining:\n    min_samples: 291\n")
    plugin = SignalModel()
    plugin.aios_signals(short, "ETH/BTC")
    plugin.aios_signals(short, "LTC/BTC")
    assert builds == []
    # next cycle, enough rows: built once, then the model is kept for the next symbol
    enough = ctx_for(series, "subsystems:\n  retraining:\n    min_samples: 290\n")
    enough = replace(enough, now=enough.now + timedelta(minutes=5))
    plugin.aios_signals(enough, "ETH/BTC")
    plugin.aios_signals(enough, "LTC/BTC")
    assert builds == [1]


def test_the_champion_is_read_once_per_cycle_context() -> None:
    """One registry query per context (the engine asks once per symbol with one context); a
    model deployed later is used from the next context on."""
    registry = registry_with(returns_champion())
    ctx = ctx_for({"ETH/BTC": candles_from_closes([100.0, 101.0])}, RETURNS_ONLY, registry)
    plugin = SignalModel()
    reads: list[object] = []
    original = registry.champion

    def counting() -> ModelVersion | None:
        reads.append(None)
        return original()

    registry.champion = counting  # type: ignore[method-assign]
    assert plugin.aios_signals(ctx, "ETH/BTC")[0].side is Side.LONG
    assert plugin.aios_signals(ctx, "ETH/BTC")[0].side is Side.LONG
    assert len(reads) == 1
    registry.register(ModelVersion("m-short", T0, returns_champion(weight=-1.0).to_params()))
    registry.deploy("m-short", T0)
    next_ctx = replace(ctx, cycle=ctx.cycle + 1)
    assert plugin.aios_signals(next_ctx, "ETH/BTC")[0].side is Side.SHORT
    assert len(reads) == 2


# --- one batch of predictions per cycle ----------------------------------------------------------


@cache
def bundled() -> dict[str, list[Candle]]:
    from aios.data import bundled_data_dir, load_csv_candles

    return {
        f"{name}/BTC": load_csv_candles(bundled_data_dir() / f"{name}_BTC-5m.csv")
        for name in ("ETH", "LTC", "XMR")
    }


def test_batched_probabilities_are_those_of_one_row_at_a_time_to_the_bit() -> None:
    """Over every feature row of the bundled real candles, in batches of 1 to 10 rows."""
    rows = [
        dict(zip(ALL_FEATURES, row, strict=True))
        for candles in bundled().values()
        for row in build_dataset(candles[:1500], ALL_FEATURES).x.tolist()
    ]
    model = train(build_dataset(bundled()["ETH/BTC"][:800], ALL_FEATURES), seed=11)
    assert len(rows) > 4000
    start, size = 0, 1
    while start < len(rows):
        batch = rows[start : start + size]
        assert model.probabilities_up(batch) == [model.probability_up(r) for r in batch]
        start, size = start + size, size % 10 + 1
    assert model.probabilities_up([]) == []


def one_symbol_signal(ctx: CycleContext, symbol: str, model: LogisticModel) -> list[Signal]:
    """What the signal model answered before batching: this symbol on its own."""
    candles = ctx.market.history(symbol, logistic_module.FEATURE_WINDOW)
    values = extract_features(candles, model.features)
    if not candles or values is None:
        return []
    p_up = model.probability_up(values)
    last = candles[-1]
    return [
        Signal(
            id=f"{symbol}@{last.time.isoformat()}",
            symbol=symbol,
            side=Side.LONG if p_up >= 0.5 else Side.SHORT,
            confidence=max(p_up, 1.0 - p_up),
            source="signal_model",
            time=last.time,
            price=last.close,
            features=values,
        )
    ]


def test_each_symbol_gets_what_it_got_on_its_own_over_real_cycles() -> None:
    series = {symbol: candles[:400] for symbol, candles in bundled().items()}
    overlay = "universe:\n  symbols: [XMR/BTC, ETH/BTC, LTC/BTC]\n"
    model = train(build_dataset(series["ETH/BTC"][:300], ALL_FEATURES), seed=5)
    plugin = SignalModel()
    view = market(series, now=series["ETH/BTC"][60].time)
    checked = 0
    for candle in series["ETH/BTC"][61:]:
        view.advance(candle.time)
        ctx = replace(
            context(policy(overlay), now=candle.time, market_view=view),
            models=registry_with(model),
        )
        for symbol in ("XMR/BTC", "ETH/BTC", "LTC/BTC"):
            got = list(plugin.aios_signals(ctx, symbol))
            assert got == one_symbol_signal(ctx, symbol, model), (candle.time, symbol)
            checked += len(got)
    assert checked > 900


class FailingHistory:
    """A market whose history of one symbol raises (a broken feed adapter, say)."""

    def __init__(self, inner: Any, broken: str) -> None:
        self.inner, self.broken = inner, broken

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def history(self, symbol: str, count: int | None = None) -> Any:
        if symbol == self.broken:
            raise RuntimeError(f"no history for {symbol}")
        return self.inner.history(symbol, count)


def test_a_symbol_that_raises_raises_alone_the_others_still_answer() -> None:
    series = {symbol: candles[:200] for symbol, candles in bundled().items()}
    overlay = "universe:\n  symbols: [ETH/BTC, LTC/BTC, XMR/BTC]\n"
    model = train(build_dataset(series["ETH/BTC"], ALL_FEATURES), seed=5)
    last = series["ETH/BTC"][-1].time
    ctx = replace(
        context(
            policy(overlay), now=last, market_view=FailingHistory(market(series, last), "LTC/BTC")
        ),
        models=registry_with(model),
    )
    plugin = SignalModel()
    assert [s.symbol for s in plugin.aios_signals(ctx, "ETH/BTC")] == ["ETH/BTC"]
    with pytest.raises(RuntimeError, match="no history for LTC/BTC"):
        plugin.aios_signals(ctx, "LTC/BTC")
    assert [s.symbol for s in plugin.aios_signals(ctx, "XMR/BTC")] == ["XMR/BTC"]
    # a symbol outside the universe is answered on its own
    assert plugin.aios_signals(ctx, "DOGE/BTC") == []


class CountingHistory(FailingHistory):
    """Counts the history reads per symbol (nothing raises)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner, broken="")
        self.reads: dict[str, int] = {}

    def history(self, symbol: str, count: int | None = None) -> Any:
        self.reads[symbol] = self.reads.get(symbol, 0) + 1
        return self.inner.history(symbol, count)


def test_one_question_per_context_computes_that_symbol_only() -> None:
    """A bus worker makes a context per symbol: it must not pay for the whole universe; the
    engine's second question of a context computes the rest at once."""
    series = {symbol: candles[:200] for symbol, candles in bundled().items()}
    overlay = "universe:\n  symbols: [ETH/BTC, LTC/BTC, XMR/BTC]\n"
    model = train(build_dataset(series["ETH/BTC"], ALL_FEATURES), seed=5)
    last = series["ETH/BTC"][-1].time
    counting = CountingHistory(market(series, last))
    plugin = SignalModel()
    for symbol in ("LTC/BTC", "ETH/BTC"):  # a fresh context each time, as a worker does
        worker_ctx = replace(
            context(policy(overlay), now=last, market_view=counting), models=registry_with(model)
        )
        assert [s.symbol for s in plugin.aios_signals(worker_ctx, symbol)] == [symbol]
    assert counting.reads == {"LTC/BTC": 1, "ETH/BTC": 1}
    engine_ctx = replace(
        context(policy(overlay), now=last, market_view=counting), models=registry_with(model)
    )
    plugin.aios_signals(engine_ctx, "ETH/BTC")
    plugin.aios_signals(engine_ctx, "LTC/BTC")  # the rest of the universe, at once
    assert counting.reads == {"LTC/BTC": 2, "ETH/BTC": 2, "XMR/BTC": 1}
    assert [s.symbol for s in plugin.aios_signals(engine_ctx, "XMR/BTC")] == ["XMR/BTC"]
    assert counting.reads["XMR/BTC"] == 1


# --- what the plugin remembers between questions -------------------------------------------------


def plain_floats(window: list[Candle]) -> tuple[list[float], list[float]]:
    return [float(c.close) for c in window], [float(c.volume) for c in window]


def test_window_floats_are_the_plain_conversion_through_growth_gaps_and_replacements() -> None:
    """The per-symbol float cache against the plain conversion, bit for bit (`repr` tells
    -0.0 from 0.0), over every sliding window of real candles, the warm-up (windows shorter
    than 60), the same window twice, a gap, equal but new candle objects, and a replaced one."""
    candles = bundled()["ETH/BTC"][:400]
    window = _Window()

    def check(part: list[Candle]) -> None:
        closes, volumes = window.floats(part)
        assert repr((closes, volumes)) == repr(plain_floats(part))
        assert len(window.candles) <= len(part) + _Window.SLACK

    for end in range(1, 300):
        check(candles[max(0, end - 60) : end])
        if end % 37 == 0:
            check(candles[max(0, end - 60) : end])  # asked again
    check(candles[300:360])  # a gap: rebuilt
    copies = [replace(c) for c in candles[301:361]]  # equal candles, other objects
    check(copies)
    changed = [*copies[1:-1], replace(copies[-1], close=-0.0, volume=7.0), candles[362]]
    check(changed)  # a replaced candle in the middle: rebuilt
    check([])
    check(candles[362:363])


def test_signals_through_the_window_cache_equal_the_plain_features() -> None:
    """Over real cycles with the engine's pattern (one context, every symbol), a symbol's
    values are `extract_features` of its history: the cache changes nothing."""
    series = {symbol: candles[:260] for symbol, candles in bundled().items()}
    overlay = "universe:\n  symbols: [ETH/BTC, LTC/BTC, XMR/BTC]\n"
    model = train(build_dataset(series["ETH/BTC"][:200], ALL_FEATURES), seed=5)
    registry = registry_with(model)
    plugin = SignalModel()
    view = market(series, now=series["ETH/BTC"][0].time)
    for index, candle in enumerate(series["ETH/BTC"][1:], start=2):
        view.advance(candle.time)
        ctx = replace(
            context(policy(overlay), now=candle.time, market_view=view, cycle=index),
            models=registry,
        )
        for symbol in ("ETH/BTC", "LTC/BTC", "XMR/BTC"):
            got = plugin.aios_signals(ctx, symbol)
            expected = extract_features(view.history(symbol, 60), model.features)
            assert [s.features for s in got] == ([] if expected is None else [expected])


class CountingRegistry(ModelRegistry):
    """Counts champion queries."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.reads = 0

    def champion(self) -> ModelVersion | None:
        self.reads += 1
        return super().champion()


def test_the_champion_is_read_once_per_engine_cycle_and_again_after_a_deploy() -> None:
    """The health context and the signals context of one engine cycle share one read, unless
    the registry was written in between (the engine's tick deploys or rolls back between
    them); the next cycle reads again."""
    registry = CountingRegistry()
    registry.register(ModelVersion("m-long", T0, returns_champion().to_params()))
    registry.register(ModelVersion("m-short", T0, returns_champion(weight=-1.0).to_params()))
    registry.deploy("m-long", T0)
    health_ctx = ctx_for({"ETH/BTC": candles_from_closes([100.0, 101.0])}, RETURNS_ONLY, registry)
    signals_ctx = replace(health_ctx, metrics={"derived": 1.0})  # the engine's `replace`
    plugin = SignalModel()
    assert "m-long in use" in plugin.aios_health(health_ctx).detail
    assert plugin.aios_signals(signals_ctx, "ETH/BTC")[0].side is Side.LONG
    assert registry.reads == 1
    # a deploy between health and signals, within the cycle: seen
    plugin.aios_health(health_ctx)
    registry.deploy("m-short", T0)
    signals_ctx = replace(health_ctx, metrics={"derived": 2.0})
    assert plugin.aios_signals(signals_ctx, "ETH/BTC")[0].side is Side.SHORT
    assert registry.reads == 2
    # a rollback, likewise
    assert registry.rollback(T0) is not None
    assert "m-long in use" in plugin.aios_health(health_ctx).detail
    assert plugin.aios_signals(replace(health_ctx, metrics={}), "ETH/BTC")[0].side is Side.LONG
    assert registry.reads == 3
    # another cycle, another time, another market or another registry: read again
    for other in (
        replace(health_ctx, cycle=health_ctx.cycle + 1),
        replace(health_ctx, now=health_ctx.now + timedelta(minutes=5)),
        replace(health_ctx, market=market({"ETH/BTC": candles_from_closes([100.0, 101.0])})),
    ):
        plugin.aios_health(other)
    assert registry.reads == 6
    fresh = registry_with(returns_champion(weight=-1.0))
    assert plugin.aios_signals(replace(health_ctx, models=fresh), "ETH/BTC")[0].side is Side.SHORT


class PlainRegistry:
    """A registry without a write count (a test double, a third-party store)."""

    def __init__(self, inner: ModelRegistry) -> None:
        self.inner, self.reads = inner, 0

    def champion(self) -> ModelVersion | None:
        self.reads += 1
        return self.inner.champion()


def test_a_registry_without_a_write_count_is_read_once_per_context() -> None:
    plain = PlainRegistry(registry_with(returns_champion()))
    ctx = ctx_for({"ETH/BTC": candles_from_closes([100.0, 101.0])}, RETURNS_ONLY)
    ctx = replace(ctx, models=plain)  # type: ignore[arg-type]
    plugin = SignalModel()
    plugin.aios_health(ctx)
    plugin.aios_signals(ctx, "ETH/BTC")
    assert plain.reads == 1
    plugin.aios_signals(replace(ctx, metrics={}), "ETH/BTC")
    assert plain.reads == 2


def test_the_settings_follow_a_policy_reload() -> None:
    """The features and seed are remembered per policy object: a reloaded policy (a new
    object, other features) is read afresh."""
    registry = registry_with(returns_champion())
    series = {"ETH/BTC": candles_from_closes([100.0, 101.0])}
    plugin = SignalModel()
    returns_only = ctx_for(series, RETURNS_ONLY, registry)
    assert plugin.aios_signals(returns_only, "ETH/BTC")[0].features == {
        "returns_1": pytest.approx(1.0)
    }
    reloaded = replace(returns_only, policy=policy(None), cycle=returns_only.cycle + 1)
    assert plugin.aios_signals(reloaded, "ETH/BTC") == []  # the champion no longer fits
    assert plugin.aios_health(reloaded).status is HealthStatus.DEGRADED
    back = replace(returns_only, policy=default_policy(RETURNS_ONLY), cycle=reloaded.cycle + 1)
    assert plugin.aios_signals(back, "ETH/BTC")[0].side is Side.LONG
    assert plugin.aios_health(back).status is HealthStatus.OK


def test_signal_ids_are_the_isoformat_of_each_time_in_any_zone() -> None:
    """The id's time text is remembered across symbols for UTC times only: an equal instant
    in another zone keeps its own text."""
    utc = candles_from_closes([100.0, 101.0])
    plus_one = timezone(timedelta(hours=1))
    shifted = [replace(c, time=c.time.astimezone(plus_one)) for c in utc]
    plugin = SignalModel()
    registry = registry_with(returns_champion())
    for cycle, candles in enumerate((utc, shifted, utc), start=1):
        series = {"ETH/BTC": candles, "LTC/BTC": [replace(c) for c in candles]}
        ctx = replace(ctx_for(series, RETURNS_ONLY, registry), cycle=cycle)
        for symbol in series:
            (signal,) = plugin.aios_signals(ctx, symbol)
            assert signal.id == f"{symbol}@{candles[-1].time.isoformat()}"
    assert shifted[-1].time.isoformat().endswith("+01:00")
