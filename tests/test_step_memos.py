"""The memos of a replay step (docs/benchmarks.md, round 4) against the plain computations:
each must give what computing afresh gives, and forget what a change made stale."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aios.engine import Engine
from aios.hookspecs import hookimpl
from aios.model import CycleContext, PortfolioView, Position
from aios.policy import Policy
from aios.registry import plugin_set
from aios.testing import T0, candles_from_closes, context, default_policy, market, position


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
