"""Properties of the loader under random input: a Policy or located issues, never a traceback.

* Structural mutations of the bundled policies (a key deleted, renamed or added, a value of
  another type, a number changed, list items shuffled or duplicated, a value nested deeper),
  dumped back to YAML and loaded, alone or as an overlay over default.yaml.
* Text mutations of the same files (characters and lines inserted, deleted, replaced).
* Random trigger conditions, as expressions from a small grammar with junk tokens mixed in and
  as structured mappings: compiling either succeeds or raises ConditionError, and evaluation is
  three-valued; well-formed structured conditions agree with a reference Kleene evaluator
  written here.

Known loader bugs are shown by strict-xfail tests (here and in tests/policy_corpus/invalid);
the generators stay clear of their triggers (see `known_bug_trigger`) so that these properties
keep finding new problems instead of the same one. Remove a clause when its bug is fixed.
"""

from __future__ import annotations

import copy
import operator
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aios.metrics import CORE_METRICS
from aios.policy import Issue, Location, Policy, PolicyInvalid, load_policy
from aios.policy.conditions import ConditionError, compile_condition
from aios.policy.yaml_source import parse_text

REPO = Path(__file__).resolve().parent.parent
POLICIES = REPO / "policies"
DEFAULT = POLICIES / "default.yaml"
BUNDLED = ("default.yaml", "conservative.yaml", "aggressive.yaml")
TEXTS = {name: (POLICIES / name).read_text(encoding="utf-8") for name in BUNDLED}
# Parsed with the loader's own YAML 1.2 reader: yaml.safe_load would turn `mode: OFF` into false.
TREES = {name: parse_text(text, name).data for name, text in TEXTS.items()}

METRICS = sorted(CORE_METRICS)
OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
NOT_A_FILE = ("env ", "schema default")  # sources of issues that come from no file
DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's is 5x faster

KeyPath = tuple[str | int, ...]
# Modest example counts: the whole file runs in about 15 s; CI's profile derandomizes them.
POLICY_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _collect_keys(node: Any, into: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            into.add(key)
            _collect_keys(value, into)
    elif isinstance(node, list):
        for item in node:
            _collect_keys(item, into)
    return into


KNOWN_KEYS = sorted(_collect_keys(TREES["default.yaml"], set()))


# --- the property every load must satisfy ------------------------------------------------------


def check_issue(issue: Issue, files: dict[str, int]) -> None:
    """`files` maps each loaded file to its number of lines."""
    assert isinstance(issue, Issue)
    location = issue.location
    assert isinstance(location, Location)
    if location.source in files:
        assert location.line is not None and location.line >= 1, f"unlocated: {issue}"
        assert location.line <= files[location.source] + 1, f"past the end: {issue}"
        assert location.column is None or location.column >= 1, f"bad column: {issue}"
    else:
        assert location.source.startswith(NOT_A_FILE), f"unknown source: {issue}"
    assert isinstance(issue.message, str) and issue.message.strip(), f"no message: {issue!r}"
    assert isinstance(issue.path, tuple), f"path is not a tuple: {issue!r}"
    assert all(isinstance(element, str | int) for element in issue.path), repr(issue)
    assert str(issue)


def load_outcome(paths: list[Path]) -> Policy | PolicyInvalid:
    """Load; return the Policy or the PolicyInvalid after checking every issue is located."""
    files = {str(path): len(path.read_text(encoding="utf-8").splitlines()) for path in paths}
    try:
        return load_policy([str(path) for path in paths], env={})
    except PolicyInvalid as exc:
        assert exc.errors, "PolicyInvalid without a single error"
        for issue in exc.issues:
            check_issue(issue, files)
        assert str(exc)
        return exc


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


# --- generators for policy trees ---------------------------------------------------------------

TEXT_ALPHABET = string.ascii_letters + string.digits + "_-./: %<>=!&*#'\"[]{},|?@`~" + "é€ü "
INTERESTING_TEXT = [
    "",
    "OFF",
    "off",
    "ENFORCED",
    "OBSERVATION",
    "NORMAL",
    "CRITICAL",
    "fail_open",
    "ETH/BTC",
    "eth/btc",
    "drawdown_pct >= 8",
    "drawdown_pct >=",
    "nonexistent_metric > 1",
    "<<",
    "~",
    "null",
    "yes",
    "1:20",
    "0o17",
    "1e3",
]
keys = st.one_of(
    st.sampled_from(KNOWN_KEYS), st.text(alphabet=string.ascii_lowercase + "_", max_size=12)
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(min_value=-1e300, max_value=1e300, allow_nan=False),
    st.text(alphabet=TEXT_ALPHABET, max_size=16),
    st.sampled_from(INTERESTING_TEXT),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(keys, children, max_size=3)
    ),
    max_leaves=8,
)

