"""The stage machine: guards at their boundaries, persistence, concurrency, automatic demotion."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aios.cli import app
from aios.exchange.paper import PaperBroker
from aios.hookspecs import hookimpl
from aios.journal import Decision, Journal
from aios.model import (
    CycleContext,
    DirectiveKind,
    DirectiveProposal,
    HealthReport,
    HealthStatus,
    RiskAssessment,
    RiskMode,
    Stage,
)
from aios.policy import Policy
from aios.registry import plugin_set
from aios.runtime import Runtime, Store
from aios.stages import Evidence, StageError, StageStore, check_guards
from aios.state import database_path
from aios.testing import T0, candles_from_closes, default_policy
from tests.test_engine import Blocker, Source

REPO = Path(__file__).resolve().parent.parent
OPEN_GUARDS = """\
stages:
  promotion:
    to_advisory:
      min_time_in_stage_s: {time}
      min_decisions: 0
      min_shadow_trades: 0
      max_shadow_drawdown_pct: 100
      require_no_active_directive: false
      require_no_critical_health: false
      min_time_since_policy_change_s: 0
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def evidence(**changes: object) -> Evidence:
    base: dict[str, object] = {
        "time_in_stage_s": 0.0,
        "decisions": 0,
        "shadow_trades": 0,
        "shadow_drawdown_pct": 0.0,
        "shadow_pnl_pct": 0.0,
        "actual_pnl_pct": 0.0,
        "active_directives": (),
        "critical_components": (),
        "time_since_policy_change_s": 0.0,
    }
    base.update(changes)
    return Evidence(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("guards", "passing", "failing"),
    [
        (
            {"min_time_in_stage_s": 86400},
            evidence(time_in_stage_s=86400.0),
            evidence(time_in_stage_s=86399.0),
        ),
        ({"min_decisions": 500}, evidence(decisions=500), evidence(decisions=499)),
        ({"min_shadow_trades": 20}, evidence(shadow_trades=20), evidence(shadow_trades=19)),
        (
            {"max_shadow_drawdown_pct": 10},
            evidence(shadow_drawdown_pct=10.0),
            evidence(shadow_drawdown_pct=10.01),
        ),
        # shadow may trail actual by at most 2 percentage points: actual 5 %, shadow 3 % passes
        (
            {"max_shadow_underperformance_pct": 2},
            evidence(actual_pnl_pct=5.0, shadow_pnl_pct=3.0),
            evidence(actual_pnl_pct=5.0, shadow_pnl_pct=2.99),
        ),
        (
            {"require_no_active_directive": True},
            evidence(),
            evidence(active_directives=("NO_NEW_TRADES",)),
        ),
        (
            {"require_no_critical_health": True},
            evidence(),
            evidence(critical_components=("signal_model",)),
        ),
        (
            {"min_time_since_policy_change_s": 3600},
            evidence(time_since_policy_change_s=3600.0),
            evidence(time_since_policy_change_s=3599.0),
        ),
    ],
)
def test_each_guard_passes_at_its_boundary_and_fails_just_past_it(
    guards: dict[str, object], passing: Evidence, failing: Evidence
) -> None:
    [ok] = check_guards(guards, passing)
    [bad] = check_guards(guards, failing)
    assert ok.passed and not bad.passed
    assert ok.name == bad.name == next(iter(guards))


def test_a_guard_set_false_is_not_checked() -> None:
    assert (
        check_guards({"require_no_active_directive": False}, evidence(active_directives=("X",)))
        == []
    )


def store(tmp_path: Path, policy: Policy, clock: Clock) -> StageStore:
    created = StageStore(database_path(tmp_path), create=True, clock=clock)
    created.ensure(policy)
    return created


