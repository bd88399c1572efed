"""Merging several files (later wins, origins follow) and the semantic checks at their boundaries."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from aios.policy import PolicyInvalid, Severity, load_policy

Overlay = Callable[..., list[Path]]


def errors(paths: list[Path]) -> list[str]:
    with pytest.raises(PolicyInvalid) as caught:
        load_policy(paths, env={})
    return [str(issue) for issue in caught.value.errors]


def test_later_file_wins_and_origins_follow(overlay: Overlay) -> None:
    paths = overlay("subsystems:\n  profit_amplification:\n    min_r: 2.0\n")
    policy = load_policy(paths, env={})
    assert policy.get("subsystems", "profit_amplification", "min_r") == 2.0
    assert str(policy.origin("subsystems", "profit_amplification", "min_r")) == f"{paths[1]}:3:12"
    # untouched siblings keep the base file as their origin
    origin = policy.origin("subsystems", "profit_amplification", "max_adds")
    assert origin is not None and origin.source == str(paths[0])


def test_lists_are_replaced_whole_not_merged(overlay: Overlay) -> None:
    paths = overlay(
        "universe:\n  symbols: [ETH/BTC, LTC/BTC]\nsubsystems:\n  portfolio_balancer:\n    correlated_groups: []\n  universe_os:\n    blacklist: []\n    whitelist: []\n"
    )
    policy = load_policy(paths, env={})
    assert policy.get("universe", "symbols") == ["ETH/BTC", "LTC/BTC"]
    assert str(policy.origin("universe", "symbols", 1)) == f"{paths[1]}:2:22"


def test_a_scalar_can_replace_a_mapping_and_is_then_validated(overlay: Overlay) -> None:
    paths = overlay("safety: off\n")
    assert errors(paths) == [f"{paths[1]}:1:9: safety: expected a mapping, found string 'off'"]


def test_errors_from_several_files_are_all_reported(tmp_path: Path) -> None:
    first = tmp_path / "a.yaml"
    second = tmp_path / "b.yaml"
    first.write_text("version: 1\nversion: 1\n")
    second.write_text("- not a mapping\n")
    messages = errors([first, second])
    assert messages == [
        f"{first}:2:1: version: duplicate key 'version' (first defined at line 1); a later value would silently win, so this is refused",
        f"{second}:1:1: (root): the top level must be a mapping (`version: 1`, `stages: ...`), found a list",
    ]


RR_OVERLAY = """subsystems:
  dynamic_tpsl:
    tp_pct_min: 1.0
    tp_pct_max: {tp_max}
    sl_pct_min: 2.0
    sl_pct_max: 9.0
    reward_risk_min: 1.5
    reward_risk_max: 3.0
"""


def test_reward_risk_reachable_exactly_at_the_boundary(overlay: Overlay) -> None:
    # tp_pct_max / sl_pct_min = 3.0 / 2.0 = 1.5 == reward_risk_min: reachable
    load_policy(overlay(RR_OVERLAY.format(tp_max="3.0")), env={})


def test_reward_risk_unreachable_just_past_the_boundary(overlay: Overlay) -> None:
    paths = overlay(RR_OVERLAY.format(tp_max="2.99"))
    assert errors(paths) == [
        f"{paths[1]}:7:22: subsystems.dynamic_tpsl.reward_risk_min: reward_risk_min 1.5 is unreachable: "
        "the TP/SL bounds allow at most tp_pct_max/sl_pct_min = 2.99/2 = 1.5"
    ]


def test_band_gap_and_overlap_are_located_at_the_band_that_starts_wrong(overlay: Overlay) -> None:
    paths = overlay(
        "subsystems:\n  position_intelligence:\n    bands:\n"
        "      - {category: WINNER, min_pnl_pct: 3.0}\n"
        "      - {category: POTENTIAL_WINNER, min_pnl_pct: 1.0, max_pnl_pct: 2.5}\n"
        "      - {category: BREAKEVEN, min_pnl_pct: -1.0, max_pnl_pct: 1.0}\n"
        "      - {category: STRUGGLING, min_pnl_pct: -5.0, max_pnl_pct: -0.5}\n"
        "      - {category: LOSER, max_pnl_pct: -5.0}\n"
    )
    assert errors(paths) == [
        f"{paths[1]}:4:41: subsystems.position_intelligence.bands[0].min_pnl_pct: gap: no band covers PnL between 2.5% and 3% (bands[1] ends at 2.5, bands[0] starts at 3)",
        f"{paths[1]}:6:44: subsystems.position_intelligence.bands[2].min_pnl_pct: overlap: bands[3] reaches up to -0.5% but bands[2] starts at -1%; a position must fall in exactly one band",
    ]


def test_adjacent_bands_sharing_a_bound_are_fine(overlay: Overlay) -> None:
    paths = overlay(
        "subsystems:\n  position_intelligence:\n    bands:\n"
        "      - {category: WINNER, min_pnl_pct: 0.0}\n"
        "      - {category: LOSER, max_pnl_pct: 0.0}\n"
    )
    load_policy(paths, env={})


def test_stop_beyond_loss_limit_is_a_warning_not_an_error(overlay: Overlay) -> None:
    paths = overlay("baseline:\n  sl_pct: 10.0\n")
    policy = load_policy(paths, env={})
    [warning] = policy.warnings
    assert warning.severity is Severity.WARNING
    assert str(warning) == (
        f"{paths[1]}:2:11: warning: baseline.sl_pct: 10% is at or beyond safety.emergency_close.loss_limit_pct (10%): "
        "the emergency close fires before this stop is ever reached"
    )


def test_stop_just_inside_loss_limit_gives_no_warning(overlay: Overlay) -> None:
    assert load_policy(overlay("baseline:\n  sl_pct: 9.99\n"), env={}).warnings == ()


def test_semantic_error_on_a_defaulted_value_points_at_the_written_section(tmp_path: Path) -> None:
    base = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"
    text = (
        base.read_text()
        .replace("    reward_risk_min: 1.5\n", "", 1)
        .replace("    reward_risk_max: 3.0\n", "    reward_risk_max: 1.2\n", 1)
    )
    path = tmp_path / "p.yaml"
    path.write_text(text)
    [message] = errors([path])
    assert (
        "subsystems.dynamic_tpsl.reward_risk_min: reward_risk_min (1.5) is above reward_risk_max (1.2)"
        in message
    )
    line = next(
        i for i, row in enumerate(text.splitlines(), 1) if row.startswith("  dynamic_tpsl:")
    )
    assert message.startswith(f"{path}:{line + 1}:")


def test_expression_error_reports_the_character(overlay: Overlay) -> None:
    paths = overlay(
        'directives:\n  NO_NEW_TRADES:\n    trigger: "drawdown_pct >= 5 or open(1) > 0"\n'
    )
    assert errors(paths) == [
        f"{paths[1]}:3:14: directives.NO_NEW_TRADES.trigger: a function call is not allowed in a condition "
        "(only metric names, numbers, comparisons, and/or/not and + - * /) (at character 22 of the expression)"
    ]


def test_a_zero_stop_bound_is_reported_by_the_schema_not_a_crash(overlay: Overlay) -> None:
    # found by the property tests: tp_pct_max / sl_pct_min divided by zero
    paths = overlay("subsystems:\n  dynamic_tpsl:\n    sl_pct_min: 0\n")
    assert errors(paths) == [
        f"{paths[1]}:3:17: subsystems.dynamic_tpsl.sl_pct_min: expected a number > 0, found integer 0"
    ]
