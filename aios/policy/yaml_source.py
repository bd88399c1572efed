"""Safe YAML loading that keeps the position of every key and value.

A plain policy (mappings with text keys, lists, untagged scalars: every bundled one) is read in
one pass over libyaml's events, values and positions together (`_PlainReader`). Anything else,
and every error, goes through PyYAML's composer: it gives a node graph with marks, from which we
build plain Python values ourselves instead of using a constructor, so that we can:

* keep (line, column) for every value and every key, so errors point at the right line;
* reject duplicate keys (PyYAML silently keeps the last one);
* bound alias expansion (a "billion laughs" file is an error, not a hang);
* refuse every tag outside the YAML core schema (no `!!python/object`, ever);
* resolve plain scalars with YAML 1.2 core rules: `OFF`, `on`, `yes` stay strings (YAML 1.1
  would turn a subsystem `mode: OFF` into the boolean false), `010` is ten, `1:20` is text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aios.policy.issues import Issue, KeyPath, Location, PolicyInvalid

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_INT_DIGITS = 18  # within a signed 64-bit integer, as JSON tools expect

_TAG_PREFIX = "tag:yaml.org,2002:"
STR, INT, FLOAT, BOOL, NULL = (
    f"{_TAG_PREFIX}{name}" for name in ("str", "int", "float", "bool", "null")
)
MAP, SEQ, MERGE = f"{_TAG_PREFIX}map", f"{_TAG_PREFIX}seq", f"{_TAG_PREFIX}merge"
_ALLOWED_TAGS = {STR, INT, FLOAT, BOOL, NULL, MAP, SEQ, MERGE}

_INT_RE = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT_RE = re.compile(
    r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
)


_BOOLS = frozenset({"true", "True", "TRUE", "false", "False", "FALSE"})
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


class _Yaml12Resolver(yaml.resolver.BaseResolver):
    """YAML 1.2 core schema resolution for plain scalars (quoted scalars are always text).

    Written as one method rather than PyYAML's table of regular expressions: it runs once per
    scalar of every policy file, and this is several times faster.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            if not implicit[0]:
                return STR
            if value in _NULLS:
                return NULL
            if value in _BOOLS:
                return BOOL
            if value[0] in "-+0123456789.":
                if _INT_RE.match(value):
                    return INT
                if _FLOAT_RE.match(value):
                    return FLOAT
            elif value == "<<":
                return MERGE
            return STR
        return SEQ if kind is yaml.SequenceNode else MAP


try:
    import yaml.cyaml

    _Parser: Any = getattr(yaml.cyaml, "CParser")  # noqa: B009 - libyaml, several times faster
except (ImportError, AttributeError):  # pragma: no cover - PyYAML built without libyaml
    _Parser = None
if _Parser is None:  # pragma: no cover - libyaml is present on every supported platform

    class _PolicyComposer(
        yaml.reader.Reader,
        yaml.scanner.Scanner,
        yaml.parser.Parser,
        yaml.composer.Composer,
        _Yaml12Resolver,
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)
            _Yaml12Resolver.__init__(self)

else:

    class _PolicyComposer(_Parser, _Yaml12Resolver):  # type: ignore[no-redef,misc]
        def __init__(self, stream: str) -> None:
            _Parser.__init__(self, stream)
            _Yaml12Resolver.__init__(self)


@dataclass
class SourceDocument:
    """A parsed policy file: its data and where each value and key was written."""

    source: str
    data: dict[str, Any]
    values: dict[KeyPath, Location] = field(default_factory=dict)
    keys: dict[KeyPath, Location] = field(default_factory=dict)

    def copy(self) -> SourceDocument:
        """A copy to merge into (loading merges documents in place), much cheaper than parsing
        the text again: the data is copied, the positions (immutable) are shared."""
        return SourceDocument(
            self.source, _copy_tree(self.data), dict(self.values), dict(self.keys)
        )


def _copy_tree(value: Any) -> Any:
    if type(value) is dict:
        return {key: _copy_tree(item) for key, item in value.items()}
    if type(value) is list:
        return [_copy_tree(item) for item in value]
    return value  # text, numbers, booleans and null are immutable


class _TooLarge(Exception):
    def __init__(self, issue: Issue) -> None:
        self.issue = issue


