"""The bus commands: clean stop on SIGTERM, clear errors for a bus that cannot work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from distributed import DEFAULT_POLICY
from processes import overlay, stop, wait_for
from typer.testing import CliRunner, Result

from aios.bus import BusSettings, open_bus
from aios.cli import app as cli
from aios.cli_common import write_output


def service_app_commands() -> list[str]:
    from aios.cli_bus import service_app

    return sorted(str(c.name) for c in service_app.registered_commands)


def aios(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AIOS_BUS"}
    return subprocess.run(
        [sys.executable, "-m", "aios", *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize(
    "command",
    [["worker"], *(["service", name] for name in service_app_commands())],
)
def test_every_bus_command_refuses_an_in_process_bus(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--bus", "memory://"], env={"AIOS_BUS": None})
    assert result.exit_code == 2
    assert result.stderr == (
        "aios: error: an in-process bus is not shared between processes: "
        "pass --bus redis://host:port/db\n"
    )


def test_an_unreachable_redis_is_a_clear_error(tmp_path: Path) -> None:
    extra = tmp_path / "fast.yaml"
    extra.write_text("version: 1\nbus:\n  reconnect: {initial_s: 0.01, attempts: 2}\n")
    result = aios(
        "service", "rl-agent", "--bus", "redis://127.0.0.1:1/0",
        "-p", str(DEFAULT_POLICY), "-p", str(extra), "--state-dir", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 1
    where = "aios: Redis at redis://127.0.0.1:1/0 unreachable"
    # at once what is wrong, at the end that it gave up: two lines, no traceback
    first, last = result.stderr.splitlines()
    assert first.startswith(f"{where} (ConnectionError: ")
    assert first.endswith("): retrying up to 2 time(s) with backoff (bus.reconnect)")
    assert last.startswith(f"{where} after 2 reconnect attempt(s): ConnectionError: ")


def test_rl_agent_stops_cleanly_on_sigterm(redis_url: str, prefix: str, tmp_path: Path) -> None:
    extra = overlay(tmp_path, prefix, block_ms=50)
    bus = open_bus(redis_url, BusSettings(prefix=prefix))
    env = {k: v for k, v in os.environ.items() if k != "AIOS_BUS"}
    command = [
        sys.executable, "-m", "aios", "service", "rl-agent", "--bus", redis_url,
        "-p", str(DEFAULT_POLICY), "-p", str(extra), "--state-dir", str(tmp_path),
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, env=env)
    try:
        wait_for(lambda: bus.read_hash("rl_agent") != {}, "the first statistics")
        first = bus.read_hash("rl_agent")["updated_at"]
        assert stop(process) == 0
        # the final statistics are written on the way out
        assert bus.read_hash("rl_agent")["updated_at"] != first
    finally:
        if process.poll() is None:
            process.kill()
        bus.clear()


def test_risk_gate_command_replays_through_a_worker(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    from processes import policy_files, start_worker

    extra = overlay(tmp_path, prefix, block_ms=50)
    files = policy_files(extra)
    bus = open_bus(redis_url, BusSettings(prefix=prefix))
    one = start_worker(redis_url, "only", files, tmp_path / "worker.log")
    try:
        wait_for(lambda: bus.members("workers", 1e12, 1e13) == ["only"], "the worker to join")
        result = aios(
            "service", "risk-gate", "--bus", redis_url, "-p", str(files[0]), "-p", str(files[1]),
            "--state-dir", str(tmp_path / "state"), "--limit", "60", "--replay-id", "cli",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["decided"] == 60
        assert report["candles"] == 60
        assert report["replay_id"] == "cli"
    finally:
        assert stop(one) == 0
        bus.clear()


HEAVY = ("redis", "numpy", "jsonschema", "ccxt", "pluggy")


@pytest.mark.parametrize(
    "args", [["--help"], ["worker", "--help"], ["service", "--help"], ["plugins", "--help"]]
)
def test_help_imports_no_heavy_module(args: list[str]) -> None:
    """`aios --help` (and the bus and plugin commands' help) stays fast: none of the heavy
    packages is imported until a command runs."""
    probe = (
        "import sys\n"
        "from aios.cli import app\n"
        "try:\n"
        f"    app({args!r})\n"
        "except SystemExit as exit:\n"
        "    assert exit.code == 0, exit.code\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: " in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def invoke(*args: str) -> Result:
    """The CLI in this process (the error paths end before any service starts)."""
    return CliRunner().invoke(cli, list(args), env={"AIOS_BUS": None})


def one_line_error(result: Result, status: int) -> str:
    """The single stderr line of a refused command, after checking the exit status."""
    assert result.exit_code == status, result.output
    assert "Traceback" not in result.output
    [line] = result.stderr.splitlines()
    return line


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:notaport/0", "the port is not a number"),
        ("redis://user:secret@127.0.0.1:6379/abc", "the database 'abc' is not a number"),
        ("http://127.0.0.1:6379", "unknown bus 'http://127.0.0.1:6379'"),
    ],
)
def test_a_bad_bus_url_is_a_usage_error_naming_it_without_its_password(
    url: str, message: str
) -> None:
    line = one_line_error(invoke("service", "dead-letters", "--bus", url), 2)
    assert line.startswith("aios: error: ") and message in line
    assert line.endswith("(from --bus or AIOS_BUS)")
    assert "secret" not in line


def test_a_bad_bus_url_in_the_policy_names_the_file_and_line(tmp_path: Path) -> None:
    extra = tmp_path / "bus.yaml"
    extra.write_text('version: 1\nbus:\n  url: "redis://127.0.0.1:xx/0"\n')
    result = invoke("service", "dead-letters", "-p", str(DEFAULT_POLICY), "-p", str(extra))
    line = one_line_error(result, 2)
    assert line.endswith(f"(from bus.url at {extra}:3:8)")


def test_a_database_redis_refuses_is_a_one_line_error(redis_url: str) -> None:
    refused = redis_url.rpartition("/")[0] + "/99999"
    line = one_line_error(invoke("service", "dead-letters", "--bus", refused), 1)
    assert line == f"aios: Redis at {refused} refused: DB index is out of range"


@pytest.mark.parametrize("command", [["worker"], ["service", "rl-agent"], ["service", "risk-gate"]])
def test_a_state_directory_that_cannot_be_made_is_a_one_line_error(
    command: list[str], tmp_path: Path
) -> None:
    occupied = tmp_path / "a-file"
    occupied.write_text("")
    state = occupied / "state"
    result = invoke(*command, "--bus", "redis://127.0.0.1:1/0", "--state-dir", str(state))
    line = one_line_error(result, 1)
    assert line.startswith(f"aios: cannot create the state directory {state}: ")


def test_an_unknown_book_is_a_usage_error() -> None:
    result = invoke("service", "rl-agent", "--book", "paper")
    assert result.exit_code == 2
    assert "'paper' is not one of 'actual', 'shadow'" in result.output


def test_the_book_choices_are_the_runtime_s_books() -> None:
    from aios.cli_bus import Book
    from aios.runtime import BOOKS

    assert tuple(Book) == BOOKS


def test_a_report_file_that_cannot_be_written_goes_to_stdout_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "missing" / "report.json"
    with pytest.raises(typer.Exit) as exited:
        write_output('{"decided": 3}', target)
    assert exited.value.exit_code == 1
    out, err = capsys.readouterr()
    assert out == '{"decided": 3}\n'  # the result of a long replay is not lost
    assert err == (
        f"aios: cannot write {target}: No such file or directory; the output went to stdout\n"
    )
    write_output("{}", tmp_path / "report.json")
    assert (tmp_path / "report.json").read_text() == "{}\n"


@pytest.mark.parametrize("command", [["worker"], ["service", "risk-gate"]])
def test_a_missing_data_directory_is_reported_before_reaching_for_redis(
    command: list[str], tmp_path: Path
) -> None:
    missing = tmp_path / "candles"
    result = invoke(*command, "--bus", "redis://127.0.0.1:1/0", "--data-dir", str(missing))
    assert one_line_error(result, 2) == f"aios: error: --data-dir {missing}: no such directory"
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(*command, "--bus", "redis://127.0.0.1:1/0", "--data-dir", str(empty))
    line = one_line_error(result, 1)
    assert line == f"aios: no candle files for the policy's universe in {empty}"


@pytest.mark.parametrize("command", [["worker"], ["service", "rl-agent"], ["service", "risk-gate"]])
def test_a_state_store_that_is_not_a_database_is_a_one_line_error_and_left_alone(
    command: list[str], redis_url: str, prefix: str, tmp_path: Path
) -> None:
    from aios.state import database_path

    extra = overlay(tmp_path, prefix)
    state = tmp_path / "state"
    state.mkdir()
    store = database_path(state)
    store.write_bytes(b"garbage" * 200)
    result = invoke(
        *command, "--bus", redis_url, "-p", str(DEFAULT_POLICY), "-p", str(extra),
        "--state-dir", str(state),
    )  # fmt: skip
    line = one_line_error(result, 1)
    # SQLite's words ("file is not a database") or the stage store's header check's ("not an
    # SQLite database", which the risk gate's Runtime meets first): the file named either way.
    assert line.startswith(f"aios: cannot use {store} as a state store: "), line
    assert line.endswith("database (the file is left untouched)"), line
    assert store.read_bytes() == b"garbage" * 200
    open_bus(redis_url, BusSettings(prefix=prefix)).clear()