OPERATIONS = (
    "delete",
    "rename",
    "replace",
    "insert",
    "number",
    "shuffle",
    "duplicate",
    "nest",
)


def walk(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from walk(item, (*path, index))


def node_at(tree: Any, path: KeyPath) -> Any:
    for element in path:
        tree = tree[element]
    return tree


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def changed_number(value: float) -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [-value, 0, value * 10, value + 1, value - 1, value / 3, -1, 1e300, 2.5, 10**12]
    )


def typo(key: str) -> st.SearchStrategy[str]:
    """A misspelling of `key`: a character dropped, doubled or changed, upper case, or any text."""
    return st.one_of(
        st.integers(0, max(len(key) - 1, 0)).map(lambda i: key[:i] + key[i + 1 :]),
        st.integers(0, max(len(key) - 1, 0)).map(
            lambda i: key[:i] + key[i : i + 1] * 2 + key[i + 1 :]
        ),
        st.just(key.upper()),
        keys,
    )


def mutate(tree: Any, data: st.DataObject) -> Any:
    """Apply one random structural change to `tree` (in place where possible); return the tree."""
    paths = [path for path, _ in walk(tree)]
    operation = data.draw(st.sampled_from(OPERATIONS), label="operation")
    inner = [path for path in paths if path]
    if operation == "delete" and inner:
        path = data.draw(st.sampled_from(inner), label="delete at")
        del node_at(tree, path[:-1])[path[-1]]
        return tree
    if operation == "rename":
        named = [path for path in inner if isinstance(path[-1], str)]
        if named:
            path = data.draw(st.sampled_from(named), label="rename at")
            parent = node_at(tree, path[:-1])
            old = str(path[-1])
            new = data.draw(typo(old), label="new name")
            renamed = {(new if key == old else key): value for key, value in parent.items()}
            parent.clear()
            parent.update(renamed)
            return tree
    if operation == "insert":
        mappings = [path for path, node in walk(tree) if isinstance(node, dict)]
        if mappings:
            path = data.draw(st.sampled_from(mappings), label="insert into")
            node_at(tree, path)[data.draw(keys, label="key")] = data.draw(json_values)
            return tree
    if operation == "number":
        numbers = [path for path, node in walk(tree) if is_number(node) and path]
        if numbers:
            path = data.draw(st.sampled_from(numbers), label="number at")
            parent = node_at(tree, path[:-1])
            parent[path[-1]] = data.draw(changed_number(parent[path[-1]]), label="number")
            return tree
    if operation in ("shuffle", "duplicate"):
        lists = [path for path, node in walk(tree) if isinstance(node, list) and node]
        if lists:
            path = data.draw(st.sampled_from(lists), label=f"{operation} at")
            items = node_at(tree, path)
            if operation == "shuffle":
                items[:] = data.draw(st.permutations(items), label="order")
            else:
                index = data.draw(st.integers(0, len(items) - 1), label="item")
                items.insert(data.draw(st.integers(0, len(items))), items[index])
            return tree
    if operation == "nest":
        path = data.draw(st.sampled_from(paths), label="nest at")
        value = node_at(tree, path)
        wrapped = data.draw(
            st.sampled_from([[value], {"nested": value}, {str(path[-1] if path else "x"): value}])
        )
        if not path:
            return wrapped
        node_at(tree, path[:-1])[path[-1]] = wrapped
        return tree
    # "replace", and the fallback when an operation has nothing to work on
    path = data.draw(st.sampled_from(paths), label="replace at")
    old = node_at(tree, path)
    new = data.draw(json_values.filter(lambda value: type(value) is not type(old)), label="value")
    if not path:
        return new
    node_at(tree, path[:-1])[path[-1]] = new
    return tree


