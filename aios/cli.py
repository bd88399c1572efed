"""The `aios` command line.

Start-up stays fast: each command imports what it needs when it runs (jsonschema, and later the
engine and ccxt, are not imported for `aios --help`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, TypeVar

import typer

from aios.cli_bus import register as register_bus_commands
from aios.cli_common import (
    EXIT_INVALID,
    EXIT_VALID,
    OutputFormat,
    fail,
    series_or_exit,
    usage_error,
    write_output,
)
from aios.cli_plugins import plugins_app
from aios.cli_venue import venue_app

if TYPE_CHECKING:
    from aios.policy import Issue, Policy

Loaded = TypeVar("Loaded")

app = typer.Typer(
    name="aios",
    help="aios: a declarative policy engine that governs an automated crypto-trading system.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
)


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"aios {version('aios')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """aios: a declarative policy engine that governs an automated crypto-trading system."""


def _chosen_files(files: list[Path] | None) -> list[Path]:
    chosen = list(files) if files else default_policy_files()
    _check_files(chosen)
    return chosen


def _or_exit(load: Callable[[], Loaded]) -> Loaded:
    """`load()`, or every policy error printed (one a line, with where) and exit 1."""
    from aios.policy import PolicyInvalid
    from aios.registry import PluginConflict

    try:
        return load()
    except PolicyInvalid as exc:
        for issue in exc.issues:
            typer.echo(str(issue), err=True)
        raise typer.Exit(EXIT_INVALID) from None
    except PluginConflict as exc:
        raise fail(exc) from None


def _warn_load_problems(problems: Iterable[Any]) -> None:
    for problem in problems:
        typer.echo(f"aios: warning: plugin {problem.source}: {problem.message}", err=True)


def load_or_exit(files: list[Path] | None) -> tuple[Any, Any]:
    """The policy and the plugins that make it valid, or every error printed and exit 1."""
    import os

    from aios import app as application

    chosen = _chosen_files(files)
    loaded, plugins = _or_exit(lambda: application.load(chosen, env=dict(os.environ)))
    _warn_load_problems(plugins.problems)
    return loaded, plugins


def policy_or_exit(files: list[Path] | None) -> Any:
    """The policy `load_or_exit` would return, for commands that read it but run no plugin (the
    stage commands): from the plugin declaration cache when it is fresh (aios/plugin_cache.py),
    so no plugin is imported; a miss loads the plugins once and refreshes the cache."""
    import os

    from aios import app as application

    chosen = _chosen_files(files)
    loaded, problems = _or_exit(lambda: application.check(chosen, env=dict(os.environ)))
    _warn_load_problems(problems)
    return loaded


def default_policy_files() -> list[Path]:
    from aios.policy.schema import bundled_path

    return [bundled_path("policies") / "default.yaml"]


def _check_files(files: list[Path]) -> None:
    for file in files:
        if not file.exists():
            raise usage_error(f"no such file: {file}")
        if not file.is_file():
            raise usage_error(f"not a file: {file}")


def _validate(files: list[Path], env: dict[str, str]) -> tuple[Policy | None, list[Issue]]:
    """Load the installed plugins' declarations (their sections and metrics are part of a valid
    policy; cached, see aios/plugin_cache.py), then the policy; plugin loading problems are
    reported as warnings, conflicts as errors."""
    from aios import app as application
    from aios.policy import PolicyInvalid

    try:
        policy, load_problems = application.check(files, env=env)
    except PolicyInvalid as exc:  # with the plugins' loading problems among its warnings
        return None, exc.issues
    return policy, [*policy.warnings, *application.load_problem_issues(load_problems)]


def _result_json(
    files: list[Path], policy: Policy | None, issues: list[Issue], show_effective: bool
) -> dict[str, Any]:
    from aios.policy import Severity, format_path

    result: dict[str, Any] = {
        "valid": policy is not None,
        "sources": [str(f) for f in files],
        "policy_hash": policy.hash if policy else None,
        "errors": [i.to_dict() for i in issues if i.severity is Severity.ERROR],
        "warnings": [i.to_dict() for i in issues if i.severity is Severity.WARNING],
    }
    if show_effective and policy is not None:
        result["effective"] = policy.document
        result["origins"] = {
            format_path(p): str(loc)
            for p, loc in sorted(policy.origins.items(), key=lambda kv: format_path(kv[0]))
        }
    return result


@app.command()
def validate(
    files: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Argument(
            help="Policy files, merged in order (later files win). Default: the bundled default policy."
        ),
    ] = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text for people, json for tools.")
    ] = OutputFormat.text,
    show_effective: Annotated[
        bool,
        typer.Option(
            "--show-effective", help="Print the merged policy with the origin of each value."
        ),
    ] = False,
    each: Annotated[
        bool, typer.Option("--each", help="Validate every file on its own instead of merging them.")
    ] = False,
    no_env: Annotated[
        bool, typer.Option("--no-env", help="Ignore QT_AI_* environment overrides.")
    ] = False,
) -> None:
    """Validate policy files: every error, one a line, as file:line:col: key.path: message.

    Exit status: 0 valid (warnings allowed), 1 invalid, 2 usage error.
    """
    import os

    from aios.policy import Severity
    from aios.policy.render import render_effective

    chosen = list(files) if files else default_policy_files()
    _check_files(chosen)
    env = {} if no_env else dict(os.environ)
    groups = [[f] for f in chosen] if each else [chosen]
    results = [(group, *_validate(group, env)) for group in groups]
    all_valid = all(policy is not None for _, policy, _ in results)

    if output_format is OutputFormat.json:
        payload: Any = [_result_json(g, p, i, show_effective) for g, p, i in results]
        typer.echo(json.dumps(payload if each else payload[0], indent=2, default=str))
    else:
        for group, policy, issues in results:
            names = " + ".join(str(f) for f in group)
            for issue in issues:
                typer.echo(str(issue))
            errors = sum(1 for i in issues if i.severity is Severity.ERROR)
            warnings = len(issues) - errors
            plural = "s" if warnings != 1 else ""
            if policy is None:
                typer.echo(
                    f"{names}: invalid, {errors} error{'s' if errors != 1 else ''}, {warnings} warning{plural}"
                )
            else:
                if show_effective:
                    typer.echo(render_effective(policy.document, policy.origins), nl=False)
                typer.echo(
                    f"{names}: valid (policy hash {policy.hash[:12]}, {warnings} warning{plural})"
                )
    raise typer.Exit(EXIT_VALID if all_valid else EXIT_INVALID)


@app.command()
def schema(
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown", help="Print the policy reference in Markdown instead of the JSON Schema."
        ),
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the composed policy schema (core schema plus the sections plugins declare)."""
    from aios.policy.schema import compose_schema

    composed = compose_schema()
    if markdown:
        from aios.policy.reference import render_reference

        text = render_reference(composed)
    else:
        text = json.dumps(composed, indent=2, ensure_ascii=False) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise fail(f"cannot write {output}: {exc.strerror or exc}") from None
        typer.echo(f"wrote {output}", err=True)


StateDirOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--state-dir", help="State directory (default: $AIOS_STATE_DIR, else ./state)."),
]


def _open_journal(state_dir: Path | None) -> Any:
    from aios.journal import JournalError, JournalReader
    from aios.state import database_path

    try:
        return JournalReader.open(database_path(state_dir))
    except JournalError as exc:
        raise fail(exc) from None


def _print_rows(rows: list[Any], output_format: OutputFormat) -> None:
    if output_format is OutputFormat.json:
        typer.echo(json.dumps([row.to_dict() for row in rows], indent=2))
        return
    for row in rows:
        mode = row.mode if row.outcome in ("engine", "error") else f"{row.mode} {row.outcome}"
        typer.echo(
            f"{row.time}  cycle {row.cycle:<6} {row.subsystem:<22} {row.hook:<22} [{mode}] {row.reason}"
        )


@app.command()
def journal(
    subsystem: Annotated[
        str | None, typer.Option(help="Only this subsystem (or 'engine', 'safety').")
    ] = None,
    symbol: Annotated[Optional[str], typer.Option(help="Only this symbol, e.g. ETH/BTC.")] = None,  # noqa: UP045
    since: Annotated[
        str | None, typer.Option(help="From this time (ISO 8601, UTC), inclusive.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Up to this time (ISO 8601, UTC), inclusive.")
    ] = None,
    applied: Annotated[
        bool, typer.Option("--applied", help="Only proposals that were applied.")
    ] = False,
    advisory: Annotated[
        bool, typer.Option("--advisory", help="Only proposals surfaced as advisories.")
    ] = False,
    observed: Annotated[
        bool, typer.Option("--observed", help="Only proposals journaled as observations.")
    ] = False,
    errors: Annotated[bool, typer.Option("--errors", help="Only plugin failures.")] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="At most this many rows.")] = None,  # noqa: UP045
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text or json.")
    ] = OutputFormat.text,
    state_dir: StateDirOption = None,
) -> None:
    """Show decision-journal rows, oldest first, filtered."""
    outcomes = [
        name
        for name, wanted in (
            ("applied", applied),
            ("advisory", advisory),
            ("observed", observed),
            ("error", errors),
        )
        if wanted
    ]
    reader = _open_journal(state_dir)
    rows = reader.query(
        subsystem=subsystem, symbol=symbol, since=since, until=until, outcomes=outcomes, limit=limit
    )
    _print_rows(rows, output_format)


