"""The decision journal: batched, durable before acting, readable by another process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
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


def test_checkpoints_run_on_the_writer_thread_and_lose_nothing(tmp_path: Path) -> None:
    """Every `checkpoint_rows` rows flushed, the writer thread copies the WAL into the database
    file (so the engine's flushes never pay for the fsync); every row is still there."""
    path = tmp_path / "j.sqlite"
    journal = Journal(path, checkpoint_rows=50)
    for index in range(200):
        journal.record(decision(index))
        if index % 25 == 24:
            journal.flush()
    journal.close()
    assert journal.checkpoints >= 1
    assert [row.cycle for row in JournalReader.open(path).query()] == list(range(200))


def test_an_in_memory_journal_never_checkpoints() -> None:
    journal = Journal(checkpoint_rows=1)
    for index in range(10):
        journal.record(decision(index))
        journal.flush()
    assert journal.reader().count() == 10
    journal.close()
    assert journal.checkpoints == 0


def _reference_jsonable(value: object) -> object:
    """The plain isinstance chain `to_jsonable` follows (it decides once per type instead)."""
    import dataclasses
    from collections.abc import Mapping
    from datetime import datetime
    from enum import Enum

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _reference_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)
        }
    if isinstance(value, Mapping):
        return {str(_reference_jsonable(k)): _reference_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [_reference_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, (set, frozenset)) else items
    return str(value)


def test_to_jsonable_matches_the_plain_rules_for_every_kind_of_value() -> None:
    from collections import OrderedDict, namedtuple
    from enum import IntEnum
    from types import MappingProxyType

    from aios.model import HealthReport, HealthStatus, Signal

    class Level(IntEnum):
        LOW = 1

    Pair = namedtuple("Pair", "a b")

    @dataclass(frozen=True)
    class Empty:
        pass

    @dataclass(frozen=True)
    class One:
        only: object

    signal = Signal("s", "ETH/BTC", Side.LONG, 0.7, "signal_model", T0, 1.0, {"r": 1.5})
    values: list[object] = [
        signal,
        HealthReport("x", HealthStatus.DEGRADED, "d", {"m": 1.0}),
        {Side.LONG: [Level.LOW, Pair(1, T0)], 3: frozenset({"b", "a", 2})},
        OrderedDict(z=1, a=(None, True)),
        MappingProxyType({"k": {1, 2}}),
        Signal,  # a dataclass class: not a record
        object,
        [EntryVerdict(True, "ok"), EntryVerdict],
        Empty(),
        One(One(Side.SHORT)),
        One({1: None}),
    ]
    for value in values:
        assert to_jsonable(value) == _reference_jsonable(value)


def test_a_failing_checkpoint_loses_nothing_and_raises_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints are an optimisation: when the writer thread cannot make its connection,
    SQLite's own autocheckpoint remains, and every row is still written."""
    import aios.journal as journal_module

    real_connect = journal_module.sqlite3.connect
    journal = Journal(tmp_path / "j.sqlite", checkpoint_rows=10)

    def refuse(*args: object, **kwargs: object) -> object:
        raise journal_module.sqlite3.OperationalError("unable to open database file")

    monkeypatch.setattr(journal_module.sqlite3, "connect", refuse)
    for index in range(100):
        journal.record(decision(index))
        journal.flush()
    journal.close()
    monkeypatch.setattr(journal_module.sqlite3, "connect", real_connect)
    assert journal.checkpoints == 0
    assert JournalReader.open(tmp_path / "j.sqlite").count() == 100


def test_a_version_1_journal_loses_its_indexes_and_keeps_its_rows_and_queries(
    tmp_path: Path,
) -> None:
    """Schema 2 maintains no secondary index on the hot path; a journal written by version 1
    (three indexes) is migrated when opened for writing, and reads give the same rows."""
    import sqlite3

    path = tmp_path / "j.sqlite"
    with Journal(path) as journal:
        for index in range(5):
            journal.record(decision(index, symbol="ETH/BTC" if index % 2 else "LTC/BTC"))
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE INDEX decisions_trace ON decisions (trace);"
        "CREATE INDEX decisions_symbol_time ON decisions (symbol, time);"
        "CREATE INDEX decisions_subsystem ON decisions (subsystem, time);"
        "UPDATE journal_meta SET value = '1' WHERE key = 'schema_version';"
    )
    old.close()
    expected = [row.id for row in JournalReader.open(path).query(symbol="ETH/BTC")]

    with Journal(path) as journal:
        journal.record(decision(5, symbol="ETH/BTC"))
    check = sqlite3.connect(path)
    indexes = check.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'decisions'"
    ).fetchall()
    version = check.execute("SELECT value FROM journal_meta WHERE key = 'schema_version'")
    assert (indexes, version.fetchone()) == ([], ("2",))
    check.close()
    reader = JournalReader.open(path)
    assert [row.id for row in reader.query(symbol="ETH/BTC")] == [*expected, 6]
    assert [row.trace for row in reader.query(trace="s3")] == ["s3"]
    assert reader.traces_for("s4") == ["s4"]


def test_proposals_are_stored_as_json_dumps_writes_them() -> None:
    """The journal's encoder is built once; what it writes is `json.dumps` with sorted keys
    and compact separators, non-finite floats, escapes and big integers included."""
    import json

    from aios.journal import encode_json

    values: list[object] = [
        {"b": [1.5, float("nan"), float("inf"), -float("inf"), 1e-7, 1e16, 2**70]},
        {"z": None, "y": True, "é": 'naïve "quoted"\n', "a": {"k": [], "j": {}}},
        "plain",
        3.0,
        [],
    ]
    for value in values:
        assert encode_json(value) == json.dumps(value, sort_keys=True, separators=(",", ":"))
