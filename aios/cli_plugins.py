"""`aios plugins list | check | new`: what is installed, whether it is sound, and a new one.

`check` is for CI: exit 0 when every plugin is sound (warnings allowed unless `--strict`), 1 when
a plugin has a problem, 2 on a usage error. Problems: import errors, unknown hook names or
arguments, wrapper or async implementations, an incompatible hook contract, a policy section
that is not a valid JSON Schema fragment (or redefines the common keys, or has defaults its own
schema refuses), metrics that are provided but not declared or declared twice.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional

import typer

from aios.cli_common import EXIT_INVALID, EXIT_VALID, OutputFormat, fail, usage_error

if TYPE_CHECKING:
    from aios.policy import Policy
    from aios.registry import PluginSet

plugins_app = typer.Typer(
    name="plugins",
    help="Installed plugins: list them, check them (for CI), scaffold a new one.",
    no_args_is_help=True,
)

StateDirOption = Annotated[
    Optional[Path],  # noqa: UP045
    typer.Option("--state-dir", help="State directory (default: $AIOS_STATE_DIR, else ./state)."),
]
PolicyOption = Annotated[
    Optional[list[Path]],  # noqa: UP045
    typer.Option(
        "--policy", "-p", help="Policy file(s), merged in order. Default: the bundled default."
    ),
]
FormatOption = Annotated[
    OutputFormat, typer.Option("--format", help="text for people, json for tools.")
]
COMMON_KEYS = ("enabled", "mode", "on_error")
METRIC_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass(frozen=True)
class Finding:
    """One result of `aios plugins check`."""

    severity: Literal["error", "warning"]
    kind: str  # import, name, contract, hooks, declaration, section, metrics, policy, conflict
    plugin: str
    message: str


@dataclass(frozen=True)
class Loaded:
    """The plugins as `aios run` loads them, and the policy, or why it did not validate."""

    plugins: PluginSet
    policy: Policy | None
    policy_errors: list[str]


def _files(policy: list[Path] | None) -> list[Path]:
    from aios.cli import _check_files, default_policy_files

    chosen = list(policy) if policy else default_policy_files()
    _check_files(chosen)
    return chosen


def _load(files: list[Path]) -> Loaded:
    """Plugins and policy as `aios run` loads them; an invalid policy still lists the plugins."""
    from aios import app as application
    from aios.policy import PolicyInvalid
    from aios.registry import PluginConflict, discover

    try:
        policy, plugins = application.load(files, env=dict(os.environ))
        return Loaded(plugins, policy, [])
    except PolicyInvalid as exc:
        return Loaded(discover(), None, [str(issue) for issue in exc.errors])
    except PluginConflict as exc:
        raise fail(exc) from None


def _hooks(plugins: PluginSet, plugin: Any) -> list[str]:
    return sorted(caller.name for caller in plugins.manager.get_hookcallers(plugin) or ())


def _stage_and_health(state_dir: Path | None, policy: Policy | None) -> tuple[str, dict[str, str]]:
    """The stage and subsystem health of the latest run, else the policy's initial stage."""
    from aios.status import StatusError, read_status

    try:
        current = read_status(state_dir)
        return str(current["stage"]), dict(current["health"])
    except StatusError:
        initial = policy.get("stages", "initial", default="OBSERVATION") if policy else "?"
        return str(initial), {}


def _mode(policy: Policy | None, name: str) -> str:
    """The plugin's own mode, or `?` when the policy did not validate."""
    from aios.model import own_mode

    return "?" if policy is None else own_mode(policy, name).name


def _effective(mode: str, stage: str) -> str:
    from aios.model import Mode, Stage, effective_mode

    try:
        return effective_mode(Mode[mode], Stage(stage)).name
    except (KeyError, ValueError):
        return mode


@plugins_app.command("list")
def list_plugins(
    policy: PolicyOption = None,
    output_format: FormatOption = OutputFormat.text,
    state_dir: StateDirOption = None,
) -> None:
    """Every plugin found: name, version, source, hooks, mode (and effective mode at the current
    stage), health (from the latest run, or why it was not loaded). Exit 1 when the policy does
    not validate (its errors on stderr, the plugins still listed)."""
    loaded = _load(_files(policy))
    stage, health = _stage_and_health(state_dir, loaded.policy)
    rows: list[dict[str, Any]] = []
    for name, item in loaded.plugins.plugins.items():
        mode = _mode(loaded.policy, name)
        rows.append(
            {
                "name": name,
                "version": item.version,
                "source": "built-in" if item.builtin else item.source,
                "hooks": _hooks(loaded.plugins, item.plugin),
                "mode": mode,
                "effective_mode": _effective(mode, stage),
                "health": health.get(name, "loaded"),
                "loaded": True,
            }
        )
    for problem in loaded.plugins.problems:
        rows.append(
            {
                "name": None,
                "version": None,
                "source": problem.source,
                "hooks": [],
                "mode": "OFF",
                "effective_mode": "OFF",
                "health": f"not loaded: {problem.message}",
                "loaded": False,
            }
        )
    if output_format is OutputFormat.json:
        typer.echo(
            json.dumps(
                {"stage": stage, "plugins": rows, "policy_errors": loaded.policy_errors},
                indent=2,
            )
        )
    else:
        _print_table(rows, stage)
        for error in loaded.policy_errors:
            typer.echo(f"aios: policy: {error}", err=True)
    # The plugins are listed either way; a policy that does not validate is still bad input.
    raise typer.Exit(EXIT_INVALID if loaded.policy_errors else EXIT_VALID)


