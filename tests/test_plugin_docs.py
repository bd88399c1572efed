"""docs/plugins.md cannot rot: every hook is documented (from its docstring) and tested.

As in datasette's suite: a hook added to aios/hookspecs.py without a docstring that says how its
answers are used, without the regenerated reference, or without a `test_hook_<name>` test,
fails here.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from aios import hookspecs, plugin_docs
from aios.registry import new_manager

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "plugins.md"
HOOKS = plugin_docs.hook_names()
#: each docstring must say what the engine does with the answers
DISPOSITION = ("Collected", "Decisive", "returns nothing", "Returns nothing", "Informational")


def test_the_hook_list_is_the_one_pluggy_knows() -> None:
    manager = new_manager()
    specified = sorted(
        name
        for name, caller in vars(manager.hook).items()
        if getattr(caller, "spec", None) is not None
    )
    assert sorted(HOOKS) == specified
    assert [h for _, group in plugin_docs.hook_groups() for h in group] == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_docstring_saying_how_its_answers_are_used(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert doc, f"{hook} has no docstring"
    assert any(word in doc for word in DISPOSITION), f"{hook}: say Collected, Decisive, ..."


def test_the_reference_in_docs_plugins_md_is_generated_from_the_hookspecs() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert plugin_docs.updated(text) == text, "docs/plugins.md is stale: run `make docs`"
    for hook in HOOKS:
        assert f"#### `{hook}`" in text
    if hookspecs.CONTRACT_VERSION == "1.0":  # the versioning table counts 1.0's hooks
        assert f"| the first contract: the {len(HOOKS)} hooks below |" in text


def test_every_hook_has_a_test_exercising_it() -> None:
    tests: set[str] = set()
    for path in (REPO / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        tests |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    missing = [hook for hook in HOOKS if f"test_hook_{hook}" not in tests]
    assert missing == [], f"hooks without a test_hook_<name> test: {missing}"


def test_a_stale_reference_is_detected_and_rewritten(tmp_path: Path) -> None:
    stale = tmp_path / "plugins.md"
    stale.write_text(f"# Title\n\n{plugin_docs.BEGIN}\nold\n{plugin_docs.END}\ntail\n")
    assert plugin_docs.main([str(stale), "--check"]) == 1
    assert plugin_docs.main([str(stale)]) == 0
    assert plugin_docs.main([str(stale), "--check"]) == 0
    text = stale.read_text()
    assert text.startswith("# Title\n\n") and text.endswith(f"{plugin_docs.END}\ntail\n")
    assert "#### `aios_filter_entry`" in text
    (tmp_path / "bare.md").write_text("no markers\n")
    assert plugin_docs.main([str(tmp_path / "bare.md")]) == 2
