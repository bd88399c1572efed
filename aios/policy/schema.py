"""The policy schema: finding it, composing plugin sections into it, and located errors.

The validator is built once per composed schema and reused (building one costs milliseconds,
using one a fraction of that). jsonschema's own messages are terse and pathless; each error is
translated here into "what was expected, what was found" at the exact key or value.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aios.policy.issues import Issue, KeyPath, Location, did_you_mean, format_path

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError
    from jsonschema.protocols import Validator

SCHEMA_FILENAME = "policy_schema.json"
SUBSYSTEM_COMMON_KEYS = ("enabled", "mode", "on_error")


def bundled_path(name: str) -> Path:
    """A file shipped with aios: the repo root in a checkout, `aios/_bundled` in a wheel."""
    package_dir = Path(__file__).resolve().parent.parent
    installed = package_dir / "_bundled" / name
    if installed.exists():
        return installed
    return package_dir.parent / name


@lru_cache(maxsize=1)
def core_schema() -> dict[str, Any]:
    """The core schema as shipped (read once)."""
    with bundled_path(SCHEMA_FILENAME).open(encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


def compose_schema(sections: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The core schema plus the policy sections that plugins declare under `subsystems.<name>`.

    A plugin section is a JSON Schema object fragment for its own settings; the common subsystem
    keys (enabled, mode, on_error) are added here so every subsystem is governed the same way.
    """
    schema = core_schema()
    if not sections:
        return schema
    try:
        key: str | None = json.dumps(sections)  # order kept: it orders the subsystems
    except (TypeError, ValueError):  # not JSON data: compose it afresh every time
        key = None
    if key is not None and key in _COMPOSED:
        return _COMPOSED[key]
    composed = _compose(schema, sections)
    if key is not None:
        if len(_COMPOSED) >= 16:
            _COMPOSED.clear()
        _COMPOSED[key] = composed
    return composed


def section_problem(name: str, fragment: Any) -> str | None:
    """Why a plugin's policy section cannot be composed into the policy schema (None: it can).

    The one check of a section's schema, used when plugins are loaded (a refused section is left
    out and reported, so one broken plugin cannot invalidate every policy) and by
    `aios plugins check`. A section must be a mapping, a valid JSON Schema (Draft 2020-12, with
    the `regex` format checked), and every `$ref` in it must point inside the policy schema
    (`#/...`): aios fetches no schema from anywhere, and an unresolvable one would fail every
    validation.
    """
    if not isinstance(fragment, Mapping):
        return f"the policy section schema is a {type(fragment).__name__}, not a mapping"
    from jsonschema.exceptions import best_match

    try:  # checked as JSON data: a tuple where a list belongs is a list to the validators
        data = json.loads(json.dumps(fragment))
    except (TypeError, ValueError) as exc:  # a set, an object: no validator copes
        return f"the policy section schema is not JSON data: {exc}"
    error = best_match(_metaschema_validator().iter_errors(data))  # what check_schema reports
    if error is not None:
        where = format_path(tuple(error.absolute_path)) if error.absolute_path else "its top level"
        return f"the policy section is not a valid JSON Schema at {where}: {error.message}"
    for path, reference in _references(fragment, ()):
        where = format_path(path)
        if not isinstance(reference, str) or not reference.startswith("#/"):
            return f"the policy section's {where} is {reference!r}: a section may only refer inside the policy schema (#/$defs/...)"
        if not _pointer_resolves(name, fragment, reference):
            return f"the policy section's {where} is {reference!r}, which does not resolve in the policy schema"
    return None


