"""A fingerprint of what an enforced replay records: run it before and after an optimisation
that must not change behaviour, and compare the two lines.

    .venv/bin/python bench/fingerprint.py [CANDLE_TIMES]        # default 2000

The replay is the bench's (`bench/run.py`: the ten shared BTC-quoted files, or the bundled data
when they are absent; every subsystem ENFORCED at AUTONOMY). The fingerprint hashes every
journal row, fill and equity sample in order, without the columns that differ between runs of
the same code (row ids and the run id). Add `--breakdown` to see the journal's rows by
subsystem, hook and outcome.
"""

from __future__ import annotations

import argparse
import hashlib
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aios.app import load
from aios.data import load_directory
from aios.exchange.paper import PaperBroker
from aios.model import Stage
from aios.runtime import Runtime, database_path
from bench.run import POLICIES, Settings, replay_overlay

VARYING_COLUMNS = frozenset({"id", "run_id"})


def fingerprint(database: Path) -> tuple[int, str]:
    """(rows hashed, hex digest) of the decisions, fills and equity tables, in rowid order."""
    digest = hashlib.sha256()
    rows = 0
    with sqlite3.connect(database) as connection:
        for table in ("decisions", "fills", "equity"):
            columns = [
                name
                for _, name, *_ in connection.execute(f"PRAGMA table_info({table})")
                if name not in VARYING_COLUMNS
            ]
            for row in connection.execute(
                f"SELECT {', '.join(columns)} FROM {table} ORDER BY rowid"
            ):
                digest.update(repr(row).encode())
                rows += 1
    return rows, digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candle_times", nargs="?", type=int, default=2000)
    parser.add_argument("--breakdown", action="store_true")
    args = parser.parse_args()
    directory, symbols = Settings(quick=False).replay_data
    with tempfile.TemporaryDirectory(prefix="aios-fingerprint-") as tmp:
        overlay = replay_overlay(Path(tmp), symbols, baseline=False)
        policy, plugins = load([POLICIES / "default.yaml", overlay], env={})
        series = load_directory(directory, list(symbols))
        state = Path(tmp) / "state"
        runtime = Runtime(
            policy, plugins, series, state, PaperBroker.from_policy, stage=Stage.AUTONOMY
        )
        runtime.run(limit=args.candle_times)
        database = database_path(Path(tmp) / "state")
        rows, digest = fingerprint(database)
        print(f"{args.candle_times} candle times of {directory}: {rows} rows, {digest}")
        if args.breakdown:
            with sqlite3.connect(database) as connection:
                for row in connection.execute(
                    "SELECT subsystem, hook, outcome, COUNT(*) FROM decisions"
                    " GROUP BY 1, 2, 3 ORDER BY 4 DESC"
                ):
                    print("  ", *row)


if __name__ == "__main__":
    main()
