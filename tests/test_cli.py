"""`aios validate` and `aios schema`: exit codes, formats, origins, and never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios.cli import app
from aios.policy.reference import render_reference
from aios.policy.schema import compose_schema

REPO = Path(__file__).resolve().parent.parent
DEFAULT = str(REPO / "policies" / "default.yaml")
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env=env or {})
    return result.exit_code, result.output


def write(tmp_path: Path, text: str, name: str = "overlay.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_bundled_policies_are_valid_each_on_its_own() -> None:
    files = [
        str(REPO / "policies" / name)
        for name in ("default.yaml", "conservative.yaml", "aggressive.yaml")
    ]
    code, output = invoke("validate", "--each", "--no-env", *files)
    assert code == 0, output
    assert output.count(": valid (policy hash") == 3


def test_invalid_policy_lists_every_error_one_a_line_and_exits_1(tmp_path: Path) -> None:
    overlay = write(
        tmp_path,
        "baseline:\n  tp_pct: -1\n  stake_pct: lots\nsubsystems:\n  position_intelligence:\n    mode: ENFORCD\n",
    )
    code, output = invoke("validate", "--no-env", DEFAULT, overlay)
    assert code == 1
    lines = output.splitlines()
    assert f"{overlay}:2:11: baseline.tp_pct: expected a number > 0, found integer -1" in lines
    assert f"{overlay}:3:14: baseline.stake_pct: expected a number, found string 'lots'" in lines
    assert any(
        line.startswith(
            f"{overlay}:6:11: subsystems.position_intelligence.mode: expected one of OFF"
        )
        for line in lines
    )
    assert lines[-1].endswith("invalid, 3 errors, 0 warnings")


def test_json_format_for_tools(tmp_path: Path) -> None:
    overlay = write(tmp_path, "safety:\n  emergency_close:\n    loss_limit: 5\n")
    code, output = invoke("validate", "--no-env", "--format", "json", DEFAULT, overlay)
    assert code == 1
    report = json.loads(output)
    assert report["valid"] is False
    assert report["policy_hash"] is None
    [error] = report["errors"]
    assert error == {
        "source": overlay,
        "line": 3,
        "column": 5,
        "path": "safety.emergency_close.loss_limit",
        "message": "unknown key 'loss_limit'; did you mean 'loss_limit_pct'?",
        "code": "schema.additionalProperties",
        "severity": "error",
    }


def test_json_format_valid_policy_has_a_hash() -> None:
    code, output = invoke("validate", "--no-env", "--format", "json", DEFAULT)
    assert code == 0
    report = json.loads(output)
    assert report["valid"] is True and len(report["policy_hash"]) == 64 and report["errors"] == []


def test_show_effective_names_file_lines_env_and_defaults(tmp_path: Path) -> None:
    overlay = write(tmp_path, "subsystems:\n  profit_amplification:\n    mode: OBSERVE\n")
    code, output = invoke(
        "validate", "--show-effective", DEFAULT, overlay, env={"QT_AI_PAL_MIN_R": "1.75"}
    )
    assert code == 0, output
    lines = [line.strip() for line in output.splitlines()]
    assert any(
        line.startswith("min_r: 1.75") and line.endswith("# env QT_AI_PAL_MIN_R") for line in lines
    )
    assert any(
        line.startswith("mode: OBSERVE") and line.endswith(f"# {overlay}:3:11") for line in lines
    )
    assert any(
        line.startswith("initial: OBSERVATION") and f"# {DEFAULT}:" in line for line in lines
    )


def test_show_effective_marks_schema_defaults(tmp_path: Path) -> None:
    overlay = write(tmp_path, "exchange:\n  name: paper\n")
    base = write(
        tmp_path,
        (REPO / "policies" / "default.yaml").read_text().replace("  timeout_s: 10\n", "", 1),
        "base.yaml",
    )
    code, output = invoke("validate", "--no-env", "--show-effective", base, overlay)
    assert code == 0, output
    assert any(
        line.strip().startswith("timeout_s: 10") and line.endswith("# schema default")
        for line in output.splitlines()
    )


def test_show_effective_json_has_origins() -> None:
    code, output = invoke(
        "validate",
        "--format",
        "json",
        "--show-effective",
        DEFAULT,
        env={"QT_AI_PIL_MODE": "OBSERVE"},
    )
    assert code == 0
    report = json.loads(output)
    assert report["effective"]["subsystems"]["position_intelligence"]["mode"] == "OBSERVE"
    assert report["origins"]["subsystems.position_intelligence.mode"] == "env QT_AI_PIL_MODE"


def test_env_is_ignored_with_no_env() -> None:
    code, _ = invoke("validate", DEFAULT, env={"QT_AI_PAL_MIN_R": "-5"})
    assert code == 1
    code, _ = invoke("validate", "--no-env", DEFAULT, env={"QT_AI_PAL_MIN_R": "-5"})
    assert code == 0


def test_missing_file_is_a_usage_error() -> None:
    code, output = invoke("validate", "/nonexistent/policy.yaml")
    assert code == 2
    assert "no such file: /nonexistent/policy.yaml" in output


def test_directory_is_a_usage_error(tmp_path: Path) -> None:
    code, output = invoke("validate", str(tmp_path))
    assert code == 2
    assert "not a file" in output


def test_unknown_option_is_a_usage_error() -> None:
    code, _ = invoke("validate", "--frobnicate", DEFAULT)
    assert code == 2


def test_each_reports_per_file(tmp_path: Path) -> None:
    broken = write(tmp_path, "version: 1\n", "partial.yaml")
    code, output = invoke("validate", "--each", "--no-env", DEFAULT, broken)
    assert code == 1
    assert f"{DEFAULT}: valid" in output
    assert f"{broken}:1:1: (root): missing required key 'stages'" in output


def test_schema_prints_the_composed_schema() -> None:
    code, output = invoke("schema")
    assert code == 0
    assert json.loads(output) == compose_schema()


def test_schema_to_a_path_that_cannot_be_written_is_a_one_line_error(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "schema.json"
    result = CliRunner().invoke(app, ["schema", "--output", str(target)])
    assert result.exit_code == 1
    assert result.output == f"aios: cannot write {target}: No such file or directory\n"


def test_committed_policy_reference_is_current() -> None:
    committed = (REPO / "docs" / "policy-reference.md").read_text(encoding="utf-8")
    assert committed == render_reference(compose_schema()), (
        "docs/policy-reference.md is stale: run `make docs`"
    )


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system ['echo hacked']\n",
        "- just\n- a list\n",
        "version: [\n",
        "\x00\x01binary",
        "",
    ],
)
def test_real_process_never_prints_a_traceback(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text, "bad.yaml")
    result = subprocess.run(
        [sys.executable, "-m", "aios", "validate", "--no-env", path],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout.splitlines()[0].startswith(f"{path}:")