@lru_cache(maxsize=1)
def _metaschema_validator() -> Validator:
    """`Draft202012Validator.check_schema`'s validator, built once (it builds one every call)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(
        Draft202012Validator.META_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def usable_sections(
    sections: Sequence[tuple[str, Any]],
) -> tuple[list[tuple[str, Mapping[str, Any]]], list[tuple[str, str]]]:
    """The sections that compose into a usable policy schema, in order, and why each other one
    does not (`section_problem`, then the validator the policy is checked with, built once for
    all of them: the build a policy load would do anyway, so a good set costs nothing more)."""
    good: list[tuple[str, Mapping[str, Any]]] = []
    bad: list[tuple[str, str]] = []
    for name, fragment in sections:
        problem = section_problem(name, fragment)
        if problem is None:
            good.append((name, fragment))
        else:
            bad.append((name, problem))
    if not good:
        return good, bad
    try:
        composed = compose_schema(dict(good))
    except ValueError:  # a section named like a core subsystem: the policy load reports it
        return good, bad
    try:
        _cached(composed)
        return good, bad
    except Exception:  # the Rust validator refuses the composition: find whose section it is
        pass
    kept: list[tuple[str, Mapping[str, Any]]] = []
    for name, fragment in good:
        try:
            _fast_validator(_compose(core_schema(), {name: fragment}))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            inside = ("properties", "subsystems", "properties", name)
            path = tuple(getattr(exc, "instance_path", None) or ())
            where = f" at {format_path(path[4:])}" if path[:4] == inside and path[4:] else ""
            bad.append(
                (
                    name,
                    f"the policy section cannot be compiled into the policy schema{where}: {first}",
                )
            )
            continue
        kept.append((name, fragment))
    return kept, bad


def _references(node: Any, path: KeyPath) -> Iterator[tuple[KeyPath, Any]]:
    """Every `$ref` / `$dynamicRef` in a schema, with its path."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef"):
                yield (*path, key), value
            else:
                yield from _references(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _references(item, (*path, index))


def _pointer_resolves(name: str, fragment: Mapping[str, Any], reference: str) -> bool:
    """Whether `resolve` can follow this local reference (it walks the pointer's parts) in the
    policy schema the section is composed into: the core's, or the section's own at
    `#/properties/subsystems/properties/<name>/...` (found without composing a copy)."""
    parts = reference.lstrip("#/").split("/")  # as `resolve` reads it
    node: Any = core_schema()
    if parts[:4] == ["properties", "subsystems", "properties", name]:
        node, parts = fragment, parts[4:]
    for part in parts:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return False
    return isinstance(node, Mapping)


# Composed schemas by their sections' JSON text: a hot reload with the same plugins gets the
# same schema object, so its validator and the loader's per-schema memos are reused instead of
# rebuilt on every reload. Treat a composed schema as read-only.
_COMPOSED: dict[str, dict[str, Any]] = {}


def _compose(schema: dict[str, Any], sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    composed = copy.deepcopy(schema)
    subsystems = composed["properties"]["subsystems"]["properties"]
    for name, fragment in sections.items():
        if name in subsystems:
            raise ValueError(f"policy section subsystems.{name} is declared twice")
        section = copy.deepcopy(dict(fragment))
        properties = dict(section.get("properties", {}))
        common = {
            "enabled": {
                "type": "boolean",
                "default": True,
                "description": f"Whether {name} runs at all.",
            },
            "mode": {
                "$ref": "#/$defs/mode",
                "description": f"How far {name}'s proposals are applied.",
            },
            "on_error": {
                "$ref": "#/$defs/on_error",
                "default": "fail_open",
                "description": f"What an exception in {name} means: as if OFF, or a block.",
            },
        }
        section["type"] = "object"
        # The common keys are the engine's: a section redefining them (`aios plugins check`
        # reports it) is ignored there, so no plugin can widen its own `mode` or `on_error`.
        section["properties"] = {**properties, **common}
        section["required"] = sorted({"mode", *section.get("required", [])})
        section.setdefault("additionalProperties", False)
        section.setdefault("description", f"Settings of the third-party subsystem {name}.")
        subsystems[name] = section
    return composed


_VALIDATORS: dict[int, tuple[Mapping[str, Any], Any, Validator | None]] = {}


def _cached(schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], Any, Validator | None]:
    entry = _VALIDATORS.get(id(schema))
    if entry is None or entry[0] is not schema:
        if len(_VALIDATORS) > 16:
            _VALIDATORS.clear()
        entry = (schema, _fast_validator(schema), None)
        _VALIDATORS[id(schema)] = entry
    return entry


def _fast_validator(schema: Mapping[str, Any]) -> Any:
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - declared dependency; keep working without it
        return None
    return jsonschema_rs.Draft202012Validator(dict(schema))


def validator(schema: Mapping[str, Any]) -> Validator:
    """The detailed (pure-Python) validator for a schema, built once and reused.

    The shipped schema is checked against the metaschema by the test suite, not at every start
    (that check costs more than everything else in a cold load).
    """
    held, fast, detailed = _cached(schema)
    if detailed is None:
        from jsonschema import Draft202012Validator

        detailed = Draft202012Validator(schema)
        _VALIDATORS[id(schema)] = (held, fast, detailed)
    return detailed


def is_valid(schema: Mapping[str, Any], document: Any) -> bool:
    """Fast yes/no answer (the Rust validator); only a no needs the detailed validator."""
    fast = _cached(schema)[1]
    if fast is None:
        return bool(validator(schema).is_valid(document))
    return bool(fast.is_valid(document))


_RESOLVED: dict[tuple[int, int], tuple[Mapping[str, Any], Mapping[str, Any]]] = {}


def resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` (`#/$defs/...`); sibling keywords override the target's.

    Memoised per schema node: the loader walks the same schema for every policy it loads.
    """
    if "$ref" not in schema:
        return schema
    key = (id(schema), id(root))
    cached = _RESOLVED.get(key)
    if cached is not None and cached[0] is schema:
        return cached[1]
    resolved = schema
    hops = 0
    while "$ref" in resolved and hops < 32:
        node: Any = root
        for part in str(resolved["$ref"]).lstrip("#/").split("/"):
            node = node[part]
        resolved = {**node, **{k: v for k, v in resolved.items() if k != "$ref"}}
        hops += 1
    if len(_RESOLVED) > 4096:
        _RESOLVED.clear()
    _RESOLVED[key] = (schema, resolved)
    return resolved


def subschema_at(root: Mapping[str, Any], path: KeyPath) -> Mapping[str, Any] | None:
    """The (resolved) schema governing the value at `path`, following properties and items."""
    schema = resolve(root, root)
    for element in path:
        if isinstance(element, int):
            items = schema.get("items")
            if not isinstance(items, Mapping):
                return None
            schema = resolve(items, root)
        else:
            properties = schema.get("properties", {})
            if element not in properties:
                return None
            schema = resolve(properties[element], root)
    return schema


def describe_value(value: Any) -> str:
    """How a found value is shown in messages: its JSON type and, when short, the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value:g}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {shown!r}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean (true or false)",
    "null": "null",
}


