"""`aios worker` and `aios service ...`: aios as services over a bus (docs/bus.md).

Registered in aios/cli.py by `register(app)`. Imports stay inside the commands (redis, numpy and
the engine load only when a command runs), so `aios --help` stays fast.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from aios.cli_common import fail, make_directory, series_or_exit, usage_error, write_output

if TYPE_CHECKING:
    from aios.bus import Bus

service_app = typer.Typer(
    help="Run a subsystem as a service on the bus (Redis Streams).", no_args_is_help=True
)

BusOption = Annotated[
    Optional[str],  # noqa: UP045
    typer.Option(
        "--bus",
        envvar="AIOS_BUS",
        help="The bus: redis://host:port/db (Redis Streams; memory:// is in-process, so not "
        "for these commands). Default: the policy's bus.url.",
    ),
]
PolicyOption = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option("--policy", "-p", help="Policy file(s), merged in order. Default: bundled."),
]
DataOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--data-dir", help="Directory of candle CSV files. Default: the bundled data."),
]
StateOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option(
        "--state-dir", help="State directory (SQLite). Default: ./state or AIOS_STATE_DIR."
    ),
]


class Book(StrEnum):
    """The two books a run keeps (aios.runtime.BOOKS): what was traded, and what the plugins'
    proposals would have traded."""

    actual = "actual"
    shadow = "shadow"


def _policy(files: list[Path] | None) -> tuple[Any, Any]:
    from aios.cli import load_or_exit

    return load_or_exit(files)


def _open(chosen: str | None, policy: Any, *, name: str | None = None) -> Bus:
    """The bus every command of this module talks to other processes over: Redis (an
    in-process bus in a command of its own would only ever be empty)."""
    from aios.bus import BusError, BusSettings, BusUnavailable, open_bus

    url = chosen or str(policy.get("bus", "url", default="redis://127.0.0.1:6379/0"))
    if url.startswith("memory"):
        raise usage_error(
            "an in-process bus is not shared between processes: pass --bus redis://host:port/db"
        )
    try:
        bus = open_bus(url, BusSettings.from_policy(policy), client_name=name)
    except ValueError as exc:
        where = "--bus or AIOS_BUS" if chosen else f"bus.url at {policy.origin('bus', 'url')}"
        raise usage_error(f"{exc} (from {where})") from None
    try:
        try:
            bus.ping(attempts=0)
        except BusUnavailable as exc:  # say so now, not only after every reconnect has failed
            attempts = bus.settings.reconnect_attempts
            typer.echo(
                f"aios: Redis at {exc.where} unreachable ({exc.reason}): "
                f"retrying up to {attempts} time(s) with backoff (bus.reconnect)",
                err=True,
            )
            bus.ping()
    except BusError as exc:  # unreachable, or refused (a database index out of range)
        raise fail(exc) from None
    return bus


@contextmanager
def _state_store(directory: Path) -> Iterator[None]:
    """A state store that cannot be used (not a database, locked, read-only) is a one-line
    error naming it; the file is left as it is."""
    import sqlite3

    from aios.journal import JournalError
    from aios.stages import StageError
    from aios.state import database_path

    try:
        yield
    except (StageError, JournalError) as exc:  # the Runtime says JournalError for both
        raise fail(exc) from None
    except sqlite3.Error as exc:
        where = database_path(directory)
        raise fail(
            f"cannot use {where} as a state store: {exc} (the file is left untouched)"
        ) from None


def _run(service: Any) -> None:
    from aios.bus import BusError
    from aios.services import install_stop_handlers, run_until_stopped

    install_stop_handlers(service.stop)
    try:
        run_until_stopped(service)
    except BusError as exc:
        raise fail(exc) from None


def worker(
    bus: BusOption = None,
    policy: PolicyOption = None,
    data_dir: DataOption = None,
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="This worker's consumer name. Default: <host>-<pid>."),
    ] = None,
    state_dir: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option(
            "--state-dir",
            help="State directory whose model registry supplies the champion signal model "
            "(the risk gate's). Default: ./state or AIOS_STATE_DIR.",
        ),
    ] = None,
) -> None:
    """Compute signals for a share of the symbol universe, until SIGTERM.

    Workers share the symbols through leases (one worker per symbol at a time); a dead worker's
    symbols and pending work move to the others. The risk gate decides.
    """
    import time

    from aios.model_registry import ModelRegistry
    from aios.services.worker import SignalWorker
    from aios.state import database_path
    from aios.state import state_dir as resolve_state_dir

    loaded, plugins = _policy(policy)
    name = name or f"{socket.gethostname()}-{os.getpid()}"
    # Local input first: a bad directory is reported before any wait for Redis.
    series = series_or_exit(loaded, data_dir)
    directory = make_directory(resolve_state_dir(state_dir), "state directory")
    redis_bus = _open(bus, loaded, name=f"aios-worker-{name}")
    with _state_store(directory):
        models = ModelRegistry(database_path(directory))
    service = SignalWorker(
        redis_bus,
        loaded,
        plugins,
        series,
        name,
        clock=time.time,
        models=models,
    )
    typer.echo(f"aios worker {service.name}: started", err=True)
    _run(service)


@service_app.command("risk-gate")
def risk_gate(
    bus: BusOption = None,
    policy: PolicyOption = None,
    data_dir: DataOption = None,
    state_dir: StateOption = None,
    limit: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="Replay at most this many candle times."),
    ] = None,
    replay_id: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option(help="Name of this replay on the bus. Default: random."),
    ] = None,
    json_out: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--json", help="Write the run report as JSON to this file ('-': stdout)."),
    ] = None,
) -> None:
    """Replay the data through workers on the bus: feed them, decide each candle time once
    every symbol has reported it, trade both books, publish intents, fills and closed trades."""
    from aios.bus import BusError
    from aios.exchange.paper import PaperBroker
    from aios.services import install_stop_handlers
    from aios.services.risk_gate import RiskGate
    from aios.state import state_dir as resolve_state_dir

    loaded, plugins = _policy(policy)
    series = series_or_exit(loaded, data_dir)  # local input first, as for the worker
    directory = make_directory(resolve_state_dir(state_dir), "state directory")
    redis_bus = _open(bus, loaded, name="aios-risk-gate")
    with _state_store(directory):
        gate = RiskGate(
            redis_bus,
            loaded,
            plugins,
            series,
            directory,
            PaperBroker.from_policy,
            replay_id=replay_id,
            limit=limit,
        )
    install_stop_handlers(gate.stop)
    typer.echo(f"aios risk gate: replay {gate.replay_id}, {len(gate.times)} candle times", err=True)
    try:
        report = gate.run()
    except BusError as exc:
        raise fail(exc) from None
    if report is None:
        raise fail("stopped before the first candle time was decided")
    data = report.to_dict(with_curve=False)
    data["replay_id"] = gate.replay_id
    data["decided"] = gate.decided
    write_output(json.dumps(data, indent=2, sort_keys=True), json_out)
    if not gate.finished:
        typer.echo(f"aios risk gate: interrupted after {gate.decided} candle time(s)", err=True)
        sys.exit(130)


@service_app.command("rl-agent")
def rl_agent(
    bus: BusOption = None,
    policy: PolicyOption = None,
    state_dir: StateOption = None,
    book: Annotated[
        Book, typer.Option(help="Which book's closed trades to learn from.")
    ] = Book.shadow,
) -> None:
    """Learn from closed trades: publish each reward (pnl_pct / 100) on rl_rewards, update the
    sizing values, persist them, publish statistics every bus.stats_interval_s; until SIGTERM."""
    import time

    from aios.services.rl_agent import RlAgentService
    from aios.state import state_dir as resolve_state_dir

    loaded, _ = _policy(policy)
    directory = make_directory(resolve_state_dir(state_dir), "state directory")
    redis_bus = _open(bus, loaded, name="aios-rl-agent")
    with _state_store(directory):
        service = RlAgentService(redis_bus, loaded, directory, clock=time.time, book=book.value)
    typer.echo(f"aios rl-agent: learning from the {book} book", err=True)
    _run(service)


@service_app.command("risk-proposals")
def risk_proposals(
    bus: BusOption = None,
    policy: PolicyOption = None,
    book: Annotated[Book, typer.Option(help="Which book's open positions to watch.")] = Book.actual,
) -> None:
    """Publish regime-weighted SL/TP/trailing proposals for every open position, every
    bus.risk_proposals_interval_s, on risk.proposals:<SYMBOL>. Calculation only; until SIGTERM."""
    import time

    from aios.services.risk_proposals import RiskProposalService

    loaded, plugins = _policy(policy)
    redis_bus = _open(bus, loaded, name="aios-risk-proposals")
    service = RiskProposalService(redis_bus, loaded, plugins, clock=time.time, book=book.value)
    typer.echo(f"aios risk-proposals: watching the {book} book", err=True)
    _run(service)


@service_app.command("dead-letters")
def dead_letters(
    bus: BusOption = None,
    policy: PolicyOption = None,
) -> None:
    """List the dead-letter stream: every malformed entry, where it came from and why."""
    loaded, _ = _policy(policy)
    redis_bus = _open(bus, loaded)
    for letter in redis_bus.dead_letters():
        typer.echo(f"{letter.source} {letter.entry_id}: {letter.reason}")


def register(app: typer.Typer) -> None:
    """Add `aios worker` and `aios service ...` to the CLI."""
    app.command("worker")(worker)
    app.add_typer(service_app, name="service")
