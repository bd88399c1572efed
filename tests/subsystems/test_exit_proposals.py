"""Exit proposals: ATR and regimes, regime stops, profit-lock tiers, tighten-only, DEFENSIVE_EXIT,
exits on EXIT, and the re-entry cooldown.

Default policy: regimes low_volatility (ATR% <= 1: sl 1.5, tp 3, trailing 1.0 ATR),
normal (<= 3: sl 2, tp 4, trailing 1.5), high_volatility (sl 3, tp 5, trailing 2.5);
tiers 1R -> lock 0R, 2R -> 1R, 3R -> 2R; defensive_tighten_factor 0.5; cooldown 1800 s.

Candles come from `candles_from_closes`, whose open is the previous close and whose high and low
bracket both, so each true range is |close - previous close|. `_alternating(d)` gives 15 closes
100, 100 + d, 100, ..., 100: ATR = d exactly and, with the last close 100, ATR% = d.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import pytest

from aios.model import (
    ActionKind,
    Candle,
    Category,
    DirectiveKind,
    EntryIntent,
    PortfolioView,
    Position,
    PositionAction,
    PositionAssessment,
    Recommendation,
    Side,
    Signal,
)
from aios.policy import Policy
from aios.testing import (
    T0,
    candles_from_closes,
    closed_trade,
    context,
    default_policy,
    market,
    position,
)
from plugins.exit_proposals import (
    ATR_PERIOD,
    ExitProposals,
    average_true_range,
    volatility_regime,
)

SYMBOL = "ETH/BTC"
REGIMES = default_policy().get("subsystems", "exit_proposals", "regimes")
# Most tests look at the stop arithmetic; the trailing stop is armed at once for them.
ARMED_AT_ONCE = default_policy("subsystems:\n  exit_proposals:\n    trailing_activation_r: 0\n")


def _alternating(d: float, base: float = 100.0) -> list[float]:
    return [base if i % 2 == 0 else base + d for i in range(ATR_PERIOD + 1)]


def _protect(
    held: Position,
    price: float | None,
    closes: Sequence[float] = (),
    assessment: PositionAssessment | None = None,
    directives: frozenset[DirectiveKind] = frozenset(),
) -> list[PositionAction]:
    series = {held.symbol: candles_from_closes(closes)} if closes else {}
    prices = {} if price is None else {held.symbol: price}
    ctx = context(
        ARMED_AT_ONCE,
        market_view=market(series),
        portfolio=PortfolioView(equity=1.0, cash=1.0, positions=(held,), prices=prices),
        directives=directives,
    )
    return ExitProposals().aios_protect(ctx, held, assessment)


def _only_stops(actions: list[PositionAction]) -> PositionAction:
    assert [a.kind for a in actions] == [ActionKind.SET_STOPS]
    return actions[0]


# --- ATR and regimes ---------------------------------------------------------------------------


def test_true_range_counts_gaps_against_the_previous_close() -> None:
    # 14 quiet candles (range 1) after a first one closing at 100, then the last candle gaps
    # up: high 106, low 104 against the previous close 100 -> TR = max(2, 6, 4) = 6.
    # ATR = (13 x 1 + 6) / 14 = 19 / 14
    quiet = [Candle(T0 + timedelta(minutes=5 * i), 100, 100.5, 99.5, 100, 1) for i in range(14)]
    gap = Candle(T0 + timedelta(minutes=70), 105, 106, 104, 105, 1)
    atr = average_true_range([*quiet, gap])
    assert atr == pytest.approx(19 / 14)


def test_atr_needs_period_plus_one_candles() -> None:
    assert average_true_range(candles_from_closes(_alternating(1.0)[:ATR_PERIOD])) is None
    assert average_true_range(candles_from_closes(_alternating(1.0))) == 1.0


def test_atr_uses_only_the_last_period() -> None:
    # a 50-point jump long before the window does not count: ATR stays 1
    closes = [50.0, 100.0, 100.0, *_alternating(1.0)]
    assert average_true_range(candles_from_closes(closes)) == 1.0


@pytest.mark.parametrize(
    ("d", "regime"),
    [
        (1.0, "low_volatility"),  # ATR% 1.0 <= 1.0
        (1.0001, "normal"),
        (3.0, "normal"),  # ATR% 3.0 <= 3.0
        (3.0001, "high_volatility"),
    ],
)
def test_regime_boundaries(d: float, regime: str) -> None:
    chosen = volatility_regime(REGIMES, candles_from_closes(_alternating(d)))
    assert chosen is not None
    assert chosen.name == regime
    assert chosen.atr_pct == pytest.approx(d)


# --- regime-weighted stops ---------------------------------------------------------------------


def test_normal_regime_stop_take_profit_and_trailing_long() -> None:
    # ATR 2 (2 %): normal. stop = 100 - 2 x 2 = 96 > 92; TP = 100 + 4 x 2 = 108;
    # trailing = 1.5 x 2 % = 3 %
    action = _only_stops(_protect(position(), 100.0, _alternating(2.0)))
    assert action.stop_loss == pytest.approx(96.0)
    assert action.take_profit == pytest.approx(108.0)
    assert action.trailing_stop_pct == pytest.approx(3.0)
    assert action.reason.startswith(
        "stop 96 (regime: price 100 - 2 x ATR) is tighter than the stop 92"
    )


def test_normal_regime_stop_take_profit_and_trailing_short() -> None:
    # short at 100, stop 108: stop = 100 + 2 x 2 = 104 < 108; TP = 100 - 4 x 2 = 92
    short = position(side=Side.SHORT, stop_loss=108.0, take_profit=94.0)
    action = _only_stops(_protect(short, 100.0, _alternating(2.0)))
    assert action.stop_loss == pytest.approx(104.0)
    assert action.take_profit == pytest.approx(92.0)
    assert action.trailing_stop_pct == pytest.approx(3.0)


def test_low_regime_numbers() -> None:
    # ATR 1 (1 %): low. stop = 100 - 1.5 = 98.5; TP = 100 + 3 = 103; trailing 1.0 x 1 % = 1 %
    action = _only_stops(_protect(position(), 100.0, _alternating(1.0)))
    assert action.stop_loss == pytest.approx(98.5)
    assert action.take_profit == pytest.approx(103.0)
    assert action.trailing_stop_pct == pytest.approx(1.0)


def test_high_regime_stop_is_looser_than_the_current_one_and_not_proposed() -> None:
    # ATR 4 (4 %): high. stop = 100 - 3 x 4 = 88 < 92: that would loosen it, nothing proposed
    assert _protect(position(), 100.0, _alternating(4.0)) == []


def test_a_position_without_stop_gets_even_a_wide_one() -> None:
    # same 88 stop, TP = 100 + 5 x 4 = 120, trailing 2.5 x 4 % = 10 %
    action = _only_stops(_protect(position(stop_loss=None), 100.0, _alternating(4.0)))
    assert action.stop_loss == pytest.approx(88.0)
    assert action.take_profit == pytest.approx(120.0)
    assert action.trailing_stop_pct == pytest.approx(10.0)
    assert "tighter than no stop" in action.reason


def test_regime_take_profit_behind_the_price_keeps_the_positions_own() -> None:
    # closes 110/111: ATR 1, ATR% 1/110 = 0.909: low. TP = 100 + 3 x 1 = 103 is below the price
    # 110, which would close the trade at once: the position's TP 115 is kept. The stop still
    # tightens: 110 - 1.5 = 108.5
    held = position(take_profit=115.0)
    action = _only_stops(_protect(held, 110.0, _alternating(1.0, base=110.0)))
    assert action.stop_loss == pytest.approx(108.5)
    assert action.take_profit == 115.0
    assert "behind the price" in action.reason


def test_trailing_distance_never_loosens() -> None:
    # regime trailing 3 % (normal, ATR% 2) is looser than the position's 2 %: 2 % is kept
    held = position(trailing_stop_pct=2.0)
    action = _only_stops(_protect(held, 100.0, _alternating(2.0)))
    assert action.trailing_stop_pct == 2.0


# --- tighten only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "proposed"),
    [
        (95.9, True),  # regime stop 96 is higher: tighter
        (96.0, False),  # equal: not strictly tighter
        (96.5, False),  # 96 would loosen it
    ],
)
def test_long_stop_only_moves_up(current: float, proposed: bool) -> None:
    actions = _protect(position(stop_loss=current, initial_stop=92.0), 100.0, _alternating(2.0))
    assert bool(actions) is proposed


@pytest.mark.parametrize(
    ("current", "proposed"),
    [
        (104.1, True),  # regime stop 104 is lower: tighter for a short
        (104.0, False),
        (103.9, False),
    ],
)
def test_short_stop_only_moves_down(current: float, proposed: bool) -> None:
    short = position(side=Side.SHORT, stop_loss=current, initial_stop=108.0, take_profit=94.0)
    assert bool(_protect(short, 100.0, _alternating(2.0))) is proposed


# --- progressive profit locking (too few candles for ATR: the lock alone) ----------------------


@pytest.mark.parametrize(
    ("price", "stop"),
    [
        (103.99, None),  # R 0.9975: below every tier
        (104.0, 100.0),  # R 1.0 exactly: 1R tier locks 0R -> break-even 100
        (107.99, 100.0),  # R 1.9975: still the 1R tier
        (108.0, 104.0),  # R 2: lock 1R = 100 + 1 x 4
        (112.0, 108.0),  # R 3: lock 2R = 100 + 2 x 4
        (130.0, 108.0),  # R 7.5: the highest tier still locks 2R
    ],
)
def test_profit_lock_tiers_long(price: float, stop: float | None) -> None:
    # entry 100, stop 96: initial risk 4 % = 4 in price
    actions = _protect(position(stop_loss=96.0), price, [100.0, price])
    if stop is None:
        assert actions == []
    else:
        assert _only_stops(actions).stop_loss == pytest.approx(stop)


@pytest.mark.parametrize(("price", "stop"), [(96.0, 100.0), (92.0, 96.0), (88.0, 92.0)])
def test_profit_lock_tiers_short(price: float, stop: float) -> None:
    # short at 100, stop 104 (risk 4): R 1 at 96 -> 100; R 2 at 92 -> 96; R 3 at 88 -> 92
    short = position(side=Side.SHORT, stop_loss=104.0, take_profit=90.0)
    assert _only_stops(_protect(short, price, [100.0, price])).stop_loss == pytest.approx(stop)


def test_profit_lock_uses_the_initial_risk_and_does_not_repeat_itself() -> None:
    # stop already moved to 100 (initial 96): at R 1 the lock is 100 again: nothing to do
    held = position(stop_loss=100.0, initial_stop=96.0)
    assert _protect(held, 104.0, [100.0, 104.0]) == []
    # at R 2 (price 108): lock 104 > 100
    assert _only_stops(_protect(held, 108.0, [100.0, 108.0])).stop_loss == pytest.approx(104.0)


def test_the_tightest_of_lock_and_regime_stop_wins() -> None:
    held = position(stop_loss=96.0)  # entry 100, risk 4; price 108: R 2, lock 104
    # closes 108/112: ATR 4, ATR% 3.7: high; regime stop 108 - 3 x 4 = 96 -> the lock's 104 wins
    locked = _only_stops(_protect(held, 108.0, _alternating(4.0, base=108.0)))
    assert locked.stop_loss == pytest.approx(104.0)
    assert locked.reason.startswith(
        "stop 104 (profit lock: entry 100 + 1R x 4 at R 2.000 >= tier 2R) is tighter than the stop 96"
    )
    assert "other stop 96 (regime: price 108 - 3 x ATR)" in locked.reason
    # closes 108/109: ATR 1, ATR% 0.926: low; regime stop 108 - 1.5 = 106.5 beats 104
    trailing = _only_stops(_protect(held, 108.0, _alternating(1.0, base=108.0)))
    assert trailing.stop_loss == pytest.approx(106.5)


# --- DEFENSIVE_EXIT ----------------------------------------------------------------------------

DEFENSIVE = frozenset({DirectiveKind.DEFENSIVE_EXIT})


def test_defensive_exit_halves_the_stop_distance_long() -> None:
    # normal, ATR 2: distance 2 x 2 x 0.5 = 2 -> stop 98; trailing 1.5 x 2 % x 0.5 = 1.5 %
    action = _only_stops(_protect(position(), 100.0, _alternating(2.0), directives=DEFENSIVE))
    assert action.stop_loss == pytest.approx(98.0)
    assert action.trailing_stop_pct == pytest.approx(1.5)
    assert "DEFENSIVE_EXIT 0.5" in action.reason


def test_defensive_exit_halves_the_stop_distance_short() -> None:
    short = position(side=Side.SHORT, stop_loss=108.0, take_profit=94.0)
    action = _only_stops(_protect(short, 100.0, _alternating(2.0), directives=DEFENSIVE))
    assert action.stop_loss == pytest.approx(102.0)  # 100 + 2 x 2 x 0.5


def test_defensive_exit_turns_a_loose_regime_stop_into_a_tighter_one() -> None:
    # high, ATR 4: 100 - 12 = 88 is looser than 92 (nothing, see above); halved: 100 - 6 = 94
    action = _only_stops(_protect(position(), 100.0, _alternating(4.0), directives=DEFENSIVE))
    assert action.stop_loss == pytest.approx(94.0)


def test_other_directives_do_not_tighten() -> None:
    directives = frozenset({DirectiveKind.NO_NEW_TRADES})
    action = _only_stops(_protect(position(), 100.0, _alternating(2.0), directives=directives))
    assert action.stop_loss == pytest.approx(96.0)


# --- exits -------------------------------------------------------------------------------------


def _assessment(recommendation: Recommendation) -> PositionAssessment:
    return PositionAssessment("p1", Category.LOSER, -6.0, -0.75, recommendation, "PnL -6%")


def test_exit_recommendation_adds_a_close() -> None:
    actions = _protect(position(), 100.0, _alternating(2.0), _assessment(Recommendation.EXIT))
    assert [a.kind for a in actions] == [ActionKind.SET_STOPS, ActionKind.CLOSE]
    assert "PnL -6%" in actions[1].reason
    assert not actions[1].safety  # the emergency close is the engine's, not this plugin's


def test_exit_without_any_price_still_closes() -> None:
    actions = _protect(position(), None, (), _assessment(Recommendation.EXIT))
    assert [a.kind for a in actions] == [ActionKind.CLOSE]


def test_hold_recommendation_adds_nothing() -> None:
    actions = _protect(position(), 100.0, _alternating(4.0), _assessment(Recommendation.HOLD))
    assert actions == []


# --- re-entry cooldown -------------------------------------------------------------------------


def _intent(symbol: str = SYMBOL) -> EntryIntent:
    signal = Signal("s1", symbol, Side.LONG, 0.8, "test", T0, 100.0)
    return EntryIntent(signal, 8.4, 5.6, 0.02, 0.65)


def _allowed(plugin: ExitProposals, seconds: float, policy: Policy | None = None) -> bool:
    ctx = context(policy, now=T0 + timedelta(seconds=seconds))
    return plugin.aios_filter_entry(ctx, _intent()).allow


def test_cooldown_boundary() -> None:
    plugin = ExitProposals()
    assert _allowed(plugin, 0)  # nothing exited yet
    plugin.aios_trade_closed(context(), closed_trade(-2.0, closed_at=T0))
    assert not _allowed(plugin, 1799)  # 1799 < 1800
    assert _allowed(plugin, 1800)  # exactly at the cooldown: allowed
    verdict = plugin.aios_filter_entry(context(now=T0 + timedelta(seconds=60)), _intent())
    assert verdict.reason == "ETH/BTC was exited 60s ago, within the re-entry cooldown of 1800s"


def test_cooldown_is_per_symbol() -> None:
    plugin = ExitProposals()
    plugin.aios_trade_closed(context(), closed_trade(1.0, symbol="LTC/BTC", closed_at=T0))
    assert _allowed(plugin, 0)


def test_the_latest_exit_counts() -> None:
    plugin = ExitProposals()
    plugin.aios_trade_closed(context(), closed_trade(1.0, closed_at=T0 + timedelta(seconds=600)))
    plugin.aios_trade_closed(context(), closed_trade(1.0, closed_at=T0))  # older, reported late
    assert not _allowed(plugin, 2399)  # 1799 s after the later exit
    assert _allowed(plugin, 2400)


def test_cooldown_survives_a_policy_reload_and_reads_the_new_value() -> None:
    plugin = ExitProposals()
    plugin.aios_trade_closed(context(), closed_trade(1.0, closed_at=T0))
    longer = default_policy("subsystems:\n  exit_proposals:\n    reentry_cooldown_s: 3600\n")
    assert not _allowed(plugin, 1800, longer)
    assert _allowed(plugin, 3600, longer)
    none = default_policy("subsystems:\n  exit_proposals:\n    reentry_cooldown_s: 0\n")
    assert _allowed(plugin, 0, none)  # 0 < 0 is false


def test_trailing_stop_is_armed_only_from_the_activation_r() -> None:
    # default activation 1.0 R; entry 100, initial stop 92 (risk 8 %): R at 107.9 is 0.9875
    held = position(stop_loss=92.0, initial_stop=92.0)
    policy = default_policy()

    def trailing_at(price: float) -> float | None:
        ctx = context(
            policy,
            market_view=market({held.symbol: candles_from_closes(_alternating(2.0, base=price))}),
            portfolio=PortfolioView(
                equity=1.0, cash=1.0, positions=(held,), prices={held.symbol: price}
            ),
        )
        actions = [
            a
            for a in ExitProposals().aios_protect(ctx, held, None)
            if a.kind is ActionKind.SET_STOPS
        ]
        return actions[0].trailing_stop_pct if actions else None

    assert trailing_at(107.9) is None  # R 0.9875 < 1: not armed
    assert trailing_at(108.0) is not None  # R 1.0: armed
