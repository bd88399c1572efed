"""Layer 1: safe YAML with positions, duplicate keys, tags, alias bombs, YAML 1.2 scalars."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.policy.issues import PolicyInvalid
from aios.policy.yaml_source import MAX_FILE_BYTES, parse_text, read_file


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