def _print_table(rows: list[dict[str, Any]], stage: str) -> None:
    header = ("name", "version", "source", "mode", "health", "hooks")
    table = []
    for row in rows:
        mode = row["mode"]
        if row["effective_mode"] != mode:
            mode = f"{mode} (acts {row['effective_mode']})"
        hooks = ", ".join(h.removeprefix("aios_") for h in row["hooks"]) or "-"
        table.append(
            (row["name"] or "-", row["version"] or "-", row["source"], mode, row["health"], hooks)
        )
    widths = [max(len(str(r[i])) for r in (header, *table)) for i in range(len(header) - 1)]
    typer.echo(f"stage {stage}")
    for cells in (header, *table):
        typer.echo(
            "  ".join(str(c).ljust(w) for c, w in zip(cells[:-1], widths, strict=True))
            + "  "
            + str(cells[-1])
        )


# --- check -------------------------------------------------------------------------------------


def _sample_market(symbols: list[str]) -> Any:
    """A deterministic market for probing `aios_collect_metrics` (no file, no network)."""
    from aios.testing import candles_from_closes, market

    closes = [100.0 * (1 + 0.01 * math.sin(i / 7.0)) for i in range(120)]
    return market({symbol: candles_from_closes(closes) for symbol in symbols})


def check_plugins(loaded: Loaded) -> list[Finding]:
    """Every finding about the loaded plugins (the checks are documented in the module)."""
    from aios.app import plugin_declarations
    from aios.metrics import CORE_METRICS, MetricSpec
    from aios.policy.schema import core_schema
    from aios.registry import call_each

    plugins = loaded.plugins
    # Records raising declaration hooks and unusable sections as problems (once: a load that
    # validated the policy recorded them already).
    sections = dict(plugin_declarations(plugins).sections)
    findings = [Finding("error", p.kind, p.source, p.message) for p in plugins.problems]
    refused_sections = {p.source for p in plugins.problems if p.kind == "section"}
    core_sections = core_schema()["properties"]["subsystems"]["properties"]
    for name, schema in sections.items():
        findings += _section_findings(name, schema)

    providers: dict[str, str] = {name: "core" for name in CORE_METRICS}
    declared: dict[str, set[str]] = {}
    for result in call_each(plugins.manager, "aios_metrics", {}, lambda n: True):
        for spec in result.value or ():
            if not isinstance(spec, MetricSpec):
                findings.append(
                    Finding(
                        "error",
                        "metrics",
                        result.plugin,
                        f"aios_metrics returned a {type(spec).__name__}, not a MetricSpec",
                    )
                )
                continue
            if not spec.name or not set(spec.name) <= METRIC_NAME_CHARS or spec.name[0].isdigit():
                findings.append(
                    Finding(
                        "error",
                        "metrics",
                        result.plugin,
                        f"metric name {spec.name!r} cannot be named in a condition: use lower_snake_case",
                    )
                )
            if spec.name in providers and providers[spec.name] != result.plugin:
                findings.append(
                    Finding(
                        "error",
                        "metrics",
                        result.plugin,
                        f"declares metric {spec.name!r}, already provided by {providers[spec.name]}",
                    )
                )
                continue
            providers[spec.name] = result.plugin
            declared.setdefault(result.plugin, set()).add(spec.name)

    for name, item in plugins.plugins.items():
        hooks = _hooks(plugins, item.plugin)
        if getattr(item.plugin, "aios_contract", None) is None:
            findings.append(
                Finding(
                    "warning",
                    "contract",
                    name,
                    'declares no hook contract version: add aios_contract = "1.0" (the version it is written against)',
                )
            )
        if name not in sections and name not in core_sections and name not in refused_sections:
            findings.append(
                Finding(
                    "warning",
                    "section",
                    name,
                    f"declares no policy section (aios_policy_section): subsystems.{name} cannot be configured, so it stays OFF",
                )
            )
        if "aios_collect_metrics" in hooks and not declared.get(name):
            findings.append(
                Finding(
                    "error",
                    "metrics",
                    name,
                    "implements aios_collect_metrics but declares no metric (aios_metrics): conditions cannot name its values",
                )
            )
    findings += _probe_metrics(loaded, declared)
    for error in loaded.policy_errors:  # the first line says what and where
        findings.append(Finding("error", "policy", "<policy>", error.splitlines()[0]))
    return findings


