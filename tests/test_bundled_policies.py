"""The bundled policies: all valid, and default.yaml is the system as its deployment describes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aios.policy import Policy, load_policy

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def load(name: str) -> Policy:
    return load_policy([POLICIES / name], env={})


@pytest.mark.parametrize("name", ["default.yaml", "conservative.yaml", "aggressive.yaml"])
def test_bundled_policy_is_valid_without_warnings(name: str) -> None:
    policy = load(name)
    assert policy.warnings == ()
    assert next(iter(policy.document)) == "version"


def test_default_enforces_everything_but_retraining() -> None:
    subsystems = load("default.yaml").document["subsystems"]
    assert len(subsystems) == 13
    modes = {name: section["mode"] for name, section in subsystems.items()}
    assert modes.pop("retraining") == "ADVISORY"
    assert set(modes.values()) == {"ENFORCED"}
    assert all(section["enabled"] for section in subsystems.values())


def test_default_describes_the_source_system() -> None:
    policy = load("default.yaml")
    assert policy.get("stages", "initial") == "OBSERVATION"
    assert policy.get("baseline", "tp_pct") == 6.0
    assert policy.get("baseline", "sl_pct") == 8.0
    bands = {
        band["category"]: (band.get("min_pnl_pct"), band.get("max_pnl_pct"))
        for band in policy.get("subsystems", "position_intelligence", "bands")
    }
    assert bands["WINNER"] == (3.0, None)
    assert bands["POTENTIAL_WINNER"] == (1.0, 3.0)
    assert bands["BREAKEVEN"] == (-1.0, 1.0)
    assert bands["LOSER"] == (None, -5.0)
    tpsl = policy.get("subsystems", "dynamic_tpsl")
    assert (tpsl["tp_scale"]["offset"], tpsl["tp_scale"]["per_confidence"]) == (0.5, 1.0)
    assert (tpsl["sl_scale"]["offset"], tpsl["sl_scale"]["per_confidence"]) == (1.5, -1.0)
    assert (tpsl["reward_risk_min"], tpsl["reward_risk_max"]) == (1.5, 3.0)
    assert policy.get("safety", "emergency_close", "loss_limit_pct") == 10.0
    assert policy.get("subsystems", "coordinator", "interval_s") == 60
    assert policy.get("subsystems", "self_healing", "interval_s") == 120
    assert policy.get("cycles", "position_monitor_interval_s") == 10
    assert policy.get("cycles", "entry_interval_s") == 30
    assert policy.get("subsystems", "profit_amplification", "min_r") == 1.0


def test_default_risk_mode_table() -> None:
    modes = load("default.yaml").document["risk_modes"]
    table = {
        name: (m["confidence_threshold_multiplier"], m["tp_multiplier"], m["sl_multiplier"])
        for name, m in modes.items()
    }
    assert table == {
        "NORMAL": (1.0, 1.0, 1.0),
        "OPTIMISTIC": (0.95, 1.15, 0.9),
        "AGGRESSIVE": (0.90, 1.30, 0.85),
        "CRITICAL": (1.25, 0.70, 1.3),
    }


def test_conditions_are_compiled_and_behave() -> None:
    policy = load("default.yaml")
    critical_rule = next(
        index
        for index, rule in enumerate(policy.get("subsystems", "coordinator", "risk_mode_rules"))
        if rule["mode"] == "CRITICAL"
    )
    enter = policy.condition("subsystems", "coordinator", "risk_mode_rules", critical_rule, "enter")
    calm = {"drawdown_pct": 1.0, "losing_streak": 0, "volatility_pct": 1.0}
    assert enter.evaluate(calm) is False
    assert enter.evaluate({**calm, "drawdown_pct": 8.0}) is True
    trigger = policy.condition("directives", "NO_NEW_TRADES", "trigger")
    assert trigger.evaluate({}) is None  # unknown: the policy's on_missing_metric decides
    assert policy.get("directives", "NO_NEW_TRADES", "on_missing_metric") == "fire"


def test_variants_differ_meaningfully_from_default() -> None:
    default, conservative, aggressive = (
        load("default.yaml"),
        load("conservative.yaml"),
        load("aggressive.yaml"),
    )

    def limit(p: Policy) -> float:
        return float(p.get("safety", "emergency_close", "loss_limit_pct"))

    def risk(p: Policy) -> float:
        return float(p.get("subsystems", "portfolio_balancer", "risk_per_trade_pct"))

    assert limit(conservative) < limit(default) < limit(aggressive)
    assert risk(conservative) < risk(default) < risk(aggressive)
    assert len({default.hash, conservative.hash, aggressive.hash}) == 3


def test_policy_hash_is_stable_and_content_based(tmp_path: Path) -> None:
    text = (POLICIES / "default.yaml").read_text()
    copy = tmp_path / "copy.yaml"
    copy.write_text("# a comment changes nothing\n" + text)
    assert load_policy([copy], env={}).hash == load("default.yaml").hash
