"""Environment overrides with the original system's names (`QT_AI_PIL_MODE`, `QT_AI_PAL_MIN_R`...).

An override is a value like any other: it is parsed by the type its key has in the schema,
validated with the file, and remembered as coming from its variable (`--show-effective` says so).
Unknown `QT_AI_*` variables are refused rather than ignored, so a misspelt override cannot
silently do nothing.

`QT_AI_INTEGRATION_STAGE` does not move a running system: only the stage machine does that.
It sets `stages.initial`, which is read only when a fresh state store is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aios.policy.issues import Issue, KeyPath, Location, did_you_mean
from aios.policy.schema import resolve, subschema_at

ENV_PREFIX = "QT_AI_"

#: variable prefix -> the policy section it overrides (longest prefixes first).
SECTION_PREFIXES: tuple[tuple[str, KeyPath], ...] = (
    ("QT_AI_MODEL_SUPERVISOR_", ("subsystems", "model_supervisor")),
    ("QT_AI_SELF_HEALING_", ("subsystems", "self_healing")),
    ("QT_AI_DYNAMIC_TPSL_", ("subsystems", "dynamic_tpsl")),
    ("QT_AI_UNIVERSE_OS_", ("subsystems", "universe_os")),
    ("QT_AI_RETRAINING_", ("subsystems", "retraining")),
    ("QT_AI_HFOS_", ("subsystems", "coordinator")),
    ("QT_AI_AELM_", ("subsystems", "execution")),
    ("QT_AI_PIL_", ("subsystems", "position_intelligence")),
    ("QT_AI_PBA_", ("subsystems", "portfolio_balancer")),
    ("QT_AI_PAL_", ("subsystems", "profit_amplification")),
)

#: whole variable names that map to one key.
EXACT_NAMES: dict[str, KeyPath] = {
    "QT_AI_UNIVERSE_DYNAMIC": ("subsystems", "universe_os", "dynamic", "enabled"),
    "QT_AI_DYNAMIC_TPSL_OVERRIDE": ("subsystems", "dynamic_tpsl", "override_baseline"),
    "QT_AI_INTEGRATION_STAGE": ("stages", "initial"),
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _find_path(
    schema: Mapping[str, Any], root: Mapping[str, Any], tokens: list[str]
) -> KeyPath | None:
    """Match `MIN_R` to `min_r`, `DYNAMIC_MAX_SPREAD_BPS` to `dynamic.max_spread_bps`..."""
    properties = resolve(schema, root).get("properties", {})
    for cut in range(len(tokens), 0, -1):
        name = "_".join(tokens[:cut]).lower()
        if name not in properties:
            continue
        if cut == len(tokens):
            return (name,)
        rest = _find_path(properties[name], root, tokens[cut:])
        if rest is not None:
            return (name, *rest)
    return None


def _leaf_names(schema: Mapping[str, Any], root: Mapping[str, Any], prefix: str) -> list[str]:
    names: list[str] = []
    for name, sub in resolve(schema, root).get("properties", {}).items():
        variable = f"{prefix}{name.upper()}"
        names.append(variable)
        if "properties" in resolve(sub, root):
            names.extend(_leaf_names(sub, root, f"{variable}_"))
    return names


def known_variables(schema: Mapping[str, Any]) -> list[str]:
    """Every variable name that overrides something (for suggestions and docs)."""
    names = list(EXACT_NAMES)
    for prefix, section in SECTION_PREFIXES:
        sub = subschema_at(schema, section)
        if sub is not None:
            names.extend(_leaf_names(sub, schema, prefix))
    return sorted(set(names))


def parse_value(text: str, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """Read a variable's text as the type its key has; leave it as text when it does not fit,
    so that schema validation reports it like a wrong value in a file."""
    schema = resolve(schema, root)
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else list(types)
    stripped = text.strip()
    if "enum" in schema:
        for choice in schema["enum"]:
            if isinstance(choice, str) and choice.lower() == stripped.lower():
                return choice
    if "boolean" in types:
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
    if "integer" in types:
        try:
            return int(stripped)
        except ValueError:
            pass
    if "number" in types:
        try:
            return float(stripped)
        except ValueError:
            pass
    if "null" in types and stripped.lower() in ("null", "none", ""):
        return None
    if "array" in types:
        items = schema.get("items", {})
        return [parse_value(part, items, root) for part in stripped.split(",") if part.strip()]
    return text


def overrides_from_env(
    env: Mapping[str, str], schema: Mapping[str, Any]
) -> tuple[list[tuple[KeyPath, Any, Location]], list[Issue]]:
    """The (path, value, origin) overrides the environment asks for, and the variables refused."""
    overrides: list[tuple[KeyPath, Any, Location]] = []
    issues: list[Issue] = []
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX):
            continue
        origin = Location(f"env {variable}")
        path = EXACT_NAMES.get(variable)
        if path is None:
            for prefix, section in SECTION_PREFIXES:
                if variable.startswith(prefix):
                    sub = subschema_at(schema, section)
                    tokens = variable[len(prefix) :].split("_")
                    found = (
                        _find_path(sub, schema, tokens)
                        if sub is not None and tokens != [""]
                        else None
                    )
                    if found is not None:
                        path = (*section, *found)
                    break
        if path is None:
            hint = did_you_mean(variable, known_variables(schema))
            issues.append(
                Issue(
                    origin,
                    (),
                    f"unknown override variable {variable}{hint}; unset it or fix its name",
                    "env.unknown",
                )
            )
            continue
        if not env[variable].strip():
            issues.append(
                Issue(
                    origin,
                    path,
                    "the variable is set but empty; unset it or give it a value",
                    "env.empty",
                )
            )
            continue
        leaf = subschema_at(schema, path) or {}
        overrides.append((path, parse_value(env[variable], leaf, schema), origin))
    return overrides, issues
