"""`aios run` over the bundled candles on the paper exchange, `aios status`, determinism."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aios import app as application
from aios.cli import app
from aios.data import bundled_data_dir
from aios.exchange.paper import PaperBroker
from aios.runtime import Runtime, load_series
from aios.state import database_path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "policies" / "default.yaml"
CANDLES = 420
LOW_THRESHOLD = (
    "baseline:\n  min_confidence: 0.55\nsubsystems:\n  signal_model:\n    min_confidence: 0.55\n"
)
runner = CliRunner()


def overlay(tmp_path: Path, text: str = LOW_THRESHOLD) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def replay(state: Path, policy_files: list[Path]) -> Runtime:
    policy, plugins = application.load(policy_files, env={})
    series = load_series(bundled_data_dir(), policy.get("universe", "symbols"))
    runtime = Runtime(policy, plugins, series, state, PaperBroker.from_policy)
    runtime.run(limit=CANDLES)
    return runtime


def dump(state: Path, table: str, columns: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(database_path(state))
    try:
        return connection.execute(f"SELECT {columns} FROM {table} ORDER BY rowid").fetchall()
    finally:
        connection.close()


def test_replay_is_deterministic_byte_for_byte(tmp_path: Path) -> None:
    files = [DEFAULT, overlay(tmp_path)]
    replay(tmp_path / "a", files)
    replay(tmp_path / "b", files)
    journal_columns = "run_id, cycle, time, subsystem, hook, subject, symbol, trace, proposal, mode, outcome, applied, reason, policy_hash"
    first_journal = dump(tmp_path / "a", "decisions", journal_columns)
    assert first_journal, "the run journals decisions"
    assert first_journal == dump(tmp_path / "b", "decisions", journal_columns)
    fill_columns = "run_id, book, order_id, position_id, symbol, side, kind, time, price, quantity, fee, reason"
    first_fills = dump(tmp_path / "a", "fills", fill_columns)
    assert first_fills, "the run trades"
    assert first_fills == dump(tmp_path / "b", "fills", fill_columns)


def test_observation_keeps_the_actual_book_on_the_baseline(tmp_path: Path) -> None:
    runtime = replay(tmp_path / "s", [DEFAULT, overlay(tmp_path)])
    rows = dump(tmp_path / "s", "decisions", "outcome, subsystem")
    applied = {subsystem for outcome, subsystem in rows if outcome == "applied"}
    assert applied <= {"safety"}, applied  # only the safety floor applies in OBSERVATION
    fills = dump(tmp_path / "s", "fills", "book, kind")
    assert {book for book, _ in fills} == {"actual", "shadow"}
    assert runtime.stage.value == "OBSERVATION"


def test_cli_run_writes_json_and_html_and_status_reads_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    report_json = tmp_path / "report.json"
    report_html = tmp_path / "report.html"
    result = runner.invoke(
        app,
        [
            "run",
            "-p",
            str(DEFAULT),
            "-p",
            str(overlay(tmp_path)),
            "--limit",
            str(CANDLES),
            "--state-dir",
            str(state),
            "--json",
            str(report_json),
            "--report",
            str(report_html),
        ],
        env={},
    )
    assert result.exit_code == 0, result.output
    assert "actual vs shadow" in result.output
    report = json.loads(report_json.read_text())
    assert report["candles"] == CANDLES and report["stage"] == "OBSERVATION"
    assert set(report["books"]) == {"actual", "shadow"}
    for book in report["books"].values():
        assert book["end_equity"] == pytest.approx(book["start_equity"] + book["pnl_quote"])
    assert len(report["equity_curve"]["actual"]) == CANDLES
    page = report_html.read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "polyline" in page
    status = runner.invoke(app, ["status", "--state-dir", str(state), "--format", "json"])
    assert status.exit_code == 0, status.output
    current = json.loads(status.output)
    assert (
        current["run_id"] == "run-1"
        and current["status"] == "finished"
        and current["stage"] == "OBSERVATION"
    )
    assert current["books"]["shadow"]["trades"] == report["books"]["shadow"]["trades"]
    text = runner.invoke(app, ["status", "--state-dir", str(state)])
    assert text.exit_code == 0 and "stage OBSERVATION" in text.output


def test_runs_accumulate_in_one_state_store(tmp_path: Path) -> None:
    args = ["run", "-q", "-p", str(DEFAULT), "--limit", "30", "--state-dir", str(tmp_path)]
    assert runner.invoke(app, args, env={}).exit_code == 0
    assert runner.invoke(app, args, env={}).exit_code == 0
    assert [r[0] for r in dump(tmp_path, "runs", "run_id")] == ["run-1", "run-2"]


def test_invalid_policy_stops_before_anything_is_recorded(tmp_path: Path) -> None:
    bad = overlay(tmp_path, "baseline:\n  tp_pct: -1\n")
    result = runner.invoke(
        app, ["run", "-p", str(DEFAULT), "-p", str(bad), "--state-dir", str(tmp_path / "s")], env={}
    )
    assert result.exit_code == 1
    assert "baseline.tp_pct: expected a number > 0" in result.output
    assert not (tmp_path / "s").exists()


def test_bad_candle_file_is_a_located_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "ETH_BTC-5m.csv").write_text(
        "timestamp_ms,open,high,low,close,volume\n1515560100000,1,1,1,1,1\n1515560400000,1,x,1,1,1\n"
    )
    result = runner.invoke(
        app, ["run", "--data-dir", str(data), "--state-dir", str(tmp_path / "s")], env={}
    )
    assert result.exit_code == 1
    assert f"{data / 'ETH_BTC-5m.csv'}:3: expected 6 numeric columns" in result.output


def test_status_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no state store at" in result.output


def test_status_of_a_run_that_did_not_finish(tmp_path: Path) -> None:
    # a run killed mid-way leaves status 'running' and no report: status reads the equity rows
    policy, plugins = application.load([DEFAULT], env={})
    series = load_series(bundled_data_dir(), policy.get("universe", "symbols"))
    runtime = Runtime(policy, plugins, series, tmp_path, PaperBroker.from_policy)
    times = sorted({c.time for candles in series.values() for c in candles})[:50]
    runtime.begin(times[0])
    for now in times:
        runtime.advance_to(now)
    runtime.journal.flush()
    result = runner.invoke(app, ["status", "--state-dir", str(tmp_path), "--format", "json"])
    assert result.exit_code == 0, result.output
    current = json.loads(result.stdout)
    assert current["status"] == "running"
    assert current["books"]["actual"]["end_equity"] == pytest.approx(1.0)
    assert current["books"]["actual"]["win_rate"] is None
    runtime.end("stopped")


def test_status_of_a_running_replay_says_which_candle_time_its_equity_is_from(
    tmp_path: Path,
) -> None:
    """A replay writes equity with its cursor, not every candle time: status, asked mid-run,
    names the candle time of the figures instead of passing them off as the latest."""
    policy, plugins = application.load([DEFAULT], env={})
    series = load_series(bundled_data_dir(), policy.get("universe", "symbols"))
    runtime = Runtime(
        policy, plugins, series, tmp_path, PaperBroker.from_policy, checkpoint_every=8
    )
    times = sorted({c.time for candles in series.values() for c in candles})
    seen: dict[str, Any] = {}

    def ask_status(done: int, total: int) -> None:
        if done == 13:  # 8 candle times covered by the cursor, 5 stepped after it
            args = ["status", "--state-dir", str(tmp_path)]
            seen["json"] = json.loads(runner.invoke(app, [*args, "--format", "json"]).output)
            seen["text"] = runner.invoke(app, args).output

    runtime.run(limit=20, progress=ask_status)
    as_of = seen["json"]["books"]["actual"]["as_of"]
    assert as_of == times[7].isoformat()  # the cursor's candle time, not the 13th
    assert f"as of candle time {as_of}" in seen["text"]


@pytest.mark.parametrize("flag", ["--json", "--report"])
def test_a_report_path_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: Path, flag: str
) -> None:
    target = tmp_path / "no-such-dir" / "out.file"
    result = runner.invoke(
        app,
        [
            "run",
            "--limit",
            "5",
            "-q",
            "--no-watch",
            "--state-dir",
            str(tmp_path),
            flag,
            str(target),
        ],
    )
    assert result.exit_code == 2, result.output
    assert f"{flag} {target}: no such directory" in result.output
    assert "Traceback" not in result.output
    assert not database_path(tmp_path).exists()  # refused before anything started


def test_a_report_file_that_cannot_be_written_after_the_run_keeps_the_report_on_stdout(
    tmp_path: Path,
) -> None:
    # /proc exists (the check before the run passes) but no file can be created in it, root or not
    target = Path("/proc/aios-report-test.json")
    result = runner.invoke(
        app,
        [
            "run",
            "--limit",
            "5",
            "-q",
            "--no-watch",
            "--state-dir",
            str(tmp_path),
            "--json",
            str(target),
        ],
    )
    assert result.exit_code == 1, result.output
    assert f"cannot write {target}" in result.output
    assert "Traceback" not in result.output
    report = json.loads(result.output[result.output.index("{") : result.output.rindex("}") + 1])
    assert report["candles"] == 5  # the whole report reached stdout instead


@pytest.mark.parametrize(
    ("args", "content"),
    [
        (["--limit", "3"], b"x"),  # shorter than SQLite's header
        (["--resume"], b"x"),
        (["--resume"], b"not a database, " * 16),
    ],
)
def test_a_state_file_that_is_not_a_database_is_refused_and_left_untouched(
    tmp_path: Path, args: list[str], content: bytes
) -> None:
    database_path(tmp_path).write_bytes(content)
    result = runner.invoke(app, ["run", *args, "-q", "--no-watch", "--state-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "not an SQLite database" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert database_path(tmp_path).read_bytes() == content
