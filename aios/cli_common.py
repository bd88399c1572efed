"""What every `aios` command module shares: exit statuses, output formats, one-line errors.

A module of its own (importing only typer) so that aios/cli.py, aios/cli_plugins.py and
aios/cli_bus.py use one definition without importing each other at start-up: aios/cli.py
imports the other two to register their commands.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

#: Exit statuses of every command: CI scripts rely on them (docs/plugins.md, docs/bus.md).
EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class OutputFormat(StrEnum):
    text = "text"
    json = "json"


def usage_error(message: str) -> typer.Exit:
    """Print `aios: error: <message>` to stderr; the caller raises the returned exit (status 2)."""
    typer.echo(f"aios: error: {message}", err=True)
    return typer.Exit(EXIT_USAGE)


def fail(message: object) -> typer.Exit:
    """Print `aios: <message>` to stderr; the caller raises the returned exit (status 1)."""
    typer.echo(f"aios: {message}", err=True)
    return typer.Exit(EXIT_INVALID)


def write_output(text: str, target: Path | None) -> None:
    """`text` to stdout (`target` None or '-') or to the file `target`; a file that cannot be
    written is a one-line error naming it (exit 1) after stdout received the text, so a long
    run's result is never lost to a typo in a path."""
    if target is None or str(target) == "-":
        typer.echo(text)
        return
    try:
        target.write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        typer.echo(text)
        raise fail(
            f"cannot write {target}: {exc.strerror or exc}; the output went to stdout"
        ) from None


def make_directory(path: Path, what: str) -> Path:
    """Create `path` (and its parents) or exit 1 saying which directory and why not."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise fail(f"cannot create the {what} {path}: {exc.strerror or exc}") from None
    return path


def series_or_exit(policy: Any, data_dir: Path | None) -> dict[str, Any]:
    """The candles of the policy's universe from `data_dir` (default: the bundled data), or a
    one-line error: a missing directory exits 2, unreadable or absent candle files exit 1."""
    from aios.data import DataError, bundled_data_dir
    from aios.runtime import load_series

    if data_dir is not None and not data_dir.is_dir():
        raise usage_error(f"--data-dir {data_dir}: no such directory")
    directory = data_dir or bundled_data_dir()
    try:
        series = load_series(directory, policy.get("universe", "symbols"))
    except DataError as exc:
        raise fail(exc) from None
    if not series:
        raise fail(f"no candle files for the policy's universe in {directory}")
    return series
