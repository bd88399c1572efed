"""`aios plugins list` and `aios plugins check` over installed (entry-point) plugins, good and bad.

Bad plugins are installed the way pip would leave them: a dist-info directory with an
`entry_points.txt` and a module, on sys.path for the test.
"""

from __future__ import annotations

import importlib
import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios.cli import app as cli

MODULE = """
from aios.hookspecs import hookimpl
from aios.metrics import MetricSpec
from aios.model import EntryVerdict, PolicySection


class Section:
    aios_contract = "1.0"

    @hookimpl
    def aios_policy_section(self):
        return PolicySection(self.name, {"properties": {}})


class Typo(Section):
    name = "typo"

    @hookimpl
    def aios_filter_entyr(self, ctx):
        return None


class Future(Section):
    name = "future"
    aios_contract = "2.0"


class BadSchema:
    name = "bad_schema"
    aios_contract = "1.0"

    @hookimpl
    def aios_policy_section(self):
        return PolicySection(self.name, {"properties": {"limit": {"type": "nmber"}}})


class NotASchema:
    name = "not_a_schema"
    aios_contract = "1.0"

    @hookimpl
    def aios_policy_section(self):
        return PolicySection(self.name, {"properties": 5})


class BadBlocker:  # would block every entry if it ran; its section is no JSON Schema: OFF
    name = "bad_blocker"
    aios_contract = "1.0"

    @hookimpl
    def aios_policy_section(self):
        return PolicySection(self.name, {"type": "not-a-type"})

    @hookimpl
    def aios_filter_entry(self, ctx, intent):
        return EntryVerdict(False, "bad_blocker blocks everything")


class Raising(Section):
    name = "raising"

    @hookimpl
    def aios_policy_section(self):
        raise RuntimeError("no licence key")


class Redefines:
    name = "redefines"
    aios_contract = "1.0"

    @hookimpl
    def aios_policy_section(self):
        return PolicySection(
            self.name,
            {"properties": {"mode": {"type": "string"}, "limit": {"type": "number", "minimum": 1, "default": 0}}},
        )


class Undeclared(Section):
    name = "undeclared"

    @hookimpl
    def aios_metrics(self):
        return [MetricSpec("declared_heat", "0..1", "declared")]

    @hookimpl
    def aios_collect_metrics(self, ctx):
        return {"declared_heat": 0.1, "secret_sauce": 1.0}


class Clash(Section):
    name = "clash"

    @hookimpl
    def aios_metrics(self):
        return [MetricSpec("drawdown_pct", "%", "mine")]


class Wrapper(Section):
    name = "wrapper"

    @hookimpl(wrapper=True)
    def aios_filter_entry(self, ctx, intent):
        return (yield)


class RefDefault:
    name = "ref_default"
    aios_contract = "1.0"

    @hookimpl
    def aios_policy_section(self):
        # a $ref into the policy schema's $defs, with a default it refuses
        return PolicySection(
            self.name, {"properties": {"fallback": {"$ref": "#/$defs/mode", "default": "NOPE"}}}
        )


class Silent:
    name = "silent"

    @hookimpl
    def aios_filter_entry(self, ctx, intent):
        return None
"""

ENTRY_POINTS = {
    "typo": "Typo",
    "future": "Future",
    "bad_schema": "BadSchema",
    "not_a_schema": "NotASchema",
    "raising": "Raising",
    "bad_blocker": "BadBlocker",
    "redefines": "Redefines",
    "undeclared": "Undeclared",
    "clash": "Clash",
    "wrapper": "Wrapper",
    "silent": "Silent",
    "ref_default": "RefDefault",
    "broken": "Missing",
}


