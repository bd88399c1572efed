"""What `aios status` shows: read from the state store, for a finished or a running run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from aios.journal import OPERATOR_RUN_ID
from aios.stages import directives_in_force, health_states, run_rows_from, table_exists
from aios.state import database_path


class StatusError(Exception):
    """No state store, or one that cannot be read; the message says which and where."""


def _latest_run(connection: sqlite3.Connection) -> str | None:
    """The run to show: the one started last, unless another run journaled after it started
    (an older run resumed since: `aios run --resume` continues a run under its own id)."""
    newest = connection.execute("SELECT run_id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
    if newest is None:
        return None
    newest_id = str(newest[0])
    if not table_exists(connection, "decisions"):
        return newest_id
    last = connection.execute(
        "SELECT run_id, rowid FROM decisions WHERE run_id != ? ORDER BY rowid DESC LIMIT 1",
        (OPERATOR_RUN_ID,),
    ).fetchone()
    if last is None or last[0] == newest_id or last[1] <= run_rows_from(connection, newest_id):
        return newest_id
    known = connection.execute("SELECT 1 FROM runs WHERE run_id = ?", (last[0],)).fetchone()
    return str(last[0]) if known is not None else newest_id


def read_status(state_dir: Path | None) -> dict[str, Any]:
    path = database_path(state_dir)
    if not path.exists():
        raise StatusError(f"no state store at {path}: run `aios run` first, or pass --state-dir")
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        run = connection.execute(
            "SELECT run_id, status, stage, policy_hash, policy_sources, report FROM runs"
            " WHERE run_id = ?",
            (_latest_run(connection),),
        ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise StatusError(f"cannot read the state store {path}: {exc}") from None
    if run is None:
        raise StatusError(f"the state store {path} has no run yet")
    run_id, status, stage, policy_hash, sources, report = run
    if table_exists(connection, "stage_state"):
        current = connection.execute("SELECT stage FROM stage_state WHERE id = 1").fetchone()
        if current is not None:
            stage = current[0]  # the stage machine's, which may have moved since the run

    # The run's rows only, from where they start (the journal has no index on run_id).
    start = run_rows_from(connection, run_id)

    def last(query: str) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = connection.execute(query, (start, run_id)).fetchone()
        return row

    risk = last(
        "SELECT proposal, outcome FROM decisions WHERE rowid > ? AND run_id = ? AND hook = 'aios_coordinate' ORDER BY id DESC LIMIT 1"
    )
    risk_mode = "NORMAL"
    if risk is not None and risk[1] == "applied":
        risk_mode = json.loads(risk[0]).get("mode", "NORMAL")
    directives = directives_in_force(connection, run_id, start, proposed=False)
    reload_row = last(
        "SELECT time, reason FROM decisions WHERE rowid > ? AND run_id = ? AND hook = 'aios_policy_reloaded' ORDER BY id DESC LIMIT 1"
    )
    health = health_states(connection, run_id, start)
    names = {0: "OK", 1: "DEGRADED", 2: "CRITICAL"}
    books = (json.loads(report) or {}).get("books") if report else None
    if books is None:  # a run still going (or killed): the latest equity of each book
        # A replay writes equity with its cursor (every 256 candle times), a live run every
        # candle time: `as_of` says which candle time the figures are from, not "now".
        books = {}
        for book, equity, as_of, first in connection.execute(
            "SELECT e.book, e.equity, e.time, (SELECT equity FROM equity WHERE run_id = e.run_id AND book = e.book ORDER BY rowid LIMIT 1)"
            " FROM equity e WHERE e.run_id = ? AND e.rowid IN (SELECT MAX(rowid) FROM equity WHERE run_id = ? GROUP BY book)",
            (run_id, run_id),
        ):
            trades = connection.execute(
                "SELECT COUNT(DISTINCT position_id) FROM fills WHERE run_id = ? AND book = ? AND kind IN ('CLOSE', 'STOP_LOSS', 'TAKE_PROFIT', 'TRAILING_STOP')",
                (run_id, book),
            ).fetchone()[0]
            books[book] = {
                "trades": trades,
                "win_rate": None,
                "pnl_pct": 0.0 if not first else (equity - first) / first * 100.0,
                "max_drawdown_pct": None,
                "end_equity": equity,
                "as_of": as_of,
            }
    connection.close()
    return {
        "run_id": run_id,
        "status": status,
        "stage": stage,
        "policy_hash": policy_hash,
        "policy_sources": json.loads(sources),
        "risk_mode": risk_mode,
        "directives": directives,
        "last_reload": None if reload_row is None else f"{reload_row[0]}: {reload_row[1]}",
        "health": {
            k: names.get(v, str(v)) if isinstance(v, int) else "?" if v is None else str(v)
            for k, v in health.items()
        },
        "books": books or None,
    }