def _expected_type(expected: Any) -> str:
    if isinstance(expected, list):
        return " or ".join(_TYPE_NAMES.get(str(t), str(t)) for t in expected)
    return _TYPE_NAMES.get(str(expected), str(expected))


Locator = Callable[[KeyPath, bool], Location]


def translate(error: ValidationError, root: Mapping[str, Any], locate: Locator) -> Iterator[Issue]:
    """Turn one jsonschema error into located issues (several for several unknown keys)."""
    path: KeyPath = tuple(error.absolute_path)
    kind = str(error.validator)
    value: Any = error.instance
    expected: Any = error.validator_value
    error_schema: Any = error.schema

    def issue(message: str, at: KeyPath = path, on_key: bool = False) -> Issue:
        return Issue(locate(at, on_key), at, message, f"schema.{kind}")

    if kind == "additionalProperties" and isinstance(value, dict):
        known = list(error_schema.get("properties", {}))
        patterns = error_schema.get("patternProperties", {})
        for key in value:
            if key in known or any(re.search(p, key) for p in patterns):
                continue
            hint = did_you_mean(key, known)
            if not hint and known:
                hint = "; expected one of: " + ", ".join(known)
            yield issue(f"unknown key '{key}'{hint}", (*path, key), on_key=True)
        return
    if kind == "required" and isinstance(value, dict):
        for key in expected:
            if key not in value:
                yield issue(f"missing required key '{key}'")
        return
    if kind == "type":
        yield issue(f"expected {_expected_type(expected)}, found {describe_value(value)}")
        return
    if kind == "enum":
        choices = ", ".join(str(c) for c in expected)
        hint = (
            did_you_mean(str(value), [str(c) for c in expected]) if isinstance(value, str) else ""
        )
        yield issue(f"expected one of {choices}, found {describe_value(value)}{hint}")
        return
    if kind == "const":
        yield issue(f"expected {json.dumps(expected)}, found {describe_value(value)}")
        return
    bounds = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        yield issue(f"expected a number {bounds[kind]} {expected:g}, found {describe_value(value)}")
        return
    if kind == "minItems":
        yield issue(
            f"expected at least {expected} item{'s' if expected != 1 else ''}, found {len(value)}"
        )
        return
    if kind == "maxItems":
        yield issue(f"expected at most {expected} items, found {len(value)}")
        return
    if kind == "uniqueItems" and isinstance(value, list):
        seen: list[Any] = []
        for item in value:
            if item in seen:
                yield issue(f"items must be unique; {json.dumps(item)} appears more than once")
                return
            seen.append(item)
        yield issue("items must be unique")
        return
    if kind == "pattern":
        yield issue(f"expected text matching {expected}, found {describe_value(value)}")
        return
    if kind in ("minLength", "maxLength"):
        word = "at least" if kind == "minLength" else "at most"
        yield issue(f"expected text of {word} {expected} characters, found {describe_value(value)}")
        return
    if kind == "minProperties":
        yield issue(
            "expected a non-empty mapping"
            if expected == 1
            else f"expected at least {expected} keys"
        )
        return
    if kind == "dependentRequired" and isinstance(value, dict):
        for key, needs in expected.items():
            if key in value:
                missing = [n for n in needs if n not in value]
                if missing:
                    yield issue(f"'{key}' needs {', '.join(repr(m) for m in missing)} beside it")
        return
    if kind in ("oneOf", "anyOf"):
        branches = expected if isinstance(expected, list) else []
        required_only = branches and all(
            set(b) <= {"required"} and len(b.get("required", ())) == 1 for b in branches
        )
        if required_only and isinstance(value, dict):
            names = [b["required"][0] for b in branches]
            present = [n for n in names if n in value]
            found = f"found {', '.join(present)}" if present else "found none"
            yield issue(f"expected exactly one of {', '.join(names)}; {found}")
            return
        yield from _translate_alternatives(error, branches, root, locate, issue)
        return
    if (
        kind == "not"
        and isinstance(expected, Mapping)
        and set(expected) == {"required"}
        and isinstance(value, dict)
    ):
        for key in expected["required"]:
            if key in value:
                yield issue(f"'{key}' must not be set here", (*path, key), on_key=True)
        return
    if kind == "not":
        yield issue(f"{describe_value(value)} is not allowed here")
        return
    yield issue(error.message)


