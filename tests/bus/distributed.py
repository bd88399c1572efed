"""Running a replay both ways: one process, and workers plus a risk gate over a bus."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aios.app import load
from aios.bus import Bus
from aios.data import bundled_data_dir
from aios.exchange.paper import PaperBroker
from aios.runtime import Runtime, load_series
from aios.services.risk_gate import RiskGate
from aios.services.worker import SignalWorker
from aios.state import database_path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = REPO / "policies" / "default.yaml"


def load_fresh(policy_files: Sequence[Path] = (DEFAULT_POLICY,)) -> tuple[Any, Any]:
    """A policy and a fresh set of plugin instances (plugins keep learned state)."""
    return load(list(policy_files), env={})


def series(policy: Any) -> dict[str, Any]:
    return load_series(bundled_data_dir(), policy.get("universe", "symbols"))


def single_process(
    state: Path, limit: int, policy_files: Sequence[Path] = (DEFAULT_POLICY,)
) -> Any:
    policy, plugins = load_fresh(policy_files)
    runtime = Runtime(policy, plugins, series(policy), state, PaperBroker.from_policy)
    return runtime.run(limit)


def gate(
    bus: Bus, state: Path, limit: int, policy_files: Sequence[Path] = (DEFAULT_POLICY,)
) -> RiskGate:
    policy, plugins = load_fresh(policy_files)
    return RiskGate(
        bus, policy, plugins, series(policy), state, PaperBroker.from_policy, limit=limit
    )


def worker(
    bus: Bus, name: str, clock: Any, policy_files: Sequence[Path] = (DEFAULT_POLICY,)
) -> SignalWorker:
    policy, plugins = load_fresh(policy_files)
    return SignalWorker(bus, policy, plugins, series(policy), name, clock=clock)


def decisions(state: Path) -> list[tuple[Any, ...]]:
    """The whole journal (every proposal, disposal, order and block, in order) and every fill.

    Left out: the health rows of the two components that exist only in a distributed run or
    differ by construction: the bus itself, and the relayed signal source (which reports where
    its signals come from instead of its model's warm-up)."""
    connection = sqlite3.connect(str(database_path(state)))
    try:
        rows = connection.execute(
            "SELECT cycle, time, subsystem, hook, subject, symbol, trace, proposal, mode,"
            " outcome, applied, reason FROM decisions"
            " WHERE NOT (hook = 'aios_health'"
            " AND subject IN ('component:bus', 'component:signal_model'))"
            " ORDER BY id"
        ).fetchall()
        fills = connection.execute(
            "SELECT book, order_id, position_id, symbol, side, kind, time, price, quantity, fee,"
            " reason FROM fills ORDER BY id"
        ).fetchall()
    finally:
        connection.close()
    return [*rows, *fills]