def _section_findings(name: str, schema: Mapping[str, Any]) -> list[Finding]:
    """What is wrong with a section that composes (one that does not is a load problem, checked
    by `aios.policy.schema.section_problem`): redefined common keys, defaults it refuses."""
    from jsonschema import Draft202012Validator

    def error(message: str) -> Finding:
        return Finding("error", "section", name, message)

    findings: list[Finding] = []
    properties = schema.get("properties", {})
    for key in COMMON_KEYS:
        if key in properties:
            findings.append(
                error(
                    f"the policy section redefines the common key {key!r}, which is ignored (aios adds enabled, mode and on_error)"
                )
            )
    # Each default is checked against its property as composed into the policy schema, so
    # that a `$ref` into the policy's `$defs` resolves (the section itself has none).
    from aios.policy.schema import compose_schema

    try:
        composed = compose_schema({name: schema})
    except ValueError:  # named like a core subsystem: reported as a load problem of its own
        return findings
    root = Draft202012Validator(composed)
    section = composed["properties"]["subsystems"]["properties"][name]["properties"]
    for key, sub in properties.items():
        if isinstance(sub, dict) and "default" in sub and key not in COMMON_KEYS:
            problems = list(root.evolve(schema=section[key]).iter_errors(sub["default"]))
            if problems:
                findings.append(
                    error(
                        f"default of subsystems.{name}.{key} does not satisfy its own schema: {problems[0].message}"
                    )
                )
    return findings


def _probe_metrics(loaded: Loaded, declared: dict[str, set[str]]) -> list[Finding]:
    """Call each `aios_collect_metrics` once on a sample cycle: what it returns must be declared."""
    from aios.metrics import CORE_METRICS
    from aios.registry import call_each
    from aios.testing import context, default_policy

    # With an invalid policy (reported on its own), probe with the bundled default instead.
    policy = loaded.policy if loaded.policy is not None else default_policy()
    symbols = [str(s) for s in policy.get("universe", "symbols", default=[]) or []]
    ctx = context(policy, market_view=_sample_market(symbols))
    findings: list[Finding] = []
    for result in call_each(
        loaded.plugins.manager, "aios_collect_metrics", {"ctx": ctx}, lambda n: True
    ):
        if result.error is not None:
            findings.append(
                Finding(
                    "warning",
                    "metrics",
                    result.plugin,
                    f"aios_collect_metrics raised {result.error} on a sample cycle",
                )
            )
            continue
        if result.value is not None and not isinstance(result.value, Mapping):
            findings.append(
                Finding(
                    "error",
                    "metrics",
                    result.plugin,
                    f"aios_collect_metrics returned a {type(result.value).__name__}, not a mapping of metric names to numbers",
                )
            )
            continue
        provided = set((result.value or {}).keys())
        undeclared = sorted(provided - declared.get(result.plugin, set()) - set(CORE_METRICS))
        if undeclared:
            findings.append(
                Finding(
                    "error",
                    "metrics",
                    result.plugin,
                    f"provides undeclared metric(s) {', '.join(undeclared)}: declare them in aios_metrics",
                )
            )
    return findings


@plugins_app.command("check")
def check(
    policy: PolicyOption = None,
    output_format: FormatOption = OutputFormat.text,
    strict: Annotated[bool, typer.Option("--strict", help="Warnings fail the check too.")] = False,
) -> None:
    """Check every installed plugin, for CI. Exit 0 sound, 1 problems, 2 usage error."""
    loaded = _load(_files(policy))
    findings = check_plugins(loaded)
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity == "warning"]
    failed = bool(errors) or (strict and bool(warnings))
    if output_format is OutputFormat.json:
        typer.echo(
            json.dumps(
                {
                    "ok": not failed,
                    "plugins": sorted(loaded.plugins.plugins),
                    "findings": [asdict(f) for f in findings],
                },
                indent=2,
            )
        )
    else:
        for finding in findings:
            typer.echo(f"{finding.plugin}: {finding.severity}: {finding.message} [{finding.kind}]")
        count = len(loaded.plugins.plugins)
        typer.echo(
            f"{count} plugin{'s' if count != 1 else ''} loaded: {len(errors)} error{'s' if len(errors) != 1 else ''}, {len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        )
    raise typer.Exit(EXIT_INVALID if failed else EXIT_VALID)


# --- new ---------------------------------------------------------------------------------------


@plugins_app.command("new")
def new(
    name: Annotated[str, typer.Argument(help="The plugin's name, lower_snake_case: spread_guard.")],
    directory: Annotated[
        Path | None,
        typer.Option(
            "--directory", "-d", help="Where to create the package. Default: ./aios-<name>."
        ),
    ] = None,
) -> None:
    """Scaffold a plugin package that installs and passes its own tests as generated."""
    from aios.scaffold import ScaffoldError, create

    try:
        names, target, written = create(name, directory)
    except ScaffoldError as exc:
        raise usage_error(str(exc)) from None
    for path in written:
        typer.echo(f"created {path}")
    typer.echo(
        f"\nnext: pip install -e '{target}[test]' && (cd {target} && pytest)\n"
        f"then give it a mode in a policy: subsystems.{names.name}.mode: OBSERVE"
    )
