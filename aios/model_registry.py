"""Versions of the signal model: registered challengers, the deployed champion, rollback.

The retraining orchestrator registers challengers (evidence, allowed from ADVISORY up); making
one the champion is a proposal the engine applies only when retraining is ENFORCED. The signal
model reads the champion. Stored in SQLite next to the journal, or in memory for tests.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

_DDL = """
CREATE TABLE IF NOT EXISTS model_versions (
    version TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    params TEXT NOT NULL,
    metrics TEXT NOT NULL,
    status TEXT NOT NULL,
    deployed_at TEXT
);
"""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    created_at: datetime
    params: Mapping[str, Any]
    metrics: Mapping[str, float] = field(default_factory=dict)
    status: str = "registered"  # registered | champion | retired
    deployed_at: datetime | None = None


class ModelRegistry:
    """Thread-safe registry of model versions; the champion is the one the signal model uses."""

    def __init__(self, path: Path | str = ":memory:", keep_versions: int = 10) -> None:
        self._connection = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._connection.executescript(_DDL)
        self._lock = threading.Lock()
        self.keep_versions = keep_versions
        #: Bumped by every write through this registry (register, deploy, rollback), before
        #: it is made: a reader that remembers the champion within one engine cycle compares
        #: it to see that the engine's tick changed nothing in between.
        self.writes = 0

    def _row(self, row: tuple[Any, ...]) -> ModelVersion:
        version, created, params, metrics, status, deployed = row
        return ModelVersion(
            version,
            datetime.fromisoformat(created),
            json.loads(params),
            json.loads(metrics),
            status,
            datetime.fromisoformat(deployed) if deployed else None,
        )

    def register(self, model: ModelVersion) -> None:
        self.writes += 1
        with self._lock, self._connection:
            self._connection.execute(
                "INSERT OR REPLACE INTO model_versions VALUES (?, ?, ?, ?, ?, ?)",
                (
                    model.version,
                    model.created_at.isoformat(),
                    json.dumps(model.params),
                    json.dumps(model.metrics),
                    "registered",
                    None,
                ),
            )
            self._prune()

    def _prune(self) -> None:
        rows = self._connection.execute(
            "SELECT version FROM model_versions WHERE status = 'registered' ORDER BY created_at DESC, version DESC"
        ).fetchall()
        for (version,) in rows[self.keep_versions :]:
            self._connection.execute("DELETE FROM model_versions WHERE version = ?", (version,))

    def get(self, version: str) -> ModelVersion | None:
        row = self._connection.execute(
            "SELECT * FROM model_versions WHERE version = ?", (version,)
        ).fetchone()
        return self._row(row) if row else None

    def champion(self) -> ModelVersion | None:
        row = self._connection.execute(
            "SELECT * FROM model_versions WHERE status = 'champion'"
        ).fetchone()
        return self._row(row) if row else None

    def versions(self) -> list[ModelVersion]:
        rows = self._connection.execute(
            "SELECT * FROM model_versions ORDER BY created_at, version"
        ).fetchall()
        return [self._row(r) for r in rows]

    def deploy(self, version: str, now: datetime) -> ModelVersion:
        """Make `version` the champion; the previous champion is retired (kept for rollback)."""
        self.writes += 1
        with self._lock, self._connection:
            if (
                self._connection.execute(
                    "SELECT 1 FROM model_versions WHERE version = ?", (version,)
                ).fetchone()
                is None
            ):
                raise KeyError(f"no model version {version!r}")
            self._connection.execute(
                "UPDATE model_versions SET status = 'retired' WHERE status = 'champion'"
            )
            self._connection.execute(
                "UPDATE model_versions SET status = 'champion', deployed_at = ? WHERE version = ?",
                (now.isoformat(), version),
            )
        deployed = self.get(version)
        assert deployed is not None
        return deployed

    def rollback(self, now: datetime) -> ModelVersion | None:
        """Re-deploy the most recently retired champion; None when there is none."""
        row = self._connection.execute(
            "SELECT version FROM model_versions WHERE status = 'retired' ORDER BY deployed_at DESC LIMIT 1"
        ).fetchone()
        return None if row is None else self.deploy(row[0], now)

    def close(self) -> None:
        self._connection.close()
