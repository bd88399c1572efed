"""Rendering a policy for people: the effective policy with the origin of every value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from aios.policy.issues import KeyPath, Location

COMMENT_COLUMN = 56


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text: str = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()


def _line(text: str, origin: Location | None) -> str:
    if origin is None:
        return text
    return f"{text.ljust(COMMENT_COLUMN)}  # {origin}"


def render_effective(document: Mapping[str, Any], origins: Mapping[KeyPath, Location]) -> str:
    """YAML text of the effective policy; each value is followed by `# file:line`, `# env VAR`
    or `# schema default`, so an operator sees at once why a value is what it is."""
    lines: list[str] = []

    def emit_mapping(
        node: Mapping[str, Any], path: KeyPath, indent: int, first_prefix: str | None = None
    ) -> None:
        for position, (key, value) in enumerate(node.items()):
            pad = " " * indent
            if first_prefix is not None and position == 0:
                pad = first_prefix
            child = (*path, key)
            emit_value(f"{pad}{key}:", value, child, indent)

    def emit_value(head: str, value: Any, path: KeyPath, indent: int) -> None:
        origin = origins.get(path)
        if isinstance(value, dict):
            if not value:
                lines.append(_line(f"{head} {{}}", origin))
                return
            lines.append(head)
            emit_mapping(value, path, indent + 2)
        elif isinstance(value, list):
            if not value:
                lines.append(_line(f"{head} []", origin))
                return
            lines.append(
                _line(head, origin) if all(not isinstance(v, (dict, list)) for v in value) else head
            )
            for index, item in enumerate(value):
                item_path = (*path, index)
                pad = " " * (indent + 2)
                if isinstance(item, dict) and item:
                    emit_mapping(item, item_path, indent + 4, first_prefix=f"{pad}- ")
                else:
                    emit_value(f"{pad}-", item, item_path, indent + 2)
        else:
            lines.append(_line(f"{head} {_scalar(value)}", origin))

    emit_mapping(document, (), 0)
    return "\n".join(lines) + "\n"