@app.command()
def explain(
    subject: Annotated[
        str, typer.Argument(help="A signal id, an order id, a position id, or a symbol.")
    ],
    limit: Annotated[
        int, typer.Option(min=1, help="For a symbol: how many of its latest chains.")
    ] = 5,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text or json.")
    ] = OutputFormat.text,
    state_dir: StateDirOption = None,
) -> None:
    """Explain the chain of decisions behind one signal, trade or block."""
    reader = _open_journal(state_dir)
    traces = reader.traces_for(subject)
    if not traces:
        rows = reader.query(symbol=subject)
        seen: list[str] = []
        for row in rows:
            if row.trace and row.trace not in seen:
                seen.append(row.trace)
        traces = seen[-limit:]
    if not traces:
        typer.echo(f"aios: nothing in the journal about {subject!r}", err=True)
        raise typer.Exit(EXIT_INVALID)
    chains = {trace: reader.query(trace=trace) for trace in traces}
    if output_format is OutputFormat.json:
        typer.echo(
            json.dumps(
                {trace: [row.to_dict() for row in rows] for trace, rows in chains.items()}, indent=2
            )
        )
        return
    for trace, rows in chains.items():
        typer.echo(f"{trace}")
        for row in rows:
            verdict = {
                "applied": "applied",
                "advisory": "advised, not applied",
                "observed": "observed only",
                "error": "FAILED",
                "engine": "engine",
            }.get(row.outcome, row.outcome)
            typer.echo(f"  {row.time}  {row.subsystem:<22} {verdict:<21} {row.reason}")
        typer.echo("")


