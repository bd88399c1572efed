"""Hot reload: validated off the hot path, swapped between cycles, never replacing a good policy
with an invalid one, keeping learned state, never moving the stage."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from aios import app as application
from aios.data import bundled_data_dir
from aios.exchange.paper import PaperBroker
from aios.policy import Policy
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


# --- settling: what is loaded is the final content of a burst of writes ---------------------


class Editor:
    """Plays an editor's save against the watcher's settle pauses: each pause the watcher takes
    (instead of sleeping) lets the next write land, so a burst spans several pauses."""

    def __init__(self, path: Path, writes: list[str]) -> None:
        self.path = path
        self.writes = list(writes)
        self.pauses: list[float] = []

    def wait(self, seconds: float) -> bool:
        self.pauses.append(seconds)
        if self.writes:
            self.path.write_text(self.writes.pop(0), encoding="utf-8")
        return False  # not stopping


def light_setup(tmp_path: Path) -> tuple[PolicyWatcher, Path, list[bytes]]:
    """A watcher over default.yaml + an overlay, recording the overlay bytes of every load."""
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("baseline:\n  stake_pct: 1.0\n", encoding="utf-8")
    files = [DEFAULT, overlay]
    policy, plugins = application.load(files, env={})
    source = PolicySource(files, {}, plugins)
    loaded: list[bytes] = []
    original = source.load_snapshot

    def recording(snapshot: tuple[bytes | Exception, ...]) -> Policy:
        content = snapshot[1]
        loaded.append(content if isinstance(content, bytes) else b"<unreadable>")
        return original(snapshot)  # type: ignore[arg-type]

    source.load_snapshot = recording  # type: ignore[method-assign]
    watcher = PolicyWatcher(source, policy.hash)
    watcher.check_now()  # what is on disk now is loaded
    watcher.take()
    loaded.clear()
    return watcher, overlay, loaded


def test_a_burst_of_writes_gives_one_reload_of_the_final_content(tmp_path: Path) -> None:
    watcher, overlay, loaded = light_setup(tmp_path)
    final = "baseline:\n  stake_pct: 3.5\n"
    # truncated, then valid but unfinished, then the last write of the save
    overlay.write_text("baseline:\n  stake_", encoding="utf-8")
    editor = Editor(overlay, ["baseline:\n  stake_pct: 3", final])
    result = watcher.poll(editor.wait)
    assert result is not None and result.ok
    assert loaded == [final.encode()], "only the settled content is loaded"
    assert editor.pauses == [watcher.settle_s] * 3  # two writes landed, the third read agreed
    policy, results = watcher.take()
    assert policy is not None and policy.get("baseline", "stake_pct") == 3.5
    assert results == [result]


def test_no_change_means_no_pause_and_no_load(tmp_path: Path) -> None:
    watcher, overlay, loaded = light_setup(tmp_path)
    editor = Editor(overlay, [])
    assert watcher.poll(editor.wait) is None
    assert editor.pauses == [] and loaded == []


def test_a_save_that_restores_the_loaded_content_reloads_nothing(tmp_path: Path) -> None:
    watcher, overlay, loaded = light_setup(tmp_path)
    original = overlay.read_text(encoding="utf-8")
    overlay.write_text("baseline:\n  stake_pct: 9.0\n", encoding="utf-8")
    assert watcher.poll(Editor(overlay, [original]).wait) is None
    assert loaded == [] and watcher.take() == (None, [])


def test_stopping_while_settling_loads_nothing(tmp_path: Path) -> None:
    watcher, overlay, loaded = light_setup(tmp_path)
    overlay.write_text("baseline:\n  stake_pct: 2.0\n", encoding="utf-8")
    assert watcher.poll(lambda seconds: True) is None
    assert loaded == []


def test_an_invalid_settled_file_is_reported_once_and_the_good_policy_stays(
    tmp_path: Path,
) -> None:
    watcher, overlay, _loaded = light_setup(tmp_path)
    overlay.write_text("baseline:\n  stake_pct: lots\n", encoding="utf-8")
    result = watcher.poll(Editor(overlay, []).wait)
    assert result is not None and result.errors == (
        f"{overlay}:2:14: baseline.stake_pct: expected a number, found string 'lots'",
    )
    assert watcher.poll(Editor(overlay, []).wait) is None, "the same bad bytes: not again"
    policy, results = watcher.take()
    assert policy is None and results == [result]


def test_reloads_reusing_an_unchanged_file_match_a_fresh_load(tmp_path: Path) -> None:
    watcher, overlay, _loaded = light_setup(tmp_path)
    for stake in ("2.0", "3.0", "2.0"):
        text = f"baseline:\n  stake_pct: {stake}\nuniverse:\n  symbols: [LTC/BTC]\n"
        overlay.write_text(text, encoding="utf-8")
        assert watcher.poll(Editor(overlay, []).wait) is not None
        taken, _ = watcher.take()
        fresh, _plugins = application.load([DEFAULT, overlay], env={})
        assert taken is not None and taken.document == fresh.document
        assert taken.origins == fresh.origins and taken.hash == fresh.hash


def test_an_unexpected_error_while_loading_is_a_failed_reload_not_a_dead_watcher(
    tmp_path: Path,
) -> None:
    watcher, overlay, _loaded = light_setup(tmp_path)

    def broken(snapshot: object) -> Policy:
        raise RuntimeError("disk on fire")

    watcher.source.load_snapshot = broken  # type: ignore[method-assign,assignment]
    overlay.write_text("baseline:\n  stake_pct: 2.0\n", encoding="utf-8")
    result = watcher.poll(Editor(overlay, []).wait)
    assert result is not None and not result.ok
    assert result.errors == ("the policy could not be loaded: RuntimeError: disk on fire",)
    assert watcher.take() == (None, [result])


def test_a_watch_that_fails_is_reported_and_the_policy_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watcher, _overlay, _loaded = light_setup(tmp_path)

    def broken_watch(*directories: str, **options: object) -> object:
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr("watchfiles.watch", broken_watch)
    watcher.changed.clear()  # set by the set-up's own load
    watcher.start()
    try:
        assert watcher.changed.wait(timeout=20), "the failure was not reported"
        policy, results = watcher.take()
    finally:
        watcher.stop()
    assert policy is None  # nothing replaces the running policy
    [result] = results
    assert not result.ok
    assert result.errors == (
        "the policy watch stopped (OSError: [Errno 28] inotify watch limit reached): edits are "
        "not reloaded until aios restarts; the running policy stays",
    )