class _Builder:
    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[KeyPath, Location] = {}
        self.keys: dict[KeyPath, Location] = {}
        self.issues: list[Issue] = []
        self.nodes = 0

    def location(self, node: yaml.Node) -> Location:
        mark = node.start_mark
        return Location(self.source, mark.line + 1, mark.column + 1)

    def error(self, node: yaml.Node, path: KeyPath, message: str, code: str) -> None:
        self.issues.append(Issue(self.location(node), path, message, code))

    def build(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge(
                Issue(
                    self.location(node),
                    path,
                    f"the document expands to more than {MAX_NODES} nodes "
                    "(an alias bomb?); policies are small, aliases must stay small",
                    "yaml.alias_bomb",
                )
            )
        if depth > MAX_DEPTH:
            raise _TooLarge(
                Issue(
                    self.location(node),
                    path,
                    f"nesting deeper than {MAX_DEPTH} levels (a recursive alias?)",
                    "yaml.too_deep",
                )
            )
        self.values[path] = self.location(node)
        if node.tag not in _ALLOWED_TAGS and node.tag != "!":
            self.error(
                node,
                path,
                f"tag {node.tag.replace(_TAG_PREFIX, '!!')} is not allowed: policies are plain "
                "data (mappings, lists, strings, numbers, booleans, null)",
                "yaml.tag",
            )
            return None
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [
                self.build(child, (*path, index), depth + 1)
                for index, child in enumerate(node.value)
            ]
        assert isinstance(node, yaml.MappingNode)
        return self.mapping(node, path, depth)

    def scalar(self, node: yaml.ScalarNode, path: KeyPath) -> Any:
        value: str = node.value
        tag = node.tag
        if tag in (STR, "!"):
            return value
        if tag == NULL:
            return None
        if tag == BOOL:
            lowered = value.lower()
            if lowered in ("true", "false"):
                return lowered == "true"
        elif tag == INT and _INT_RE.match(value):
            if len(value) > MAX_INT_DIGITS:
                self.error(
                    node,
                    path,
                    f"integer of {len(value)} digits is out of range (at most {MAX_INT_DIGITS})",
                    "yaml.int_range",
                )
                return None
            if value.startswith(("0x", "0o")):
                return int(value, 0)
            return int(value, 10)
        elif tag == FLOAT and _FLOAT_RE.match(value):
            number = float(value.lower().replace(".inf", "inf").replace(".nan", "nan"))
            if not math.isfinite(number):
                self.error(
                    node, path, f"expected a finite number, found {value}", "yaml.not_finite"
                )
                return None
            return number
        self.error(
            node, path, f"{value!r} cannot be read as {tag.replace(_TAG_PREFIX, '!!')}", "yaml.tag"
        )
        return None

    def mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit_keys: dict[str, yaml.Node] = {}
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == MERGE:
                merged.extend(self.merge_sources(value_node, path))
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in explicit_keys:
                first = explicit_keys[key].start_mark.line + 1
                self.error(
                    key_node,
                    (*path, key),
                    f"duplicate key '{key}' (first defined at line {first}); a later value would "
                    "silently win, so this is refused",
                    "yaml.duplicate_key",
                )
                continue
            explicit_keys[key] = key_node
            self.keys[(*path, key)] = self.location(key_node)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        for key_node, value_node in merged:
            key = self.key(key_node, path)
            if key is None or key in result:
                continue
            self.keys[(*path, key)] = self.location(key_node)
            result[key] = self.build(value_node, (*path, key), depth + 1)
        return result

    def key(self, key_node: yaml.Node, path: KeyPath) -> str | None:
        if isinstance(key_node, yaml.ScalarNode) and key_node.tag in (STR, "!"):
            return str(key_node.value)
        shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "a collection"
        self.error(key_node, path, f"keys must be text, found {shown!r}", "yaml.key_type")
        return None

    def merge_sources(
        self, value_node: yaml.Node, path: KeyPath
    ) -> list[tuple[yaml.Node, yaml.Node]]:
        """Pairs contributed by `<<: *anchor` (earlier sources win, as YAML's merge key says)."""
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        pairs: list[tuple[yaml.Node, yaml.Node]] = []
        seen: set[str] = set()
        for source in sources:
            if not isinstance(source, yaml.MappingNode):
                self.error(
                    value_node,
                    path,
                    "a merge key (<<) takes a mapping or a list of mappings",
                    "yaml.merge",
                )
                continue
            for key_node, child in source.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value not in seen:
                    seen.add(key_node.value)
                    pairs.append((key_node, child))
        return pairs


_SCALAR = yaml.events.ScalarEvent
_MAPPING_START = yaml.events.MappingStartEvent
_MAPPING_END = yaml.events.MappingEndEvent
_SEQUENCE_START = yaml.events.SequenceStartEvent
_SEQUENCE_END = yaml.events.SequenceEndEvent
_NOT_PLAIN_TEXT = object()  # a plain scalar that does not resolve to a string, null, bool or number
_SPECIAL_WORDS = _NULLS | _BOOLS | {"<<"}
_NUMBER_START = "-+0123456789."  # a plain scalar starting otherwise is never a number
_new_location = tuple.__new__  # Location(...) without NamedTuple's Python-level __new__


def _plain_value(text: str) -> Any:
    """A plain scalar's value under YAML 1.2 core rules (as _Yaml12Resolver and
    _Builder.scalar read it), or _NOT_PLAIN_TEXT when the builder must decide: a merge key, an
    integer out of range, a non-finite float."""
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return text.lower() == "true"
    if text[0] in _NUMBER_START:
        if _INT_RE.match(text):
            if len(text) > MAX_INT_DIGITS:
                return _NOT_PLAIN_TEXT
            return int(text, 0) if text.startswith(("0x", "0o")) else int(text, 10)
        if _FLOAT_RE.match(text):
            number = float(text.lower().replace(".inf", "inf").replace(".nan", "nan"))
            return number if math.isfinite(number) else _NOT_PLAIN_TEXT
    elif text == "<<":
        return _NOT_PLAIN_TEXT
    return text


class _NotPlain(Exception):
    """The text uses something only the node-based builder handles (or reports)."""


class _PlainReader:
    """One pass over libyaml's events, building values and their positions together.

    It reads what policies are made of: mappings with text keys, lists and untagged scalars.
    Anything else (anchors, aliases, merge keys, tags, duplicate or non-text keys, out-of-range
    numbers, syntax errors, several documents, very deep or very large documents) raises
    _NotPlain, and the node-based builder parses the text instead, with its exact error
    messages: this reader never reports an error itself, so it cannot word one differently. Its
    values and positions are the builder's, to the key (tests/test_yaml_source.py checks it).
    """

    def __init__(self, source: str, next_event: Any) -> None:
        self.source = source
        self.next_event = next_event
        self.values: dict[KeyPath, Location] = {}
        self.keys: dict[KeyPath, Location] = {}

    def value(self, event: Any, path: KeyPath, depth: int) -> Any:
        """The value starting with `event`, at `path` (its position recorded)."""
        if event.anchor is not None or type(event) is yaml.events.AliasEvent or event.tag:
            raise _NotPlain
        mark = event.start_mark
        self.values[path] = _new_location(Location, (self.source, mark.line + 1, mark.column + 1))
        kind = type(event)
        if kind is _SCALAR:
            text: str = event.value
            if event.implicit[0] and (text in _SPECIAL_WORDS or text[:1] in _NUMBER_START):
                value = _plain_value(text)
                if value is _NOT_PLAIN_TEXT:
                    raise _NotPlain
                return value
            return text
        if depth >= MAX_DEPTH - 1:
            raise _NotPlain
        if kind is _MAPPING_START:
            return self.mapping(path, depth)
        if kind is _SEQUENCE_START:
            return self.sequence(path, depth)
        raise _NotPlain

    def mapping(self, path: KeyPath, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        next_event = self.next_event
        source = self.source
        keys = self.keys
        values = self.values
        while True:
            event: Any = next_event()  # libyaml's events: their marks are always set
            if type(event) is not _SCALAR:
                if type(event) is _MAPPING_END:
                    return result
                raise _NotPlain  # a collection as a key, or an alias
            if event.anchor is not None or event.tag:
                raise _NotPlain
            name: str = event.value
            if (
                event.implicit[0]
                and (name in _SPECIAL_WORDS or name[:1] in _NUMBER_START)
                and _plain_value(name) is not name
            ):
                raise _NotPlain  # a key YAML reads as null, a bool, a number or <<
            if name in result:
                raise _NotPlain  # a duplicate key: the builder words the error
            mark: Any = event.start_mark
            child = (*path, name)
            keys[child] = _new_location(Location, (source, mark.line + 1, mark.column + 1))
            event = next_event()
            if type(event) is not _SCALAR or event.anchor is not None or event.tag:
                result[name] = self.value(event, child, depth + 1)
                continue
            # A scalar value, the common case, read inline (as `value` would).
            mark = event.start_mark
            values[child] = _new_location(Location, (source, mark.line + 1, mark.column + 1))
            text: str = event.value
            if event.implicit[0] and (text in _SPECIAL_WORDS or text[:1] in _NUMBER_START):
                value = _plain_value(text)
                if value is _NOT_PLAIN_TEXT:
                    raise _NotPlain
                result[name] = value
            else:
                result[name] = text

    def sequence(self, path: KeyPath, depth: int) -> list[Any]:
        result: list[Any] = []
        next_event = self.next_event
        while True:
            event = next_event()
            if type(event) is _SEQUENCE_END:
                return result
            result.append(self.value(event, (*path, len(result)), depth + 1))


def _parse_plain(text: str, source: str) -> SourceDocument | None:
    """The document when _PlainReader can read it (see there), else None."""
    if _Parser is None:  # pragma: no cover - PyYAML built without libyaml
        return None
    parser = _Parser(text)
    try:
        next_event = parser.get_event
        next_event()  # the stream start
        if type(next_event()) is not yaml.events.DocumentStartEvent:
            return None  # an empty file
        root = next_event()
        if type(root) is not _MAPPING_START:
            return None
        reader = _PlainReader(source, next_event)
        data = reader.value(root, (), 0)
        if type(next_event()) is not yaml.events.DocumentEndEvent:
            return None
        if type(next_event()) is not yaml.events.StreamEndEvent:
            return None  # another document follows
    except Exception:  # _NotPlain, or a syntax error: the builder reports it, located
        return None
    finally:
        parser.dispose()
    if len(reader.values) > MAX_NODES:
        return None
    return SourceDocument(source, data, reader.values, reader.keys)


def parse_text(text: str, source: str) -> SourceDocument:
    """Parse policy text; raise PolicyInvalid with located issues when it is not usable."""
    plain = _parse_plain(text, source)
    if plain is not None:
        return plain
    try:
        composer = _PolicyComposer(text)
        try:
            root = composer.get_single_node()
        finally:
            composer.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = exc.problem or "invalid YAML"
        if exc.context:
            where = f" (line {exc.context_mark.line + 1})" if exc.context_mark else ""
            problem = f"{exc.context}{where}, {problem}"
        raise PolicyInvalid(
            [Issue(Location(source, line, column), (), f"YAML syntax: {problem}", "yaml.syntax")]
        ) from None
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position] if isinstance(exc.position, int) else ""
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        code = (
            exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "?")
        )
        raise PolicyInvalid(
            [
                Issue(
                    Location(source, line, column),
                    (),
                    f"YAML syntax: the character #x{code:04x} is not allowed in YAML text ({exc.reason})",
                    "yaml.syntax",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise PolicyInvalid(
            [Issue(Location(source), (), f"YAML error: {exc}", "yaml.syntax")]
        ) from None
    if root is None:
        raise PolicyInvalid(
            [
                Issue(
                    Location(source, 1, 1),
                    (),
                    "the file is empty; a policy is a mapping that starts with `version:`",
                    "yaml.empty",
                )
            ]
        )
    builder = _Builder(source)
    try:
        data = builder.build(root, (), 0)
    except _TooLarge as exc:
        raise PolicyInvalid([exc.issue]) from None
    except RecursionError:
        raise PolicyInvalid(
            [
                Issue(
                    builder.location(root), (), "the document is nested too deeply", "yaml.too_deep"
                )
            ]
        ) from None
    if builder.issues:
        raise PolicyInvalid(builder.issues)
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"a single value ({data!r})"
        raise PolicyInvalid(
            [
                Issue(
                    builder.location(root),
                    (),
                    f"the top level must be a mapping (`version: 1`, `stages: ...`), found {kind}",
                    "yaml.root_type",
                )
            ]
        )
    return SourceDocument(source, data, builder.values, builder.keys)


def read_bytes(path: Path, source: str) -> bytes:
    """A policy file's bytes, refusing an oversized or unreadable file (located at `source`)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise PolicyInvalid(
                [
                    Issue(
                        Location(source),
                        (),
                        f"the file is {size} bytes; policies are limited to {MAX_FILE_BYTES} bytes",
                        "file.too_large",
                    )
                ]
            )
        return path.read_bytes()
    except OSError as exc:
        raise PolicyInvalid(
            [
                Issue(
                    Location(source),
                    (),
                    f"cannot read the file: {exc.strerror or exc}",
                    "file.unreadable",
                )
            ]
        ) from None


def parse_bytes(raw: bytes, source: str) -> SourceDocument:
    """Parse a policy file's bytes, refusing what is not UTF-8 text."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyInvalid(
            [
                Issue(
                    Location(source, line),
                    (),
                    f"not UTF-8 text (byte {exc.start})",
                    "file.encoding",
                )
            ]
        ) from None
    return parse_text(text, source)


def read_file(path: Path, display: str | None = None) -> SourceDocument:
    """Read and parse one policy file, refusing oversized or non-UTF-8 files."""
    source = display or str(path)
    return parse_bytes(read_bytes(path, source), source)
