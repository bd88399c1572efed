"""The plugin declaration cache of `aios validate`: the same answers as importing every plugin,
and never a stale one when a plugin is installed, upgraded, edited or removed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aios import app, plugin_cache
from aios.policy import PolicyInvalid

REPO = Path(__file__).resolve().parent.parent
DEFAULT = REPO / "policies" / "default.yaml"

PLUGIN = """\
from aios.hookspecs import hookimpl
from aios.metrics import MetricSpec
from aios.model import PolicySection


class AcmeGuard:
    name = "acme_guard"

    @hookimpl
    def aios_policy_section(self):
        return PolicySection(
            "acme_guard", {{"properties": {{"limit_pct": {{"type": "number", "maximum": {maximum}}}}}}}
        )

    @hookimpl
    def aios_metrics(self):
        return [MetricSpec("acme_risk_pct", "%", "Acme's risk estimate.")]
"""

OVERLAY = """\
subsystems:
  acme_guard:
    mode: OBSERVE
    limit_pct: 5
"""


def install(site: Path, version: str, maximum: str) -> None:
    """Install (or upgrade to) acme-guard `version`, as pip lays a distribution out."""
    for old in site.glob("acme_guard-*.dist-info"):
        shutil.rmtree(old)
    info = site / f"acme_guard-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: acme-guard\nVersion: {version}\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[aios.plugins]\nacme_guard = acme_guard:AcmeGuard\n", encoding="utf-8"
    )
    (site / "acme_guard.py").write_text(PLUGIN.format(maximum=maximum), encoding="utf-8")


def uninstall(site: Path) -> None:
    for old in site.glob("acme_guard-*.dist-info"):
        shutil.rmtree(old)
    (site / "acme_guard.py").unlink()


def validate(tmp_path: Path, site: Path, cache: Path) -> dict[str, object]:
    """`aios validate --format json` in a fresh interpreter (as a user runs it)."""
    overlay = tmp_path / "acme.yaml"
    overlay.write_text(OVERLAY, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "aios",
            "validate",
            "--format",
            "json",
            "--no-env",
            str(DEFAULT),
            str(overlay),
        ],
        cwd=tmp_path,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(site),
            "PYTHONDONTWRITEBYTECODE": "1",  # a same-size edit must not run an old .pyc
            "AIOS_CACHE_DIR": str(cache),
        },
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def messages(report: dict[str, object]) -> list[str]:
    errors = report["errors"]
    assert isinstance(errors, list)
    return [f"{e['path']}: {e['message']}" for e in errors]


def test_install_upgrade_edit_and_removal_each_invalidate_the_cache(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()

    before = validate(tmp_path, site, cache)
    assert not before["valid"]
    assert any(m.startswith("subsystems.acme_guard: unknown key") for m in messages(before))
    cached = list(cache.glob("plugin-declarations-*.json"))
    assert len(cached) == 1, "a clean discovery writes the cache"
    stamp = cached[0].stat().st_mtime_ns
    assert not validate(tmp_path, site, cache)["valid"]
    assert cached[0].stat().st_mtime_ns == stamp, "a fresh cache is read, not rewritten"

    install(site, "1.0", "10")
    assert validate(tmp_path, site, cache)["valid"], "an installed plugin's section is known"

    install(site, "2.0", "1")
    upgraded = validate(tmp_path, site, cache)
    assert messages(upgraded) == [
        "subsystems.acme_guard.limit_pct: expected a number <= 1, found integer 5"
    ]

    # An editable install: the code changes, site-packages does not. Same size, old mtime:
    # only the content tells.
    module = site / "acme_guard.py"
    info = module.stat()
    module.write_text(PLUGIN.format(maximum="9"), encoding="utf-8")
    os.utime(module, ns=(info.st_atime_ns, info.st_mtime_ns))
    assert module.stat().st_size == info.st_size
    assert validate(tmp_path, site, cache)["valid"], "an edited plugin's new section is used"

    uninstall(site)
    removed = validate(tmp_path, site, cache)
    assert any(m.startswith("subsystems.acme_guard: unknown key") for m in messages(removed))


@pytest.fixture
def acme_on_path(tmp_path: Path) -> Iterator[Path]:
    """acme-guard 1.0 installed in a directory on sys.path, in this process."""
    site = tmp_path / "site"
    site.mkdir()
    install(site, "1.0", "10")
    sys.path.insert(0, str(site))
    yield site
    sys.path.remove(str(site))
    sys.modules.pop("acme_guard", None)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("AIOS_CACHE_DIR", str(directory))
    return directory


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def no_discovery(*args: object, **kwargs: object) -> None:
    raise AssertionError("a fresh cache must not import plugins")


def test_a_hit_imports_no_plugin_and_gives_the_same_policy(
    acme_on_path: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [DEFAULT, write(tmp_path, "acme.yaml", OVERLAY)]
    loaded, _plugins = app.load(files, env={})
    first, problems = app.check(files, env={})  # a miss: imports them, writes the cache
    assert problems == [] and first.hash == loaded.hash
    monkeypatch.setattr("aios.registry.discover", no_discovery)
    second, problems = app.check(files, env={})
    assert problems == [] and second.hash == loaded.hash
    assert second.origins == loaded.origins


def test_a_hit_applies_the_policys_deny_list(
    acme_on_path: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.check([DEFAULT], env={})  # fills the cache from an unfiltered discovery
    monkeypatch.setattr("aios.registry.discover", no_discovery)
    denied = write(
        tmp_path,
        "deny.yaml",
        "plugins:\n  deny: [model_supervisor]\ndirectives:\n  NO_NEW_TRADES:\n"
        '    trigger: "model_directional_bias > 0.9 or acme_risk_pct > 5"\n'
        '    clear_when: "drawdown_pct < 1"\n',
    )
    with pytest.raises(PolicyInvalid) as caught:
        app.check([DEFAULT, denied], env={})
    monkeypatch.undo()
    with pytest.raises(PolicyInvalid) as expected:
        app.load([DEFAULT, denied], env={})
    assert [str(i) for i in caught.value.errors] == [str(i) for i in expected.value.errors]
    assert any("unknown metric 'model_directional_bias'" in str(i) for i in caught.value.errors)


def test_a_broken_plugin_is_reported_every_time_and_never_cached(
    cache_dir: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install(site, "1.0", "10")
    (site / "acme_guard.py").write_text("raise ImportError('no licence key')\n", encoding="utf-8")
    sys.path.insert(0, str(site))
    try:
        for _ in range(2):
            _policy, problems = app.check([DEFAULT], env={})
            assert [p.message for p in problems] == [
                "failed to import: ImportError: no licence key"
            ]
        assert not list(cache_dir.glob("*.json"))
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("acme_guard", None)


def test_a_corrupt_or_foreign_cache_file_is_ignored_and_replaced(
    acme_on_path: Path, cache_dir: Path, tmp_path: Path
) -> None:
    files = [DEFAULT, write(tmp_path, "acme.yaml", OVERLAY)]
    app.check(files, env={})
    location = plugin_cache.cache_file()
    assert location is not None and location.exists()
    for junk in ("{not json", '{"format": 99}', '{"format": 1, "environment": 3}', "[]"):
        location.write_text(junk, encoding="utf-8")
        policy, problems = app.check(files, env={})
        assert policy.get("subsystems", "acme_guard", "limit_pct") == 5 and problems == []
        assert json.loads(location.read_text(encoding="utf-8"))["format"] == plugin_cache.FORMAT


def test_switched_off_or_unwritable_the_cache_changes_nothing(
    acme_on_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = [DEFAULT, write(tmp_path, "acme.yaml", OVERLAY)]
    monkeypatch.setenv("AIOS_PLUGIN_CACHE", "off")
    monkeypatch.setenv("AIOS_CACHE_DIR", str(tmp_path / "off"))
    assert plugin_cache.cache_file() is None
    assert app.check(files, env={})[0].get("subsystems", "acme_guard", "limit_pct") == 5
    assert not (tmp_path / "off").exists()
    monkeypatch.delenv("AIOS_PLUGIN_CACHE")
    blocker = write(tmp_path, "not-a-directory", "")
    monkeypatch.setenv("AIOS_CACHE_DIR", str(blocker))
    assert app.check(files, env={})[0].get("subsystems", "acme_guard", "limit_pct") == 5


CORPUS = sorted((REPO / "tests" / "policy_corpus" / "invalid").glob("*.yaml"))


def test_from_a_fresh_cache_every_corpus_file_gets_the_errors_of_a_full_load(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app.check([DEFAULT], env={})  # fills the cache
    for path in CORPUS:
        standalone = "# standalone" in path.read_text(encoding="utf-8").splitlines()
        files = [path] if standalone else [DEFAULT, path]
        with pytest.raises(PolicyInvalid) as expected:
            app.load(files, env={})
        with monkeypatch.context() as patched:
            patched.setattr("aios.registry.discover", no_discovery)
            with pytest.raises(PolicyInvalid) as cached:
                app.check(files, env={})
        assert [str(i) for i in cached.value.issues] == [str(i) for i in expected.value.issues]


def test_a_section_json_would_not_give_back_is_not_cached(cache_dir: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    install(site, "1.0", "10")
    module = site / "acme_guard.py"
    module.write_text(
        module.read_text(encoding="utf-8").replace(
            '"maximum": 10}', '"maximum": 10, "enum": (1, 5)}'
        ),
        encoding="utf-8",
    )
    sys.path.insert(0, str(site))
    try:
        policy, problems = app.check([DEFAULT, write(tmp_path, "acme.yaml", OVERLAY)], env={})
        assert policy.get("subsystems", "acme_guard", "limit_pct") == 5 and problems == []
        assert not list(cache_dir.glob("*.json")), "a tuple would come back as a list"
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("acme_guard", None)


def test_stage_commands_read_the_policy_from_the_cache_without_importing_a_plugin(
    acme_on_path: Path, cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from aios.cli import app as cli
    from aios.stages import StageStore
    from aios.state import database_path

    overlay = write(tmp_path, "acme.yaml", OVERLAY)
    loaded, _plugins = app.load([DEFAULT, overlay], env={})
    state = tmp_path / "state"
    state.mkdir()
    store = StageStore(database_path(state), create=True)
    store.ensure(loaded)
    expected = store.status(loaded)  # the guards of the policy a full load gives
    store.close()
    policy_args = ["-p", str(DEFAULT), "-p", str(overlay), "--state-dir", str(state)]
    app.check([DEFAULT, overlay], env={})  # a miss: writes the cache
    monkeypatch.setattr("aios.registry.discover", no_discovery)
    status = CliRunner().invoke(cli, ["stage", "status", "--format", "json", *policy_args])
    assert status.exit_code == 0, status.output
    shown = json.loads(status.stdout)
    assert (shown["stage"], shown["next"]) == (expected["stage"], expected["next"])
    required = [(g["name"], g["required"]) for g in shown["guards"]]  # actuals follow the clock
    assert required == [(g["name"], g["required"]) for g in expected["guards"]] and required
    promote = CliRunner().invoke(cli, ["stage", "promote", "--reason", "early", *policy_args])
    assert promote.exit_code == 1  # refused on its guards, not on a plugin import
    assert "min_decisions: required >= 500, actual 0" in promote.stderr


def test_stage_commands_report_an_invalid_policy_like_a_full_load(
    cache_dir: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from aios.cli import app as cli

    overlay = write(tmp_path, "bad.yaml", "subsystems:\n  acme_guard:\n    mode: OBSERVE\n")
    result = CliRunner().invoke(
        cli,
        ["stage", "status", "-p", str(DEFAULT), "-p", str(overlay), "--state-dir", str(tmp_path)],
    )
    assert result.exit_code == 1
    assert f"{overlay}:2:3: subsystems.acme_guard: unknown key" in result.stderr
    assert "Traceback" not in result.output
