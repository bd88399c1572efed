"""`aios run --exchange ccxt:binance` without `--dry-run`: real orders through ccxt's binance
class, against the fake Binance HTTP server on 127.0.0.1 (tests/fake_binance.py), with a kill -9
while an order's outcome is unknown and a restart that reconciles it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fake_binance import FakeBinance, Fault, serve  # tests/ is on sys.path (rootdir-relative)
from typer.testing import CliRunner

from aios.cli import app
from aios.data import bundled_data_dir
from aios.runtime import load_series
from aios.state import database_path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "policies" / "default.yaml"
SYMBOLS = ["ETH/BTC", "LTC/BTC"]
OVERLAY = """
baseline:
  min_confidence: 0.55
subsystems:
  signal_model:
    min_confidence: 0.55
universe:
  symbols: [ETH/BTC, LTC/BTC]
exchange:
  timeout_s: 1.0
"""
KEYS = {"AIOS_BINANCE_API_KEY": "test-key-3f9a71c2", "AIOS_BINANCE_SECRET": "test-secret-88d1e0"}


def environment(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_AI_", "AIOS_"))}
    return {**env, **KEYS, "AIOS_BINANCE_API_URL": url}


def live_args(state: Path, overlay: Path, polls: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "aios",
        "run",
        "--exchange",
        "ccxt:binance",
        "--policy",
        str(DEFAULT),
        "--policy",
        str(overlay),
        "--state-dir",
        str(state),
        "--poll-s",
        "1",
        "--max-polls",
        str(polls),
        "--no-watch",
        "--quiet",
    ]


def rows(state: Path, query: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(database_path(state), timeout=10)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


@pytest.fixture
def overlay(tmp_path: Path) -> Path:
    path = tmp_path / "live.yaml"
    path.write_text(OVERLAY, encoding="utf-8")
    return path


def test_live_orders_need_keys_from_the_environment(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["run", "--exchange", "ccxt:binance", "--state-dir", str(tmp_path)], env={}
    )
    assert result.exit_code == 1
    assert "need API keys: set AIOS_BINANCE_API_KEY and AIOS_BINANCE_SECRET" in result.output


def test_live_orders_are_refused_where_the_client_id_format_is_unknown(tmp_path: Path) -> None:
    env = {"AIOS_KRAKEN_API_KEY": "k", "AIOS_KRAKEN_SECRET": "s"}
    result = CliRunner().invoke(
        app, ["run", "--exchange", "ccxt:kraken", "--state-dir", str(tmp_path)], env=env
    )
    assert result.exit_code == 1
    assert "client order id format" in result.output and "--dry-run" in result.output


def test_live_orders_are_refused_on_bybit_where_an_outcome_cannot_be_settled(
    tmp_path: Path,
) -> None:
    env = {"AIOS_BYBIT_API_KEY": "k", "AIOS_BYBIT_SECRET": "s"}
    result = CliRunner().invoke(
        app, ["run", "--exchange", "ccxt:bybit", "--state-dir", str(tmp_path)], env=env
    )
    assert result.exit_code == 1
    assert "live orders on bybit are refused" in result.output
    assert "orderLinkId" in result.output and "--dry-run" in result.output
    assert not database_path(tmp_path).exists()  # refused before anything was recorded


def test_kill_9_with_an_order_in_flight_then_restart_reconciles_and_never_repeats_an_id(
    tmp_path: Path, overlay: Path
) -> None:
    series = load_series(bundled_data_dir(), SYMBOLS)
    # The first poll ends on a LONG signal of LTC/BTC; ETH/BTC goes LONG some 390 candles later.
    fake = FakeBinance(series, start=1382, step=40)
    state = tmp_path / "state"
    # The second order reaches the venue and executes, but its answer comes after the
    # client's timeout: the process is killed while the outcome is unknown to it.
    fake.inject("POST /api/v3/order", Fault("timeout", delay_s=30.0, after=1))
    with serve(fake) as url:
        first = subprocess.Popen(live_args(state, overlay, 60), env=environment(url))
        try:
            assert fake.executed_unanswered.wait(timeout=120), "no second order was placed"
            # While the run holds the venue store, an operator's decision is refused.
            ((in_flight,),) = rows(
                state, "SELECT client_id FROM venue_orders WHERE status = 'sending'"
            )
            busy = CliRunner().invoke(
                app,
                [
                    "venue",
                    "resolve",
                    str(in_flight),
                    "--as",
                    "never-placed",
                    "--reason",
                    "x",
                    "--state-dir",
                    str(state),
                ],
            )
            assert busy.exit_code == 1
            assert f"in use by a live run (aios run) (pid {first.pid}" in busy.output
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=60)
        assert first.returncode == -signal.SIGKILL
        # What the killed process left: one position, one order still `sending`.
        assert [s for (s,) in rows(state, "SELECT status FROM venue_orders ORDER BY rowid")] == [
            "filled",
            "sending",
        ]
        ((positions,),) = rows(state, "SELECT COUNT(*) FROM venue_positions")
        assert positions == 1
        orders_before = len(fake.orders)
        assert orders_before == 2  # the venue executed both
        # `aios status` shows the order whose outcome the killed run never learnt.
        status = CliRunner().invoke(app, ["status", "--format", "json", "--state-dir", str(state)])
        assert status.exit_code == 0, status.output
        (unknown,) = json.loads(status.output)["venue"]["binance"]["unknown_orders"]
        assert (unknown["client_id"], unknown["status"]) == (in_flight, "sending")
        assert unknown["venue_client_id"] in fake.client_ids and unknown["created_at"]

        # The restart meets a flaky venue too: 5xx, 429 and a malformed answer on candles.
        for kind in ("5xx", "429", "malformed"):  # the 2nd, 4th and 6th candle requests
            fake.inject("GET /api/v3/klines", Fault(kind, after=1))
        second = subprocess.run(
            live_args(state, overlay, 4),
            env=environment(url),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert second.returncode == 0, second.stderr
    reconciled = rows(
        state,
        "SELECT subject, reason FROM decisions WHERE run_id = 'run-2' AND hook = 'reconcile' ORDER BY id",
    )
    subjects = {subject.split(":")[0] for subject, _ in reconciled}
    assert subjects == {"order", "position"}, reconciled
    assert all(reason.startswith("adopted") for _, reason in reconciled), reconciled
    assert "reconcile order:" in second.stderr and "adopted" in second.stderr
    # The in-flight order is booked from the venue's record, never re-sent.
    assert [s for (s,) in rows(state, "SELECT status FROM venue_orders ORDER BY rowid")][:2] == [
        "filled",
        "filled",
    ]
    ((positions,),) = rows(state, "SELECT COUNT(*) FROM venue_positions")
    assert positions == 2
    assert len(fake.client_ids) == len(set(fake.client_ids)), fake.client_ids
    assert all(cid.startswith(fake.client_ids[0][:6]) for cid in fake.client_ids)
    assert all(len(cid) <= 36 for cid in fake.client_ids)
    for symptom in ("Service unavailable", "429 Too Many Requests", "not valid JSON"):
        assert symptom in second.stderr  # reported, and the run carried on
    # Keys never appear in what the run wrote.
    assert KEYS["AIOS_BINANCE_SECRET"] not in second.stderr
    dump = "\n".join(str(r) for r in rows(state, "SELECT reason, proposal FROM decisions"))
    assert KEYS["AIOS_BINANCE_API_KEY"] not in dump and KEYS["AIOS_BINANCE_SECRET"] not in dump


def test_a_short_signal_is_refused_on_a_spot_venue_with_a_journaled_reason(
    tmp_path: Path, overlay: Path
) -> None:
    series = load_series(bundled_data_dir(), SYMBOLS)
    fake = FakeBinance(series, start=309)  # the first live candle has an ETH/BTC SHORT signal
    state = tmp_path / "state"
    with serve(fake) as url:
        result = subprocess.run(
            live_args(state, overlay, 1),
            env=environment(url),
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr
    refused = rows(
        state,
        "SELECT subject, reason FROM decisions WHERE hook = 'broker' AND reason LIKE '%SHORT refused%'",
    )
    assert refused, "the SHORT entry is journaled as refused"
    assert "spot venue cannot sell what is not held" in refused[0][1]
    assert "POST /api/v3/order" not in fake.requests  # nothing was sent


def test_sigterm_stops_a_live_run_between_polls_with_exit_0_and_a_report(
    tmp_path: Path, overlay: Path
) -> None:
    series = load_series(bundled_data_dir(), SYMBOLS)
    fake = FakeBinance(series, start=1382, step=40)
    state = tmp_path / "state"
    report = tmp_path / "report.json"
    with serve(fake) as url:
        process = subprocess.Popen(
            [*live_args(state, overlay, 1000), "--poll-s", "30", "--json", str(report)],
            env=environment(url),
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 120
        while not fake.orders:  # the first live candle buys LTC/BTC
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)  # not the 30 s poll interval
    assert process.returncode == 0, stderr
    assert json.loads(report.read_text())["candles"] == 600  # the first poll (the warm-up)
    assert rows(state, "SELECT status FROM runs") == [("stopped",)]
    assert [s for (s,) in rows(state, "SELECT status FROM venue_orders")] == ["filled"]


def test_the_api_keys_appear_in_no_output_file_or_row_of_a_live_run(
    tmp_path: Path, overlay: Path
) -> None:
    """Keys come from the environment only; what a live run leaves (stdout, stderr, the JSON
    and HTML reports, every row of the state store and journal, `aios status`, `aios venue`)
    never holds them, also when the venue fails an order and a balance read."""
    series = load_series(bundled_data_dir(), SYMBOLS)
    fake = FakeBinance(series, start=1382, step=40)  # the first live candle buys LTC/BTC
    fake.inject("POST /api/v3/order", Fault("5xx"))
    fake.inject("GET /api/v3/account", Fault("malformed", after=1))
    state = tmp_path / "state"
    outputs = []
    with serve(fake) as url:
        env = environment(url)
        result = subprocess.run(
            [
                *live_args(state, overlay, 2),
                "--json",
                str(tmp_path / "report.json"),
                "--report",
                str(tmp_path / "report.html"),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        outputs += [result.stdout, result.stderr]
        for command in (["status", "--format", "json"], ["venue", "orders"]):
            shown = subprocess.run(
                [sys.executable, "-m", "aios", *command, "--state-dir", str(state)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            outputs += [shown.stdout, shown.stderr]
    assert result.returncode == 0, result.stderr
    assert fake.orders, "an order reached the venue: the authenticated path ran"
    assert (tmp_path / "report.json").exists() and (tmp_path / "report.html").exists()
    connection = sqlite3.connect(database_path(state))
    outputs += list(connection.iterdump())
    connection.close()
    outputs += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    for secret in KEYS.values():
        assert not [text for text in outputs if secret in text], secret
