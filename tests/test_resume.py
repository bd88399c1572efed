"""Crash-safe resume and graceful stops, in subprocesses.

A replay killed with SIGKILL (between candle times, or in the middle of one, right after an
order was journaled and before the broker filled it) and then `aios run --resume`d must end with
exactly the journal, fills, equity samples and report of an uninterrupted run on the same data,
policy and seed. SIGTERM ends a run after the current candle time with exit 0 and a report.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aios.state import database_path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "policies" / "default.yaml"
LIMIT = 600
OVERLAY = (
    "baseline:\n  min_confidence: 0.55\nsubsystems:\n  signal_model:\n    min_confidence: 0.55\n"
)
JOURNAL = "run_id, cycle, time, subsystem, hook, subject, symbol, trace, proposal, mode, outcome, applied, reason, policy_hash"
FILLS = (
    "run_id, book, order_id, position_id, symbol, side, kind, time, price, quantity, fee, reason"
)
EQUITY = "run_id, book, time, equity, exposure"
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("QT_AI_", "AIOS_"))}


def aios(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "aios", *(str(a) for a in args)]


def run_args(state: Path, overlay: Path, *extra: str | Path) -> list[str]:
    return aios(
        "run",
        "--policy",
        DEFAULT,
        "--policy",
        overlay,
        "--limit",
        str(LIMIT),
        "--state-dir",
        state,
        "--no-watch",
        "--quiet",
        *extra,
    )


def rows(state: Path, query: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(database_path(state), timeout=10)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def committed_steps(state: Path) -> int:
    if not database_path(state).exists():
        return 0
    try:
        found = rows(state, "SELECT steps FROM run_progress")
    except sqlite3.OperationalError:  # tables not created yet
        return 0
    return int(found[0][0]) if found else 0


#: `aios run` in a subprocess that sends itself a signal right after it has stepped a given
#: number of candle times: the signal arrives at a known point however fast the replay runs
#: (polling the store from outside could see the run finish first). The signal comes from the
#: process itself, between two candle times, to the CLI's own handlers.
SIGNAL_AFTER = """
import os, signal, sys
from aios import cli, runtime

after, name, *argv = sys.argv[1:]
advance_to = runtime.Runtime.advance_to

def advance_then_signal(self, now):
    advance_to(self, now)
    if len(self._stepped) == int(after):
        os.kill(os.getpid(), getattr(signal, name))

