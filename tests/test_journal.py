"""The decision journal: batched, durable before acting, readable by another process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aios.journal import Decision, Journal, JournalError, JournalReader, to_jsonable
from aios.model import EntryVerdict, Side
from aios.testing import T0


def decision(index: int, **changes: object) -> Decision:
    fields: dict[str, object] = {
        "run_id": "r",
        "cycle": index,
        "time": T0,
        "subsystem": "portfolio_balancer",
        "hook": "aios_filter_entry",
        "subject": f"signal:s{index}",
        "proposal": EntryVerdict(False, "cap"),
        "mode": "ENFORCED",
        "outcome": "applied",
        "applied": True,
        "reason": "blocks: cap",
        "policy_hash": "h" * 64,
        "symbol": "ETH/BTC",
        "trace": f"s{index}",
    }
    fields.update(changes)
    return Decision(**fields)  # type: ignore[arg-type]


def test_rows_round_trip_with_their_proposal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        journal.record(decision(1))
    [row] = JournalReader.open(path).query()
    assert row.proposal == {"allow": False, "reason": "cap"}
    assert (row.subsystem, row.outcome, row.applied, row.trace, row.time) == (
        "portfolio_balancer",
        "applied",
        True,
        "s1",
        T0.isoformat(),
    )


def test_flush_makes_rows_visible_to_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    journal = Journal(path, batch_size=10_000)
    for index in range(250):
        journal.record(decision(index))
    journal.flush()
    assert JournalReader.open(path).count() == 250
    journal.close()


def test_rows_flushed_before_a_crash_survive_it(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    script = textwrap.dedent(
        f"""
        import os
        from tests.test_journal import decision
        from aios.journal import Journal
        journal = Journal({str(path)!r}, batch_size=10_000)
        for index in range(100):
            journal.record(decision(index))
        journal.flush()          # the engine flushes before it acts
        for index in range(100, 110):
            journal.record(decision(index))   # decided, never acted on
        os._exit(9)              # a crash: no close, no atexit
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
        timeout=60,
    )
    assert result.returncode == 9
    assert JournalReader.open(path).count() >= 100


def test_filters(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        journal.record(decision(1))
        journal.record(
            decision(2, subsystem="coordinator", outcome="observed", applied=False, symbol=None)
        )
        journal.record(decision(3, outcome="advisory", applied=False, symbol="LTC/BTC"))
    reader = JournalReader.open(path)
    assert [r.cycle for r in reader.query(subsystem="portfolio_balancer")] == [1, 3]
    assert [r.cycle for r in reader.query(outcomes=["advisory", "observed"])] == [2, 3]
    assert [r.cycle for r in reader.query(symbol="LTC/BTC")] == [3]
    assert reader.traces_for("s2") == ["s2"]


def test_missing_journal_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="no journal at"):
        JournalReader.open(tmp_path / "nothing.sqlite")


def test_a_corrupt_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    before = path.read_bytes()
    with pytest.raises(JournalError, match="cannot use"):
        Journal(path)
    with pytest.raises(JournalError):
        JournalReader.open(path)
    assert path.read_bytes() == before


def test_to_jsonable_handles_records_enums_sets_and_times() -> None:
    assert to_jsonable({"side": Side.LONG, "at": T0, "kinds": frozenset({"b", "a"})}) == {
        "side": "LONG",
        "at": T0.isoformat(),
        "kinds": ["a", "b"],
    }