def install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, names: list[str]) -> None:
    dist = tmp_path / "badplugs-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: badplugs\nVersion: 0.3\n")
    lines = "\n".join(f"{n} = badplugs_module:{ENTRY_POINTS[n]}" for n in names)
    (dist / "entry_points.txt").write_text(f"[aios.plugins]\n{lines}\n")
    (tmp_path / "badplugs_module.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()


def check_json(*args: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(cli, ["plugins", "check", "--format", "json", *args])
    return result.exit_code, json.loads(result.stdout)


def messages(report: dict[str, object], plugin: str) -> list[str]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return [
        f"{f['severity']} {f['kind']}: {f['message']}" for f in findings if plugin in f["plugin"]
    ]


def test_the_built_in_plugins_pass_the_check() -> None:
    result = CliRunner().invoke(cli, ["plugins", "check", "--strict"])
    assert result.exit_code == 0, result.output
    from aios.registry import discover

    built_in = len(discover().plugins)  # every one of pyproject's entry points
    assert built_in >= 13
    assert result.output.strip().endswith(f"{built_in} plugins loaded: 0 errors, 0 warnings")


def test_each_problem_is_reported_with_the_plugin_and_exit_status_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, list(ENTRY_POINTS))
    code, report = check_json()
    assert code == 1 and report["ok"] is False
    assert messages(report, "Typo") == [
        "error hooks: refused: aios_filter_entyr matches no hook of the contract (did you mean aios_filter_entry?)"
    ]
    assert messages(report, "Future") == [
        "error contract: declares hook contract 2.0, this aios provides 1.0 (major 1 required)"
    ]
    left_out = "the section is left out, so subsystems.{0} cannot be configured and {0} stays OFF"
    assert messages(report, "bad_schema") == [  # once, and no "declares no section" beside it
        "error section: the policy section is not a valid JSON Schema at properties.limit.type: 'nmber' is not valid under any of the given schemas; "
        + left_out.format("bad_schema")
    ]
    assert messages(report, "not_a_schema") == [
        "error section: the policy section is not a valid JSON Schema at properties: 5 is not of type 'object'; "
        + left_out.format("not_a_schema")
    ]
    assert messages(report, "raising") == [
        "error declaration: declaration hook raised RuntimeError: no licence key",
        "warning section: declares no policy section (aios_policy_section): subsystems.raising cannot be configured, so it stays OFF",
    ]
    assert messages(report, "redefines") == [
        "error section: the policy section redefines the common key 'mode', which is ignored (aios adds enabled, mode and on_error)",
        "error section: default of subsystems.redefines.limit does not satisfy its own schema: 0 is less than the minimum of 1",
    ]
    assert messages(report, "undeclared") == [
        "error metrics: provides undeclared metric(s) secret_sauce: declare them in aios_metrics"
    ]
    assert messages(report, "clash") == [
        "error metrics: declares metric 'drawdown_pct', already provided by core"
    ]
    assert [m.split(":")[0] for m in messages(report, "Wrapper")] == ["error hooks"]
    assert "aios_filter_entry is a wrapper implementation" in messages(report, "Wrapper")[0]
    assert messages(report, "silent") == [
        'warning contract: declares no hook contract version: add aios_contract = "1.0" (the version it is written against)',
        "warning section: declares no policy section (aios_policy_section): subsystems.silent cannot be configured, so it stays OFF",
    ]
    assert messages(report, "<policy>") == []  # the broken sections are left out of its schema
    assert messages(report, "Missing") == [
        "error import: failed to import: AttributeError: module 'badplugs_module' has no attribute 'Missing'"
    ]


def test_a_policy_configuring_a_left_out_section_is_invalid_and_the_section_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The policy does not validate here, so `check` loads the plugins afresh: the same single
    finding per plugin as when it validates."""
    install(tmp_path, monkeypatch, ["bad_schema", "raising"])
    overlay = tmp_path / "on.yaml"
    overlay.write_text("subsystems:\n  bad_schema:\n    mode: ENFORCED\n")
    default = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    code, report = check_json("-p", str(default), "-p", str(overlay))
    assert code == 1
    assert [m.split(":")[0] for m in messages(report, "bad_schema")] == ["error section"]
    assert [m.split(":")[0] for m in messages(report, "raising")] == [
        "error declaration",
        "warning section",
    ]
    [policy_error] = messages(report, "<policy>")
    assert f"{overlay}:2:3: subsystems.bad_schema: unknown key 'bad_schema'" in policy_error


def test_validate_warns_about_a_left_out_section_every_time_and_the_policy_stays_valid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, ["bad_schema", "not_a_schema"])
    default = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    for _ in range(2):  # a plugin with a problem is never cached as sound: warned again
        result = CliRunner().invoke(cli, ["validate", str(default)])
        assert result.exit_code == 0, result.output
        assert "Traceback" not in result.output
        lines = result.stdout.splitlines()
        assert (
            "plugin bad_schema: warning: (root): the policy section is not a valid JSON Schema at properties.limit.type: 'nmber' is not valid under any of the given schemas; the section is left out, so subsystems.bad_schema cannot be configured and bad_schema stays OFF"
            in lines
        )
        assert [line for line in lines if "not_a_schema" in line] == [
            "plugin not_a_schema: warning: (root): the policy section is not a valid JSON Schema at properties: 5 is not of type 'object'; the section is left out, so subsystems.not_a_schema cannot be configured and not_a_schema stays OFF"
        ]
        assert "valid (policy hash" in result.stdout


def test_configuring_a_left_out_section_is_an_error_that_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, ["bad_schema"])
    default = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    overlay = tmp_path / "configures.yaml"
    overlay.write_text("subsystems:\n  bad_schema:\n    mode: ENFORCED\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(default), str(overlay)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stdout.splitlines()
    assert any(
        line.startswith(f"{overlay}:2:3: subsystems.bad_schema: unknown key 'bad_schema'")
        for line in lines
    ), lines
    assert any(
        line.startswith("plugin bad_schema: warning:") and "the section is left out" in line
        for line in lines
    ), lines
    assert lines[-1].endswith("invalid, 1 error, 1 warning")


def test_a_default_is_checked_against_the_policy_schema_its_ref_points_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, ["ref_default"])
    code, report = check_json()
    assert code == 1
    assert messages(report, "ref_default") == [
        "error section: default of subsystems.ref_default.fallback does not satisfy its own schema: 'NOPE' is not one of ['OFF', 'OBSERVE', 'ADVISORY', 'ENFORCED']"
    ]


def test_warnings_pass_unless_strict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(tmp_path, monkeypatch, ["silent"])
    assert check_json()[0] == 0
    assert check_json("--strict")[0] == 1


def test_a_missing_policy_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["plugins", "check", "-p", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert f"no such file: {tmp_path / 'nope.yaml'}" in result.output


def test_list_with_an_invalid_policy_lists_the_plugins_and_exits_1(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 1\nbus: [\n")
    result = CliRunner().invoke(cli, ["plugins", "list", "-p", str(broken), "--format", "json"])
    assert result.exit_code == 1
    listing = json.loads(result.stdout)
    assert "coordinator" in {row["name"] for row in listing["plugins"]}
    [error] = listing["policy_errors"]
    assert error.startswith(f"{broken}:3:1: (root): YAML syntax")
    text = CliRunner().invoke(cli, ["plugins", "list", "-p", str(broken)])
    assert text.exit_code == 1
    assert f"aios: policy: {broken}:3:1:" in text.stderr
    assert "Traceback" not in text.output


def test_list_shows_version_source_hooks_mode_and_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(tmp_path, monkeypatch, ["undeclared", "future"])
    overlay = tmp_path / "on.yaml"
    overlay.write_text("subsystems:\n  undeclared:\n    mode: ENFORCED\n")
    default = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    state = tmp_path / "state"  # no run yet: the policy's initial stage, health "loaded"
    result = CliRunner().invoke(
        cli,
        [
            "plugins",
            "list",
            "--format",
            "json",
            "-p",
            str(default),
            "-p",
            str(overlay),
            "--state-dir",
            str(state),
        ],
    )
    assert result.exit_code == 0, result.output
    listing = json.loads(result.stdout)
    assert listing["stage"] == "OBSERVATION"
    rows = {row["name"]: row for row in listing["plugins"] if row["loaded"]}
    assert rows["undeclared"] == {
        "name": "undeclared",
        "version": "0.3",
        "source": "badplugs (badplugs_module:Undeclared)",
        "hooks": ["aios_collect_metrics", "aios_metrics", "aios_policy_section"],
        "mode": "ENFORCED",
        "effective_mode": "OBSERVE",
        "health": "loaded",
        "loaded": True,
    }
    assert rows["coordinator"]["source"] == "built-in"
    [refused] = [row for row in listing["plugins"] if not row["loaded"]]
    assert refused["source"] == "badplugs (badplugs_module:Future)"
    assert refused["health"].startswith("not loaded: declares hook contract 2.0")
    text = CliRunner().invoke(cli, ["plugins", "list", "-p", str(default), "-p", str(overlay)])
    assert "ENFORCED (acts OBSERVE)" in text.output