def _branch_types(branch: Mapping[str, Any], root: Mapping[str, Any]) -> set[str]:
    """The JSON types a oneOf/anyOf branch accepts (from `type`, or from `enum`/`const` values)."""
    resolved = resolve(branch, root)
    declared = resolved.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return {str(t) for t in declared}
    values = resolved.get("enum", [resolved["const"]] if "const" in resolved else [])
    return {_json_type(v) for v in values} if values else set(_TYPE_NAMES)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _accepts(types: set[str], value: Any) -> bool:
    kind = _json_type(value)
    return kind in types or (kind == "integer" and "number" in types)


def _translate_alternatives(
    error: ValidationError,
    branches: list[Any],
    root: Mapping[str, Any],
    locate: Locator,
    issue: Callable[[str], Issue],
) -> Iterator[Issue]:
    """Report a failed oneOf/anyOf through the branch meant for this kind of value.

    jsonschema's best_match often picks the wrong branch ("expected a string" for a mapping with
    a typo). The branch whose type fits the value is the one the author meant; when none fits,
    the message lists what would.
    """
    value = error.instance
    fitting = [
        i
        for i, b in enumerate(branches)
        if isinstance(b, Mapping) and _accepts(_branch_types(b, root), value)
    ]
    if not fitting:
        wanted: list[str] = []
        for branch in branches:
            resolved = resolve(branch, root) if isinstance(branch, Mapping) else {}
            if "enum" in resolved:
                wanted.append("one of " + ", ".join(str(v) for v in resolved["enum"]))
            else:
                wanted.append(_expected_type(resolved.get("type", "any")))
        yield issue(f"expected {' or '.join(wanted)}, found {describe_value(value)}")
        return
    by_branch: dict[int, list[ValidationError]] = {}
    for sub in error.context or []:
        if sub.relative_schema_path:
            by_branch.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
    chosen = min(fitting, key=lambda i: len(by_branch.get(i, [])))
    errors = by_branch.get(chosen, [])
    if not errors:
        yield issue(error.message)
        return
    typo_paths = {tuple(e.absolute_path) for e in errors if e.validator == "additionalProperties"}
    explained_by_typo = {"oneOf", "anyOf", "required", "dependentRequired", "minProperties"}
    busy_paths = {tuple(e.absolute_path) for e in errors if e.validator != "minProperties"}
    for sub in errors:
        if sub.validator in explained_by_typo and tuple(sub.absolute_path) in typo_paths:
            continue
        if sub.validator == "minProperties" and tuple(sub.absolute_path) in busy_paths:
            continue
        yield from translate(sub, root, locate)
