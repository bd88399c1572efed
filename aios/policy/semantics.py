"""Checks that a JSON Schema cannot express: relations between values.

Each check reads the effective policy (schema defaults filled in) and reports located issues:
bands that overlap or leave a gap, a min above its max, TP/SL bounds that make the reward:risk
bounds unreachable, names that must refer to something that exists. Warnings flag settings that
are legal but almost certainly not what the author meant; they do not make a policy invalid.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aios.policy.issues import Issue, KeyPath, Location, Severity

Locator = Callable[[KeyPath, bool], Location]
Check = Callable[[Mapping[str, Any]], Iterator[tuple[KeyPath, str, str, Severity]]]

SUBSYSTEMS: KeyPath = ("subsystems",)


def _section(doc: Mapping[str, Any], *path: str | int) -> Mapping[str, Any]:
    node: Any = doc
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _error(path: KeyPath, message: str, code: str) -> tuple[KeyPath, str, str, Severity]:
    return (path, message, f"semantic.{code}", Severity.ERROR)


def _warning(path: KeyPath, message: str, code: str) -> tuple[KeyPath, str, str, Severity]:
    return (path, message, f"semantic.{code}", Severity.WARNING)


def _num(value: Any) -> float | None:
    """A finite number, or None for anything else (the schema reports wrong types)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _min_max(
    section: Mapping[str, Any], base: KeyPath, low: str, high: str
) -> Iterator[tuple[KeyPath, str, str, Severity]]:
    lo, hi = _num(section.get(low)), _num(section.get(high))
    if lo is not None and hi is not None and lo > hi:
        yield _error((*base, low), f"{low} ({lo:g}) is above {high} ({hi:g})", "min_above_max")


def check_pil_bands(doc: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str, str, Severity]]:
    """PIL bands must tile the PnL line: (min, max] intervals, no gap, no overlap, each once."""
    base: KeyPath = (*SUBSYSTEMS, "position_intelligence", "bands")
    bands = _section(doc, "subsystems", "position_intelligence").get("bands")
    if not isinstance(bands, list) or not all(isinstance(b, Mapping) for b in bands):
        return
    seen: dict[str, int] = {}
    for index, band in enumerate(bands):
        category = band.get("category")
        if isinstance(category, str):
            if category in seen:
                yield _error(
                    (*base, index, "category"),
                    f"category {category} already has a band (bands[{seen[category]}])",
                    "duplicate_band",
                )
            seen.setdefault(category, index)
        lo, hi = _num(band.get("min_pnl_pct")), _num(band.get("max_pnl_pct"))
        if lo is not None and hi is not None and lo >= hi:
            yield _error(
                (*base, index, "min_pnl_pct"),
                f"min_pnl_pct ({lo:g}) must be below max_pnl_pct ({hi:g})",
                "empty_band",
            )
            return
    if any(
        key in band and _num(band[key]) is None
        for band in bands
        for key in ("min_pnl_pct", "max_pnl_pct")
    ):
        return  # a bound that is not a number is the schema's to report
    inf = float("inf")

    def lower_bound(index: int) -> float:
        value = _num(bands[index].get("min_pnl_pct"))
        return -inf if value is None else value

    ordered = sorted(range(len(bands)), key=lower_bound)
    first = bands[ordered[0]]
    if "min_pnl_pct" in first:
        yield _error(
            (*base, ordered[0], "min_pnl_pct"),
            f"no band covers PnL at or below {first['min_pnl_pct']:g}%: the lowest band must have no min_pnl_pct",
            "band_gap",
        )
    for previous_index, current_index in itertools.pairwise(ordered):
        previous, current = bands[previous_index], bands[current_index]
        upper = _num(previous.get("max_pnl_pct")) if "max_pnl_pct" in previous else inf
        lower = _num(current.get("min_pnl_pct")) if "min_pnl_pct" in current else -inf
        if upper is None or lower is None:
            continue
        if upper < lower:
            yield _error(
                (*base, current_index, "min_pnl_pct"),
                f"gap: no band covers PnL between {upper:g}% and {lower:g}% "
                f"(bands[{previous_index}] ends at {upper:g}, bands[{current_index}] starts at {lower:g})",
                "band_gap",
            )
        elif upper > lower:
            shown_upper = "+infinity" if upper == inf else f"{upper:g}"
            shown_lower = "-infinity" if lower == -inf else f"{lower:g}"
            yield _error(
                (*base, current_index, "min_pnl_pct"),
                f"overlap: bands[{previous_index}] reaches up to {shown_upper}% but bands[{current_index}] "
                f"starts at {shown_lower}%; a position must fall in exactly one band",
                "band_overlap",
            )
    last = bands[ordered[-1]]
    if "max_pnl_pct" in last and len(ordered) > 1:
        yield _error(
            (*base, ordered[-1], "max_pnl_pct"),
            f"no band covers PnL above {last['max_pnl_pct']:g}%: the highest band must have no max_pnl_pct",
            "band_gap",
        )


