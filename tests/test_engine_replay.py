"""The engine with every built-in subsystem, over real candles.

The promise of the stages: in OBSERVATION and ADVISORY the subsystems' proposals never change
what the baseline does; in AUTONOMY, ENFORCED subsystems do. Checked here on the bundled data
with the real plugins (discovered through their entry points), not stubs.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

from aios import app
from aios.data import bundled_data_dir, load_directory
from aios.engine import Engine
from aios.journal import Journal
from aios.market import InMemoryMarket
from aios.model import Candle, OrderIntent, PortfolioView, Stage
from aios.policy import Policy
from aios.testing import healthy_components

REPO = Path(__file__).resolve().parent.parent
CANDLES = 480
SYMBOLS = ["ETH/BTC", "LTC/BTC", "XMR/BTC"]
OVERLAY = """\
universe:
  symbols: [ETH/BTC, LTC/BTC, XMR/BTC]
baseline:
  min_confidence: 0.55
subsystems:
  signal_model:
    min_confidence: 0.55
  portfolio_balancer:
    correlated_groups: []
  universe_os:
    blacklist: []
"""
ALL_BUT_SIGNALS_OFF = """\
subsystems:
  coordinator: {enabled: false}
  self_healing: {enabled: false}
  universe_os: {enabled: false}
  dynamic_tpsl: {enabled: false}
  model_supervisor: {enabled: false}
  portfolio_balancer: {enabled: false}
  position_intelligence: {enabled: false}
  profit_amplification: {enabled: false}
  execution: {enabled: false}
  exit_proposals: {enabled: false}
  rl_sizing: {enabled: false}
  retraining: {enabled: false}
"""


@cache
def series() -> dict[str, list[Candle]]:
    return load_directory(bundled_data_dir(), SYMBOLS)


def load(tmp_path: Path, *overlays: str) -> tuple[Policy, object]:
    paths = [REPO / "policies" / "default.yaml"]
    for index, text in enumerate((OVERLAY, *overlays)):
        path = tmp_path / f"overlay{index}.yaml"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return app.load(paths, env={})


def replay(
    tmp_path: Path, stage: Stage, *overlays: str, journal: Journal | None = None
) -> list[tuple[object, ...]]:
    """Entry cycles over the first CANDLES candle times; the actual orders, comparable."""
    policy, plugins = load(tmp_path, *overlays)
    engine = Engine(policy, plugins, journal, stage=stage, run_id="replay")  # type: ignore[arg-type]
    data = series()
    market = InMemoryMarket(data)
    times = sorted({c.time for candles in data.values() for c in candles})[:CANDLES]
    decided: list[tuple[object, ...]] = []
    for now in times:
        market.advance(now)
        prices = {s: c.close for s in market.symbols if (c := market.last(s)) is not None}
        outcome = engine.entry_cycle(
            now,
            market,
            PortfolioView(1.0, 1.0, prices=prices),
            component_health=healthy_components(),
        )
        decided.extend(comparable(order) for order in outcome.orders)
    return decided


def comparable(order: OrderIntent) -> tuple[object, ...]:
    return (
        order.symbol,
        order.side,
        order.trace,
        round(order.quote_amount or 0, 12),
        order.take_profit,
        order.stop_loss,
        order.order_type,
        order.slices,
    )


@pytest.mark.parametrize("stage", [Stage.OBSERVATION, Stage.ADVISORY])
def test_observation_and_advisory_trade_exactly_like_the_baseline(
    tmp_path: Path, stage: Stage
) -> None:
    governed = replay(tmp_path, stage)
    baseline = replay(tmp_path, stage, ALL_BUT_SIGNALS_OFF)
    assert baseline, "the baseline trades on this data"
    assert governed == baseline


def test_autonomy_lets_enforced_subsystems_change_the_trades(tmp_path: Path) -> None:
    governed = replay(tmp_path, Stage.AUTONOMY)
    baseline = replay(tmp_path, Stage.AUTONOMY, ALL_BUT_SIGNALS_OFF)
    assert governed != baseline
    # dynamic TP/SL replaces the baseline's fixed 6 % / 8 % distances
    baseline_tp = {(o[0], o[2]): o[4] for o in baseline}
    changed = [
        o for o in governed if (o[0], o[2]) in baseline_tp and o[4] != baseline_tp[(o[0], o[2])]
    ]
    assert changed


def test_every_subsystem_is_journaled_in_observation(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite") as journal:
        replay(tmp_path, Stage.OBSERVATION, journal=journal)
        rows = journal.reader().query()
    proposing = {r.subsystem for r in rows if r.outcome == "observed"}
    assert {
        "dynamic_tpsl",
        "portfolio_balancer",
        "execution",
        "rl_sizing",
        "exit_proposals",
    } <= proposing
    assert not [r for r in rows if r.outcome == "applied" and r.subsystem not in ("safety",)]
    assert not [r for r in rows if r.outcome == "error"]