def _section(tree: Any, *path: str) -> Any:
    for key in path:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def known_bug_trigger(tree: Any) -> str | None:
    """Why `tree` would hit a known loader bug (a strict-xfail corpus case), or None.

    None are open: every bug these properties found is fixed and kept as a corpus regression.
    """
    return None


# --- structural mutations ----------------------------------------------------------------------


@pytest.mark.parametrize("name", BUNDLED)
@POLICY_SETTINGS
@given(data=st.data())
def test_structural_mutations_give_a_policy_or_located_issues(
    name: str, data: st.DataObject, workdir: Path
) -> None:
    tree = copy.deepcopy(TREES[name])
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        tree = mutate(tree, data)
    reason = known_bug_trigger(tree)
    assume(reason is None)
    path = workdir / f"mutated-{name}"
    dumped = yaml.dump(tree, Dumper=DUMPER, sort_keys=False, allow_unicode=True)
    path.write_text(dumped, encoding="utf-8")
    over_default = data.draw(st.booleans(), label="as an overlay over default.yaml")
    load_outcome([DEFAULT, path] if over_default else [path])


# --- text mutations ----------------------------------------------------------------------------

# Tabs, line breaks, YAML punctuation, non-ASCII and control characters are all fair game.
CHARACTERS = (
    string.ascii_letters + string.digits + string.punctuation + " \t\n\r" + "é€\u00a0\x01\x1b\x7f"
)
LINE_SNIPPETS = [
    "foo: bar",
    "  - x",
    "- {a: 1}",
    "mode: OFF",
    "  mode: ENFORCED",
    "<<: *a",
    "x: &a {y: 1}",
    "x: *undefined",
    "---",
    "...",
    "? complex",
    "  bands: []",
    "version: 2",
    "!!python/object:os.system",
]


def mutate_text(text: str, data: st.DataObject) -> str:
    operation = data.draw(
        st.sampled_from(
            [
                "insert",
                "delete",
                "replace",
                "drop line",
                "copy line",
                "swap lines",
                "indent",
                "line",
            ]
        ),
        label="text operation",
    )
    if operation in ("insert", "delete", "replace"):
        start = data.draw(st.integers(0, len(text)), label="at")
        length = 0 if operation == "insert" else data.draw(st.integers(1, 20), label="length")
        inserted = (
            ""
            if operation == "delete"
            else data.draw(st.text(alphabet=CHARACTERS, min_size=1, max_size=8), label="text")
        )
        return text[:start] + inserted + text[start + length :]
    lines = text.split("\n")
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    if operation == "drop line":
        del lines[index]
    elif operation == "copy line":
        lines.insert(data.draw(st.integers(0, len(lines)), label="to"), lines[index])
    elif operation == "swap lines":
        other = data.draw(st.integers(0, len(lines) - 1), label="with")
        lines[index], lines[other] = lines[other], lines[index]
    elif operation == "indent":
        shift = data.draw(st.sampled_from([-2, -1, 1, 2]), label="shift")
        line = lines[index]
        lines[index] = " " * shift + line if shift > 0 else line[min(-shift, len(line)) :]
    else:
        snippet = data.draw(st.sampled_from(LINE_SNIPPETS), label="snippet")
        indent = " " * data.draw(st.sampled_from([0, 2, 4, 6]), label="indent")
        lines.insert(index, indent + snippet)
    return "\n".join(lines)


@pytest.mark.parametrize("name", BUNDLED)
@POLICY_SETTINGS
@given(data=st.data())
def test_text_mutations_give_a_policy_or_located_issues(
    name: str, data: st.DataObject, workdir: Path
) -> None:
    text = TEXTS[name]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        text = mutate_text(text, data)
    path = workdir / f"text-{name}"
    path.write_text(text, encoding="utf-8")
    load_outcome([path])


# --- conditions --------------------------------------------------------------------------------

