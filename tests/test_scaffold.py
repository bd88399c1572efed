"""`aios plugins new`: the generated package is lint-, type- and test-clean as generated, installs
into this environment, is found and checked by aios, and is uninstalled again afterwards."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios.cli import app as cli

BIN = Path(sys.executable).parent
PIP = [sys.executable, "-m", "pip"]
QUIET = ["--quiet", "--disable-pip-version-check"]


def run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "Spread-Guard",
            "invalid plugin name 'Spread-Guard': use lower_snake_case (a letter, then letters, digits or _), like 'spread_guard'",
        ),
        ("9lives", "invalid plugin name '9lives': use lower_snake_case"),
        ("class", "plugin name 'class' is a Python keyword"),
        ("coordinator", "plugin name 'coordinator' is taken by aios itself"),
        ("x" * 41, "is longer than 40 characters"),
    ],
)
def test_a_bad_name_is_refused_with_a_clear_error_and_nothing_written(
    tmp_path: Path, name: str, message: str
) -> None:
    target = tmp_path / "out"
    result = CliRunner().invoke(cli, ["plugins", "new", name, "--directory", str(target)])
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert not target.exists()


def test_every_built_in_subsystem_name_and_the_engine_s_names_are_refused() -> None:
    from aios.policy.schema import core_schema
    from aios.scaffold import ScaffoldError, check_name

    built_in = set(core_schema()["properties"]["subsystems"]["properties"])
    assert {"coordinator", "retraining"} <= built_in
    for name in sorted(built_in | {"engine", "safety", "harness_signals"}):
        with pytest.raises(ScaffoldError, match=f"plugin name '{name}' is taken by aios itself"):
            check_name(name)


def test_a_directory_that_is_a_file_or_cannot_be_made_is_a_one_line_error(tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.write_text("keep me")
    result = CliRunner().invoke(cli, ["plugins", "new", "guard", "--directory", str(occupied)])
    assert result.exit_code == 2
    assert result.output == f"aios: error: {occupied} exists and is not a directory\n"
    below_a_file = occupied / "pkg"
    result = CliRunner().invoke(cli, ["plugins", "new", "guard", "--directory", str(below_a_file)])
    assert result.exit_code == 2
    assert result.output.startswith("aios: error: cannot write ")
    assert len(result.output.splitlines()) == 1
    assert occupied.read_text() == "keep me"


def test_an_existing_non_empty_directory_is_refused_and_left_alone(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(cli, ["plugins", "new", "guard", "--directory", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path} exists and is not empty" in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_an_empty_directory_is_filled(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plugins", "new", "guard", "--directory", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "src/aios_guard/__init__.py",
        "src/aios_guard/py.typed",
        "tests/test_guard.py",
    ]
    pyproject = (tmp_path / "pyproject.toml").read_text()
    assert '[project.entry-points."aios.plugins"]\nguard = "aios_guard:Guard"' in pyproject


@pytest.fixture
def installed_scaffold(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Scaffold a uniquely named plugin, pip-install it into this environment (offline, no
    build isolation), and uninstall it afterwards, checking the environment is as it was."""
    name = f"probe_{os.getpid()}"
    dist = f"aios-probe-{os.getpid()}"
    with pytest.raises(PackageNotFoundError):
        distribution(dist)
    target = tmp_path_factory.mktemp("scaffold") / dist
    result = CliRunner().invoke(cli, ["plugins", "new", name, "--directory", str(target)])
    assert result.exit_code == 0, result.output
    install = run(
        [*PIP, "install", *QUIET, "--no-deps", "--no-build-isolation", "--no-index", str(target)],
        target,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    try:
        yield name, target
    finally:
        uninstall = run([*PIP, "uninstall", *QUIET, "--yes", dist], target)
        assert uninstall.returncode == 0, uninstall.stdout + uninstall.stderr
        for module in [m for m in sys.modules if m.startswith(f"aios_{name}")]:
            del sys.modules[module]
    with pytest.raises(PackageNotFoundError):
        distribution(dist)
    importlib.invalidate_caches()
    assert importlib.util.find_spec(f"aios_{name}") is None  # no module left behind


def test_the_generated_package_installs_and_passes_its_own_tests(
    installed_scaffold: tuple[str, Path],
) -> None:
    name, target = installed_scaffold
    # lint- and type-clean as generated, with its own configuration
    for argv in (
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy"), "--cache-dir", str(target / ".mypy_cache")],
    ):
        checked = run(argv, target)
        assert checked.returncode == 0, f"{argv}: {checked.stdout}{checked.stderr}"
    # its own tests pass, with the harness fixtures from aios's pytest11 plugin
    tests = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], target)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "4 passed" in tests.stdout
    # aios finds it through its entry point, and finds nothing wrong with it
    listed = CliRunner().invoke(cli, ["plugins", "list", "--format", "json"])
    [row] = [r for r in json.loads(listed.output)["plugins"] if r["name"] == name]
    assert row["source"].startswith(f"aios-probe-{os.getpid()} ")
    assert (row["version"], row["mode"], row["hooks"]) == (
        "0.1.0",
        "OFF",
        ["aios_filter_entry", "aios_policy_section"],
    )
    checked_cli = CliRunner().invoke(cli, ["plugins", "check", "--strict"])
    assert checked_cli.exit_code == 0, checked_cli.output