runtime.Runtime.advance_to = advance_then_signal
sys.argv = ["aios", *argv]
cli.main()
"""
#: Where the signal tests stop a run: past the first committed cursor (256), before the
#: second, so that candle times recorded after the cursor exist and must be redone.
SIGNAL_AT = 300


def signalled_run(
    state: Path, overlay: Path, name: str, *extra: str | Path, **popen: object
) -> subprocess.Popen[bytes]:
    """`aios run` (as `run_args`) that receives signal `name` after `SIGNAL_AT` candle times."""
    argv = [
        sys.executable,
        "-c",
        SIGNAL_AFTER,
        str(SIGNAL_AT),
        name,
        *run_args(state, overlay, *extra)[3:],
    ]
    return subprocess.Popen(argv, env=ENV, **popen)  # type: ignore[call-overload, no-any-return]


def snapshot(state: Path) -> dict[str, list[tuple[object, ...]]]:
    return {
        "journal": rows(state, f"SELECT {JOURNAL} FROM decisions ORDER BY time, id"),
        "fills": rows(state, f"SELECT {FILLS} FROM fills ORDER BY id"),
        "equity": rows(state, f"SELECT {EQUITY} FROM equity ORDER BY rowid"),
    }


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "overlay.yaml"
    path.write_text(OVERLAY, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def uninterrupted(
    tmp_path_factory: pytest.TempPathFactory, overlay: Path
) -> Iterator[tuple[dict[str, list[tuple[object, ...]]], dict[str, object]]]:
    root = tmp_path_factory.mktemp("uninterrupted")
    report = root / "report.json"
    subprocess.run(
        run_args(root / "state", overlay, "--json", report), check=True, env=ENV, timeout=300
    )
    expected = snapshot(root / "state")
    assert expected["fills"], "the reference run trades"
    yield expected, json.loads(report.read_text())


def resume(state: Path, report: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        aios("run", "--resume", "--state-dir", state, "--no-watch", "--quiet", "--json", report),
        env=ENV,
        timeout=300,
        capture_output=True,
        text=True,
    )


def assert_same_as_uninterrupted(
    state: Path,
    report: Path,
    uninterrupted: tuple[dict[str, list[tuple[object, ...]]], dict[str, object]],
) -> None:
    expected, expected_report = uninterrupted
    got = snapshot(state)
    for table in ("journal", "fills", "equity"):
        assert got[table] == expected[table], f"{table} differs from the uninterrupted run"
    assert json.loads(report.read_text()) == expected_report
    assert rows(state, "SELECT status FROM runs") == [("finished",)]


def test_kill_9_between_candle_times_then_resume_matches_an_uninterrupted_run(
    tmp_path: Path,
    overlay: Path,
    uninterrupted: tuple[dict[str, list[tuple[object, ...]]], dict[str, object]],
) -> None:
    state = tmp_path / "state"
    process = signalled_run(state, overlay, "SIGKILL")
    assert process.wait(timeout=300) == -signal.SIGKILL
    assert rows(state, "SELECT status FROM runs") == [("running",)]  # killed, not finished
    killed_at = committed_steps(state)
    assert killed_at == 256  # the last cursor before the kill; 44 candle times after it are redone
    stepped = int(str(rows(state, "SELECT COUNT(DISTINCT time) FROM equity")[0][0]))
    assert killed_at <= stepped <= SIGNAL_AT

    report = tmp_path / "report.json"
    resumed = resume(state, report)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_as_uninterrupted(state, report, uninterrupted)
    ((redriven,),) = rows(state, "SELECT redriven_steps FROM run_resumes")
    assert redriven == killed_at


KILL_ON_ORDER = """
import os, signal, sys
from pathlib import Path
from aios import app
from aios.exchange.paper import PaperBroker
from aios.runtime import Runtime, load_series

default, overlay, data, state, limit, kill_at = sys.argv[1:]
files = [Path(default), Path(overlay)]
policy, plugins = app.load(files, env={})
submitted = 0

class KillingBroker(PaperBroker):
    def submit(self, order, now, price):
        global submitted
        submitted += 1
        if submitted == int(kill_at):  # the engine journaled this order and flushed: act, die
            os.kill(os.getpid(), signal.SIGKILL)
        return super().submit(order, now, price)

spec = {"kind": "replay", "data_dir": data, "limit": int(limit),
        "policy_files": [str(f.resolve()) for f in files]}
runtime = Runtime(policy, plugins, load_series(Path(data), policy.get("universe", "symbols")),
                  Path(state), lambda p: KillingBroker.from_policy(p), spec=spec)