@app.command()
def run(
    ctx: typer.Context,
    policy: Annotated[
        Optional[list[Path]],  # noqa: UP045
        typer.Option(
            "--policy",
            "-p",
            help="Policy file(s), merged in order. Default: the bundled default policy.",
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Directory of candle CSV files. Default: the bundled data."),
    ] = None,
    exchange: Annotated[
        str,
        typer.Option(
            help="Where orders go: 'paper' (replay), or 'ccxt:<id>' (live candles; real spot "
            "orders with keys from AIOS_<ID>_API_KEY / _SECRET, unless --dry-run)."
        ),
    ] = "paper",
    limit: Annotated[
        int | None, typer.Option(min=1, help="Replay at most this many candle times.")
    ] = None,
    json_out: Annotated[
        Path | None,
        typer.Option("--json", help="Also write the report as JSON to this file ('-' for stdout)."),
    ] = None,
    html_out: Annotated[
        Path | None,
        typer.Option("--report", help="Also write a self-contained HTML report to this file."),
    ] = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no text report.")
    ] = False,
    profile_hooks: Annotated[
        bool,
        typer.Option(
            "--profile-hooks", help="At the end, print the time spent per plugin and hook."
        ),
    ] = False,
    watch: Annotated[
        bool,
        typer.Option("--watch/--no-watch", help="Hot-reload the policy files when they change."),
    ] = True,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="With ccxt: real markets and prices, fills on the paper exchange."
        ),
    ] = False,
    sandbox: Annotated[
        bool, typer.Option("--sandbox", help="With ccxt: use the venue's testnet.")
    ] = False,
    poll_s: Annotated[
        float, typer.Option(min=1.0, help="With ccxt: seconds between polls for closed candles.")
    ] = 30.0,
    max_polls: Annotated[
        Optional[int],  # noqa: UP045
        typer.Option(min=1, help="With ccxt: stop after this many polls."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the latest unfinished replay of the state store (killed, stopped or "
            "failed) with what it started with; no other run option may be given.",
        ),
    ] = False,
    state_dir: StateDirOption = None,
) -> None:
    """Replay candles through the engine on the paper exchange, then print the report.

    Both books are kept: the actual one (what the system does at its current stage) and the
    shadow one (what it would do with every proposal applied). SIGINT / SIGTERM end the run
    after the current candle time, with the report; `--resume` continues it.
    """

    from aios.data import bundled_data_dir
    from aios.exchange.paper import PaperBroker
    from aios.journal import JournalError
    from aios.runtime import Runtime
    from aios.state import state_dir as resolve_state_dir

    if resume:
        given = [
            name
            for name, value in (
                ("--policy", policy),
                ("--data-dir", data_dir),
                ("--limit", limit),
                ("--exchange", None if exchange == "paper" else exchange),
            )
            if value
        ]
        if given:
            raise usage_error(
                f"--resume continues a run with what it started with: drop {', '.join(given)}"
            )
        _check_report_paths(json_out, html_out)
        _resume_replay(state_dir, watch, quiet, json_out, html_out)
        return
    _check_report_paths(json_out, html_out)
    if exchange != "paper" and not exchange.startswith("ccxt:"):
        raise usage_error(f"unknown exchange {exchange!r}: use 'paper' or 'ccxt:<exchange id>'")
    if exchange.startswith("ccxt:"):  # refused before anything is recorded, like a bad name
        from aios.exchange.ccxt_venue import ccxt_exchange_ids

        venue_id = exchange.removeprefix("ccxt:")
        if venue_id not in ccxt_exchange_ids():
            raise usage_error(f"unknown exchange {exchange!r}: ccxt has no exchange {venue_id!r}")
    if profile_hooks:
        from aios.hooktrace import profile_until_close

        profile_until_close(ctx)
    files = list(policy) if policy else default_policy_files()
    loaded, plugins = load_or_exit(files)
    if exchange.startswith("ccxt:"):
        _run_live(
            loaded,
            plugins,
            files,
            exchange,
            sandbox,
            poll_s,
            max_polls,
            watch,
            state_dir,
            quiet,
            json_out,
            html_out,
            dry_run,
        )
        return
    directory = data_dir or bundled_data_dir()
    series = series_or_exit(loaded, data_dir)
    spec = {
        "kind": "replay",
        "data_dir": str(directory.resolve()),
        "limit": limit,
        "policy_files": [str(file.resolve()) for file in files],
    }
    try:
        runtime = Runtime(
            loaded,
            plugins,
            series,
            resolve_state_dir(state_dir),
            PaperBroker.from_policy,
            spec=spec,
        )
    except JournalError as exc:
        raise fail(exc) from None
    _replay(runtime, limit, files, plugins, watch, quiet, json_out, html_out)


def _replay(
    runtime: Any,
    limit: int | None,
    files: list[Path],
    plugins: Any,
    watch: bool,
    quiet: bool,
    json_out: Path | None,
    html_out: Path | None,
) -> None:
    """Run a replay (fresh or resumed) to its end or to SIGINT / SIGTERM, which end it after
    the current candle time: journal flushed, cursor committed, report written, exit 0."""
    import signal

    from aios.runtime import ResumeError

    def stop(signum: int, frame: object) -> None:
        runtime.stop.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    _start_watcher(runtime, files, plugins, watch)
    try:
        if not quiet and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
            with Progress(
                "[progress.description]{task.description}", *columns, transient=True
            ) as bar:
                task = bar.add_task(f"replaying ({runtime.run_id})", total=None)
                report = runtime.run(
                    limit, lambda done, total: bar.update(task, completed=done, total=total)
                )
        else:
            report = runtime.run(limit)
    except ResumeError as exc:
        raise fail(exc) from None
    finally:
        if runtime.watcher is not None:
            runtime.watcher.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if runtime.stop.is_set():
        typer.echo(
            f"aios: {runtime.run_id} stopped after {report.candles} candle time(s); "
            "`aios run --resume` continues it",
            err=True,
        )
    _emit_report(report, quiet, json_out, html_out)


