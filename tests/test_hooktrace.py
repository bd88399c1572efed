"""AIOS_TRACE=1, `aios run --profile-hooks`, and the hook contract's version check at load."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner

from aios.cli import app as cli
from aios.hookspecs import hookimpl
from aios.hooktrace import HookProfile, summarize
from aios.model import EntryIntent, EntryVerdict, PolicySection, RiskMode, Side
from aios.registry import HookCall, observing, plugin_set
from aios.testing import Harness, signal

Factory = Callable[..., Harness]


class Gate:
    name = "gate"
    aios_contract = "1.0"

    @hookimpl
    def aios_policy_section(self) -> PolicySection:
        return PolicySection(self.name, {"properties": {}})

    @hookimpl
    def aios_filter_entry(self, intent: EntryIntent) -> EntryVerdict:
        if intent.signal.confidence > 0.95:
            raise ValueError("too good to be true")
        return EntryVerdict(False, "closed today")


def test_trace_logs_every_implementation_call_with_plugin_duration_and_result(
    aios_harness: Factory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIOS_TRACE", "1")
    caplog.set_level(logging.INFO, logger="aios.trace")
    harness = aios_harness([Gate()], modes={"gate": "ENFORCED"})
    market = harness.market({"ETH/BTC": [100.0, 100.0]})
    harness.entry_cycle(market, signals=[signal("ETH/BTC", 0.8)])
    harness.clock.advance(minutes=5)
    harness.entry_cycle(market, signals=[signal("ETH/BTC", 0.99)])
    lines = [r.getMessage() for r in caplog.records if r.name == "aios.trace"]
    assert any(line.startswith("load gate.aios_policy_section ") for line in lines)
    [allowed, raised] = [line for line in lines if ".aios_filter_entry " in line]
    assert allowed.startswith(
        "cycle 1 2018-01-10T05:00:00+00:00 signal:ETH/BTC-LONG-0.8 gate.aios_filter_entry "
    )
    assert allowed.endswith("us -> EntryVerdict(allow=False, reason='closed today')")
    assert raised.startswith("cycle 2 2018-01-10T05:05:00+00:00 signal:ETH/BTC-LONG-0.99 ")
    assert raised.endswith("-> raised ValueError: too good to be true")


def test_without_trace_nothing_observes_the_calls(
    aios_harness: Factory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import aios.registry

    monkeypatch.setenv("AIOS_TRACE", "1")
    plugin_set([])  # installs the tracer
    monkeypatch.delenv("AIOS_TRACE")
    caplog.set_level(logging.INFO, logger="aios.trace")
    harness = aios_harness([Gate()], modes={"gate": "ENFORCED"})  # loading re-reads the variable
    harness.entry_cycle(harness.market({"ETH/BTC": [100.0]}), signals=[signal("ETH/BTC")])
    assert aios.registry._observers == ()
    assert not [r for r in caplog.records if r.name == "aios.trace"]


def test_an_observer_sees_calls_only_while_it_observes(aios_harness: Factory) -> None:
    seen: list[HookCall] = []
    harness = aios_harness([Gate()], modes={"gate": "ENFORCED"})
    market = harness.market({"ETH/BTC": [100.0]})
    with observing(seen.append):
        harness.entry_cycle(market, signals=[signal("ETH/BTC")])
    harness.entry_cycle(market, signals=[signal("ETH/BTC")])
    assert [(c.plugin, c.hook) for c in seen] == [
        ("harness_signals", "aios_signals"),
        ("gate", "aios_filter_entry"),
    ]
    assert seen[1].value == EntryVerdict(False, "closed today") and seen[1].seconds >= 0


def test_summaries_are_one_bounded_line() -> None:
    assert summarize(None) == "None"
    assert summarize({"heat": 0.123456789}) == "{heat=0.123457}"
    assert summarize([]) == "[]"
    assert summarize(RiskMode.CRITICAL) == "CRITICAL"
    assert summarize(EntryVerdict(True, "x" * 500)) == (
        "EntryVerdict(allow=True, reason='" + "x" * 57 + "...')"
    )
    wide = summarize({f"key_{i}": "y" * 50 for i in range(8)})
    assert len(wide) == 160 and wide.endswith("...")
    assert summarize([signal(), signal(side=Side.SHORT)]) == "2 x Signal"


def call(plugin: str, hook: str, seconds: float, error: str | None = None) -> HookCall:
    return HookCall(hook, plugin, seconds, None, error, {})


def test_the_profile_sums_per_plugin_and_hook_slowest_first() -> None:
    profile = HookProfile()
    for item in (
        call("a", "aios_signals", 0.002),
        call("a", "aios_signals", 0.004),
        call("b", "aios_size", 0.001, "ValueError: x"),
        call("a", "aios_health", 0.0005),
    ):
        profile(item)
    data = profile.to_dict()
    assert data["plugins"] == {"a": pytest.approx(0.0065), "b": pytest.approx(0.001)}
    assert [(h["plugin"], h["hook"], h["calls"], h["errors"]) for h in data["hooks"]] == [
        ("a", "aios_signals", 2, 0),
        ("b", "aios_size", 1, 1),
        ("a", "aios_health", 1, 0),
    ]
    lines = profile.render().splitlines()
    assert lines[0] == "hook profile: 7.50 ms in plugin code"
    assert lines[3].split() == ["a", "aios_signals", "2", "0", "6.00", "3000.0", "4000.0", "80.0%"]


def test_run_profile_hooks_prints_the_table_at_the_end(tmp_path: Any) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "run",
            "--limit",
            "30",
            "-q",
            "--no-watch",
            "--profile-hooks",
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    text = result.output
    assert "hook profile: " in text
    table = text[text.index("hook profile: ") :].splitlines()
    assert table[1].split() == [
        "plugin",
        "hook",
        "calls",
        "errors",
        "total",
        "ms",
        "mean",
        "us",
        "max",
        "us",
        "share",
    ]
    assert any(line.split()[:3] == ["signal_model", "aios_signals", "90"] for line in table)
    assert table[-1].startswith("per plugin: ")


# --- the contract version ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        ("1.0", None),
        ("1", None),
        (1, None),
        ("2.0", "declares hook contract 2.0, this aios provides 1.0 (major 1 required)"),
        ("0.9", "declares hook contract 0.9, this aios provides 1.0 (major 1 required)"),
        ("1.1", "declares hook contract 1.1, newer than the 1.0 this aios provides: upgrade aios"),
        (
            "one",
            "declares hook contract 'one', which is not a version like '1.0' (aios_contract = \"MAJOR.MINOR\")",
        ),
    ],
)
def test_a_plugin_declaring_an_incompatible_contract_is_refused_at_load(
    declared: object, problem: str | None
) -> None:
    class Versioned:
        name = "versioned"
        aios_contract = declared

    plugins = plugin_set([Versioned()])
    if problem is None:
        assert "versioned" in plugins.plugins and plugins.problems == []
    else:
        assert plugins.plugins == {}
        assert [(p.kind, p.message) for p in plugins.problems] == [("contract", problem)]


def test_async_and_wrapper_implementations_are_refused_at_load() -> None:
    class Async:
        name = "asynchronous"

        @hookimpl
        async def aios_filter_entry(self) -> None:
            return None

    class Wrapping:
        name = "wrapping"

        @hookimpl(wrapper=True)
        def aios_filter_entry(self) -> Any:
            return (yield)

    plugins = plugin_set([Async(), Wrapping()])
    assert plugins.plugins == {}
    assert [p.message for p in plugins.problems] == [
        "refused: aios_filter_entry is an async function; aios hooks are synchronous (return a value, do the I/O elsewhere)",
        "refused: aios_filter_entry is a wrapper implementation; aios hooks take plain implementations (timing and tracing are built in: AIOS_TRACE=1)",
    ]


def test_an_argument_the_hook_does_not_pass_is_refused_with_a_hint() -> None:
    class Typo:
        name = "argument_typo"

        @hookimpl
        def aios_filter_entry(self, ctx: Any, intnt: Any) -> None:
            return None

    plugins = plugin_set([Typo()])
    assert plugins.plugins == {}
    assert [(p.kind, p.message) for p in plugins.problems] == [
        (
            "hooks",
            "refused: aios_filter_entry declares the argument 'intnt', which this hook does not pass (it passes ctx, intent); did you mean 'intent'?",
        )
    ]


def test_pluggy_hookcall_monitoring_sees_none_of_the_engine_calls(aios_harness: Factory) -> None:
    """Why tracing observes call_each: the engine calls implementations one at a time, so
    pluggy's own monitoring (and wrapper implementations) never run."""
    harness = aios_harness([Gate()], modes={"gate": "ENFORCED"})
    monitored: list[str] = []
    undo = harness.plugin_set.manager.add_hookcall_monitoring(
        lambda name, impls, kwargs: monitored.append(name), lambda *args: None
    )
    observed: list[HookCall] = []
    with observing(observed.append):
        harness.entry_cycle(harness.market({"ETH/BTC": [100.0]}), signals=[signal("ETH/BTC")])
    undo()
    assert monitored == []
    assert ("gate", "aios_filter_entry") in [(c.plugin, c.hook) for c in observed]