runtime.run(int(limit))
"""


def test_kill_9_after_an_order_was_journaled_then_resume_places_it_once(
    tmp_path: Path,
    overlay: Path,
    uninterrupted: tuple[dict[str, list[tuple[object, ...]]], dict[str, object]],
) -> None:
    from aios.data import bundled_data_dir

    state = tmp_path / "state"
    expected_fills = uninterrupted[0]["fills"]
    kill_at = max(2, len(expected_fills) // 3)
    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILL_ON_ORDER,
            str(DEFAULT),
            str(overlay),
            str(bundled_data_dir().resolve()),
            str(state),
            str(LIMIT),
            str(kill_at),
        ],
        env=ENV,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL
    # The order being acted on when the process died was journaled (flushed before acting)
    # and has no fill recorded yet.
    journaled = {
        subject.removeprefix("order:")
        for (subject,) in rows(state, "SELECT subject FROM decisions WHERE subject LIKE 'order:%'")
    }
    filled = {order_id for (order_id,) in rows(state, "SELECT order_id FROM fills")}
    expected_counts: dict[object, int] = {}
    for fill in expected_fills:
        expected_counts[fill[2]] = expected_counts.get(fill[2], 0) + 1
    in_flight = (journaled - filled) & set(expected_counts)
    assert in_flight, "the kill happened between journaling an order and its fill"

    report = tmp_path / "report.json"
    resumed = resume(state, report)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_as_uninterrupted(state, report, uninterrupted)
    for order_id in in_flight:  # filled once after the resume, as in the uninterrupted run
        ((count,),) = rows(state, f"SELECT COUNT(*) FROM fills WHERE order_id = '{order_id}'")
        assert count == expected_counts[order_id]


def test_sigterm_finishes_the_cycle_writes_the_report_and_exits_0_then_resumes(
    tmp_path: Path,
    overlay: Path,
    uninterrupted: tuple[dict[str, list[tuple[object, ...]]], dict[str, object]],
) -> None:
    state = tmp_path / "state"
    stopped_report = tmp_path / "stopped.json"
    process = signalled_run(
        state, overlay, "SIGTERM", "--json", stopped_report, stderr=subprocess.PIPE
    )
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert b"aios run --resume" in stderr
    stopped = json.loads(stopped_report.read_text())
    assert stopped["candles"] == SIGNAL_AT  # the candle time under way when it came was finished
    assert rows(state, "SELECT status FROM runs") == [("stopped",)]
    # Every stepped candle time is committed: equity samples, cursor and report agree.
    assert committed_steps(state) == stopped["candles"]
    assert rows(state, "SELECT COUNT(DISTINCT time) FROM equity") == [(stopped["candles"],)]

    report = tmp_path / "report.json"
    resumed = resume(state, report)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_as_uninterrupted(state, report, uninterrupted)


def test_sigint_stops_the_same_way(tmp_path: Path, overlay: Path) -> None:
    state = tmp_path / "state"
    process = signalled_run(state, overlay, "SIGINT", stderr=subprocess.PIPE)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert rows(state, "SELECT status FROM runs") == [("stopped",)]
    assert committed_steps(state) == SIGNAL_AT
    assert rows(state, "SELECT report IS NOT NULL FROM runs") == [(1,)]


# --- refusals, in process ----------------------------------------------------------------------


def stopped_run(state: Path, data: Path, overlay: Path, steps: int) -> None:
    """A replay stopped (as by SIGTERM) after `steps` candle times."""
    from aios import app as application
    from aios.exchange.paper import PaperBroker
    from aios.runtime import Runtime, load_series

    files = [DEFAULT, overlay]
    policy, plugins = application.load(files, env={})
    spec = {
        "kind": "replay",
        "data_dir": str(data),
        "limit": LIMIT,
        "policy_files": [str(f) for f in files],
    }
    series = load_series(data, policy.get("universe", "symbols"))
    runtime = Runtime(policy, plugins, series, state, PaperBroker.from_policy, spec=spec)

    def progress(done: int, total: int) -> None:
        if done == steps:
            runtime.stop.set()

    runtime.run(LIMIT, progress)


def test_resume_refuses_a_run_whose_data_changed_and_changes_nothing(
    tmp_path: Path, overlay: Path
) -> None:
    import shutil

    from typer.testing import CliRunner

    from aios.cli import app
    from aios.data import bundled_data_dir

    data = tmp_path / "data"
    shutil.copytree(bundled_data_dir(), data)
    state = tmp_path / "state"
    stopped_run(state, data, overlay, 450)
    before = snapshot(state)
    assert before["fills"], "the prefix traded"
    for csv in data.glob("*.csv"):  # every price after the header moves by a hair
        lines = csv.read_text().splitlines()
        edited = [lines[0]]
        for line in lines[1:]:
            cells = line.split(",")
            cells[1:5] = [repr(float(cell) * 1.001) for cell in cells[1:5]]
            edited.append(",".join(cells))
        csv.write_text("\n".join(edited) + "\n")

    result = CliRunner().invoke(app, ["run", "--resume", "--state-dir", str(state), "--quiet"])
    assert result.exit_code == 1
    assert "diverged" in result.output or "changed" in result.output, result.output
    assert "Traceback" not in result.output
    assert snapshot(state) == before
    assert rows(state, "SELECT status FROM runs") == [("stopped",)]
    assert rows(state, "SELECT COUNT(*) FROM run_resumes") == [(0,)]


def test_resume_refuses_finished_runs_and_run_options(tmp_path: Path, overlay: Path) -> None:
    from typer.testing import CliRunner

    from aios.cli import app

    state = tmp_path / "state"
    cli = CliRunner()
    nothing = cli.invoke(app, ["run", "--resume", "--state-dir", str(state)])
    assert nothing.exit_code == 1
    assert "nothing to resume" in nothing.output
    done = cli.invoke(
        app,
        ["run", "-p", str(DEFAULT), "--limit", "5", "--state-dir", str(state), "-q", "--no-watch"],
    )
    assert done.exit_code == 0, done.output
    finished = cli.invoke(app, ["run", "--resume", "--state-dir", str(state)])
    assert finished.exit_code == 1
    assert "run-1 is finished" in finished.output
    mixed = cli.invoke(app, ["run", "--resume", "--limit", "3", "--state-dir", str(state)])
    assert mixed.exit_code == 2
    assert "drop --limit" in mixed.output


class OneReload:
    """A stand-in for the policy watcher: hands over `policy` at the `at`-th candle time."""

    def __init__(self, policy: object, at: int) -> None:
        self.policy, self.at, self.calls = policy, at, 0

    def take(self) -> tuple[object, list[object]]:
        self.calls += 1
        return (self.policy if self.calls == self.at else None), []

    def stop(self) -> None:
        return None


def test_a_policy_reloaded_before_the_crash_is_reloaded_at_the_same_time_on_resume(
    tmp_path: Path, overlay: Path
) -> None:
    from aios import app as application
    from aios.data import bundled_data_dir
    from aios.exchange.paper import PaperBroker
    from aios.runtime import Runtime, Store, load_recorded, load_series

    blacklist = tmp_path / "blacklist.yaml"
    blacklist.write_text(OVERLAY + "  universe_os:\n    blacklist: [LTC/BTC]\n", encoding="utf-8")
    files = [DEFAULT, overlay]
    data = bundled_data_dir()
    steps, reload_at, stop_at = 300, 120, 200

    def fresh(state: Path) -> Runtime:
        policy, plugins = application.load(files, env={})
        reloaded, _ = application.load([DEFAULT, blacklist], env={})
        series = load_series(data, policy.get("universe", "symbols"))
        spec = {"kind": "replay", "data_dir": str(data), "limit": steps, "policy_files": []}
        runtime = Runtime(policy, plugins, series, state, PaperBroker.from_policy, spec=spec)
        runtime.watcher = OneReload(reloaded, reload_at)  # type: ignore[assignment]
        return runtime

    fresh(tmp_path / "a").run(steps)

    stopped = fresh(tmp_path / "b")
    stopped.run(steps, lambda done, total: stopped.stop.set() if done == stop_at else None)
    store = Store(database_path(tmp_path / "b"))
    point = store.resume_point()
    store.close()
    assert len(point.policies) == 2  # the start policy and the reload
    policy, plugins, scheduled = load_recorded(point)
    series = load_series(data, policy.get("universe", "symbols"))
    Runtime(
        policy,
        plugins,
        series,
        tmp_path / "b",
        PaperBroker.from_policy,
        spec=point.spec,
        resume=point,
        scheduled_policies=scheduled,
    ).run(steps)
    assert snapshot(tmp_path / "b") == snapshot(tmp_path / "a")
    reloads = rows(
        tmp_path / "b", "SELECT COUNT(*) FROM decisions WHERE hook = 'aios_policy_reloaded'"
    )
    assert reloads == [(1,)]


def test_a_new_run_marks_a_killed_one_and_it_can_still_be_told_apart(tmp_path: Path) -> None:
    from aios.runtime import Store

    store = Store(database_path(tmp_path))
    store.connection.execute(
        "INSERT INTO runs (run_id, started_at, policy_hash, policy_sources, stage, status, pid)"
        " VALUES ('run-1', 'x', 'h', '[]', 'OBSERVATION', 'running', 2147480000)"
    )  # a pid no process has
    from aios import app as application

    policy, _ = application.load([DEFAULT], env={})
    from aios.model import Stage

    store.start("run-2", datetime.now(UTC), policy, Stage.OBSERVATION, {"kind": "replay"})
    assert store.connection.execute(
        "SELECT run_id, status FROM runs ORDER BY rowid"
    ).fetchall() == [
        ("run-1", "killed"),
        ("run-2", "running"),
    ]
    store.close()


def test_an_automatic_demotion_in_the_prefix_is_followed_on_resume_not_repeated(
    tmp_path: Path,
) -> None:
    """Started in AUTONOMY, the first candle's CRITICAL risk mode demotes to ADVISORY; the
    re-drive must run at ADVISORY from then on without a second move in the stage history."""
    from aios import app as application
    from aios.data import bundled_data_dir
    from aios.exchange.paper import PaperBroker
    from aios.runtime import Runtime, Store, load_recorded, load_series
    from aios.stages import StageStore

    autonomy = tmp_path / "autonomy.yaml"
    autonomy.write_text(OVERLAY + "stages:\n  initial: AUTONOMY\n", encoding="utf-8")
    files = [DEFAULT, autonomy]
    data = bundled_data_dir()
    steps = 300

    def fresh(state: Path) -> Runtime:
        policy, plugins = application.load(files, env={})
        series = load_series(data, policy.get("universe", "symbols"))
        spec = {"kind": "replay", "data_dir": str(data), "limit": steps, "policy_files": []}
        return Runtime(policy, plugins, series, state, PaperBroker.from_policy, spec=spec)

    fresh(tmp_path / "a").run(steps)
    stopped = fresh(tmp_path / "b")
    stopped.run(steps, lambda done, total: stopped.stop.set() if done == 150 else None)

    store = Store(database_path(tmp_path / "b"))
    point = store.resume_point()
    store.close()
    assert point.stage.value == "AUTONOMY"  # the stage the run started at
    policy, plugins, scheduled = load_recorded(point)
    series = load_series(data, policy.get("universe", "symbols"))
    resumed = Runtime(
        policy,
        plugins,
        series,
        tmp_path / "b",
        PaperBroker.from_policy,
        spec=point.spec,
        resume=point,
        scheduled_policies=scheduled,
    )
    resumed.run(steps)
    assert resumed.stage.value == "ADVISORY"
    assert snapshot(tmp_path / "b") == snapshot(tmp_path / "a")

    def moves(state: Path) -> list[tuple[object, ...]]:
        history = StageStore(database_path(state), create=False)
        try:
            return [(h["from"], h["to"], h["automatic"]) for h in history.history()]
        finally:
            history.close()

    assert moves(tmp_path / "b") == moves(tmp_path / "a")
    assert [m for m in moves(tmp_path / "b") if m[2]] == [("AUTONOMY", "ADVISORY", True)]


@pytest.mark.parametrize(
    ("status", "pid", "spec", "message"),
    [
        ("running", "parent", {"kind": "replay"}, "is still running in process"),
        (
            "stopped",
            None,
            {"kind": "live", "exchange": "ccxt:binance"},
            "only replays can be resumed",
        ),
        ("stopped", None, None, "legacy run"),
    ],
)
def test_resume_refuses_live_legacy_and_running_runs(
    tmp_path: Path, status: str, pid: str | None, spec: dict[str, str] | None, message: str
) -> None:
    from aios.runtime import ResumeError, Store

    store = Store(database_path(tmp_path))
    store.connection.execute(
        "INSERT INTO runs (run_id, started_at, policy_hash, policy_sources, stage, status, spec, pid)"
        " VALUES ('run-1', 'x', 'h', '[]', 'OBSERVATION', ?, ?, ?)",
        (status, None if spec is None else json.dumps(spec), os.getppid() if pid else None),
    )
    with pytest.raises(ResumeError, match=message):
        store.resume_point()
    store.close()
