"""Trigger conditions: compiled from data, evaluated with three-valued logic, never eval-ed."""

from __future__ import annotations

import pytest

from aios.policy.conditions import ConditionError, compile_condition, metrics_of

KNOWN = {"drawdown_pct": 1, "losing_streak": 1, "win_rate": 1, "volatility_pct": 1}


@pytest.mark.parametrize(
    ("expression", "metrics", "expected"),
    [
        ("drawdown_pct >= 8", {"drawdown_pct": 8.0}, True),
        ("drawdown_pct >= 8", {"drawdown_pct": 7.999}, False),
        ("drawdown_pct > 8", {"drawdown_pct": 8.0}, False),
        ("drawdown_pct >= 8 or losing_streak >= 5", {"drawdown_pct": 1, "losing_streak": 5}, True),
        (
            "drawdown_pct >= 8 and losing_streak >= 5",
            {"drawdown_pct": 9, "losing_streak": 4},
            False,
        ),
        ("not win_rate < 0.5", {"win_rate": 0.5}, True),
        ("1 < volatility_pct <= 3", {"volatility_pct": 3}, True),
        ("1 < volatility_pct <= 3", {"volatility_pct": 1}, False),
        ("drawdown_pct > 2 * volatility_pct", {"drawdown_pct": 5, "volatility_pct": 2}, True),
        ("drawdown_pct / volatility_pct > 1", {"drawdown_pct": 5, "volatility_pct": 0}, None),
        ("drawdown_pct >= -1", {"drawdown_pct": -0.5}, True),
    ],
)
def test_expression_evaluation(
    expression: str, metrics: dict[str, float], expected: bool | None
) -> None:
    assert compile_condition(expression, KNOWN).evaluate(metrics) is expected


def test_structured_and_expression_forms_agree() -> None:
    structured = compile_condition(
        {
            "any": [
                {"metric": "drawdown_pct", "op": ">=", "value": 8},
                {
                    "all": [
                        {"metric": "losing_streak", "op": ">=", "value": 5},
                        {"not": {"metric": "win_rate", "op": ">", "value": 0.4}},
                    ]
                },
            ]
        },
        KNOWN,
    )
    expression = compile_condition(
        "drawdown_pct >= 8 or (losing_streak >= 5 and not win_rate > 0.4)", KNOWN
    )
    cases = [
        {"drawdown_pct": 9, "losing_streak": 0, "win_rate": 0.9},
        {"drawdown_pct": 1, "losing_streak": 6, "win_rate": 0.3},
        {"drawdown_pct": 1, "losing_streak": 6, "win_rate": 0.5},
        {"drawdown_pct": 1},
        {},
    ]
    for metrics in cases:
        assert structured.evaluate(metrics) == expression.evaluate(metrics)


@pytest.mark.parametrize(
    ("expression", "metrics", "expected"),
    [
        # Kleene logic: an unknown (missing metric) only decides when nothing else does.
        ("drawdown_pct >= 8 or losing_streak >= 5", {"losing_streak": 6}, True),
        ("drawdown_pct >= 8 or losing_streak >= 5", {"losing_streak": 1}, None),
        ("drawdown_pct >= 8 and losing_streak >= 5", {"losing_streak": 1}, False),
        ("drawdown_pct >= 8 and losing_streak >= 5", {"losing_streak": 6}, None),
        ("not drawdown_pct >= 8", {}, None),
    ],
)
def test_missing_metrics_are_unknown_not_false(
    expression: str, metrics: dict[str, float], expected: bool | None
) -> None:
    assert compile_condition(expression, KNOWN).evaluate(metrics) is expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('true')", "a function call is not allowed"),
        ("drawdown_pct.real > 1", "attribute access is not allowed"),
        ("drawdown_pct[0] > 1", "indexing is not allowed"),
        ("drawdown_pct in (1, 2)", "the operator In is not allowed"),
        ("drawdown_pct > 'a'", "the constant 'a' is not allowed"),
        ("drawdown_pct > True", "the constant True is not allowed"),
        ("(lambda: 1)() > 0", "a function call is not allowed"),
        ("drawdown_pct", "a condition must be true or false"),
        ("drawdown_pct >=", "cannot parse the expression"),
        ("", "the expression is empty"),
        ("drawdown >= 8", "unknown metric 'drawdown'"),
    ],
)
def test_unsafe_or_malformed_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(expression, KNOWN)
    assert message in caught.value.message


def test_unknown_metric_in_structured_form_points_at_the_metric_key() -> None:
    with pytest.raises(ConditionError) as caught:
        compile_condition(
            {
                "all": [
                    {"metric": "win_rate", "op": ">", "value": 1},
                    {"metric": "winrate", "op": ">", "value": 1},
                ]
            },
            KNOWN,
        )
    assert caught.value.subpath == ("all", 1, "metric")
    assert "did you mean 'win_rate'" in caught.value.message


def test_metrics_of_lists_every_metric_read() -> None:
    condition = compile_condition(
        "drawdown_pct > 1 or (win_rate < 0.5 and not losing_streak > volatility_pct)", KNOWN
    )
    assert metrics_of(condition) == {"drawdown_pct", "win_rate", "losing_streak", "volatility_pct"}
