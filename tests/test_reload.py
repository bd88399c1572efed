"""Hot reload: validated off the hot path, swapped between cycles, never replacing a good policy
with an invalid one, keeping learned state, never moving the stage."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from aios import app as application
from aios.data import bundled_data_dir
from aios.exchange.paper import PaperBroker
from aios.reload import PolicySource, PolicyWatcher
from aios.runtime import Runtime, load_series
from aios.state import database_path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "policies" / "default.yaml"
TRADING = (
    "baseline:\n  min_confidence: 0.52\nsubsystems:\n  signal_model:\n    min_confidence: 0.52\n"
)


def setup(tmp_path: Path, overlay_text: str = TRADING) -> tuple[Runtime, PolicyWatcher, Path]:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(overlay_text, encoding="utf-8")
    files = [DEFAULT, overlay]
    policy, plugins = application.load(files, env={})
    series = load_series(bundled_data_dir(), policy.get("universe", "symbols"))
    runtime = Runtime(policy, plugins, series, tmp_path / "state", PaperBroker.from_policy)
    watcher = PolicyWatcher(PolicySource(files, {}, plugins), policy.hash)
    runtime.watcher = watcher
    return runtime, watcher, overlay


def opens(state: Path, symbol: str, after: str) -> int:
    connection = sqlite3.connect(database_path(state))
    try:
        row = connection.execute(
            "SELECT COUNT(*) FROM fills WHERE kind = 'OPEN' AND symbol = ? AND time > ?",
            (symbol, after),
        ).fetchone()
        return int(row[0])
    finally:
        connection.close()


def shadow_opens(state: Path, symbols: tuple[str, ...], after: str) -> int:
    connection = sqlite3.connect(database_path(state))
    try:
        marks = ", ".join("?" for _ in symbols)
        query = f"SELECT COUNT(*) FROM fills WHERE book = 'shadow' AND kind = 'OPEN' AND symbol IN ({marks}) AND time > ?"
        return int(connection.execute(query, (*symbols, after)).fetchone()[0])
    finally:
        connection.close()


def test_symbols_removed_or_blacklisted_by_a_reload_are_not_traded_afterwards(
    tmp_path: Path,
) -> None:
    runtime, watcher, overlay = setup(tmp_path)
    times = sorted({c.time for candles in runtime.series.values() for c in candles})[:700]
    for now in times[:350]:
        runtime.step(now)
    # ETH/BTC leaves the candidates (binding on every book); XMR/BTC is blacklisted by the
    # universe subsystem (ENFORCED, so binding on the shadow book in OBSERVATION)
    overlay.write_text(
        TRADING
        + "  universe_os:\n    blacklist: [XMR/BTC]\nuniverse:\n  symbols: [LTC/BTC, XMR/BTC]\n",
        encoding="utf-8",
    )
    assert watcher.check_now().ok
    reload_time = times[350].isoformat()
    for now in times[350:]:
        runtime.step(now)
    runtime.journal.flush()
    assert runtime.policy.get("universe", "symbols") == ["LTC/BTC", "XMR/BTC"]
    assert opens(runtime.state_dir, "ETH/BTC", reload_time) == 0
    assert shadow_opens(runtime.state_dir, ("ETH/BTC", "XMR/BTC"), reload_time) == 0
    assert shadow_opens(runtime.state_dir, ("ETH/BTC", "LTC/BTC", "XMR/BTC"), "0") > 0, (
        "the shadow book traded"
    )
    assert opens(runtime.state_dir, "ETH/BTC", "0") > 0, "ETH/BTC was traded before the reload"
    runtime.journal.close()


def test_an_invalid_change_keeps_the_last_good_policy_and_is_journaled(tmp_path: Path) -> None:
    runtime, watcher, overlay = setup(tmp_path)
    good_hash = runtime.policy.hash
    times = sorted({c.time for candles in runtime.series.values() for c in candles})[:20]
    runtime.step(times[0])
    overlay.write_text("baseline:\n  tp_pct: lots\n", encoding="utf-8")
    result = watcher.check_now()
    assert not result.ok
    assert result.errors == (
        f"{overlay}:2:11: baseline.tp_pct: expected a number, found string 'lots'",
    )
    runtime.step(times[1])
    assert runtime.policy.hash == good_hash and runtime.engine.policy.hash == good_hash
    runtime.journal.flush()
    rows = runtime.journal.reader().query(outcomes=["error"], subject="policy")
    assert [r.reason for r in rows] == [f"invalid, the last good policy stays: {result.errors[0]}"]
    runtime.journal.close()


def test_learned_state_and_the_stage_survive_a_reload(tmp_path: Path) -> None:
    runtime, watcher, overlay = setup(tmp_path)
    rl = runtime.plugins.plugins["rl_sizing"].plugin
    times = sorted({c.time for candles in runtime.series.values() for c in candles})[:600]
    for now in times[:500]:
        runtime.step(now)
    learned = rl.export_state()
    stage = runtime.engine.stage
    overlay.write_text(TRADING + "stages:\n  initial: AUTONOMY\n", encoding="utf-8")
    assert watcher.check_now().ok
    runtime.step(times[500])
    assert runtime.engine.policy.get("stages", "initial") == "AUTONOMY"
    assert runtime.engine.stage is stage  # a policy edit never moves the stage
    assert rl.export_state()["values"] == learned["values"]
    runtime.journal.close()


def test_the_watcher_thread_sees_a_file_change(tmp_path: Path) -> None:
    _, watcher, overlay = setup(tmp_path)
    watcher.start()
    try:
        overlay.write_text(TRADING + "  profit_amplification:\n    min_r: 1.5\n", encoding="utf-8")
        assert watcher.changed.wait(timeout=20), "no change noticed within 20 s"
        policy, results = watcher.take()
        assert results and results[-1].ok
        assert (
            policy is not None and policy.get("subsystems", "profit_amplification", "min_r") == 1.5
        )
    finally:
        watcher.stop()
