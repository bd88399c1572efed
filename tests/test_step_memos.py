"""The memos of a replay step (docs/benchmarks.md, round 4) against the plain computations:
each must give what computing afresh gives, and forget what a change made stale."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aios import app as application
from aios.data import bundled_data_dir
from aios.engine import Engine
from aios.exchange.paper import PaperBroker
from aios.hookspecs import hookimpl
from aios.model import (
    Candle,
    CycleContext,
    OrderAction,
    OrderIntent,
    PortfolioView,
    Position,
    Side,
    Stage,
)
from aios.policy import Policy
from aios.registry import plugin_set
from aios.runtime import Runtime, _BookState, load_series
from aios.testing import T0, candles_from_closes, context, default_policy, market, position

REPO = Path(__file__).resolve().parent.parent


def plain_settings(policy: Policy, subsystem: str) -> Mapping[str, Any]:
    """`CycleContext.settings` as it was before the memo."""
    section = policy.get("subsystems", subsystem, default={})
    return section if isinstance(section, Mapping) else {}


def test_settings_are_the_policy_sections_for_every_subsystem_asked_twice() -> None:
    policy = default_policy()
    ctx = context(policy)
    names = [*policy.get("subsystems"), "not_installed"]
    assert len(names) > 10
    for _ in range(2):
        for name in names:
            assert ctx.settings(name) == plain_settings(policy, name)
            if name in policy.get("subsystems"):
                assert ctx.settings(name) is policy.get("subsystems", name)


def test_settings_follow_a_swapped_policy_and_back() -> None:
    first = default_policy()
    second = default_policy("subsystems:\n  exit_proposals:\n    reentry_cooldown_s: 1234\n")
    ctx = context(first)
    before = ctx.settings("exit_proposals")["reentry_cooldown_s"]
    assert before != 1234
    reloaded = dataclasses.replace(ctx, policy=second)
    assert reloaded.settings("exit_proposals")["reentry_cooldown_s"] == 1234
    assert ctx.settings("exit_proposals")["reentry_cooldown_s"] == before
    assert reloaded.settings("exit_proposals") == plain_settings(second, "exit_proposals")


def test_a_missing_or_non_mapping_section_is_a_fresh_empty_mapping_each_time() -> None:
    base = default_policy()
    odd = dataclasses.replace(
        base, document={**base.document, "subsystems": {"listed": [1, 2], "text": "x"}}
    )
    ctx = context(odd)
    for name in ("listed", "text", "absent"):
        first = ctx.settings(name)
        assert first == {} == plain_settings(odd, name)
        first["written"] = 1  # type: ignore[index]
        assert ctx.settings(name) == {}


class Reader:
    """A plugin that records the cooldown it reads from its section on every monitor check."""

    name = "exit_proposals"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @hookimpl
    def aios_classify_position(self, ctx: CycleContext, position: Position) -> None:
        self.seen.append(ctx.settings(self.name)["reentry_cooldown_s"])


def test_a_plugin_reads_the_reloaded_policy_at_the_next_cycle() -> None:
    reader = Reader()
    first = default_policy("universe:\n  symbols: [ETH/BTC]\n")
    second = default_policy(
        "universe:\n  symbols: [ETH/BTC]\nsubsystems:\n  exit_proposals:\n"
        "    reentry_cooldown_s: 4321\n"
    )
    engine = Engine(first, plugin_set([reader]), None)
    view = market({"ETH/BTC": candles_from_closes([100.0] * 30)})
    book = PortfolioView(1.0, 0.0, (position(),), {"ETH/BTC": 100.0})
    engine.monitor_cycle(T0, view, book)
    engine.reload(T0, view, book, second)
    engine.monitor_cycle(T0, view, book)
    engine.reload(T0, view, book, first)
    engine.monitor_cycle(T0, view, book)
    cooldown = plain_settings(first, "exit_proposals")["reentry_cooldown_s"]
    assert reader.seen == [cooldown, 4321, cooldown]


# --- the paper exchange's revision and the runtime's portfolio views ---------------------------


def candle(minutes: int, close: float) -> Candle:
    return Candle(T0 + timedelta(minutes=minutes), close, close * 1.01, close * 0.99, close, 1.0)


def test_the_paper_revision_moves_with_every_call_that_may_change_the_book() -> None:
    paper = PaperBroker(starting_balance=10.0)
    seen = [paper.revision]
    paper.cash(), paper.equity({}), paper.positions(), paper.closed_trades(), paper.expired()
    assert paper.revision == seen[-1], "reads change nothing"
    paper.on_candle("ETH/BTC", candle(0, 1.0))
    seen.append(paper.revision)
    paper.on_candle("ETH/BTC", candle(0, 1.0))  # not newer: ignored
    assert paper.revision == seen[-1]
    opening = OrderIntent("o1", "ETH/BTC", Side.LONG, OrderAction.OPEN, "t", "t", quote_amount=1.0)
    paper.submit(opening, T0, 1.0)
    seen.append(paper.revision)
    paper.submit(opening, T0, 1.0)  # a repeated id changes nothing, but counts all the same
    seen.append(paper.revision)
    paper.on_candle("BTC/USDT", candle(5, 2.0))  # another symbol moves its mark
    seen.append(paper.revision)
    assert seen == sorted(set(seen)), seen


def fresh_view(book: _BookState, prices: Mapping[str, float]) -> PortfolioView:
    """`Runtime._portfolio` as it was before the memo."""
    broker = book.broker
    trades = tuple(broker.closed_trades()[-20:])
    return PortfolioView(
        broker.equity(prices), broker.cash(), broker.positions(), dict(prices), trades
    )


def test_portfolio_views_reused_in_a_replay_equal_fresh_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "baseline:\n  min_confidence: 0.55\nsubsystems:\n  signal_model:\n"
        "    min_confidence: 0.55\n",
        encoding="utf-8",
    )
    policy, plugins = application.load([REPO / "policies" / "default.yaml", overlay], env={})
    series = load_series(bundled_data_dir(), policy.get("universe", "symbols"))
    runtime = Runtime(
        policy, plugins, series, tmp_path / "state", PaperBroker.from_policy, stage=Stage.AUTONOMY
    )
    memoised = Runtime._portfolio
    counts = {"reused": 0, "built": 0}

    def checked(self: Runtime, book: _BookState, prices: Mapping[str, float]) -> PortfolioView:
        before = book.view
        view = memoised(self, book, prices)
        counts["reused" if before is not None and view is before[2] else "built"] += 1
        assert view == fresh_view(book, prices)
        return view

    monkeypatch.setattr(Runtime, "_portfolio", checked)
    runtime.run(limit=400)
    trades = sum(len(book.broker.closed_trades()) for book in runtime.books.values())
    assert trades > 5, "the replay trades, so views go stale"
    assert counts["reused"] > counts["built"] / 2, counts


def test_a_portfolio_view_is_rebuilt_after_a_fill_or_a_price_change(tmp_path: Path) -> None:
    policy, plugins = application.load([REPO / "policies" / "default.yaml"], env={})
    series = load_series(bundled_data_dir(), policy.get("universe", "symbols"))
    runtime = Runtime(policy, plugins, series, tmp_path / "state", PaperBroker.from_policy)
    book = runtime.books["shadow"]
    symbol = next(iter(series))
    prices = {symbol: 2.0}
    first = runtime._portfolio(book, prices)
    assert runtime._portfolio(book, prices) is first
    assert runtime._portfolio(book, dict(prices)) is not first, "another mapping"
    again = runtime._portfolio(book, prices)
    prices[symbol] = 3.0  # the same mapping, changed
    moved = runtime._portfolio(book, prices)
    assert moved is not again and moved == fresh_view(book, prices)
    opening = OrderIntent("o1", symbol, Side.LONG, OrderAction.OPEN, "t", "t", quote_amount=0.1)
    book.broker.submit(opening, T0, 3.0)
    opened = runtime._portfolio(book, prices)
    assert opened is not moved and len(opened.positions) == 1
    assert opened == fresh_view(book, prices)
    runtime._close()


# --- the monitor side: the engine's emergency limit, PIL's bands, exit proposals' regimes ------


def test_the_emergency_close_follows_a_reload() -> None:
    view = market({"ETH/BTC": candles_from_closes([100.0] * 30)})
    losing = position(stop_loss=None, take_profit=None)
    book = PortfolioView(1.0, 0.0, (losing,), {"ETH/BTC": 88.0})  # -12 %
    policies = [
        default_policy(),  # limit 10 %: closed
        default_policy("safety:\n  emergency_close:\n    loss_limit_pct: 15\n"),
        default_policy("safety:\n  emergency_close:\n    enabled: false\n"),
        default_policy(),
    ]
    engine = Engine(policies[0], plugin_set([]), None, stage=Stage.AUTONOMY)
    closed = []
    for policy in policies:
        engine.reload(T0, view, book, policy)
        [order] = engine.monitor_cycle(T0, view, book).orders
        closed.append(order.action is OrderAction.CLOSE and order.safety)
    assert closed == [True, False, False, True]


def pil_bands(extra: str = "") -> Policy:
    return default_policy(
        "subsystems:\n  position_intelligence:\n    bands:\n"
        "      - {category: LOSER, max_pnl_pct: -3}\n"
        "      - {category: BREAKEVEN, min_pnl_pct: -3, max_pnl_pct: 1}\n"
        "      - {category: WINNER, min_pnl_pct: 1}\n" + extra
    )


def test_position_intelligence_bands_read_once_classify_as_classify_pnl() -> None:
    from plugins.position_intelligence import PositionIntelligence, classify_pnl

    pil = PositionIntelligence()
    view = market({"ETH/BTC": candles_from_closes([100.0 + i * 0.1 for i in range(30)])})
    for policy in (default_policy(), pil_bands(), default_policy()):  # and back: re-read
        bands = policy.get("subsystems", "position_intelligence", "bands")
        for price in (80.0, 97.0, 99.0, 100.0, 100.5, 101.0, 101.0001, 103.0, 120.0, math.nan):
            ctx = context(
                policy, market_view=view, portfolio=PortfolioView(1, 1, (), {"ETH/BTC": price})
            )
            assessment = pil.aios_classify_position(ctx, position())
            assert assessment is not None
            category, band = classify_pnl(bands, position().pnl_pct(price))
            assert assessment.category is category
            assert f" {category.value} {band}, " in assessment.reason


def test_position_intelligence_with_unreadable_bands_fails_as_before() -> None:
    from plugins.position_intelligence import PositionIntelligence

    base = default_policy()
    section = dict(base.get("subsystems", "position_intelligence"))
    section["bands"] = [{"category": "WINNER", "min_pnl_pct": 50}, {"category": "NOPE"}]
    odd = dataclasses.replace(
        base,
        document={
            **base.document,
            "subsystems": {**base.get("subsystems"), "position_intelligence": section},
        },
    )
    pil = PositionIntelligence()
    ctx = context(odd, portfolio=PortfolioView(1, 1, (), {"ETH/BTC": 200.0}))
    assessment = pil.aios_classify_position(ctx, position())  # the first band holds +100 %
    assert assessment is not None and assessment.category.value == "WINNER"
    low = context(odd, portfolio=PortfolioView(1, 1, (), {"ETH/BTC": 90.0}))
    with pytest.raises(ValueError, match="NOPE"):
        pil.aios_classify_position(low, position())


def test_exit_proposals_regimes_remembered_equal_fresh_ones() -> None:
    from plugins.exit_proposals import ATR_PERIOD, ExitProposals, volatility_regime

    exits = ExitProposals()
    closes = [100.0 * (1 + 0.004 * ((i * 7) % 5 - 2)) for i in range(60)]
    series = candles_from_closes(closes)
    calm = default_policy().get("subsystems", "exit_proposals", "regimes")
    wide = {name: {**values, "max_volatility_pct": 100.0} for name, values in calm.items()}
    for end in range(ATR_PERIOD, 60):
        window = series[max(0, end - ATR_PERIOD) : end + 1]
        for regimes in (calm, calm, wide, calm):  # the same twice, another, back
            expected = volatility_regime(regimes, window)
            assert exits._regime("ETH/BTC", regimes, window) == expected
        copied = [dataclasses.replace(c) for c in window]  # equal candles, other objects
        assert exits._regime("ETH/BTC", wide, copied) == volatility_regime(wide, window)
        shifted = series[max(0, end - ATR_PERIOD - 1) : end]
        assert exits._regime("ETH/BTC", calm, shifted) == volatility_regime(calm, shifted)
    assert any(
        volatility_regime(calm, series[i - 15 : i]) != volatility_regime(wide, series[i - 15 : i])
        for i in range(15, 60)
    )
