"""aios.testing.Harness: set-ups that would test nothing are refused with what to change."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest

from aios.hookspecs import hookimpl
from aios.model import EntryIntent, EntryVerdict, Mode, PolicySection, Stage
from aios.policy import PolicyInvalid
from aios.testing import (
    T0,
    Clock,
    Harness,
    HarnessError,
    candles_from_closes,
    policy_with_plugins,
    position,
    signal,
)

Factory = Callable[..., Harness]


class Gate:
    name = "gate"
    aios_contract = "1.0"

    @hookimpl
    def aios_policy_section(self) -> PolicySection:
        return PolicySection(
            self.name, {"properties": {"floor": {"type": "number", "default": 0.9}}}
        )

    @hookimpl
    def aios_filter_entry(self, ctx: object, intent: EntryIntent) -> EntryVerdict:
        floor = float(ctx.settings(self.name)["floor"])  # type: ignore[attr-defined]
        return EntryVerdict(intent.signal.confidence >= floor, f"floor {floor:g}")


def test_the_clock_moves_only_forward_and_in_utc() -> None:
    clock = Clock()
    assert clock.advance(minutes=5) == T0 + timedelta(minutes=5)
    assert clock.advance(timedelta(hours=1)) == T0 + timedelta(minutes=65)
    with pytest.raises(HarnessError, match="only moves forward"):
        clock.advance(minutes=-1)
    with pytest.raises(HarnessError, match="aware UTC time"):
        clock.set(datetime(2018, 1, 10))


def test_each_result_holds_only_the_rows_its_own_call_wrote(aios_harness: Factory) -> None:
    harness = aios_harness([Gate()], modes={"gate": Mode.ENFORCED})
    market = harness.market({"ETH/BTC": [100.0, 100.0]})
    first = harness.entry_cycle(market, signals=[signal("ETH/BTC", 0.95)])
    harness.clock.advance(minutes=5)
    second = harness.entry_cycle(
        harness.market({"ETH/BTC": [100.0]}), signals=[signal("ETH/BTC", 0.7)]
    )
    assert [r.reason for r in first.proposals("gate")] == ["allows: floor 0.9"]
    assert [r.reason for r in second.proposals("gate")] == ["blocks: floor 0.9"]
    assert {r.cycle for r in first.rows} == {1} and {r.cycle for r in second.rows} == {2}
    assert len(first.orders) == 1 and second.orders == ()


def test_candles_after_the_clock_are_refused(aios_harness: Factory) -> None:
    harness = aios_harness([Gate()], modes={"gate": "ENFORCED"})
    later = candles_from_closes([100.0, 101.0], start=T0 + timedelta(minutes=5))
    with pytest.raises(
        HarnessError, match=r"ETH/BTC has candles after the cycle time 2018-01-10T05:00:00\+00:00"
    ):
        harness.entry_cycle({"ETH/BTC": later})
    harness.clock.set(later[-1].time)
    assert harness.entry_cycle({"ETH/BTC": later}, signals=[signal("ETH/BTC", 0.95)]).orders


def test_a_position_without_a_price_is_refused(aios_harness: Factory) -> None:
    harness = aios_harness([Gate()], modes={"gate": "ENFORCED"})
    with pytest.raises(HarnessError, match="position p1 in ETH/BTC has no price"):
        harness.monitor_cycle([position()])
    assert harness.monitor_cycle([position()], prices={"ETH/BTC": 100.0}).orders == ()


def test_signals_need_the_harness_source_in_the_policy(aios_harness: Factory) -> None:
    built = policy_with_plugins([Gate()], "subsystems:\n  gate:\n    mode: ENFORCED\n")
    harness = aios_harness([Gate()], built)
    with pytest.raises(HarnessError, match="pass the policy as an overlay"):
        harness.entry_cycle(harness.market({"ETH/BTC": [100.0]}), signals=[signal("ETH/BTC")])


def test_a_plugin_refused_at_load_fails_the_set_up(aios_harness: Factory) -> None:
    class Future(Gate):
        name = "future"
        aios_contract = "2.0"

    with pytest.raises(HarnessError, match=r"declares hook contract 2\.0"):
        aios_harness([Future()])


def test_an_invalid_overlay_names_the_argument_it_came_from(aios_harness: Factory) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        aios_harness([Gate()], {"subsystems": {"gate": {"mode": "ENFORCED", "flor": 1}}})
    [issue] = caught.value.errors
    assert str(issue).endswith(
        "policy.yaml:4:5: subsystems.gate.flor: unknown key 'flor'; did you mean 'floor'?"
    )


def test_the_stage_caps_the_mode(aios_harness: Factory) -> None:
    harness = aios_harness([Gate()], modes={"gate": "ENFORCED"}, stage=Stage.OBSERVATION)
    result = harness.entry_cycle(
        harness.market({"ETH/BTC": [100.0]}), signals=[signal("ETH/BTC", 0.7)]
    )
    assert len(result.orders) == 1 and result.shadow_orders == ()
    assert [(r.mode, r.outcome) for r in result.proposals("gate")] == [("OBSERVE", "observed")]


def test_the_shared_mode_reading_agrees_with_the_engine(aios_harness: Factory) -> None:
    """aios.model.own_mode (services, `aios plugins list`) reads modes as the engine does."""
    from aios.model import own_mode

    harness = aios_harness(
        [Gate()],
        "subsystems:\n  coordinator: {enabled: false, mode: ENFORCED}\n"
        "  universe_os: {mode: OBSERVE}\n  gate: {mode: ADVISORY}\n",
    )
    names = ["coordinator", "universe_os", "gate", "signal_model", "not_configured"]
    expected = [harness.engine.own_mode(name) for name in names]
    assert [own_mode(harness.policy, name) for name in names] == expected
    assert expected[:3] == [Mode.OFF, Mode.OBSERVE, Mode.ADVISORY] and expected[4] is Mode.OFF