def test_promotion_waits_for_time_in_stage_on_the_clock(tmp_path: Path) -> None:
    policy = default_policy(OPEN_GUARDS.format(time=86400))
    clock = Clock()
    stages = store(tmp_path, policy, clock)
    clock.now += timedelta(seconds=86399)
    refused = stages.promote(policy, "ready?")
    assert not refused["moved"] and [g["name"] for g in refused["failing"]] == [
        "min_time_in_stage_s"
    ]
    clock.now += timedelta(seconds=1)
    assert stages.promote(policy, "a day of evidence", dry_run=True)["allowed"]
    assert stages.current().stage is Stage.OBSERVATION  # type: ignore[union-attr]  # dry run moved nothing
    moved = stages.promote(policy, "a day of evidence")
    assert moved["moved"] and moved["to"] == "ADVISORY"
    last = stages.history()[-1]
    assert (last["from"], last["to"], last["reason"], last["policy_hash"]) == (
        "OBSERVATION",
        "ADVISORY",
        "a day of evidence",
        policy.hash,
    )
    assert last["who"] and last["evidence"]["time_in_stage_s"] == 86400.0


def test_skipping_advisory_needs_the_policy_to_allow_it(tmp_path: Path) -> None:
    policy = default_policy(OPEN_GUARDS.format(time=0))
    stages = store(tmp_path, policy, Clock())
    with pytest.raises(StageError, match=r"stages\.allow_skip is false"):
        stages.promote(policy, "straight to autonomy", to=Stage.AUTONOMY)
    lenient = default_policy(
        OPEN_GUARDS.format(time=0)
        + "    to_autonomy:\n      min_time_in_stage_s: 0\n      min_decisions: 0\n      min_shadow_trades: 0\n"
        "      max_shadow_drawdown_pct: 100\n      max_shadow_underperformance_pct: 100\n"
        "      require_no_active_directive: false\n      require_no_critical_health: false\n"
        "      min_time_since_policy_change_s: 0\n  allow_skip: true\n"
    )
    assert stages.promote(lenient, "skip", to=Stage.AUTONOMY)["to"] == "AUTONOMY"


def test_demotion_is_always_allowed_and_restart_keeps_the_stage(tmp_path: Path) -> None:
    policy = default_policy("stages:\n  initial: AUTONOMY\n")
    clock = Clock()
    stages = store(tmp_path, policy, clock)
    assert stages.demote(policy, Stage.ADVISORY, "operator caution")["moved"]
    stages.close()
    reopened = StageStore(database_path(tmp_path), create=False, clock=clock)
    assert reopened.current().stage is Stage.ADVISORY  # type: ignore[union-attr]
    with pytest.raises(StageError, match="is not below it"):
        reopened.demote(policy, Stage.AUTONOMY, "up is not down")


def test_editing_stages_in_the_policy_never_moves_the_stage(tmp_path: Path) -> None:
    clock = Clock()
    stages = store(tmp_path, default_policy(), clock)
    edited = default_policy("stages:\n  initial: AUTONOMY\n")
    assert stages.ensure(edited) is Stage.OBSERVATION
    result = CliRunner().invoke(
        app,
        ["stage", "status", "--state-dir", str(tmp_path)],
        env={"QT_AI_INTEGRATION_STAGE": "AUTONOMY"},
    )
    assert result.exit_code == 0, result.output
    assert result.output.startswith("stage OBSERVATION since")


def test_two_processes_promoting_at_once_exactly_one_succeeds(tmp_path: Path) -> None:
    overlay = tmp_path / "open.yaml"
    overlay.write_text(OPEN_GUARDS.format(time=0))
    policy = default_policy(OPEN_GUARDS.format(time=0))
    store(tmp_path, policy, Clock()).close()
    command = [
        sys.executable,
        "-m",
        "aios",
        "stage",
        "promote",
        "--reason",
        "race",
        "-p",
        str(REPO / "policies" / "default.yaml"),
        "-p",
        str(overlay),
        "--state-dir",
        str(tmp_path),
    ]
    racers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(r.wait(timeout=120), *r.communicate()) for r in racers]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, _, err in results if code == 1)
    # the loser either lost the race for the lock (the stage changed under it) or came second
    # and found ADVISORY, whose next step's guards refuse: a clear refusal either way
    assert any(
        text in loser
        for text in (
            "the stage changed to ADVISORY",
            "locked by another process",
            "promotion from ADVISORY refused",
        )
    )
    assert [row["to"] for row in StageStore(database_path(tmp_path), create=False).history()] == [
        "OBSERVATION",
        "ADVISORY",
    ]


