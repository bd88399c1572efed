"""Trigger conditions: data, compiled once at load, never `eval`-ed.

Two spellings compile to the same tree:

* structured: `{all: [...]}`, `{any: [...]}`, `{not: ...}`, `{metric: drawdown_pct, op: ">=", value: 8}`
* an expression string: `"drawdown_pct >= 8 or (losing_streak >= 5 and win_rate < 0.4)"`

Expressions are parsed with Python's `ast` module (parsing only, nothing is executed) and only a
whitelist of node types is accepted: names of metrics, numbers, `and`/`or`/`not`, comparisons
(chained ones too) and `+ - * /`. Anything else (calls, attributes, subscripts, strings...) is
an error located in the policy.

Evaluation uses three-valued logic: a missing metric makes a comparison *unknown* (None), and
`all`/`any`/`not` propagate unknowns the Kleene way. The caller decides what unknown means;
for protective triggers the policy's default is to treat it as fired (fail closed).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Metrics = Mapping[str, float]
Truth = bool | None

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_AST_COMPARATORS = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}
_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class ConditionError(ValueError):
    """A condition that cannot be compiled; `subpath` and `offset` say where inside it."""

    def __init__(
        self, message: str, subpath: tuple[str | int, ...] = (), offset: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.subpath = subpath
        self.offset = offset


# --- value expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    value: float

    def value_of(self, metrics: Metrics) -> float | None:
        return self.value

    def __str__(self) -> str:
        return f"{self.value:g}"


@dataclass(frozen=True)
class MetricRef:
    name: str

    def value_of(self, metrics: Metrics) -> float | None:
        value = metrics.get(self.name)
        return None if value is None else float(value)

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Arithmetic:
    op: str
    left: ValueExpr
    right: ValueExpr

    def value_of(self, metrics: Metrics) -> float | None:
        left = self.left.value_of(metrics)
        right = self.right.value_of(metrics)
        if left is None or right is None:
            return None
        if self.op == "+":
            return left + right
        if self.op == "-":
            return left - right
        if self.op == "*":
            return left * right
        return None if right == 0 else left / right

    def __str__(self) -> str:
        return f"({self.left} {self.op} {self.right})"


ValueExpr = Number | MetricRef | Arithmetic


# --- boolean conditions ------------------------------------------------------------------------


@dataclass(frozen=True)
class Compare:
    op: str
    left: ValueExpr
    right: ValueExpr

    def evaluate(self, metrics: Metrics) -> Truth:
        left = self.left.value_of(metrics)
        right = self.right.value_of(metrics)
        if left is None or right is None:
            return None
        return COMPARATORS[self.op](left, right)

    def __str__(self) -> str:
        return f"{self.left} {self.op} {self.right}"


@dataclass(frozen=True)
class AllOf:
    parts: tuple[Condition, ...]

    def evaluate(self, metrics: Metrics) -> Truth:
        unknown = False
        for part in self.parts:
            result = part.evaluate(metrics)
            if result is False:
                return False
            if result is None:
                unknown = True
        return None if unknown else True

    def __str__(self) -> str:
        return "(" + " and ".join(str(p) for p in self.parts) + ")"


@dataclass(frozen=True)
class AnyOf:
    parts: tuple[Condition, ...]

    def evaluate(self, metrics: Metrics) -> Truth:
        unknown = False
        for part in self.parts:
            result = part.evaluate(metrics)
            if result is True:
                return True
            if result is None:
                unknown = True
        return None if unknown else False

    def __str__(self) -> str:
        return "(" + " or ".join(str(p) for p in self.parts) + ")"


@dataclass(frozen=True)
class Not:
    part: Condition

    def evaluate(self, metrics: Metrics) -> Truth:
        result = self.part.evaluate(metrics)
        return None if result is None else not result

    def __str__(self) -> str:
        return f"not {self.part}"


Condition = Compare | AllOf | AnyOf | Not


def metrics_of(condition: Condition | ValueExpr) -> frozenset[str]:
    """Every metric name a condition reads."""
    if isinstance(condition, MetricRef):
        return frozenset({condition.name})
    if isinstance(condition, Number):
        return frozenset()
    if isinstance(condition, (Compare, Arithmetic)):
        return metrics_of(condition.left) | metrics_of(condition.right)
    if isinstance(condition, Not):
        return metrics_of(condition.part)
    names: frozenset[str] = frozenset()
    for part in condition.parts:
        names |= metrics_of(part)
    return names


# --- compilation -------------------------------------------------------------------------------


MAX_EXPRESSION_LENGTH = 4096


def compile_condition(spec: Any, known_metrics: Mapping[str, Any] | None = None) -> Condition:
    """Compile a condition (string or structured); raise ConditionError with where it went wrong."""
    try:
        return _compile_condition(spec, known_metrics)
    except RecursionError:
        raise ConditionError("the condition is nested too deeply") from None


def _compile_condition(spec: Any, known_metrics: Mapping[str, Any] | None) -> Condition:
    condition = (
        _compile_structured(spec, ()) if not isinstance(spec, str) else compile_expression(spec)
    )
    if known_metrics is not None:
        _check_metrics(spec, condition, known_metrics)
    return condition


def _check_metrics(spec: Any, condition: Condition, known: Mapping[str, Any]) -> None:
    from aios.policy.issues import did_you_mean

    for name in sorted(metrics_of(condition)):
        if name not in known:
            subpath, offset = _where_metric(spec, name, ())
            raise ConditionError(
                f"unknown metric '{name}'{did_you_mean(name, list(known))} "
                f"(known metrics: {', '.join(sorted(known))})",
                subpath,
                offset,
            )


def _name_at(text: str, name: str) -> int | None:
    """Offset of `name` as a whole identifier in an expression (not inside a longer name)."""
    match = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
    return match.start() if match else None


def _where_metric(
    spec: Any, name: str, subpath: tuple[str | int, ...]
) -> tuple[tuple[str | int, ...], int | None]:
    """Where in a condition the (unknown) metric `name` is named: a sub-path and an offset."""
    if isinstance(spec, str):
        return subpath, _name_at(spec, name)
    if isinstance(spec, dict):
        if spec.get("metric") == name:
            return (*subpath, "metric"), None
        for key in ("all", "any"):
            parts = spec.get(key)
            for index, part in enumerate(parts if isinstance(parts, list) else []):
                if _mentions(part, name):
                    return _where_metric(part, name, (*subpath, key, index))
        if "not" in spec:
            return _where_metric(spec["not"], name, (*subpath, "not"))
    return subpath, None


def _mentions(spec: Any, name: str) -> bool:
    if isinstance(spec, str):
        return _name_at(spec, name) is not None
    if isinstance(spec, dict):
        return spec.get("metric") == name or any(
            _mentions(v, name) for k, v in spec.items() if k in ("all", "any", "not")
        )
    if isinstance(spec, list):
        return any(_mentions(v, name) for v in spec)
    return False


def _compile_structured(spec: Any, subpath: tuple[str | int, ...]) -> Condition:
    if isinstance(spec, str):
        try:
            return compile_expression(spec)
        except ConditionError as exc:
            raise ConditionError(exc.message, subpath + exc.subpath, exc.offset) from None
    if not isinstance(spec, dict):
        raise ConditionError("a condition is an expression string or a mapping", subpath)
    forms = [key for key in ("all", "any", "not", "metric") if key in spec]
    if len(forms) != 1:
        raise ConditionError("a condition takes exactly one of all, any, not, metric", subpath)
    form = forms[0]
    if form in ("all", "any"):
        parts = spec[form]
        if not isinstance(parts, list) or not parts:
            raise ConditionError(f"'{form}' takes a non-empty list of conditions", (*subpath, form))
        compiled = tuple(
            _compile_structured(part, (*subpath, form, i)) for i, part in enumerate(parts)
        )
        return AllOf(compiled) if form == "all" else AnyOf(compiled)
    if form == "not":
        return Not(_compile_structured(spec["not"], (*subpath, "not")))
    op = spec.get("op")
    if op not in COMPARATORS:
        raise ConditionError(f"'op' must be one of {', '.join(COMPARATORS)}", (*subpath, "op"))
    value = spec.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConditionError("'value' must be a number", (*subpath, "value"))
    return Compare(op, MetricRef(str(spec["metric"])), Number(_finite(value, (*subpath, "value"))))


_COMPILED: dict[str, Condition] = {}
_COMPILED_LIMIT = 1024


def compile_expression(text: str) -> Condition:
    """Compile the expression language (a safe subset of Python's expression syntax).

    Memoised by text: every load of a policy (each hot reload) compiles the same expressions,
    and a compiled condition is an immutable tree, safe to share. Errors are not memoised.
    """
    compiled = _COMPILED.get(text)
    if compiled is None:
        compiled = _compile_expression(text)
        if len(_COMPILED) >= _COMPILED_LIMIT:
            _COMPILED.clear()
        _COMPILED[text] = compiled
    return compiled


def _compile_expression(text: str) -> Condition:
    if not text.strip():
        raise ConditionError("the expression is empty")
    if "\n" in text.strip():
        raise ConditionError(
            "an expression is one line; write a long condition with the structured all/any form",
            (),
            text.strip().index("\n"),
        )
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ConditionError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        offset = (exc.offset - 1) if exc.offset else None
        raise ConditionError(f"cannot parse the expression: {exc.msg}", (), offset) from None
    except (RecursionError, MemoryError):
        raise ConditionError("the expression is nested too deeply") from None
    return _boolean(tree.body)


def _reject(node: ast.AST, what: str) -> ConditionError:
    return ConditionError(
        f"{what} is not allowed in a condition (only metric names, numbers, comparisons, "
        "and/or/not and + - * /)",
        (),
        getattr(node, "col_offset", None),
    )


def _boolean(node: ast.expr) -> Condition:
    if isinstance(node, ast.BoolOp):
        parts = tuple(_boolean(value) for value in node.values)
        return AllOf(parts) if isinstance(node.op, ast.And) else AnyOf(parts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Not(_boolean(node.operand))
    if isinstance(node, ast.Compare):
        left = _value(node.left)
        comparisons: list[Condition] = []
        for op_node, right_node in zip(node.ops, node.comparators, strict=True):
            op = _AST_COMPARATORS.get(type(op_node))
            if op is None:
                raise _reject(right_node, f"the operator {type(op_node).__name__}")
            right = _value(right_node)
            comparisons.append(Compare(op, left, right))
            left = right
        return comparisons[0] if len(comparisons) == 1 else AllOf(tuple(comparisons))
    if isinstance(node, (ast.Name, ast.Constant, ast.BinOp)):
        raise ConditionError(
            "a condition must be true or false: compare a value, e.g. 'drawdown_pct >= 8'",
            (),
            node.col_offset,
        )
    raise _reject(node, _describe(node))


def _value(node: ast.expr) -> ValueExpr:
    if isinstance(node, ast.Name):
        return MetricRef(node.id)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return Number(_finite(node.value, (), node.col_offset))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand)
        if isinstance(inner, Number):
            return Number(-inner.value)
        return Arithmetic("-", Number(0.0), inner)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return Arithmetic(_ARITHMETIC[type(node.op)], _value(node.left), _value(node.right))
    raise _reject(node, _describe(node))


def _finite(value: float, subpath: tuple[str | int, ...], offset: int | None = None) -> float:
    """A number as a float, refusing what a float cannot hold (10**400) or is not (nan, inf)."""
    try:
        number = float(value)
    except OverflowError:
        raise ConditionError("the number is out of range", subpath, offset) from None
    if not math.isfinite(number):
        raise ConditionError("the number must be finite", subpath, offset)
    return number


_OPERATOR_NAMES = {
    ast.Pow: "the operator **",
    ast.Mod: "the operator %",
    ast.FloorDiv: "the operator //",
    ast.MatMult: "the operator @",
    ast.BitAnd: "the operator &",
    ast.BitOr: "the operator |",
    ast.BitXor: "the operator ^",
    ast.LShift: "the operator <<",
    ast.RShift: "the operator >>",
    ast.UAdd: "unary +",
    ast.Invert: "the operator ~",
}


def _describe(node: ast.AST) -> str:
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATOR_NAMES:
        return _OPERATOR_NAMES[type(node.op)]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATOR_NAMES:
        return _OPERATOR_NAMES[type(node.op)]
    if isinstance(node, ast.IfExp):
        return "a conditional expression (x if y else z)"
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.NamedExpr):
        return "an assignment (:=)"
    if isinstance(node, ast.Call):
        return "a function call"
    if isinstance(node, ast.Attribute):
        return "attribute access"
    if isinstance(node, ast.Subscript):
        return "indexing"
    if isinstance(node, ast.Constant):
        return f"the constant {node.value!r}"
    if isinstance(node, ast.Lambda):
        return "lambda"
    return f"'{type(node).__name__}'"