def _resume_replay(
    state_dir: Path | None,
    watch: bool,
    quiet: bool,
    json_out: Path | None,
    html_out: Path | None,
) -> None:
    """`aios run --resume`: the latest unfinished replay, rebuilt from what the store recorded
    (its policies, its data directory and limit) and re-driven over its committed prefix."""
    from aios.data import DataError
    from aios.exchange.paper import PaperBroker
    from aios.journal import JournalError
    from aios.runtime import ResumeError, Runtime, Store, load_recorded, load_series
    from aios.state import database_path
    from aios.state import state_dir as resolve_state_dir

    directory = resolve_state_dir(state_dir)
    database = database_path(directory)
    if not database.exists():
        raise fail(f"no state store at {database}: nothing to resume")
    from aios.stages import StageError, StageStore

    try:  # a file that is not a state store (or is locked) is refused before the run's tables
        StageStore(database, create=False).close()  # are written over it
    except StageError as exc:
        raise fail(exc) from None
    store = Store(database)
    try:
        point = store.resume_point()
    except ResumeError as exc:
        raise fail(exc) from None
    finally:
        store.close()
    try:
        policy, plugins, scheduled = load_recorded(point)
        series = load_series(Path(point.spec["data_dir"]), policy.get("universe", "symbols"))
    except (ResumeError, DataError, KeyError) as exc:
        raise fail(f"cannot resume {point.run_id}: {exc}") from None
    for problem in plugins.problems:
        typer.echo(f"aios: warning: plugin {problem.source}: {problem.message}", err=True)
    try:
        runtime = Runtime(
            policy,
            plugins,
            series,
            directory,
            PaperBroker.from_policy,
            spec=point.spec,
            resume=point,
            scheduled_policies=scheduled,
        )
    except JournalError as exc:
        raise fail(exc) from None
    if not quiet:
        typer.echo(
            f"aios: resuming {point.run_id} ({point.status}) after {point.steps} committed "
            "candle time(s)",
            err=True,
        )
    files = [Path(f) for f in point.spec.get("policy_files", []) if Path(f).exists()]
    limit = point.spec.get("limit")
    _replay(runtime, limit, files, plugins, watch and bool(files), quiet, json_out, html_out)


def _start_watcher(runtime: Any, files: list[Path], plugins: Any, watch: bool) -> None:
    """Hot reload: watch the policy files for the length of the run."""
    import os

    from aios.reload import PolicySource, PolicyWatcher

    if watch:
        runtime.watcher = PolicyWatcher(
            PolicySource(files, dict(os.environ), plugins), runtime.policy.hash
        )
        runtime.watcher.start()


def _check_report_paths(json_out: Path | None, html_out: Path | None) -> None:
    """Refuse report paths that cannot be written before the run starts, not after it."""
    for flag, target in (("--json", json_out), ("--report", html_out)):
        if target is None or str(target) == "-":
            continue
        if target.is_dir():
            raise usage_error(f"{flag} {target}: is a directory")
        if not target.parent.is_dir():
            raise usage_error(f"{flag} {target}: no such directory {target.parent}")


def _emit_report(report: Any, quiet: bool, json_out: Path | None, html_out: Path | None) -> None:
    """The run report: as text unless quiet, as JSON ('-' for stdout), as an HTML page. A file
    that cannot be written (removed or made read-only during the run) is a one-line error after
    the rest was written; the run itself is already in the state store."""
    from aios.report import render_html, render_text

    if not quiet:
        typer.echo(render_text(report), nl=False)
    if json_out is not None:
        write_output(json.dumps(report.to_dict(), indent=2), json_out)
    if html_out is not None:
        try:
            html_out.write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            raise fail(
                f"cannot write {html_out}: {exc.strerror or exc}; the run is in the state store "
                "(aios status)"
            ) from None
        typer.echo(f"wrote {html_out}", err=True)