def test_cli_refuses_with_every_failing_guard(tmp_path: Path) -> None:
    store(tmp_path, default_policy(), Clock()).close()
    result = CliRunner().invoke(
        app, ["stage", "promote", "--reason", "too early", "--state-dir", str(tmp_path)], env={}
    )
    assert result.exit_code == 1
    for name in (
        "min_decisions: required >= 500, actual 0",
        "min_shadow_trades: required >= 20, actual 0",
    ):
        assert name in result.output
    history = CliRunner().invoke(app, ["stage", "history", "--state-dir", str(tmp_path)])
    assert history.exit_code == 0 and "create" in history.output


def test_missing_and_corrupt_stores_are_clear_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["stage", "status", "--state-dir", str(tmp_path / "none")], env={}
    )
    assert result.exit_code == 1 and "no state store at" in result.output
    corrupt = tmp_path / "bad"
    corrupt.mkdir()
    database_path(corrupt).write_bytes(b"garbage" * 200)
    before = database_path(corrupt).read_bytes()
    result = CliRunner().invoke(app, ["stage", "status", "--state-dir", str(corrupt)], env={})
    assert (
        result.exit_code == 1 and "cannot use" in result.output and "Traceback" not in result.output
    )
    assert database_path(corrupt).read_bytes() == before


@pytest.mark.parametrize("command", [["stage", "history"], ["stage", "status"]])
def test_a_short_file_that_is_not_a_database_is_refused_and_left_untouched(
    tmp_path: Path, command: list[str]
) -> None:
    # SQLite would take a file shorter than its header for an empty database and write over it
    database_path(tmp_path).write_bytes(b"x")
    result = CliRunner().invoke(app, [*command, "--state-dir", str(tmp_path)], env={})
    assert result.exit_code == 1, result.output
    assert "not an SQLite database" in result.output and "Traceback" not in result.output
    assert database_path(tmp_path).read_bytes() == b"x"


class ShutdownAt:
    """Self-healing stand-in: EMERGENCY_SHUTDOWN during cycles [first, last]."""

    name = "self_healing"

    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    @hookimpl
    def aios_directives(
        self, ctx: CycleContext, health: Sequence[HealthReport]
    ) -> DirectiveProposal:
        active = (
            frozenset({DirectiveKind.EMERGENCY_SHUTDOWN})
            if self.first <= ctx.cycle <= self.last
            else frozenset()
        )
        return DirectiveProposal(active)


def test_an_emergency_shutdown_demotes_and_the_next_cycle_follows_the_new_stage(
    tmp_path: Path,
) -> None:
    policy = default_policy("stages:\n  initial: AUTONOMY\nuniverse:\n  symbols: [ETH/BTC]\n")
    series = {"ETH/BTC": candles_from_closes([100.0 + (i % 3) for i in range(12)])}
    runtime = Runtime(
        policy,
        plugin_set([Source(), Blocker(), ShutdownAt(5, 6)]),
        series,
        tmp_path,
        PaperBroker.from_policy,
    )
    assert runtime.stage is Stage.AUTONOMY
    runtime.begin(T0)
    stages_seen = []
    for candle in series["ETH/BTC"]:
        runtime.advance_to(candle.time)
        stages_seen.append(runtime.engine.stage)
    assert stages_seen[:4] == [Stage.AUTONOMY] * 4
    assert stages_seen[4:] == [Stage.OBSERVATION] * 8
    history = runtime.stages.history()
    assert history[-1]["automatic"] and history[-1]["to"] == "OBSERVATION"
    assert "EMERGENCY_SHUTDOWN" in history[-1]["reason"]
    runtime.journal.flush()
    rows = runtime.journal.reader().query(subsystem="portfolio_balancer")
    # in AUTONOMY the blocker's proposals were applied; after the shutdown cleared, the stage
    # stays demoted and the same proposals are only observed: the baseline trades again
    assert {r.outcome for r in rows if r.cycle < 5} == {"applied"}
    assert {r.outcome for r in rows if r.cycle > 6} == {"observed"}
    runtime.end("stopped")


