"""The policy reference (docs/policy-reference.md), generated from the schema's descriptions.

Generated, never hand-edited: a test regenerates it and fails when the committed copy is stale,
so the reference cannot drift from what the validator enforces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from aios.policy.schema import resolve

HEADER = """# Policy reference

Generated from `policy_schema.json` by `aios schema --markdown`; do not edit by hand
(`make docs` regenerates it, and a test fails when it is stale).

A policy is one YAML file, or several merged in order (later files win; mappings merge key by
key, lists and values are replaced whole). Every key below is checked: an unknown key, a wrong
type or an out-of-range value is an error that names the file, line, column and key path.
Keys marked *required* must be present; the others take the default shown.
"""


def _type_of(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    ref = schema.get("$ref")
    resolved = resolve(schema, root)
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.rsplit("/", 1)[-1]
        if "enum" in resolved:
            return f"{name}"
        return name
    kind = resolved.get("type")
    if isinstance(kind, list):
        return " or ".join(kind)
    if kind == "array":
        items = resolved.get("items")
        inner = _type_of(items, root) if isinstance(items, Mapping) else "any"
        return f"list of {inner}"
    if kind is None and ("oneOf" in resolved or "anyOf" in resolved):
        return "see description"
    return str(kind or "any")


def _constraints(schema: Mapping[str, Any], root: Mapping[str, Any]) -> str:
    resolved = resolve(schema, root)
    parts: list[str] = []
    if "enum" in resolved:
        parts.append("one of " + ", ".join(f"`{v}`" for v in resolved["enum"]))
    if "const" in resolved:
        parts.append(f"exactly `{json.dumps(resolved['const'])}`")
    for key, symbol in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if key in resolved:
            parts.append(f"{symbol} {resolved[key]}")
    if "pattern" in resolved:
        parts.append(f"matches `{resolved['pattern']}`")
    if "minItems" in resolved:
        parts.append(f"at least {resolved['minItems']} items")
    if resolved.get("uniqueItems"):
        parts.append("unique items")
    items = resolved.get("items")
    if resolved.get("type") == "array" and isinstance(items, Mapping):
        inner = _constraints(items, root)
        if inner:
            parts.append(f"each: {inner}")
    return "; ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _rows(schema: Mapping[str, Any], root: Mapping[str, Any], prefix: str) -> Iterator[str]:
    resolved = resolve(schema, root)
    required = set(resolved.get("required", []))
    for name, sub in resolved.get("properties", {}).items():
        sub_resolved = resolve(sub, root)
        path = f"{prefix}.{name}" if prefix else name
        default = (
            "*required*"
            if name in required
            else (f"`{json.dumps(sub_resolved['default'])}`" if "default" in sub_resolved else "")
        )
        description = sub.get("description") or sub_resolved.get("description", "")
        yield (
            f"| `{path}` | {_cell(_type_of(sub, root))} | {default} | "
            f"{_cell(description)} | {_cell(_constraints(sub, root))} |"
        )
        if sub_resolved.get("properties") and sub.get("$ref") != "#/$defs/condition":
            yield from _rows(sub_resolved, root, path)
        items = sub_resolved.get("items")
        if isinstance(items, Mapping) and resolve(items, root).get("properties"):
            yield from _rows(items, root, f"{path}[]")


def render_reference(schema: Mapping[str, Any]) -> str:
    """The whole reference as Markdown: one section per top-level key, then shared types."""
    lines = [HEADER]
    top = resolve(schema, schema)
    required = set(top.get("required", []))
    for name, sub in top.get("properties", {}).items():
        resolved = resolve(sub, schema)
        lines.append(f"## `{name}`{' (required)' if name in required else ''}\n")
        description = sub.get("description") or resolved.get("description", "")
        if description:
            lines.append(_cell(description) + "\n")
        rows = list(_rows(resolved, schema, name))
        if rows:
            lines.append("| key | type | default | description | constraints |")
            lines.append("|---|---|---|---|---|")
            lines.extend(rows)
            lines.append("")
        else:
            lines.append(
                f"Type: {_cell(_type_of(sub, schema))}. {_cell(_constraints(sub, schema))}\n"
            )
    definitions = schema.get("$defs", {})
    if definitions:
        lines.append("## Shared types\n")
        for name, definition in definitions.items():
            lines.append(f"### `{name}`\n")
            lines.append(_cell(definition.get("description", "")) + "\n")
            constraints = _constraints(definition, schema)
            if constraints:
                lines.append(f"Constraints: {constraints}.\n")
            rows = list(_rows(definition, schema, name)) if definition.get("properties") else []
            if rows:
                lines.append("| key | type | default | description | constraints |")
                lines.append("|---|---|---|---|---|")
                lines.extend(rows)
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"