def _run_live(
    loaded: Any,
    plugins: Any,
    files: list[Path],
    exchange: str,
    sandbox: bool,
    poll_s: float,
    max_polls: int | None,
    watch: bool,
    state_dir: Path | None,
    quiet: bool,
    json_out: Path | None,
    html_out: Path | None,
    dry_run: bool,
) -> None:
    """Live data from the venue; fills on the paper exchange (`--dry-run`) or real orders
    through the venue broker, after reconciling the store with the venue."""
    import os
    import signal
    from datetime import UTC, datetime

    from aios.exchange.base import BrokerError
    from aios.exchange.ccxt_venue import CcxtVenue, VenueError, env_prefix
    from aios.exchange.paper import PaperBroker
    from aios.journal import JournalError
    from aios.live import LiveRunner
    from aios.runtime import Runtime
    from aios.state import state_dir as resolve_state_dir

    exchange_id = exchange.removeprefix("ccxt:")
    symbols = list(loaded.get("universe", "symbols", default=[]))
    if not dry_run:
        from aios.exchange.client_ids import live_format

        prefix = env_prefix(exchange_id)
        if not (os.environ.get(f"{prefix}_API_KEY") and os.environ.get(f"{prefix}_SECRET")):
            raise fail(
                f"live orders on {exchange_id} need API keys: set {prefix}_API_KEY and "
                f"{prefix}_SECRET in the environment (never in a policy or an argument), "
                "or run with --dry-run"
            )
        try:
            live_format(exchange_id)
        except ValueError as exc:
            raise fail(exc) from None
        quotes = sorted({symbol.partition("/")[2] for symbol in symbols})
        if len(quotes) != 1 or not quotes[0]:
            raise fail(
                f"live orders need every universe symbol quoted in one currency, found {quotes}"
            )
    try:
        venue = CcxtVenue(
            exchange.removeprefix("ccxt:"),
            dict(os.environ),
            timeout_s=float(loaded.get("exchange", "timeout_s", default=10.0)),
            failure_threshold=int(
                loaded.get("exchange", "circuit_breaker", "failure_threshold", default=5)
            ),
            cooldown_s=float(loaded.get("exchange", "circuit_breaker", "cooldown_s", default=60.0)),
            sandbox=sandbox,
        )
    except (ValueError, VenueError) as exc:
        raise fail(exc) from None
    directory = resolve_state_dir(state_dir)
    actual = None
    decisions: list[Any] = []
    try:
        if not dry_run:
            actual, decisions = _venue_broker(venue, exchange_id, symbols, directory)
        runtime = Runtime(
            loaded,
            plugins,
            {s: [] for s in symbols},
            directory,
            PaperBroker.from_policy,
            spec={"kind": "live", "exchange": exchange, "dry_run": dry_run, "sandbox": sandbox},
            actual_broker=actual,
        )
    except BrokerError as exc:  # the venue could not tell its balances or orders
        venue.close()
        raise fail(f"cannot start live orders on {exchange_id}: {exc}") from None
    except JournalError as exc:  # the state store cannot be used
        venue.close()
        raise fail(exc) from None
    runtime.journal_reconciliation(decisions, datetime.now(UTC))
    for decision in decisions:
        typer.echo(
            f"aios: reconcile {decision.subject} ({decision.symbol}): {decision.action}: "
            f"{decision.detail}",
            err=True,
        )
    _start_watcher(runtime, files, plugins, watch)
    warmup = int(loaded.get("subsystems", "signal_model", "lookback_candles", default=600))
    timeframe = str(loaded.get("universe", "timeframe", default="5m"))
    runtime.exchange_health = venue.health_metrics
    runner = LiveRunner(
        runtime,
        venue,
        symbols,
        timeframe,
        poll_s=poll_s,
        warmup_candles=warmup,
        live_orders=not dry_run,
        recheck=None if actual is None else (lambda now: actual.recheck(venue, now)),
        recheck_s=float(loaded.get("exchange", "recheck_frozen_s", default=300.0)),
    )
    previous = {
        sig: signal.signal(sig, lambda *_: runner.stop.set())
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        report = runner.run(max_polls)
    finally:
        if runtime.watcher is not None:
            runtime.watcher.stop()
        venue.close()
        if actual is not None and actual.store is not None:
            actual.store.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if actual is not None:
        for error in actual.errors:
            typer.echo(f"aios: warning: {error}", err=True)
        for order in actual.unresolved():
            typer.echo(
                f"aios: unresolved venue order {order.client_id} ({order.symbol}, "
                f"{order.status}): its position stays frozen until the next start reconciles it "
                f"(or `aios venue resolve {order.client_id}` records what the venue shows)",
                err=True,
            )
    for decision in runner.rechecked:
        typer.echo(
            f"aios: re-check {decision.subject} ({decision.symbol}): {decision.action}: "
            f"{decision.detail}",
            err=True,
        )
    for error in runner.errors:
        typer.echo(f"aios: warning: {error}", err=True)
    if report is None:
        raise fail("no candle time was complete; nothing was traded")
    _emit_report(report, quiet, json_out, html_out)


def _venue_broker(
    venue: Any, exchange_id: str, symbols: list[str], directory: Path
) -> tuple[Any, list[Any]]:
    """The venue broker over the state store's venue memory, reconciled with the venue."""
    from datetime import UTC, datetime

    from aios.exchange.base import BrokerError
    from aios.exchange.client_ids import format_for, venue_client_id
    from aios.exchange.venue_broker import VenueBroker
    from aios.exchange.venue_store import StoreLocked, VenueStore
    from aios.state import database_path

    fmt = format_for(exchange_id)
    try:  # held until the run closes the store: no operator decision meanwhile
        store = VenueStore(database_path(directory), exchange_id, lock="a live run (aios run)")
    except StoreLocked as exc:
        raise BrokerError(str(exc)) from None
    namespace = store.namespace()
    broker = VenueBroker(
        venue,
        quote_currency=symbols[0].partition("/")[2],
        store=store,
        venue_client_id=lambda client_id: venue_client_id(fmt, namespace, client_id),
        client_id_namespace=namespace,
    )
    return broker, broker.reconcile(venue, datetime.now(UTC), symbols)


@app.command()
def status(
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text or json.")
    ] = OutputFormat.text,
    state_dir: StateDirOption = None,
) -> None:
    """The latest run: stage, risk mode, directives, policy, subsystem health, actual vs shadow."""
    from aios.cli_venue import attention, render_attention
    from aios.state import database_path
    from aios.status import StatusError, read_status

    try:
        current = read_status(state_dir)
    except StatusError as exc:
        raise fail(exc) from None
    from aios.exchange.venue_store import VenueStoreUnreadable

    try:
        current["venue"] = attention(database_path(state_dir))  # live runs: what is frozen
    except VenueStoreUnreadable as exc:
        raise fail(exc) from None
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(current, indent=2))
        return
    typer.echo(
        f"run {current['run_id']} ({current['status']}), stage {current['stage']}, policy {current['policy_hash'][:12]} from {', '.join(current['policy_sources'])}"
    )
    typer.echo(
        f"risk mode: {current['risk_mode']}; active directives: {', '.join(current['directives']) or 'none'}"
    )
    typer.echo(f"last policy reload: {current['last_reload'] or 'none in this run'}")
    unhealthy = {name: state for name, state in current["health"].items() if state != "OK"}
    typer.echo(
        f"health: {len(current['health'])} components, "
        + (", ".join(f"{n} {s}" for n, s in sorted(unhealthy.items())) or "all OK")
    )
    books = current.get("books") or {}
    for name in ("actual", "shadow"):
        book = books.get(name)
        if book:
            win = "n/a" if book["win_rate"] is None else f"{book['win_rate']:.1%}"
            drawdown = (
                "n/a" if book["max_drawdown_pct"] is None else f"{book['max_drawdown_pct']:.3f} %"
            )
            as_of = f", as of candle time {book['as_of']}" if book.get("as_of") else ""
            typer.echo(
                f"{name:>6}: {book['trades']} trades, win rate {win}, PnL {book['pnl_pct']:+.3f} %, max drawdown {drawdown}{as_of}"
            )
    for line in render_attention(current["venue"]):
        typer.echo(line)