def test_a_replays_automatic_demotion_marks_every_candle_time_stepped_before_it(
    tmp_path: Path,
) -> None:
    """A replay writes fills and equity with its cursor, not per candle time; the evidence
    of the stage it demotes to must still start after every candle time stepped before."""
    import sqlite3

    policy = default_policy("stages:\n  initial: AUTONOMY\nuniverse:\n  symbols: [ETH/BTC]\n")
    series = {"ETH/BTC": candles_from_closes([100.0 + (i % 3) for i in range(12)])}
    runtime = Runtime(
        policy,
        plugin_set([Source(), Blocker(), ShutdownAt(5, 6)]),
        series,
        tmp_path,
        PaperBroker.from_policy,
    )
    runtime.run()
    connection = sqlite3.connect(database_path(tmp_path))
    (equity_mark, stage) = connection.execute(
        "SELECT equity_mark, stage FROM stage_state"
    ).fetchone()
    before = connection.execute(
        "SELECT COUNT(*) FROM equity WHERE time < ?", (series["ETH/BTC"][4].time.isoformat(),)
    ).fetchone()[0]
    connection.close()
    assert stage == "OBSERVATION"
    assert (equity_mark, before) == (8, 8)  # 4 candle times before the demotion, 2 books


def test_a_locked_store_is_a_clear_refusal(tmp_path: Path) -> None:
    import sqlite3

    policy = default_policy(OPEN_GUARDS.format(time=0))
    store(tmp_path, policy, Clock()).close()
    holder = sqlite3.connect(database_path(tmp_path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        locked = StageStore(database_path(tmp_path), create=False, timeout_s=0.1)
        with pytest.raises(StageError, match="locked by another process"):
            locked.promote(policy, "while locked")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


class CriticalCoordinator:
    name = "coordinator"

    @hookimpl
    def aios_coordinate(self, ctx: CycleContext) -> RiskAssessment:
        return RiskAssessment(
            RiskMode.CRITICAL if ctx.cycle >= 3 else RiskMode.NORMAL, True, "test"
        )


def test_a_critical_risk_mode_caps_the_stage_at_advisory(tmp_path: Path) -> None:
    policy = default_policy("stages:\n  initial: AUTONOMY\nuniverse:\n  symbols: [ETH/BTC]\n")
    series = {"ETH/BTC": candles_from_closes([100.0] * 6)}
    runtime = Runtime(
        policy, plugin_set([CriticalCoordinator()]), series, tmp_path, PaperBroker.from_policy
    )
    runtime.begin(T0)
    seen = []
    for candle in series["ETH/BTC"]:
        runtime.advance_to(candle.time)
        seen.append(runtime.engine.stage)
    assert seen == [
        Stage.AUTONOMY,
        Stage.AUTONOMY,
        Stage.ADVISORY,
        Stage.ADVISORY,
        Stage.ADVISORY,
        Stage.ADVISORY,
    ]
    last = runtime.stages.history()[-1]
    assert last["automatic"] and last["to"] == "ADVISORY" and "CRITICAL" in last["reason"]
    runtime.end("stopped")


def test_an_operator_decision_does_not_move_the_measured_decisions(tmp_path: Path) -> None:
    """`aios venue resolve/settle` journal under the operator's run id: a person's decision
    between runs is not evidence that the engine decided enough to be promoted."""
    from aios.cli_venue import _journal
    from aios.journal import Decision, Journal

    policy = default_policy(OPEN_GUARDS.format(time=0))
    stages = store(tmp_path, policy, Clock())
    journal = Journal(database_path(tmp_path))
    journal.record(
        Decision(
            "r1", 1, T0, "risk", "aios_risk", "BTC/USDT", {}, "OBSERVE", "observed", False, "", ""
        )
    )
    journal.close()
    assert stages.evidence(policy).decisions == 1
    _journal(
        database_path(tmp_path),
        T0,
        "resolve",
        "cid-1",
        "filled",
        "ops",
        "seen",
        "1 BTC",
        None,
        None,
    )
    assert stages.evidence(policy).decisions == 1
    assert check_guards({"min_decisions": 2}, stages.evidence(policy)) != []


# --- directives and health: the state as the latest engine run left it ----------------------

_OPEN_BUT_STATE = """\
      min_time_in_stage_s: 0
      min_decisions: 0
      min_shadow_trades: 0
      max_shadow_drawdown_pct: 100
      max_shadow_underperformance_pct: 100
      require_no_active_directive: true
      require_no_critical_health: true
      min_time_since_policy_change_s: 0
"""
#: Every guard open but the two on directives and health, for both steps.
HEALTH_GUARDS = "stages:\n  promotion:\n" + "".join(
    f"    {step}:\n{_OPEN_BUT_STATE}" for step in ("to_advisory", "to_autonomy")
)


def health_row(run_id: str, component: str, status: int) -> Decision:
    return Decision(
        run_id,
        1,
        T0,
        "engine",
        "aios_health",
        f"component:{component}",
        {"component": component, "status": status, "detail": "", "metrics": {}},
        "ENGINE",
        "engine",
        False,
        f"{component} is {status}",
        "",
    )


def directive_row(run_id: str, active: list[str], outcome: str = "applied") -> Decision:
    proposal: dict[str, object] = {"active": active} if outcome != "error" else {"error": "boom"}
    return Decision(
        run_id,
        1,
        T0,
        "self_healing",
        "aios_directives",
        "directives",
        proposal,
        "ENFORCED",
        outcome,
        outcome == "applied",
        "",
        "",
    )


def journal_rows(tmp_path: Path, *rows: Decision) -> None:
    journal = Journal(database_path(tmp_path))
    for row in rows:
        journal.record(row)
    journal.close()


def start_run(tmp_path: Path, run_id: str, policy: Policy) -> None:
    """A `runs` row as the runtime writes it, with where the run's journal rows start."""
    runs = Store(database_path(tmp_path))
    runs.start(run_id, T0, policy, Stage.OBSERVATION, decisions_from=runs.journal_mark())
    runs.close()


class SickSource(Source):
    """A signal model reporting a component of its own CRITICAL (a data feed of a symbol it
    trades), from its first cycle on."""

    @hookimpl
    def aios_health(self, ctx: CycleContext) -> HealthReport:
        return HealthReport("feed:XRP/BTC", HealthStatus.CRITICAL, "no candles")


def test_a_component_critical_in_an_earlier_run_and_gone_from_the_latest_does_not_block(
    tmp_path: Path,
) -> None:
    """Health rows are edge-triggered, so a component an earlier run left CRITICAL has no row
    saying otherwise once it no longer exists (a removed plugin, a symbol no longer traded)."""
    policy = default_policy(HEALTH_GUARDS + "universe:\n  symbols: [ETH/BTC]\n")
    series = {"ETH/BTC": candles_from_closes([100.0] * 4)}
    clock = Clock()
    stages = store(tmp_path, policy, clock)
    for plugins, critical in (
        ([SickSource()], ("feed:XRP/BTC",)),
        ([Source()], ()),
    ):
        Runtime(
            policy, plugin_set(plugins), series, tmp_path, PaperBroker.from_policy, wall_clock=clock
        ).run()
        assert stages.evidence(policy).critical_components == critical
    promoted = stages.promote(policy, "the old feed is gone")
    assert promoted["moved"], promoted["failing"]


def test_each_run_records_where_its_journal_rows_start(tmp_path: Path) -> None:
    """`runs.decisions_from` bounds the readers of one run's rows: it must lie below every
    row of the run (its start-up reconciliation rows, written before it begins, included)."""
    import sqlite3
    from types import SimpleNamespace

    policy = default_policy("universe:\n  symbols: [ETH/BTC]\n")
    series = {"ETH/BTC": candles_from_closes([100.0] * 4)}
    Runtime(policy, plugin_set([Source()]), series, tmp_path, PaperBroker.from_policy).run()
    second = Runtime(policy, plugin_set([Source()]), series, tmp_path, PaperBroker.from_policy)
    reconciled = SimpleNamespace(subject="order:x", action="frozen", symbol="ETH/BTC", detail="")
    second.journal_reconciliation([reconciled], T0)
    second.run()
    connection = sqlite3.connect(database_path(tmp_path))
    bounds = dict(connection.execute("SELECT run_id, decisions_from FROM runs").fetchall())
    spans = {
        run_id: (first, last)
        for run_id, first, last in connection.execute(
            "SELECT run_id, MIN(rowid), MAX(rowid) FROM decisions GROUP BY run_id"
        )
    }
    connection.close()
    assert bounds["run-1"] == 0
    assert bounds["run-2"] == spans["run-1"][1] < spans["run-2"][0]


def test_a_component_critical_before_the_stages_mark_blocks_until_it_recovers(
    tmp_path: Path,
) -> None:
    """Promoted mid-run, after the feed turned CRITICAL: the feed is CRITICAL still (nothing
    journaled a change), although its row lies before the stage's mark. Here the run was also
    resumed after a later run had the feed OK: rows of another run do not hide it."""
    policy = default_policy(HEALTH_GUARDS)
    open_policy = default_policy(OPEN_GUARDS.format(time=0))
    stages = store(tmp_path, policy, Clock())
    start_run(tmp_path, "run-1", policy)
    journal_rows(tmp_path, health_row("run-1", "feed", 0), health_row("run-1", "feed", 2))
    start_run(tmp_path, "run-2", policy)
    journal_rows(tmp_path, health_row("run-2", "feed", 0))
    # run-1 resumed: it journals on; its feed has not changed since it turned CRITICAL
    journal_rows(tmp_path, health_row("run-1", "signal_model", 0))
    assert stages.promote(open_policy, "guards off for this step")["to"] == "ADVISORY"
    journal_rows(tmp_path, directive_row("run-1", []))
    assert stages.evidence(policy).critical_components == ("feed",)
    refused = stages.promote(policy, "to autonomy?")
    assert not refused["moved"]
    assert [g["name"] for g in refused["failing"]] == ["require_no_critical_health"]
    journal_rows(tmp_path, health_row("run-1", "feed", 0))
    assert stages.promote(policy, "the feed recovered")["to"] == "AUTONOMY"


def test_a_directive_an_earlier_run_ended_with_is_not_active_in_the_latest(
    tmp_path: Path,
) -> None:
    """A run starts with no directive: one an earlier run left active is not active now."""
    policy = default_policy(HEALTH_GUARDS)
    stages = store(tmp_path, policy, Clock())
    journal_rows(
        tmp_path,
        health_row("run-1", "signal_model", 0),
        directive_row("run-1", ["NO_NEW_TRADES"]),
        health_row("run-2", "signal_model", 0),
    )
    assert stages.evidence(policy).active_directives == ()
    assert stages.promote(policy, "the latest run has no directive")["moved"]


def test_a_self_healing_error_does_not_clear_the_directives_in_force(tmp_path: Path) -> None:
    """An `error` row decides nothing: EMERGENCY_SHUTDOWN set before it is still in force,
    for the guards and for `aios status` alike."""
    policy = default_policy(HEALTH_GUARDS)
    stages = store(tmp_path, policy, Clock())
    start_run(tmp_path, "run-1", policy)
    journal_rows(
        tmp_path,
        directive_row("run-1", ["EMERGENCY_SHUTDOWN"]),
        directive_row("run-1", [], outcome="error"),
    )
    assert stages.evidence(policy).active_directives == ("EMERGENCY_SHUTDOWN",)
    assert [g["name"] for g in stages.promote(policy, "while shut down?")["failing"]] == [
        "require_no_active_directive"
    ]
    status = CliRunner().invoke(
        app, ["status", "--state-dir", str(tmp_path), "--format", "json"], env={}
    )
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["directives"] == ["EMERGENCY_SHUTDOWN"]


def test_a_directive_self_healing_only_observes_still_blocks_promotion(tmp_path: Path) -> None:
    """In OBSERVATION self-healing is never applied: its directives are journaled `observed`.
    The guards judge the shadow book (every proposal applied), so a directive it asks for
    blocks promotion; `aios status` shows what is in force on the actual book: none."""
    policy = default_policy(HEALTH_GUARDS)
    stages = store(tmp_path, policy, Clock())
    start_run(tmp_path, "run-1", policy)
    journal_rows(tmp_path, directive_row("run-1", ["NO_NEW_TRADES"], outcome="observed"))
    assert stages.evidence(policy).active_directives == ("NO_NEW_TRADES",)
    refused = stages.promote(policy, "while self-healing asks for a directive?")
    assert [g["name"] for g in refused["failing"]] == ["require_no_active_directive"]
    status = CliRunner().invoke(
        app, ["status", "--state-dir", str(tmp_path), "--format", "json"], env={}
    )
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["directives"] == []
    journal_rows(tmp_path, directive_row("run-1", [], outcome="observed"))
    assert stages.promote(policy, "self-healing cleared it")["moved"]


def test_the_operators_rows_never_stand_for_the_latest_run(tmp_path: Path) -> None:
    """`aios venue resolve` after a run journals under the operator's run id: the state is
    still the engine's latest run's (and only that run's: run-1's exchange is long gone)."""
    from aios.cli_venue import _journal

    policy = default_policy(HEALTH_GUARDS)
    stages = store(tmp_path, policy, Clock())
    journal_rows(
        tmp_path,
        health_row("run-1", "exchange", 2),
        health_row("run-2", "feed", 2),
        directive_row("run-2", ["NO_NEW_TRADES"]),
    )
    _journal(
        database_path(tmp_path), T0, "resolve", "cid-1", "filled", "ops", "seen", "", None, None
    )
    evidence = stages.evidence(policy)
    assert (evidence.critical_components, evidence.active_directives) == (
        ("feed",),
        ("NO_NEW_TRADES",),
    )


def test_a_store_from_before_runs_recorded_their_start_is_read_whole(tmp_path: Path) -> None:
    """A `runs` table without `decisions_from` (a store no newer aios has opened for a run):
    the run's rows are looked for in the whole journal, by the guards and by `aios status`."""
    import sqlite3

    policy = default_policy(HEALTH_GUARDS)
    stages = store(tmp_path, policy, Clock())
    journal_rows(tmp_path, health_row("run-1", "feed", 0), health_row("run-1", "feed", 2))
    old = sqlite3.connect(database_path(tmp_path))
    old.execute(
        "CREATE TABLE runs (run_id TEXT PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,"
        " policy_hash TEXT NOT NULL, policy_sources TEXT NOT NULL, stage TEXT NOT NULL,"
        " status TEXT NOT NULL, report TEXT)"
    )
    old.execute(
        "INSERT INTO runs VALUES ('run-1', ?, ?, ?, '[]', 'OBSERVATION', 'finished', '{\"books\": {}}')",
        (T0.isoformat(), T0.isoformat(), policy.hash),
    )
    old.commit()
    old.close()
    assert stages.evidence(policy).critical_components == ("feed",)
    status = CliRunner().invoke(
        app, ["status", "--state-dir", str(tmp_path), "--format", "json"], env={}
    )
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["health"] == {"feed": "CRITICAL"}


def test_status_shows_a_resumed_run_not_the_one_started_after_it(tmp_path: Path) -> None:
    """`aios run --resume` continues an older run under its own id: once it journals again,
    it is the run `aios status` shows; a run just started, with nothing journaled yet, is shown
    before an older one."""
    policy = default_policy(HEALTH_GUARDS)

    def shown() -> str:
        result = CliRunner().invoke(
            app, ["status", "--state-dir", str(tmp_path), "--format", "json"], env={}
        )
        assert result.exit_code == 0, result.output
        return str(json.loads(result.stdout)["run_id"])

    start_run(tmp_path, "run-1", policy)
    journal_rows(tmp_path, health_row("run-1", "feed", 0))
    start_run(tmp_path, "run-2", policy)
    assert shown() == "run-2"  # started, nothing journaled yet
    journal_rows(tmp_path, health_row("run-2", "feed", 0))
    assert shown() == "run-2"
    journal_rows(tmp_path, health_row("run-1", "feed", 2))  # run-1 resumed
    assert shown() == "run-1"