def check_dynamic_tpsl(doc: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str, str, Severity]]:
    """TP/SL clamps must leave the reward:risk bounds reachable, and scales must stay positive."""
    base: KeyPath = (*SUBSYSTEMS, "dynamic_tpsl")
    section = _section(doc, *base)
    if not section:
        return
    problems = [
        *_min_max(section, base, "reward_risk_min", "reward_risk_max"),
        *_min_max(section, base, "tp_pct_min", "tp_pct_max"),
        *_min_max(section, base, "sl_pct_min", "sl_pct_max"),
    ]
    yield from problems
    for scale in ("tp_scale", "sl_scale"):
        spec = section.get(scale)
        if isinstance(spec, Mapping):
            offset, slope = _num(spec.get("offset")), _num(spec.get("per_confidence"))
            if offset is not None and slope is not None:
                for confidence in (0.0, 1.0):
                    factor = offset + slope * confidence
                    if factor <= 0:
                        yield _error(
                            (*base, scale),
                            f"at confidence {confidence:g} the scale is {factor:g}; it must stay above 0 "
                            "for every confidence in [0, 1]",
                            "scale_not_positive",
                        )
                        break
    if problems:
        return
    tp_min, tp_max = _num(section.get("tp_pct_min")), _num(section.get("tp_pct_max"))
    sl_min, sl_max = _num(section.get("sl_pct_min")), _num(section.get("sl_pct_max"))
    rr_min, rr_max = _num(section.get("reward_risk_min")), _num(section.get("reward_risk_max"))
    if None in (tp_min, tp_max, sl_min, sl_max, rr_min, rr_max):
        return
    assert tp_min is not None and tp_max is not None and sl_min is not None and sl_max is not None
    assert rr_min is not None and rr_max is not None
    if sl_min <= 0 or sl_max <= 0:
        return  # the schema reports a stop distance that is not positive
    lowest, highest = tp_min / sl_max, tp_max / sl_min
    if highest < rr_min:
        yield _error(
            (*base, "reward_risk_min"),
            f"reward_risk_min {rr_min:g} is unreachable: the TP/SL bounds allow at most "
            f"tp_pct_max/sl_pct_min = {tp_max:g}/{sl_min:g} = {highest:.3g}",
            "rr_unreachable",
        )
    elif lowest > rr_max:
        yield _error(
            (*base, "reward_risk_max"),
            f"reward_risk_max {rr_max:g} is unreachable: the TP/SL bounds force at least "
            f"tp_pct_min/sl_pct_max = {tp_min:g}/{sl_max:g} = {lowest:.3g}",
            "rr_unreachable",
        )


def check_ranges(doc: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str, str, Severity]]:
    """Plain min/max pairs elsewhere in the policy."""
    rl_base: KeyPath = (*SUBSYSTEMS, "rl_sizing")
    rl = _section(doc, *rl_base)
    range_problems = list(_min_max(rl, rl_base, "min_multiplier", "max_multiplier"))
    yield from range_problems
    low, high = _num(rl.get("min_multiplier")), _num(rl.get("max_multiplier"))
    actions = rl.get("actions")
    if not range_problems and low is not None and high is not None and isinstance(actions, list):
        for index, action in enumerate(actions):
            value = _num(action)
            if value is not None and not low <= value <= high:
                yield _error(
                    (*rl_base, "actions", index),
                    f"action {value:g} is outside [min_multiplier {low:g}, max_multiplier {high:g}]",
                    "action_out_of_range",
                )
    dynamic_base: KeyPath = (*SUBSYSTEMS, "universe_os", "dynamic")
    yield from _min_max(
        _section(doc, *dynamic_base), dynamic_base, "min_volatility_pct", "max_volatility_pct"
    )


