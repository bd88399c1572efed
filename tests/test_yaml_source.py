"""Layer 1: safe YAML with positions, duplicate keys, tags, alias bombs, YAML 1.2 scalars."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aios.policy import yaml_source
from aios.policy.issues import PolicyInvalid
from aios.policy.yaml_source import MAX_FILE_BYTES, SourceDocument, parse_text, read_file


def only_issue(text: str) -> str:
    with pytest.raises(PolicyInvalid) as caught:
        parse_text(text, "p.yaml")
    assert len(caught.value.issues) == 1, caught.value.issues
    return str(caught.value.issues[0])


def test_positions_of_values_and_keys_are_one_based() -> None:
    doc = parse_text("version: 1\nsubsystems:\n  pil:\n    mode: ENFORCED\n", "p.yaml")
    assert doc.values[("subsystems", "pil", "mode")].line == 4
    assert doc.values[("subsystems", "pil", "mode")].column == 11
    assert doc.keys[("subsystems", "pil", "mode")].column == 5
    assert doc.values[("version",)].line == 1


def test_list_items_have_positions() -> None:
    doc = parse_text("a:\n  - x\n  - {b: 2}\n", "p.yaml")
    assert doc.values[("a", 1, "b")].line == 3
    assert doc.data == {"a": ["x", {"b": 2}]}


def test_yaml_12_scalars_keep_off_yes_and_on_as_text() -> None:
    doc = parse_text(
        "mode: OFF\nx: on\ny: yes\nz: 010\nt: 1:20\nb: true\nn: null\nh: 0x1F\nf: 1e3\n", "p.yaml"
    )
    assert doc.data == {
        "mode": "OFF",
        "x": "on",
        "y": "yes",
        "z": 10,
        "t": "1:20",
        "b": True,
        "n": None,
        "h": 31,
        "f": 1000.0,
    }


def test_duplicate_key_is_refused_at_the_second_occurrence() -> None:
    message = only_issue("version: 1\nsubsystems:\n  a: 1\n  a: 2\n")
    assert message.startswith(
        "p.yaml:4:3: subsystems.a: duplicate key 'a' (first defined at line 3)"
    )


def test_python_tag_is_refused() -> None:
    message = only_issue("version: 1\nx: !!python/object/apply:os.system ['true']\n")
    assert message.startswith("p.yaml:2:4: x: tag !!python/object/apply:os.system is not allowed")


def test_custom_local_tag_is_refused() -> None:
    assert "tag !secret is not allowed" in only_issue("x: !secret abc\n")


def test_alias_bomb_is_an_error_not_a_hang() -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for index, name in enumerate("bcdefgh"):
        previous = "abcdefgh"[index]
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 10) + "]")
    message = only_issue("\n".join(lines) + "\n")
    assert "expands to more than 100000 nodes" in message


def test_small_aliases_and_merge_keys_are_fine() -> None:
    text = "common: &c {enabled: true, mode: OBSERVE}\npil:\n  <<: *c\n  mode: ENFORCED\n"
    doc = parse_text(text, "p.yaml")
    assert doc.data["pil"] == {"mode": "ENFORCED", "enabled": True}
    assert doc.values[("pil", "mode")].line == 4
    assert doc.values[("pil", "enabled")].line == 1


def test_recursive_alias_is_an_error() -> None:
    message = only_issue("a: &a\n  - *a\n")
    assert "nesting deeper than" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "p.yaml:1:1: (root): the file is empty"),
        ("# only a comment\n", "p.yaml:1:1: (root): the file is empty"),
        ("- a\n- b\n", "p.yaml:1:1: (root): the top level must be a mapping"),
        (
            "just text\n",
            "the top level must be a mapping (`version: 1`, `stages: ...`), found a single value ('just text')",
        ),
        (
            "a: [1, 2\n",
            "p.yaml:2:1: (root): YAML syntax: while parsing a flow sequence (line 1), did not find expected ',' or ']'",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "p.yaml:2:1: (root): YAML syntax: expected a single document in the stream (line 1), but found another document",
        ),
        ("a: .nan\n", "p.yaml:1:4: a: expected a finite number, found .nan"),
        ("1: x\n", "p.yaml:1:1: (root): keys must be text, found '1'"),
        ("a: !!int abc\n", "p.yaml:1:4: a: 'abc' cannot be read as !!int"),
    ],
)
def test_malformed_documents_are_located(text: str, expected: str) -> None:
    assert expected in only_issue(text)


def test_file_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (MAX_FILE_BYTES + 1) + "\n")
    with pytest.raises(PolicyInvalid) as caught:
        read_file(big)
    assert "policies are limited to" in str(caught.value)


def test_non_utf8_file_is_located(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"version: 1\nname: caf\xe9\n")
    with pytest.raises(PolicyInvalid) as caught:
        read_file(bad)
    assert str(caught.value.issues[0]).startswith(f"{bad}:2: (root): not UTF-8 text")


def test_missing_file_is_an_issue_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        read_file(tmp_path / "nope.yaml")
    assert "cannot read the file" in str(caught.value)


# --- the one-pass reader and the node-based builder agree -----------------------------------
#
# parse_text reads a plain policy in one pass over libyaml's events (_parse_plain) and leaves
# everything else (aliases, tags, duplicates, errors...) to the node-based builder. The two
# must give the same data and positions, and the one-pass reader must step aside whenever the
# builder would report something.

REPO = Path(__file__).resolve().parent.parent


def built_by_nodes(text: str) -> SourceDocument:
    """parse_text with the one-pass reader switched off."""
    with mock.patch.object(yaml_source, "_parse_plain", lambda text, source: None):
        return parse_text(text, "p.yaml")


def assert_readers_agree(text: str) -> None:
    plain = yaml_source._parse_plain(text, "p.yaml")
    try:
        nodes = built_by_nodes(text)
    except PolicyInvalid:
        assert plain is None, "the one-pass reader accepted what the builder refuses"
        return
    if plain is not None:
        assert plain.data == nodes.data
        assert plain.values == nodes.values and list(plain.values) == list(nodes.values)
        assert plain.keys == nodes.keys


@pytest.mark.parametrize(
    "path",
    sorted((REPO / "policies").glob("*.yaml"))
    + sorted((REPO / "tests" / "policy_corpus" / "invalid").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_the_readers_agree_on_every_policy_file(path: Path) -> None:
    assert_readers_agree(path.read_text(encoding="utf-8"))


def test_bundled_policies_take_the_one_pass_path() -> None:
    for path in sorted((REPO / "policies").glob("*.yaml")):
        assert yaml_source._parse_plain(path.read_text(encoding="utf-8"), "p.yaml") is not None


# Plain scalars YAML 1.2 reads in every way (text, numbers of every form, bool, null), quoted
# ones, and now and then one the builder refuses (out of range, not finite, the merge key).
SCALARS = [
    "OFF",
    "on",
    "yes",
    "010",
    "0x1F",
    "0o17",
    "+5",
    "-3",
    "1e3",
    "-.5",
    ".inf",
    "1:20",
    "~",
    "null",
    "Null",
    "true",
    "False",
    "TRUE",
    "-",
    ".",
    "'quoted'",
    '"1"',
    "''",
    "a b",
    "x#y",
    "ETH/BTC",
    "0.000001",
    "12_3",
    "",
]
REFUSED_SCALARS = ["1234567890123456789", ".nan", "-.inf", "<<"]
KEYS = ["a", "b", "c", "d", "e", "mode", "stake_pct", "'q'", "-x", "x y", "ETH/BTC", "'1'"]
REFUSED_KEYS = ["1", "true", "null", "~", "<<", ".5", "0x1"]


def often(common: list[str], rare: list[str]) -> st.SearchStrategy[str]:
    """Mostly `common`, now and then `rare`."""
    return st.integers(min_value=0, max_value=19).flatmap(
        lambda n: st.sampled_from(rare if n == 7 else common)
    )


def flow(node: Any) -> str:
    if isinstance(node, str):
        return node
    if node and isinstance(node[0], tuple):
        return "{" + ", ".join(f"{key}: {flow(value)}" for key, value in node) + "}"
    return "[" + ", ".join(flow(item) for item in node) + "]"


def block(node: Any, indent: int) -> list[str]:
    """Lines of `node` (a scalar's text, a list, or a mapping as a list of pairs) in block
    style, with now and then a nested collection in flow style."""
    pad = " " * indent
    lines: list[str] = []
    if node and isinstance(node[0], tuple):
        for key, value in node:
            if isinstance(value, str) or not value or len(lines) % 3 == 2:
                lines.append(f"{pad}{key}: {flow(value)}")
            else:
                lines.append(f"{pad}{key}:")
                lines.extend(block(value, indent + 2))
    else:
        for item in node:
            lines.append(f"{pad}- {flow(item)}")
    return lines


keys = often(KEYS, REFUSED_KEYS)
trees: st.SearchStrategy[Any] = st.recursive(
    often(SCALARS, REFUSED_SCALARS),
    lambda children: (
        st.lists(children, max_size=4)
        | st.lists(st.tuples(keys, children), min_size=1, max_size=4, unique_by=lambda kv: kv[0])
    ),
    max_leaves=14,
)


@given(
    st.lists(st.tuples(keys, trees), min_size=1, max_size=5, unique_by=lambda kv: kv[0])
    | st.lists(st.tuples(keys, trees), min_size=2, max_size=5),  # duplicate keys, perhaps
    often(["", "\n# a comment\n"], ["---\n", "z: &anchor 1\n", "z: !!str 2\n", "a: 1\n", "{"]),
)
def test_the_readers_agree_on_generated_documents(root: Any, extra: str) -> None:
    assert_readers_agree("\n".join(block(root, 0)) + "\n" + extra)
