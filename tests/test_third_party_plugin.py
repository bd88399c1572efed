"""A third-party plugin package, installed as a user would install it, governed like a built-in.

The example package (examples/aios-spike-guard) is built and installed into a temporary
directory that is put on sys.path; aios then finds it through its `aios.plugins` entry point.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios import app
from aios.cli import app as cli
from aios.data import bundled_data_dir, load_directory
from aios.engine import Engine
from aios.journal import Journal
from aios.market import InMemoryMarket
from aios.model import PortfolioView, Stage
from aios.policy import PolicyInvalid
from aios.state import database_path
from aios.testing import healthy_components

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "aios-spike-guard"
DEFAULT = REPO / "policies" / "default.yaml"

OVERLAY = """\
universe:
  symbols: [ETH/BTC, LTC/BTC, XMR/BTC]
baseline:
  min_confidence: 0.5
subsystems:
  signal_model:
    min_confidence: 0.5
  spike_guard:
    mode: ENFORCED
    max_candle_range_pct: 0.8
  portfolio_balancer:
    correlated_groups: []
  universe_os:
    blacklist: []
directives:
  NO_NEW_TRADES:
    trigger: "max_candle_range_pct > 50 or drawdown_pct >= 10"
    clear_when: "max_candle_range_pct <= 50 and drawdown_pct < 8"
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(EXAMPLE),
        ],
        check=True,
        timeout=300,
    )
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    yield target
    sys.path.remove(str(target))
    for name in [m for m in sys.modules if m.startswith("aios_spike_guard")]:
        del sys.modules[name]


def overlay_file(tmp_path: Path) -> Path:
    path = tmp_path / "spike.yaml"
    path.write_text(OVERLAY, encoding="utf-8")
    return path


def test_without_the_plugin_its_section_and_metric_are_unknown(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        app.load([DEFAULT, overlay_file(tmp_path)], env={})
    messages = [str(issue) for issue in caught.value.errors]
    assert any("subsystems.spike_guard: unknown key 'spike_guard'" in m for m in messages)


def test_installed_plugin_is_discovered_and_its_section_validated(
    installed: Path, tmp_path: Path
) -> None:
    policy, plugins = app.load([DEFAULT, overlay_file(tmp_path)], env={})
    assert "spike_guard" in plugins.plugins
    assert plugins.plugins["spike_guard"].source.startswith("aios-spike-guard")
    assert not plugins.plugins["spike_guard"].builtin
    assert policy.get("subsystems", "spike_guard", "max_candle_range_pct") == 0.8
    bad = tmp_path / "bad.yaml"
    bad.write_text("subsystems:\n  spike_guard:\n    max_candle_range: 2\n")
    with pytest.raises(PolicyInvalid) as caught:
        app.load([DEFAULT, overlay_file(tmp_path), bad], env={})
    assert [str(i) for i in caught.value.errors] == [
        f"{bad}:3:5: subsystems.spike_guard.max_candle_range: unknown key 'max_candle_range'; did you mean 'max_candle_range_pct'?"
    ]


def test_denied_plugin_is_not_loaded(installed: Path, tmp_path: Path) -> None:
    deny = tmp_path / "deny.yaml"
    deny.write_text("plugins:\n  deny: [spike_guard]\n")
    with pytest.raises(PolicyInvalid):  # its section is then unknown
        app.load([DEFAULT, overlay_file(tmp_path), deny], env={})


def entry_cycles(engine: Engine, count: int = 400) -> None:
    """The first `count` candle times of the bundled candles, an entry cycle each, on an empty
    book valued at the latest closes."""
    series = load_directory(bundled_data_dir(), ["ETH/BTC", "LTC/BTC", "XMR/BTC"])
    times = sorted({c.time for candles in series.values() for c in candles})[:count]
    market = InMemoryMarket(series)
    for now in times:
        market.advance(now)
        prices = {s: c.close for s in market.symbols if (c := market.last(s)) is not None}
        engine.entry_cycle(
            now,
            market,
            PortfolioView(1.0, 1.0, prices=prices),
            component_health=healthy_components(),
        )


def test_its_proposals_reach_the_journal_and_aios_explain(installed: Path, tmp_path: Path) -> None:
    policy, plugins = app.load([DEFAULT, overlay_file(tmp_path)], env={})
    state = tmp_path / "state"
    state.mkdir()
    with Journal(database_path(state)) as journal:
        entry_cycles(Engine(policy, plugins, journal, stage=Stage.AUTONOMY, run_id="t"))
        rows = journal.reader().query(subsystem="spike_guard")
    assert rows, "the plugin's proposals are journaled"
    assert {r.hook for r in rows} == {"aios_filter_entry"}
    assert all(r.mode == "ENFORCED" and r.outcome == "applied" for r in rows)
    blocked = rows[0]
    result = CliRunner().invoke(cli, ["explain", str(blocked.trace), "--state-dir", str(state)])
    assert result.exit_code == 0, result.output
    assert "spike_guard" in result.output and "blocks: last candle range" in result.output


def test_the_example_package_passes_its_own_tests(installed: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        env={"PYTHONPATH": str(installed), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_plugin_whose_section_is_no_json_schema_stays_off_and_the_others_run(
    installed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aios.model import own_mode
    from tests.test_plugins_cli import install

    install(tmp_path, monkeypatch, ["bad_blocker"])  # would block every entry if it were on
    policy, plugins = app.load([DEFAULT, overlay_file(tmp_path)], env={})
    assert {"bad_blocker", "spike_guard"} <= set(plugins.plugins)
    [problem] = [p for p in plugins.problems if p.source == "bad_blocker"]
    assert problem.kind == "section"
    assert "not a valid JSON Schema at type: 'not-a-type'" in problem.message
    assert own_mode(policy, "bad_blocker").name == "OFF"
    assert policy.get("subsystems", "spike_guard", "max_candle_range_pct") == 0.8
    bad = tmp_path / "bad.yaml"  # the sibling's section is still enforced, with the key path
    bad.write_text("subsystems:\n  spike_guard:\n    max_candle_range_pct: fast\n")
    with pytest.raises(PolicyInvalid) as caught:
        app.load([DEFAULT, overlay_file(tmp_path), bad], env={})
    assert [i.path for i in caught.value.errors] == [
        ("subsystems", "spike_guard", "max_candle_range_pct")
    ]

    with Journal(":memory:") as journal:
        entry_cycles(Engine(policy, plugins, journal, stage=Stage.AUTONOMY, run_id="t"))
        reader = journal.reader()
        assert reader.query(subsystem="spike_guard"), "the sound plugin runs"
        assert reader.query(subsystem="bad_blocker") == []