def check_universe(doc: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str, str, Severity]]:
    """White- and blacklists must name candidate symbols and must not contradict each other."""
    candidates = _section(doc, "universe").get("symbols")
    candidate_set = (
        {s for s in candidates if isinstance(s, str)} if isinstance(candidates, list) else set()
    )
    base: KeyPath = (*SUBSYSTEMS, "universe_os")
    section = _section(doc, *base)
    whitelist = section.get("whitelist") if isinstance(section.get("whitelist"), list) else []
    blacklist = section.get("blacklist") if isinstance(section.get("blacklist"), list) else []
    assert isinstance(whitelist, list) and isinstance(blacklist, list)
    for index, symbol in enumerate(blacklist):
        if symbol in whitelist:
            yield _error(
                (*base, "blacklist", index),
                f"{symbol} is both whitelisted and blacklisted",
                "list_conflict",
            )
    if candidate_set:
        for index, symbol in enumerate(whitelist):
            if isinstance(symbol, str) and symbol not in candidate_set:
                yield _error(
                    (*base, "whitelist", index),
                    f"{symbol} is not among universe.symbols, so it can never trade",
                    "unknown_symbol",
                )
        for index, symbol in enumerate(blacklist):
            if isinstance(symbol, str) and symbol not in candidate_set:
                yield _warning(
                    (*base, "blacklist", index),
                    f"{symbol} is not among universe.symbols (a typo?)",
                    "unknown_symbol",
                )
        pba_base: KeyPath = (*SUBSYSTEMS, "portfolio_balancer", "correlated_groups")
        groups = _section(doc, "subsystems", "portfolio_balancer").get("correlated_groups")
        if isinstance(groups, list):
            names: set[str] = set()
            for group_index, group in enumerate(groups):
                if not isinstance(group, Mapping):
                    continue
                name = group.get("name")
                if isinstance(name, str) and name in names:
                    yield _error(
                        (*pba_base, group_index, "name"),
                        f"group name {name!r} is used twice",
                        "duplicate_group",
                    )
                if isinstance(name, str):
                    names.add(name)
                members = group.get("symbols")
                for symbol_index, symbol in enumerate(members if isinstance(members, list) else []):
                    if isinstance(symbol, str) and symbol not in candidate_set:
                        yield _warning(
                            (*pba_base, group_index, "symbols", symbol_index),
                            f"{symbol} is not among universe.symbols (a typo?)",
                            "unknown_symbol",
                        )


def check_exit_proposals(doc: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str, str, Severity]]:
    """Volatility regimes ascend; profit-lock tiers ascend and lock less than they require."""
    base: KeyPath = (*SUBSYSTEMS, "exit_proposals")
    section = _section(doc, *base)
    regimes = section.get("regimes")
    if isinstance(regimes, Mapping):
        low = _num(_section(regimes, "low_volatility").get("max_volatility_pct"))
        normal = _num(_section(regimes, "normal").get("max_volatility_pct"))
        if low is not None and normal is not None and low >= normal:
            yield _error(
                (*base, "regimes", "normal", "max_volatility_pct"),
                f"must be above low_volatility's max_volatility_pct ({low:g})",
                "regimes_order",
            )
    tiers = section.get("profit_lock_tiers")
    if isinstance(tiers, list):
        previous_at: float | None = None
        previous_lock: float | None = None
        for index, tier in enumerate(tiers):
            if not isinstance(tier, Mapping):
                continue
            at_r, lock_r = _num(tier.get("at_r")), _num(tier.get("lock_r"))
            if at_r is not None and previous_at is not None and at_r <= previous_at:
                yield _error(
                    (*base, "profit_lock_tiers", index, "at_r"),
                    f"tiers must ascend: {at_r:g} is not above the previous at_r {previous_at:g}",
                    "tiers_order",
                )
            if at_r is not None and lock_r is not None and lock_r >= at_r:
                yield _error(
                    (*base, "profit_lock_tiers", index, "lock_r"),
                    f"lock_r ({lock_r:g}) must be below at_r ({at_r:g})",
                    "tier_lock",
                )
            if lock_r is not None and previous_lock is not None and lock_r < previous_lock:
                yield _error(
                    (*base, "profit_lock_tiers", index, "lock_r"),
                    f"a higher tier must not lock less profit ({lock_r:g} < {previous_lock:g})",
                    "tiers_order",
                )
            previous_at = at_r if at_r is not None else previous_at
            previous_lock = lock_r if lock_r is not None else previous_lock


