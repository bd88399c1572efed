"""RL sizing agent: value updates by hand, greedy choice and ties, seeded exploration, clamping,
state export/import and policy reloads that change the actions.

Default policy: actions [0.5, 0.75, 1.0, 1.25, 1.5], learning_rate 0.1, exploration 0.1,
bounds [0.5, 1.5], seed 7. Most tests set exploration 0 so that every choice is greedy.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import replace
from functools import cache

import pytest

import plugins.rl_sizing as rl_module
from aios.model import ClosedTrade, CycleContext, EntryIntent, RiskMode, Side, Signal
from aios.policy import Policy
from aios.testing import T0, closed_trade, context, default_policy, position
from plugins.rl_sizing import RlSizing, clamped_arms, confidence_bucket

GREEDY = "subsystems:\n  rl_sizing:\n    exploration: 0\n"
DEFAULT_ARMS = [0.5, 0.75, 1.0, 1.25, 1.5]


@cache
def policy(overlay: str | None = GREEDY) -> Policy:
    return default_policy(overlay)


def ctx(overlay: str | None = GREEDY, risk_mode: RiskMode = RiskMode.NORMAL) -> CycleContext:
    return context(policy(overlay), risk_mode=risk_mode)


def intent(signal_id: str, confidence: float = 0.75) -> EntryIntent:
    signal = Signal(signal_id, "ETH/BTC", Side.LONG, confidence, "test", T0, 1.0)
    return EntryIntent(signal, 10.0, 5.0, 0.1, 0.65)


def trade(signal_id: str, pnl_pct: float) -> ClosedTrade:
    return replace(closed_trade(pnl_pct), trace=signal_id)


def choose(
    agent: RlSizing,
    signal_id: str,
    overlay: str | None = GREEDY,
    confidence: float = 0.75,
    risk_mode: RiskMode = RiskMode.NORMAL,
) -> float:
    """The multiplier the agent proposes for one signal."""
    proposal = agent.aios_size(ctx(overlay, risk_mode), intent(signal_id, confidence))
    assert proposal.quote_amount is None and proposal.multiplier is not None
    return proposal.multiplier


def play(agent: RlSizing, signal_id: str, pnl_pct: float, overlay: str | None = GREEDY) -> float:
    """Size one signal, close its trade with `pnl_pct`, return the multiplier that was chosen."""
    multiplier = choose(agent, signal_id, overlay=overlay)
    agent.aios_trade_closed(ctx(overlay), trade(signal_id, pnl_pct))
    return multiplier


NORMAL_70 = ("NORMAL", "[0.7, 0.8)")  # the context of intent(...) at confidence 0.75


# --- contexts and arms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("confidence", "bucket"),
    [
        (0.0, "[0, 0.6)"),
        (0.5999, "[0, 0.6)"),
        (0.6, "[0.6, 0.7)"),
        (0.6999, "[0.6, 0.7)"),
        (0.7, "[0.7, 0.8)"),
        (0.7999, "[0.7, 0.8)"),
        (0.8, "[0.8, 1]"),
        (1.0, "[0.8, 1]"),
    ],
)
def test_confidence_buckets_have_closed_lower_edges(confidence: float, bucket: str) -> None:
    assert confidence_bucket(confidence) == bucket


def test_actions_are_clamped_into_the_bounds_and_merged_when_equal() -> None:
    # 0.25 -> 0.5 (duplicate of 0.5, merged), 2.0 -> 1.5; order of first appearance kept
    assert clamped_arms([0.25, 0.5, 1.0, 2.0], 0.5, 1.5) == [0.5, 1.0, 1.5]
    assert clamped_arms([0.5, 1.5], 0.5, 1.5) == [0.5, 1.5]


def test_a_policy_action_outside_the_bounds_is_never_proposed() -> None:
    # The semantic checks refuse such a policy; a document edited around them (built here
    # directly) must still not let the agent size beyond its bounds.
    document = copy.deepcopy(dict(policy().document))
    document["subsystems"]["rl_sizing"].update(
        actions=[3.0, 0.1], min_multiplier=0.5, max_multiplier=1.5, exploration=1.0
    )
    unchecked = replace(policy(), document=document)
    agent = RlSizing()
    seen = {agent.aios_size(context(unchecked), intent(f"s{i}")).multiplier for i in range(40)}
    assert seen == {0.5, 1.5}


# --- learning ----------------------------------------------------------------------------------


def test_value_updates_follow_the_incremental_rule() -> None:
    # All values 0: greedy picks 1.0 (closest to 1.0). learning_rate 0.1, reward = 1.0 x pnl / 100:
    #   +10 %: 0     + 0.1 x ( 0.10 - 0     ) = 0.01
    #   -5 %:  0.01  + 0.1 x (-0.05 - 0.01  ) = 0.004
    #   +20 %: 0.004 + 0.1 x ( 0.20 - 0.004 ) = 0.0236
    agent = RlSizing()
    expected = [0.01, 0.004, 0.0236]
    for index, (pnl, value) in enumerate(zip([10.0, -5.0, 20.0], expected, strict=True)):
        assert play(agent, f"s{index}", pnl) == 1.0
        assert agent.value(*NORMAL_70, 1.0) == pytest.approx(value, abs=1e-15)
    assert all(agent.value(*NORMAL_70, arm) == 0.0 for arm in (0.5, 0.75, 1.25, 1.5))


def test_learning_rate_is_read_when_the_trade_closes() -> None:
    # chosen under learning_rate 0.1, closed under 0.5: 0 + 0.5 x (0.04 - 0) = 0.02
    agent = RlSizing()
    choose(agent, "s1")
    half = "subsystems:\n  rl_sizing:\n    exploration: 0\n    learning_rate: 0.5\n"
    agent.aios_trade_closed(ctx(half), trade("s1", 4.0))
    assert agent.value(*NORMAL_70, 1.0) == pytest.approx(0.02, abs=1e-15)


def test_greedy_choice_follows_the_values_and_breaks_ties_toward_one() -> None:
    agent = RlSizing()
    # a loss on 1.0 (value -0.001): 0.75 and 1.25 tie at 0 and are equally close to 1.0,
    # so the smaller, 0.75, is chosen
    assert play(agent, "s1", -1.0) == 1.0
    assert play(agent, "s2", -1.0) == 0.75
    # a loss on 0.75 too: 1.25 is now the closest to 1.0 among the arms at 0
    assert play(agent, "s3", 2.0) == 1.25
    # 1.25 earned 0 + 0.1 x (1.25 x 0.02) = 0.0025 > 0: it stays the greedy choice
    assert agent.value(*NORMAL_70, 1.25) == pytest.approx(0.0025, abs=1e-15)
    assert choose(agent, "s4") == 1.25


def test_contexts_learn_separately() -> None:
    agent = RlSizing()
    play(agent, "s1", -1.0)  # NORMAL, [0.7, 0.8): 1.0 now worth -0.001
    assert choose(agent, "s2") == 0.75
    assert choose(agent, "s3", confidence=0.85) == 1.0  # another bucket
    assert choose(agent, "s4", risk_mode=RiskMode.CRITICAL) == 1.0  # another risk mode


def test_unknown_and_repeated_traces_are_ignored() -> None:
    agent = RlSizing()
    choose(agent, "s1")
    before = agent.export_state()
    agent.aios_trade_closed(ctx(), trade("never-sized", 50.0))
    agent.aios_trade_closed(ctx(), trade("", 50.0))
    assert agent.export_state() == before
    # the first close of s1 teaches; the second book's copy of the same trade does not
    agent.aios_trade_closed(ctx(), trade("s1", 10.0))
    agent.aios_trade_closed(ctx(), trade("s1", 10.0))
    assert agent.value(*NORMAL_70, 1.0) == pytest.approx(0.01, abs=1e-15)


def test_an_opened_position_outlives_the_pending_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rl_module, "MAX_PENDING", 2)
    agent = RlSizing()
    choose(agent, "filled")
    agent.aios_trade_opened(ctx(), position(trace="filled"))
    choose(agent, "lost")
    for index in range(3):  # three more signals push "lost" out of the pending bound
        choose(agent, f"later{index}")
    agent.aios_trade_closed(ctx(), trade("lost", 10.0))
    assert agent.value(*NORMAL_70, 1.0) == 0.0
    agent.aios_trade_closed(ctx(), trade("filled", 10.0))
    assert agent.value(*NORMAL_70, 1.0) == pytest.approx(0.01, abs=1e-15)


# --- exploration -------------------------------------------------------------------------------


def test_exploration_follows_the_seeded_generator() -> None:
    # The contract: one draw u per call; u < exploration explores with a second draw
    # randrange(len(arms)); otherwise greedy (1.0 while nothing is learned).
    overlay = "subsystems:\n  rl_sizing:\n    exploration: 0.5\n    seed: 11\n"
    reference = random.Random(11)
    expected = []
    for _ in range(30):
        if reference.random() < 0.5:
            expected.append(DEFAULT_ARMS[reference.randrange(5)])
        else:
            expected.append(1.0)
    first, second = RlSizing(), RlSizing()
    assert [choose(first, f"s{i}", overlay=overlay) for i in range(30)] == expected
    assert [choose(second, f"s{i}", overlay=overlay) for i in range(30)] == expected
    assert len(set(expected)) > 2  # the sequence really explores


def test_exploration_rate_matches_the_policy() -> None:
    # exploration 0.2 over 2000 calls: 400 expected explorations (binomial sd ~18)
    overlay = "subsystems:\n  rl_sizing:\n    exploration: 0.2\n"
    agent = RlSizing()
    context_ = ctx(overlay)
    explored = sum(
        "explored" in agent.aios_size(context_, intent(f"s{i}")).reason for i in range(2000)
    )
    assert 350 <= explored <= 450


def test_exploration_zero_never_explores_and_one_always_does() -> None:
    never, always = RlSizing(), RlSizing()
    assert {choose(never, f"s{i}") for i in range(50)} == {1.0}
    explore_all = "subsystems:\n  rl_sizing:\n    exploration: 1\n"
    reasons = [always.aios_size(ctx(explore_all), intent(f"s{i}")).reason for i in range(50)]
    assert all("explored" in reason for reason in reasons)


# --- state -------------------------------------------------------------------------------------


def test_export_import_round_trip_continues_the_same_sequence() -> None:
    overlay = "subsystems:\n  rl_sizing:\n    exploration: 0.3\n"
    original = RlSizing()
    for index, pnl in enumerate([3.0, -2.0, 5.0, 1.0]):
        play(original, f"done{index}", pnl, overlay)
    choose(original, "waiting", overlay=overlay)  # an open choice, not closed yet

    state = json.loads(json.dumps(original.export_state()))  # JSON-able
    restored = RlSizing()
    restored.import_state(state)
    assert restored.export_state() == original.export_state()

    # the same future: same choices (generator state included), same learning
    for agent in (original, restored):
        agent.aios_trade_closed(ctx(overlay), trade("waiting", 8.0))
    assert [choose(original, f"n{i}", overlay=overlay) for i in range(20)] == [
        choose(restored, f"n{i}", overlay=overlay) for i in range(20)
    ]
    assert restored.export_state() == original.export_state()


def test_import_refuses_an_unknown_state_version() -> None:
    with pytest.raises(ValueError, match="version"):
        RlSizing().import_state({"version": 99})


def test_values_survive_a_reload_that_changes_the_actions() -> None:
    agent = RlSizing()
    # a policy offering only [1.25, 1.5]: 1.25 (closest to 1) learns 0.1 x (1.25 x 0.1) = 0.0125
    narrow = "subsystems:\n  rl_sizing:\n    exploration: 0\n    actions: [1.25, 1.5]\n"
    assert play(agent, "s1", 10.0, narrow) == 1.25
    # reload to the default actions: 1.25 keeps its 0.0125 and wins over the unexplored arms
    assert choose(agent, "s2") == 1.25
    # reload to actions without 1.25: greedy falls back to 1.0; 1.25's value is kept aside
    without = "subsystems:\n  rl_sizing:\n    exploration: 0\n    actions: [0.5, 1.0]\n"
    assert choose(agent, "s3", overlay=without) == 1.0
    assert agent.value(*NORMAL_70, 1.25) == pytest.approx(0.0125, abs=1e-15)
    # and when 1.25 is offered again, it is chosen again
    assert choose(agent, "s4") == 1.25


def test_a_changed_seed_restarts_the_sequence() -> None:
    # seed 7 for one call, then seed 8: the next calls draw as a fresh Random(8) would
    explore = "subsystems:\n  rl_sizing:\n    exploration: 1\n    seed: {seed}\n"
    agent = RlSizing()
    choose(agent, "s0", overlay=explore.format(seed=7))
    reference = random.Random(8)
    expected = []
    for _ in range(10):
        reference.random()
        expected.append(DEFAULT_ARMS[reference.randrange(5)])
    assert [choose(agent, f"s{i}", overlay=explore.format(seed=8)) for i in range(10)] == expected
