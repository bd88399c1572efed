"""Environment overrides keep the original QT_AI_* names and are validated like file values."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.policy import PolicyInvalid, load_policy

DEFAULT = [Path(__file__).resolve().parent.parent / "policies" / "default.yaml"]


def errors_for(env: dict[str, str]) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(DEFAULT, env=env)
    return [str(issue) for issue in caught.value.errors]


@pytest.mark.parametrize(
    ("variable", "value", "path", "expected"),
    [
        ("QT_AI_PIL_ENABLED", "false", ("subsystems", "position_intelligence", "enabled"), False),
        ("QT_AI_PIL_MODE", "observe", ("subsystems", "position_intelligence", "mode"), "OBSERVE"),
        ("QT_AI_PAL_MIN_R", "1.5", ("subsystems", "profit_amplification", "min_r"), 1.5),
        (
            "QT_AI_PBA_MAX_OPEN_POSITIONS",
            "3",
            ("subsystems", "portfolio_balancer", "max_open_positions"),
            3,
        ),
        ("QT_AI_HFOS_INTERVAL_S", "30", ("subsystems", "coordinator", "interval_s"), 30.0),
        (
            "QT_AI_SELF_HEALING_HEALTH_DATA_FEED_MAX_STALENESS_S",
            "120",
            ("subsystems", "self_healing", "health", "data_feed_max_staleness_s"),
            120.0,
        ),
        ("QT_AI_UNIVERSE_DYNAMIC", "0", ("subsystems", "universe_os", "dynamic", "enabled"), False),
        ("QT_AI_UNIVERSE_OS_MAX_SYMBOLS", "4", ("subsystems", "universe_os", "max_symbols"), 4),
        (
            "QT_AI_UNIVERSE_OS_BLACKLIST",
            "XMR/BTC,ZEC/BTC",
            ("subsystems", "universe_os", "blacklist"),
            ["XMR/BTC", "ZEC/BTC"],
        ),
        (
            "QT_AI_AELM_MAX_SLIPPAGE_BPS",
            "12",
            ("subsystems", "execution", "max_slippage_bps"),
            12.0,
        ),
        ("QT_AI_RETRAINING_MODE", "ENFORCED", ("subsystems", "retraining", "mode"), "ENFORCED"),
        (
            "QT_AI_MODEL_SUPERVISOR_WINDOW_SIZE",
            "100",
            ("subsystems", "model_supervisor", "window_size"),
            100,
        ),
        ("QT_AI_DYNAMIC_TPSL_ENABLED", "no", ("subsystems", "dynamic_tpsl", "enabled"), False),
        (
            "QT_AI_DYNAMIC_TPSL_OVERRIDE",
            "false",
            ("subsystems", "dynamic_tpsl", "override_baseline"),
            False,
        ),
        ("QT_AI_INTEGRATION_STAGE", "advisory", ("stages", "initial"), "ADVISORY"),
    ],
)
def test_override_sets_the_key_and_remembers_its_origin(
    variable: str, value: str, path: tuple[str, ...], expected: object
) -> None:
    policy = load_policy(DEFAULT, env={variable: value})
    assert policy.get(*path) == expected
    origin = policy.origin(*path)
    assert origin is not None and origin.source == f"env {variable}"


def test_override_changes_the_policy_hash() -> None:
    base = load_policy(DEFAULT, env={})
    overridden = load_policy(DEFAULT, env={"QT_AI_PAL_MIN_R": "2"})
    assert base.hash != overridden.hash


def test_unrelated_variables_are_ignored() -> None:
    assert (
        load_policy(DEFAULT, env={"HOME": "/root", "QTX_AI_PIL_MODE": "bogus"}).get("version") == 1
    )


def test_bad_value_is_validated_like_a_file_value() -> None:
    assert errors_for({"QT_AI_PAL_MIN_R": "-1"}) == [
        "env QT_AI_PAL_MIN_R: subsystems.profit_amplification.min_r: expected a number >= 0, found number -1"
    ]


def test_bad_enum_value_names_the_choices() -> None:
    [message] = errors_for({"QT_AI_PIL_MODE": "ENFORCE"})
    assert message.startswith(
        "env QT_AI_PIL_MODE: subsystems.position_intelligence.mode: expected one of OFF, OBSERVE, ADVISORY, ENFORCED"
    )
    assert "did you mean 'ENFORCED'" in message


def test_text_where_a_number_is_expected() -> None:
    [message] = errors_for({"QT_AI_PBA_MAX_OPEN_POSITIONS": "many"})
    assert (
        message
        == "env QT_AI_PBA_MAX_OPEN_POSITIONS: subsystems.portfolio_balancer.max_open_positions: expected an integer, found string 'many'"
    )


def test_unknown_override_is_refused_with_a_suggestion() -> None:
    [message] = errors_for({"QT_AI_PAL_MIN_RR": "1"})
    assert message.startswith(
        "env QT_AI_PAL_MIN_RR: (root): unknown override variable QT_AI_PAL_MIN_RR; did you mean 'QT_AI_PAL_MIN_R'?"
    )


def test_empty_override_is_refused() -> None:
    [message] = errors_for({"QT_AI_PIL_MODE": " "})
    assert "the variable is set but empty" in message


def test_override_semantics_are_checked_too() -> None:
    [message] = errors_for({"QT_AI_UNIVERSE_OS_WHITELIST": "DOGE/BTC"})
    assert (
        message
        == "env QT_AI_UNIVERSE_OS_WHITELIST: subsystems.universe_os.whitelist[0]: DOGE/BTC is not among universe.symbols, so it can never trade"
    )