stage_app = typer.Typer(
    help="The integration stage: status, promotion, demotion, history.", no_args_is_help=True
)
app.add_typer(stage_app, name="stage")
app.add_typer(plugins_app, name="plugins")
app.add_typer(venue_app, name="venue")


def _stage_context(files: list[Path] | None, state_dir: Path | None) -> tuple[Any, Any]:
    from aios.stages import StageError, StageStore
    from aios.state import database_path

    policy = policy_or_exit(files)
    try:
        store = StageStore(database_path(state_dir), create=False)
        if store.current() is None:
            raise StageError(
                f"the state store {database_path(state_dir)} has no stage yet: run `aios run` first"
            )
    except StageError as exc:
        raise fail(exc) from None
    return policy, store


PolicyOption = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option(
        "--policy",
        "-p",
        help="Policy file(s) whose guards apply. Default: the bundled default policy.",
    ),
]


def _print_guards(guards: list[dict[str, Any]]) -> None:
    for guard in guards:
        mark = "pass" if guard["passed"] else "FAIL"
        typer.echo(
            f"  [{mark}] {guard['name']}: required {guard['required']}, actual {guard['actual']}"
        )


@stage_app.command("status")
def stage_status(
    policy: PolicyOption = None,
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text or json.")
    ] = OutputFormat.text,
    state_dir: StateDirOption = None,
) -> None:
    """The stage, since when, and for the next step every guard with its required and actual value."""
    from aios.stages import StageError

    loaded, store = _stage_context(policy, state_dir)
    try:
        current = store.status(loaded)
    except StageError as exc:
        raise fail(exc) from None
    finally:
        store.close()
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(current, indent=2))
        return
    typer.echo(f"stage {current['stage']} since {current['since']}")
    if current["next"] is None:
        typer.echo("AUTONOMY is the highest stage")
        return
    verdict = "all guards pass" if current["promotable"] else "not promotable yet"
    typer.echo(f"next: {current['next']} ({verdict})")
    _print_guards(current["guards"])