JUNK_TOKENS = [
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "**",
    "%",
    "//",
    "<<",
    "is",
    "in",
    "if",
    "else",
    "lambda",
    "import",
    ":=",
    "@",
    "~",
    ";",
    "'text'",
    "True",
    "None",
    "x.y",
    "f(1)",
    "__import__('os')",
    "1e999",
    "0x1F",
    "1_000",
    "unknown_metric",
    "Drawdown_pct",
]
metric_names = st.sampled_from(METRICS)
number_texts = st.one_of(
    st.integers(-1000, 1000).map(str),
    st.floats(-1e6, 1e6, allow_nan=False).map(repr),
)
value_expressions = st.recursive(
    st.one_of(metric_names, metric_names, number_texts),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(" ".join),
        inner.map(lambda text: f"({text})"),
        inner.map(lambda text: f"-{text}"),
    ),
    max_leaves=4,
)
comparisons = st.tuples(value_expressions, st.sampled_from(list(OPERATORS)), value_expressions).map(
    " ".join
)
boolean_expressions = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(" ".join),
        inner.map(lambda text: f"not {text}"),
        inner.map(lambda text: f"({text})"),
    ),
    max_leaves=5,
)
junk = st.sampled_from(JUNK_TOKENS)


@st.composite
def messy_expressions(draw: st.DrawFn) -> str:
    """Grammar output with junk tokens spliced in, or token soup."""
    if draw(st.booleans()):
        tokens = draw(
            st.lists(
                st.one_of(junk, metric_names, number_texts, st.sampled_from(list(OPERATORS))),
                max_size=8,
            )
        )
        return " ".join(tokens)
    words = draw(boolean_expressions).split(" ")
    for _ in range(draw(st.integers(0, 2))):
        words.insert(draw(st.integers(0, len(words))), draw(junk))
    return " ".join(words)


condition_values = st.one_of(
    st.integers(-5, 5), st.floats(-10, 10, allow_nan=False, allow_infinity=False)
)
comparison_specs = st.fixed_dictionaries(
    {"metric": metric_names, "op": st.sampled_from(list(OPERATORS)), "value": condition_values}
)
structured_conditions = st.recursive(
    comparison_specs,
    lambda inner: st.one_of(
        st.fixed_dictionaries({"all": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"any": st.lists(inner, min_size=1, max_size=3)}),
        st.fixed_dictionaries({"not": inner}),
    ),
    max_leaves=6,
)
bad_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from(["", "   ", "drawdown_pct >= 8", "drawdown_pct +", "unknown_metric > 1"]),
    st.lists(st.none(), max_size=2),
    st.fixed_dictionaries({}),
    st.fixed_dictionaries(
        {"metric": st.one_of(metric_names, st.integers(), st.just("nope"))},
        optional={
            "op": st.sampled_from(["<", "=~", "", None, 1]),
            "value": st.one_of(st.none(), st.booleans(), st.text(max_size=3), condition_values),
            "extra": st.integers(),
        },
    ),
)
messy_conditions = st.recursive(
    st.one_of(comparison_specs, bad_leaves, messy_expressions()),
    lambda inner: st.one_of(
        st.dictionaries(
            st.sampled_from(["all", "any", "not", "metric"]),
            st.one_of(inner, st.lists(inner, max_size=3)),
            max_size=2,
        ),
        st.fixed_dictionaries({"all": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"any": st.lists(inner, max_size=3)}),
        st.fixed_dictionaries({"not": inner}),
    ),
    max_leaves=6,
)
metric_values = st.dictionaries(
    metric_names,
    st.one_of(
        st.integers(-5, 5).map(float),
        st.floats(-1e6, 1e6, allow_nan=False),
        st.sampled_from([0.0, -0.0, 1e308, -1e308, 5e-324]),
    ),
)


def evaluates_three_valued(spec: Any, metrics: dict[str, float]) -> None:
    try:
        condition = compile_condition(spec, CORE_METRICS)
    except ConditionError as exc:
        assert isinstance(exc.message, str) and exc.message
        assert isinstance(exc.subpath, tuple)
        assert exc.offset is None or isinstance(exc.offset, int)
        return
    assert condition.evaluate(metrics) in (True, False, None)


@settings(max_examples=200, deadline=None)
@given(expression=st.one_of(boolean_expressions, messy_expressions()), metrics=metric_values)
def test_expressions_compile_or_raise_condition_error(
    expression: str, metrics: dict[str, float]
) -> None:
    evaluates_three_valued(expression, metrics)