def check_coordinator(doc: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str, str, Severity]]:
    """Each risk mode has at most one rule; NORMAL is the fallback and has none."""
    base: KeyPath = (*SUBSYSTEMS, "coordinator", "risk_mode_rules")
    rules = _section(doc, "subsystems", "coordinator").get("risk_mode_rules")
    if not isinstance(rules, list):
        return
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        mode = rule.get("mode") if isinstance(rule, Mapping) else None
        if not isinstance(mode, str):
            continue
        if mode in seen:
            yield _error(
                (*base, index, "mode"),
                f"risk mode {mode} already has a rule (risk_mode_rules[{seen[mode]}])",
                "duplicate_rule",
            )
        seen.setdefault(mode, index)


def check_safety(doc: Mapping[str, Any]) -> Iterator[tuple[KeyPath, str, str, Severity]]:
    """Stops beyond the emergency loss limit mean the emergency close always fires first."""
    emergency = _section(doc, "safety", "emergency_close")
    limit = _num(emergency.get("loss_limit_pct"))
    if limit is None or emergency.get("enabled") is False:
        return
    for path in (("baseline", "sl_pct"), ("subsystems", "dynamic_tpsl", "sl_pct_max")):
        value = _num(_section(doc, *path[:-1]).get(path[-1]))
        if value is not None and value >= limit:
            yield _warning(
                path,
                f"{value:g}% is at or beyond safety.emergency_close.loss_limit_pct ({limit:g}%): "
                "the emergency close fires before this stop is ever reached",
                "stop_beyond_loss_limit",
            )


def check_stages_and_plugins(
    doc: Mapping[str, Any],
) -> Iterator[tuple[KeyPath, str, str, Severity]]:
    """A plugin both allowed and denied is ambiguous; a cap at AUTONOMY caps nothing."""
    plugins = _section(doc, "plugins")
    allow = plugins.get("allow") if isinstance(plugins.get("allow"), list) else []
    deny = plugins.get("deny") if isinstance(plugins.get("deny"), list) else []
    assert isinstance(allow, list) and isinstance(deny, list)
    for index, name in enumerate(deny):
        if name in allow:
            yield _error(
                ("plugins", "deny", index),
                f"plugin {name!r} is both allowed and denied",
                "list_conflict",
            )
    cap = _section(doc, "stages", "demotion").get("on_critical_risk_mode")
    if cap == "AUTONOMY":
        yield _warning(
            ("stages", "demotion", "on_critical_risk_mode"),
            "AUTONOMY is the top stage, so this never demotes; use null to say so",
            "no_op_demotion",
        )


CHECKS: tuple[Check, ...] = (
    check_pil_bands,
    check_dynamic_tpsl,
    check_ranges,
    check_universe,
    check_exit_proposals,
    check_coordinator,
    check_safety,
    check_stages_and_plugins,
)


def run_checks(doc: Mapping[str, Any], locate: Locator) -> list[Issue]:
    """Every semantic issue of the effective policy, located."""
    issues: list[Issue] = []
    for check in CHECKS:
        for path, message, code, severity in check(doc):
            issues.append(Issue(locate(path, False), path, message, code, severity))
    return issues
