"""Loading a policy, in layers: YAML -> merge -> environment -> schema -> semantics -> compile.

`load_policy` either returns a `Policy` ready for the engine, or raises `PolicyInvalid` carrying
every error found (with file, line, column and key path). Nothing here ever changes a running
system: the caller swaps a new `Policy` in only when loading succeeded.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aios.metrics import CORE_METRICS
from aios.policy.conditions import Condition, ConditionError, compile_condition
from aios.policy.env import overrides_from_env
from aios.policy.issues import Issue, KeyPath, Location, PolicyInvalid, Severity
from aios.policy.schema import compose_schema, is_valid, resolve, translate, validator
from aios.policy.semantics import run_checks
from aios.policy.yaml_source import SourceDocument, parse_text, read_file

DEFAULT_ORIGIN = "schema default"
CONDITION_REF = "#/$defs/condition"


@dataclass(frozen=True)
class Policy:
    """A validated, compiled policy. Treat `document` as read-only: it is shared by the engine."""

    document: Mapping[str, Any]
    origins: Mapping[KeyPath, Location]
    sources: tuple[str, ...]
    hash: str
    conditions: Mapping[KeyPath, Condition]
    warnings: tuple[Issue, ...] = ()
    schema: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def get(self, *path: str | int, default: Any = None) -> Any:
        node: Any = self.document
        for element in path:
            try:
                node = node[element]
            except (KeyError, IndexError, TypeError):
                return default
        return node

    def condition(self, *path: str | int) -> Condition:
        return self.conditions[tuple(path)]

    def origin(self, *path: str | int) -> Location | None:
        return self.origins.get(tuple(path))


@dataclass
class _Merged:
    data: dict[str, Any]
    values: dict[KeyPath, Location]
    keys: dict[KeyPath, Location]

    def replace_subtrees(self, paths: set[KeyPath], document: SourceDocument) -> None:
        """Forget where the old values under `paths` came from; take the new ones' origins.

        One pass over each table (a prefix check per entry), not one pass per replaced key:
        merging a full overlay stays linear in the size of the policy.
        """
        if not paths:
            return

        def under(path: KeyPath) -> bool:
            return any(path[:size] in paths for size in range(1, len(path) + 1))

        for table, fresh in ((self.values, document.values), (self.keys, document.keys)):
            for stale in [p for p in table if under(p)]:
                del table[stale]
            table.update((p, loc) for p, loc in fresh.items() if under(p))

    def locate(self, path: KeyPath, on_key: bool = False) -> Location:
        """The most precise written location for `path` (walking up to a written ancestor)."""
        if on_key and path in self.keys:
            return self.keys[path]
        probe = path
        while True:
            for table in (self.values, self.keys):
                location = table.get(probe)
                if location is not None and location.source != DEFAULT_ORIGIN:
                    return location
            if not probe:
                break
            probe = probe[:-1]
        return Location("<policy>")


def _merge_into(
    merged: _Merged,
    target: dict[str, Any],
    overlay: Mapping[str, Any],
    path: KeyPath,
    document: SourceDocument,
    atomic: Callable[[KeyPath], bool],
    replaced: set[KeyPath],
) -> None:
    for key, value in overlay.items():
        child = (*path, key)
        if isinstance(value, dict) and isinstance(target.get(key), dict) and not atomic(child):
            # The later file touched this mapping: errors about it now point there.
            for table, fresh in ((merged.keys, document.keys), (merged.values, document.values)):
                if child in fresh:
                    table[child] = fresh[child]
            _merge_into(merged, target[key], value, child, document, atomic, replaced)
        else:
            target[key] = value
            replaced.add(child)


def merge_documents(
    documents: Sequence[SourceDocument], atomic: Callable[[KeyPath], bool] = lambda path: False
) -> _Merged:
    """Deep-merge mappings, later files win; lists, scalars and `atomic` values (trigger
    conditions: merging `{any: ...}` into `{all: ...}` would make a third condition nobody
    wrote) are replaced whole."""
    first = documents[0]
    # The documents were parsed for this load and are not used afterwards: merge in place.
    merged = _Merged(first.data, dict(first.values), dict(first.keys))
    for document in documents[1:]:
        replaced: set[KeyPath] = set()
        _merge_into(merged, merged.data, document.data, (), document, atomic, replaced)
        merged.replace_subtrees(replaced, document)
    return merged


def _set_path(merged: _Merged, path: KeyPath, value: Any, origin: Location) -> None:
    node: Any = merged.data
    for depth, element in enumerate(path[:-1]):
        if not isinstance(node, dict):
            return
        if not isinstance(node.get(element), dict):
            node[element] = {}
            merged.values[path[: depth + 1]] = origin
        node = node[element]
    if isinstance(node, dict):
        node[path[-1]] = value
        size = len(path)
        for stale in [p for p in merged.values if p[:size] == path]:
            del merged.values[stale]
        merged.values[path] = origin
        merged.keys[path] = origin


_HAS_DEFAULTS: dict[int, tuple[Mapping[str, Any], bool]] = {}


def _has_defaults(schema: Mapping[str, Any], root: Mapping[str, Any], depth: int = 0) -> bool:
    """Whether anything under this schema node has a default (memoised; prunes the walk)."""
    cached = _HAS_DEFAULTS.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    if schema.get("$ref") == CONDITION_REF or depth > 24:
        answer = False
    else:
        resolved = resolve(schema, root)
        children = list(resolved.get("properties", {}).values())
        if isinstance(resolved.get("items"), Mapping):
            children.append(resolved["items"])
        answer = "default" in resolved or any(
            _has_defaults(child, root, depth + 1) for child in children
        )
        if (
            resolved.get("type") == "object"
            and resolved.get("properties")
            and not resolved.get("required")
        ):
            answer = True
    _HAS_DEFAULTS[id(schema)] = (schema, answer)
    return answer


_RECURSE, _DEFAULT, _EMPTY_OBJECT = range(3)
_IMMUTABLE = (str, int, float, bool, type(None))
_FillPlan = tuple[tuple[tuple[str, Mapping[str, Any], int, Any], ...], Mapping[str, Any] | None]
_FILL_PLANS: dict[tuple[int, int], tuple[Mapping[str, Any], _FillPlan]] = {}


def _fill_plan(schema: Mapping[str, Any], root: Mapping[str, Any]) -> _FillPlan:
    """What fill_defaults does under one schema node, worked out once per node: the properties
    that have something to fill (with their resolved schema and whether a missing one takes its
    default or an empty object), and the item schema when list items have defaults."""
    key = (id(schema), id(root))
    cached = _FILL_PLANS.get(key)
    if cached is not None and cached[0] is schema:
        return cached[1]
    resolved = resolve(schema, root)
    properties = []
    for name, sub in resolved.get("properties", {}).items():
        if not _has_defaults(sub, root):
            continue
        sub_resolved = resolve(sub, root)
        if "default" in sub_resolved:
            action = _DEFAULT
        elif (
            sub_resolved.get("type") == "object"
            and not sub_resolved.get("required")
            and sub_resolved.get("properties")
        ):
            action = _EMPTY_OBJECT
        else:
            action = _RECURSE
        properties.append((name, sub_resolved, action, sub_resolved.get("default")))
    items = resolved.get("items")
    plan: _FillPlan = (
        tuple(properties),
        items if isinstance(items, Mapping) and _has_defaults(items, root) else None,
    )
    if len(_FILL_PLANS) > 4096:
        _FILL_PLANS.clear()
    _FILL_PLANS[key] = (schema, plan)
    return plan


def fill_defaults(
    document: Any,
    schema: Mapping[str, Any],
    root: Mapping[str, Any],
    path: KeyPath,
    origins: dict[KeyPath, Location],
) -> None:
    """Write schema defaults into the effective policy (recording them as defaults).

    A missing optional object is created when nothing in it is required, so that nested knobs
    such as `self_healing.health` are complete; objects with required keys (a subsystem needs its
    `mode`) are never invented.
    """
    properties, items = _fill_plan(schema, root)
    if isinstance(document, dict):
        for name, sub_resolved, action, default in properties:
            if name not in document:
                if action == _DEFAULT:
                    document[name] = (
                        default if isinstance(default, _IMMUTABLE) else copy.deepcopy(default)
                    )
                elif action == _EMPTY_OBJECT:
                    document[name] = {}
                else:
                    continue
                origins[(*path, name)] = Location(DEFAULT_ORIGIN)
            fill_defaults(document[name], sub_resolved, root, (*path, name), origins)
    elif isinstance(document, list) and items is not None:
        for index, item in enumerate(document):
            fill_defaults(item, items, root, (*path, index), origins)


Pattern = tuple[str | None, ...]
_CONDITION_PATTERNS: dict[int, tuple[Mapping[str, Any], list[Pattern]]] = {}


def _condition_patterns(
    schema: Mapping[str, Any], root: Mapping[str, Any], prefix: Pattern, depth: int = 0
) -> list[Pattern]:
    """Key paths (None = any list index) whose schema is `$defs/condition`, from the schema."""
    if schema.get("$ref") == CONDITION_REF:
        return [prefix]
    if depth > 24:
        return []
    schema = resolve(schema, root)
    found: list[Pattern] = []
    for name, sub in schema.get("properties", {}).items():
        found.extend(_condition_patterns(sub, root, (*prefix, name), depth + 1))
    if isinstance(schema.get("items"), Mapping):
        found.extend(_condition_patterns(schema["items"], root, (*prefix, None), depth + 1))
    return found


def _patterns_for(schema: Mapping[str, Any]) -> list[Pattern]:
    cached = _CONDITION_PATTERNS.get(id(schema))
    if cached is None or cached[0] is not schema:
        cached = (schema, _condition_patterns(schema, schema, ()))
        _CONDITION_PATTERNS[id(schema)] = cached
    return cached[1]


def _matches_any(path: KeyPath, patterns: Sequence[Pattern]) -> bool:
    for pattern in patterns:
        if len(pattern) == len(path) and all(
            p is None or p == e for p, e in zip(pattern, path, strict=True)
        ):
            return True
    return False


def condition_paths(document: Any, schema: Mapping[str, Any]) -> list[KeyPath]:
    """Where the policy holds trigger conditions: every value whose schema is `$defs/condition`."""
    found: list[KeyPath] = []
    for pattern in _patterns_for(schema):
        found.extend(_expand(document, pattern, ()))
    return found


def _expand(node: Any, pattern: Pattern, path: KeyPath) -> list[KeyPath]:
    if not pattern:
        return [path]
    head, rest = pattern[0], pattern[1:]
    if head is None:
        if not isinstance(node, list):
            return []
        return [p for index, item in enumerate(node) for p in _expand(item, rest, (*path, index))]
    if isinstance(node, dict) and head in node:
        return _expand(node[head], rest, (*path, head))
    return []


def policy_hash(document: Mapping[str, Any]) -> str:
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _get(document: Any, path: KeyPath) -> Any:
    for element in path:
        document = document[element]
    return document


def build_policy(
    documents: Sequence[SourceDocument],
    *,
    env: Mapping[str, str] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Policy:
    """Layers 2 to 4 over parsed documents; raise PolicyInvalid listing every error."""
    schema = compose_schema(sections)
    patterns = _patterns_for(schema)
    merged = merge_documents(documents, lambda path: _matches_any(path, patterns))
    issues: list[Issue] = []

    overrides, env_issues = overrides_from_env(env or {}, schema)
    issues.extend(env_issues)
    for path, value, origin in overrides:
        _set_path(merged, path, value, origin)

    schema_issues: list[Issue] = []
    if not is_valid(schema, merged.data):
        for error in validator(schema).iter_errors(merged.data):
            schema_issues.extend(translate(error, schema, merged.locate))
    issues.extend(schema_issues)

    effective = merged.data
    origins: dict[KeyPath, Location] = dict(merged.values)
    fill_defaults(effective, schema, schema, (), origins)
    defaults = {p: loc for p, loc in origins.items() if p not in merged.values}
    merged.values.update(defaults)

    issues.extend(run_checks(effective, merged.locate))

    known_metrics = metrics if metrics is not None else CORE_METRICS
    conditions: dict[KeyPath, Condition] = {}
    broken = [issue.path for issue in schema_issues]
    for path in condition_paths(effective, schema):
        if any(b[: len(path)] == path for b in broken):
            continue
        spec = _get(effective, path)
        try:
            conditions[path] = compile_condition(spec, known_metrics)
        except ConditionError as exc:
            at = (*path, *exc.subpath)
            location = merged.locate(at)
            message = exc.message
            if exc.offset is not None and isinstance(_get(effective, at), str):
                message = f"{message} (at character {exc.offset + 1} of the expression)"
            issues.append(Issue(location, at, message, "condition.invalid"))

    unique: dict[tuple[KeyPath, str], Issue] = {}
    for issue in issues:
        unique.setdefault((issue.path, issue.message), issue)
    ordered = sorted(unique.values(), key=Issue.sort_key)
    if any(issue.severity is Severity.ERROR for issue in ordered):
        raise PolicyInvalid(ordered)
    return Policy(
        document=effective,
        origins=origins,
        sources=tuple(document.source for document in documents),
        hash=policy_hash(effective),
        conditions=conditions,
        warnings=tuple(ordered),
        schema=schema,
    )


def load_policy(
    paths: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Policy:
    """Load, merge (later files win), override from `env`, validate and compile policy files."""
    if not paths:
        raise ValueError("load_policy needs at least one file")
    return build_policy(read_files(paths), env=env, sections=sections, metrics=metrics)


def read_files(paths: Sequence[str | Path]) -> list[SourceDocument]:
    """Parse every file; raise PolicyInvalid with the problems of all of them, not the first."""
    documents: list[SourceDocument] = []
    issues: list[Issue] = []
    for path in paths:
        try:
            documents.append(read_file(Path(path), str(path)))
        except PolicyInvalid as exc:
            issues.extend(exc.issues)
    if issues:
        raise PolicyInvalid(issues)
    return documents


def load_policy_text(
    text: str,
    source: str = "<policy>",
    *,
    env: Mapping[str, str] | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> Policy:
    """Like load_policy, for policy text held in memory (tests, the plugin harness)."""
    return build_policy([parse_text(text, source)], env=env, sections=sections, metrics=metrics)