@settings(max_examples=200, deadline=None)
@given(spec=messy_conditions, metrics=metric_values)
def test_structured_conditions_compile_or_raise_condition_error(
    spec: Any, metrics: dict[str, float]
) -> None:
    evaluates_three_valued(spec, metrics)


def kleene(spec: dict[str, Any], metrics: dict[str, float]) -> bool | None:
    """Reference evaluator: strong Kleene logic, a missing metric is unknown (None)."""
    if "all" in spec:
        results = [kleene(part, metrics) for part in spec["all"]]
        if False in results:
            return False
        return None if None in results else True
    if "any" in spec:
        results = [kleene(part, metrics) for part in spec["any"]]
        if True in results:
            return True
        return None if None in results else False
    if "not" in spec:
        result = kleene(spec["not"], metrics)
        return None if result is None else not result
    if spec["metric"] not in metrics:
        return None
    return OPERATORS[spec["op"]](metrics[spec["metric"]], float(spec["value"]))


def as_expression(spec: dict[str, Any]) -> str:
    """The same condition in the expression language."""
    if "all" in spec or "any" in spec:
        word = " and " if "all" in spec else " or "
        return (
            "("
            + word.join(as_expression(part) for part in spec["all" if "all" in spec else "any"])
            + ")"
        )
    if "not" in spec:
        return f"(not {as_expression(spec['not'])})"
    return f"{spec['metric']} {spec['op']} {float(spec['value'])!r}"


@settings(max_examples=200, deadline=None)
@given(spec=structured_conditions, metrics=metric_values)
def test_structured_conditions_follow_kleene_logic(
    spec: dict[str, Any], metrics: dict[str, float]
) -> None:
    expected = kleene(spec, metrics)
    assert compile_condition(spec, CORE_METRICS).evaluate(metrics) is expected
    # the expression spelling of the same condition compiles to the same truth table
    assert compile_condition(as_expression(spec), CORE_METRICS).evaluate(metrics) is expected


# --- bugs these properties found (fixed; kept as regressions) ------------------------------------------------------


def test_a_huge_integer_in_an_expression_is_a_condition_error() -> None:
    with pytest.raises(ConditionError):
        compile_condition("drawdown_pct >= 1" + "0" * 400, CORE_METRICS)


def test_a_huge_integer_in_a_structured_condition_is_a_condition_error() -> None:
    with pytest.raises(ConditionError):
        compile_condition({"metric": "drawdown_pct", "op": ">=", "value": 10**400}, CORE_METRICS)


DEEP_CONDITIONS = {
    "a thousand nots": "not " * 1000 + "drawdown_pct > 1",
    "a thousand-term sum": "drawdown_pct > " + " + ".join(["1"] * 1000),
    "a thousand minus signs": "drawdown_pct > " + "-" * 1000 + "1",
    "three thousand terms (the parser itself)": "drawdown_pct > " + " + ".join(["1"] * 3000),
}


@pytest.mark.parametrize("text", DEEP_CONDITIONS.values(), ids=list(DEEP_CONDITIONS))
def test_a_deeply_nested_expression_is_a_condition_error(text: str) -> None:
    with pytest.raises(ConditionError):
        compile_condition(text, CORE_METRICS)


def test_a_deeply_nested_structured_condition_is_a_condition_error() -> None:
    spec: dict[str, Any] = {"metric": "drawdown_pct", "op": ">", "value": 1}
    for _ in range(2000):
        spec = {"not": spec}
    with pytest.raises(ConditionError):
        compile_condition(spec, CORE_METRICS)


def test_the_reference_evaluator_is_three_valued() -> None:
    spec = {
        "any": [
            {"metric": "drawdown_pct", "op": ">=", "value": 8},
            {"not": {"metric": "win_rate", "op": "<", "value": 0.5}},
        ]
    }
    assert kleene(spec, {}) is None
    assert kleene(spec, {"drawdown_pct": 9.0}) is True
    assert kleene(spec, {"drawdown_pct": 1.0, "win_rate": 0.4}) is False
    assert kleene(spec, {"drawdown_pct": 1.0}) is None
    assert as_expression(spec) == "(drawdown_pct >= 8.0 or (not win_rate < 0.5))"