@stage_app.command("promote")
def stage_promote(
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded in the history). Required.")
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the guards without moving.")
    ] = False,
    to: Annotated[
        str | None,
        typer.Option("--to", help="AUTONOMY from OBSERVATION, when the policy allows skipping."),
    ] = None,
    policy: PolicyOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Promote one step when every guard passes; otherwise list every failing guard (exit 1)."""
    from aios.model import Stage
    from aios.stages import StageError

    if not reason.strip():
        raise usage_error("--reason must say why")
    target = None
    if to is not None:
        try:
            target = Stage(to.upper())
        except ValueError:
            raise usage_error(f"unknown stage {to!r}: OBSERVATION, ADVISORY or AUTONOMY") from None
    loaded, store = _stage_context(policy, state_dir)
    try:
        expected = store.current().stage
        result = store.promote(loaded, reason, expected=expected, dry_run=dry_run, to=target)
    except StageError as exc:
        raise fail(exc) from None
    finally:
        store.close()
    if result["allowed"] and dry_run:
        typer.echo(f"{result['from']}: promotion would be allowed (dry run, nothing moved)")
        return
    if result["moved"]:
        typer.echo(f"promoted {result['from']} -> {result['to']}")
        return
    typer.echo(f"aios: promotion from {result['from']} refused; failing guards:", err=True)
    for guard in result["failing"]:
        typer.echo(
            f"  {guard['name']}: required {guard['required']}, actual {guard['actual']}", err=True
        )
    raise typer.Exit(EXIT_INVALID)


@stage_app.command("demote")
def stage_demote(
    to: Annotated[str, typer.Option("--to", help="OBSERVATION or ADVISORY.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (recorded in the history). Required.")
    ],
    policy: PolicyOption = None,
    state_dir: StateDirOption = None,
) -> None:
    """Demote to a lower stage: always allowed."""
    from aios.model import Stage
    from aios.stages import StageError

    if not reason.strip():
        raise usage_error("--reason must say why")
    try:
        target = Stage(to.upper())
    except ValueError:
        raise usage_error(f"unknown stage {to!r}: OBSERVATION or ADVISORY") from None
    loaded, store = _stage_context(policy, state_dir)
    try:
        result = store.demote(loaded, target, reason)
    except StageError as exc:
        raise fail(exc) from None
    finally:
        store.close()
    typer.echo(f"demoted {result['from']} -> {result['to']}")


@stage_app.command("history")
def stage_history(
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="text or json.")
    ] = OutputFormat.text,
    state_dir: StateDirOption = None,
) -> None:
    """Every stage change: when, from, to, who, why, with which policy and evidence."""
    from aios.stages import StageError, StageStore
    from aios.state import database_path

    try:
        store = StageStore(database_path(state_dir), create=False)
        rows = store.history()
        store.close()
    except StageError as exc:
        raise fail(exc) from None
    if output_format is OutputFormat.json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        how = "automatic" if row["automatic"] else row["who"]
        typer.echo(
            f"{row['time']}  {row['from'] or '-':<11} -> {row['to']:<11} {row['trigger']:<22} {how}: {row['reason']} (policy {row['policy_hash'][:12]})"
        )


register_bus_commands(app)  # aios worker, aios service ... (aios/cli_bus.py)


def main() -> None:
    """Console-script entry point."""
    app()
